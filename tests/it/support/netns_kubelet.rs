//! A kubelet for nodes that are network namespaces of the lab: each pod a DaemonSet puts on
//! such a node really runs. The init container's own command unpacks the probe from the run's
//! ConfigMaps (laid out as the kubelet lays out a projected volume), then the probe container's
//! command and arguments run inside the node's namespace (its `hostNetwork`), and the process's
//! stdout is the pod's log. The process gets the capabilities the container's securityContext
//! grants (`drop: [ALL]` and `add`), no more, through `setpriv`; a kubelet may be told to strip
//! some (as a runtime or a mutating policy can). Deleting the pod stops the process — SIGTERM,
//! then SIGKILL after the pod's grace period — as a kubelet does.

use super::cluster::affinity_nodes;
use super::fake_api::{FakeApi, LiveLog};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A probe process of a pod.
struct Running {
    namespace: String,
    pod: String,
    child: Child,
}

/// The kubelet of every lab node; stops what still runs when dropped.
pub struct NetnsKubelet {
    running: Arc<Mutex<Vec<Running>>>,
    /// Each pod's volumes (`delivery`, `probe`), under one directory.
    root: Arc<tempfile::TempDir>,
    /// What the pods wrote on stderr, by pod: shown when a test fails.
    stderr: Arc<Mutex<HashMap<String, String>>>,
    /// Probe processes whose stdout is still open (they run).
    alive: Arc<AtomicUsize>,
}

impl NetnsKubelet {
    /// Plays the DaemonSet controller and the kubelets of `nodes` (node name → network
    /// namespace): every DaemonSet created gets one pod per node of its node affinity.
    pub fn start(api: &FakeApi, nodes: HashMap<String, String>) -> NetnsKubelet {
        NetnsKubelet::start_stripping(api, nodes, &[])
    }

    /// [`NetnsKubelet::start`], with the capabilities `strip` taken from every container
    /// whatever its securityContext adds.
    pub fn start_stripping(
        api: &FakeApi,
        nodes: HashMap<String, String>,
        strip: &[&str],
    ) -> NetnsKubelet {
        let strip: Arc<Vec<String>> = Arc::new(strip.iter().map(|c| c.to_string()).collect());
        let kubelet = NetnsKubelet {
            running: Arc::new(Mutex::new(Vec::new())),
            root: Arc::new(tempfile::tempdir().expect("a directory for pod volumes")),
            stderr: Arc::new(Mutex::new(HashMap::new())),
            alive: Arc::new(AtomicUsize::new(0)),
        };
        let (running, root, stderr, alive) = (
            kubelet.running.clone(),
            kubelet.root.clone(),
            kubelet.stderr.clone(),
            kubelet.alive.clone(),
        );
        api.on_create("daemonsets", move |api, ds| {
            for node in affinity_nodes(&ds) {
                let Some(netns) = nodes.get(&node).cloned() else {
                    continue;
                };
                let pod = schedule(&api, &ds, &node);
                let (running, root, stderr, alive) =
                    (running.clone(), root.clone(), stderr.clone(), alive.clone());
                let strip = strip.clone();
                let api = api.clone();
                tokio::spawn(async move {
                    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    let dir = root.path().join(name);
                    let started = tokio::task::spawn_blocking({
                        let (api, pod, dir) = (api.clone(), pod.clone(), dir.clone());
                        move || start_pod(&api, &pod, &node, &netns, &dir, &strip)
                    })
                    .await
                    .unwrap_or_else(|err| Err(format!("the kubelet task failed: {err}")));
                    match started {
                        Ok((child, log)) => {
                            let mut child = child;
                            collect(&mut child, log, name, &stderr, alive);
                            running
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Running {
                                    namespace: namespace.to_string(),
                                    pod: name.to_string(),
                                    child,
                                });
                            set_status(&api, namespace, name, running_status());
                        }
                        Err(message) => set_status(&api, namespace, name, failed_status(&message)),
                    }
                });
            }
        });
        // Pods deleted (with their DaemonSet, by the garbage collector) are stopped.
        let mut changes = api.subscribe();
        let running = kubelet.running.clone();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) if change.kind == "DELETED" && change.key.resource == "pods" => {
                        let mut all = running.lock().unwrap_or_else(|p| p.into_inner());
                        let (gone, kept): (Vec<Running>, Vec<Running>) =
                            std::mem::take(&mut *all).into_iter().partition(|r| {
                                Some(r.namespace.as_str()) == change.key.namespace.as_deref()
                                    && r.pod == change.key.name
                            });
                        *all = kept;
                        drop(all);
                        for process in gone {
                            tokio::task::spawn_blocking(move || stop(process.child, 5));
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        kubelet
    }

    /// Probe processes still running.
    pub fn running(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// What the pods wrote on stderr.
    pub fn stderr(&self) -> HashMap<String, String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for NetnsKubelet {
    fn drop(&mut self) {
        let all = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for process in all {
            stop(process.child, 0);
        }
    }
}

/// The DaemonSet controller's pod for `node`, Pending, stored.
fn schedule(api: &FakeApi, ds: &Value, node: &str) -> Value {
    let namespace = ds["metadata"]["namespace"].as_str().unwrap_or_default();
    let ds_name = ds["metadata"]["name"].as_str().unwrap_or_default();
    let template = &ds["spec"]["template"];
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{ds_name}-{node}"),
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds_name,
                "uid": ds["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true
            }],
        },
        "spec": template["spec"],
        "status": {"phase": "Pending"},
    });
    pod["spec"]["nodeName"] = json!(node);
    api.insert(&pod)
}

/// The capabilities a container runs with, as `setpriv --bounding-set` arguments: when its
/// securityContext drops ALL, only what it adds (less `strip`); `None` when it keeps the
/// runtime's defaults (this kubelet then leaves root's).
fn granted(container: &Value, strip: &[String]) -> Option<String> {
    let caps = &container["securityContext"]["capabilities"];
    let drops_all = caps["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|c| c == "ALL"));
    if !drops_all {
        return None;
    }
    let added: String = caps["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|c| !strip.iter().any(|s| s == c))
        .map(|c| format!(",+{}", c.to_ascii_lowercase()))
        .collect();
    Some(format!("--bounding-set=-all{added}"))
}

/// Lays out the volumes, runs the init containers, starts the probe container in `netns`.
fn start_pod(
    api: &FakeApi,
    pod: &Value,
    node: &str,
    netns: &str,
    dir: &Path,
    strip: &[String],
) -> Result<(Child, LiveLog), String> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &pod["spec"];
    let mounts = volumes(api, namespace, spec, dir)?;
    for init in spec["initContainers"].as_array().into_iter().flatten() {
        let argv = command(init, node, &mounts)?;
        let out = Command::new(if argv[0] == "sh" { "bash" } else { &argv[0] })
            .args(&argv[1..])
            .output()
            .map_err(|err| format!("init container {}: {err}", init["name"]))?;
        if !out.status.success() {
            return Err(format!(
                "init container {} exited {}: {}",
                init["name"],
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let container = &spec["containers"][0];
    let argv = command(container, node, &mounts)?;
    let mut run = Command::new("ip");
    run.args(["netns", "exec", netns]);
    if let Some(bounding) = granted(container, strip) {
        run.args(["setpriv", &bounding, "--inh-caps=-all", "--"]);
    }
    let child = run
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("starting {argv:?} in {netns}: {err}"))?;
    Ok((child, api.live_log(namespace, name)))
}

/// Each volume's directory by name: a projected volume of ConfigMaps gets every key as a file,
/// an emptyDir an empty directory.
fn volumes(
    api: &FakeApi,
    namespace: &str,
    spec: &Value,
    dir: &Path,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut mounts = HashMap::new();
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or_default();
        let path = dir.join(name);
        std::fs::create_dir_all(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        for source in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let map_name = source["configMap"]["name"].as_str().unwrap_or_default();
            let stored = api
                .get("configmaps", Some(namespace), map_name)
                .ok_or_else(|| format!("configmap \"{map_name}\" not found"))?;
            let map: ConfigMap =
                serde_json::from_value(stored).map_err(|err| format!("{map_name}: {err}"))?;
            for (key, data) in map.binary_data.iter().flatten() {
                std::fs::write(path.join(key), &data.0).map_err(|err| format!("{key}: {err}"))?;
            }
        }
        mounts.insert(name.to_string(), path);
    }
    Ok(mounts)
}

/// A container's command and arguments, its volume mounts turned into the pod's directories
/// and `$(NODE_NAME)` (from `spec.nodeName`) expanded.
fn command(
    container: &Value,
    node: &str,
    mounts: &HashMap<String, PathBuf>,
) -> Result<Vec<String>, String> {
    let mut argv: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if argv.is_empty() {
        return Err(format!(
            "container {} has no command: only the delivery of the probe this plugin carries runs here",
            container["name"]
        ));
    }
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(name), Some(at)) = (mount["name"].as_str(), mount["mountPath"].as_str()) else {
            continue;
        };
        let Some(path) = mounts.get(name) else {
            continue;
        };
        let path = path.display().to_string();
        for arg in &mut argv {
            *arg = arg.replace(&format!("{at}/"), &format!("{path}/"));
            if *arg == at {
                arg.clone_from(&path);
            }
        }
    }
    for arg in &mut argv {
        *arg = arg.replace("$(NODE_NAME)", node);
    }
    Ok(argv)
}

/// The process's stdout lines into the pod's log; its stderr kept for the test's messages.
fn collect(
    child: &mut Child,
    log: LiveLog,
    pod: &str,
    stderr: &Arc<Mutex<HashMap<String, String>>>,
    alive: Arc<AtomicUsize>,
) {
    if let Some(out) = child.stdout.take() {
        alive.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                log.push(line);
            }
            log.close();
            alive.fetch_sub(1, Ordering::SeqCst);
        });
    }
    if let Some(err) = child.stderr.take() {
        let (stderr, pod) = (stderr.clone(), pod.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut all = stderr.lock().unwrap_or_else(|p| p.into_inner());
                let text = all.entry(pod.clone()).or_default();
                text.push_str(&line);
                text.push('\n');
            }
        });
    }
}

/// SIGTERM, then SIGKILL after `grace` seconds.
fn stop(mut child: Child, grace: u64) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(grace);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn set_status(api: &FakeApi, namespace: &str, pod: &str, status: Value) {
    api.update("pods", Some(namespace), pod, |p| p["status"] = status);
}

fn running_status() -> Value {
    json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{
            "name": "probe", "ready": true, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
        }],
    })
}

/// What the kubelet shows for a pod whose containers could not start; permanent here.
fn failed_status(message: &str) -> Value {
    json!({
        "phase": "Failed",
        "reason": "StartError",
        "message": message,
    })
}
