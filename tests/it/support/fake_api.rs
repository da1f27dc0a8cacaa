//! An in-process Kubernetes API server speaking real API JSON over real HTTP.
//!
//! Tests start it on 127.0.0.1:0 and point a kubeconfig at it. It keeps a store of objects
//! (serialized k8s-openapi types), answers get/list/create/delete/patch/watch and pod logs, runs
//! hooks on create (a stand-in for controllers), collects garbage by ownerReferences like the
//! cluster's garbage collector, and fails on demand with real `Status` bodies (403/404/409/...).
//!
//! Its parts: [`store`] keeps the objects (resource versions, the change history, garbage
//! collection), [`verbs`] does what each API verb does (with [`admission`] for what admission
//! refuses), and [`http`] is the plumbing (routes, query strings, responses, the listener).

mod admission;
mod http;
mod store;
mod verbs;

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{key_of, Store};
use tokio::sync::{broadcast, watch};

pub use store::{Change, Key};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// Resource with subresource: `pods`, `pods/log`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub query: String,
    /// Server-side dry run: validated, not stored.
    pub dry_run: bool,
}

/// An injected failure: the next `times` requests matching verb/resource(/name) get `code`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub verb: String,
    pub resource: String,
    pub name: Option<String>,
    pub code: u16,
    pub message: Option<String>,
    /// None: every matching request.
    pub times: Option<usize>,
}

/// What one `logs` request of a pod returns; a pod's scripts are used in order (the last repeats).
#[derive(Debug, Clone, Default)]
pub struct LogScript {
    /// Lines with the pause before each.
    pub lines: Vec<(Duration, String)>,
    /// Keep a follow stream open after the lines until the pod is deleted.
    pub hold_open: bool,
}

impl LogScript {
    pub fn lines<I: IntoIterator<Item = String>>(lines: I) -> Self {
        LogScript {
            lines: lines
                .into_iter()
                .map(|line| (Duration::ZERO, line))
                .collect(),
            hold_open: false,
        }
    }

    pub fn hold_open(mut self) -> Self {
        self.hold_open = true;
        self
    }
}

type Hook = Arc<dyn Fn(FakeApi, Value) + Send + Sync>;

/// A pod log written while it is read: a real process's stdout.
#[derive(Clone)]
pub struct LiveLog {
    lines: Arc<Mutex<Vec<String>>>,
    /// (lines written, ended): readers wake on every change.
    progress: Arc<watch::Sender<(usize, bool)>>,
}

impl LiveLog {
    fn new() -> LiveLog {
        LiveLog {
            lines: Arc::new(Mutex::new(Vec::new())),
            progress: Arc::new(watch::channel((0, false)).0),
        }
    }

    pub fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.push(line);
        let count = lines.len();
        drop(lines);
        self.progress.send_modify(|(written, _)| *written = count);
    }

    /// The process ended: readers get what is left, then the end of the stream.
    pub fn close(&self) {
        self.progress.send_modify(|(_, ended)| *ended = true);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct State {
    /// The objects, their resource versions and history.
    store: Store,
    faults: Vec<Fault>,
    logs: HashMap<(String, String), VecDeque<LogScript>>,
    seen: Vec<Seen>,
    hooks: Vec<(String, Hook)>,
    /// How long a deleted namespace stays Terminating before it is gone.
    namespace_finalizing: Duration,
    /// Pod Security admission, when played.
    pod_security: Option<PodSecurity>,
    /// A policy engine's webhook refusing pods (and DaemonSets) that add these capabilities:
    /// the capabilities and the webhook's name.
    refused_capabilities: Option<(Vec<String>, String)>,
    /// Logs of pods whose container really runs, by (namespace, pod).
    live_logs: HashMap<(String, String), LiveLog>,
}

/// Pod Security admission as the API server's AdmissionConfiguration sets it up.
#[derive(Debug, Clone)]
pub struct PodSecurity {
    /// The level of namespaces without a `pod-security.kubernetes.io/enforce` label.
    pub default_level: String,
    /// Namespaces exempted (`exemptions.namespaces`): never refused, whatever their label.
    pub exempt_namespaces: Vec<String>,
}

/// Handle to a running fake API server; clones share it.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Change>,
    addr: SocketAddr,
    kubeconfig: Arc<tempfile::TempPath>,
}

impl FakeApi {
    /// Starts the server on 127.0.0.1:0 and writes a kubeconfig pointing to it
    /// (context `fake`, namespace `default`).
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        FakeApi::serve(listener)
    }

    /// Starts the server on 127.0.0.1 inside the network namespace `netns` (an `ip netns`
    /// name): a plugin run in that namespace reaches it. The listening socket is made by a
    /// thread that enters the namespace; it stays there, served from this process.
    pub async fn start_in_netns(netns: &str) -> std::io::Result<FakeApi> {
        let path = format!("/run/netns/{netns}");
        let listener = std::thread::spawn(move || -> std::io::Result<std::net::TcpListener> {
            use std::os::fd::AsFd;
            let namespace = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                namespace.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .join()
        .map_err(|_| std::io::Error::other("the thread entering the namespace panicked"))??;
        Ok(FakeApi::serve(tokio::net::TcpListener::from_std(listener)?))
    }

    fn serve(listener: tokio::net::TcpListener) -> FakeApi {
        let addr = listener.local_addr().expect("local address");
        let (changes, _) = broadcast::channel(4096);
        let mut file = tempfile::NamedTempFile::new().expect("kubeconfig file");
        write!(
            file,
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: tester\n  user:\n    token: fake-token\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: default\n"
        )
        .expect("writing kubeconfig");
        let api = FakeApi {
            state: Arc::new(Mutex::new(State {
                store: Store::new(changes.clone()),
                faults: Vec::new(),
                logs: HashMap::new(),
                seen: Vec::new(),
                hooks: Vec::new(),
                namespace_finalizing: Duration::from_millis(100),
                pod_security: None,
                refused_capabilities: None,
                live_logs: HashMap::new(),
            })),
            changes,
            addr,
            kubeconfig: Arc::new(file.into_temp_path()),
        };
        http::serve(listener, api.clone());
        api
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig file pointing at this server.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the real failure behind a poisoned lock.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Stores any serializable API object (k8s-openapi types), as a create would.
    pub fn insert<T: serde::Serialize>(&self, object: &T) -> Value {
        let object = serde_json::to_value(object).expect("serializable object");
        let key = key_of(&object).expect("object with kind and metadata.name");
        let mut state = self.lock();
        let stored = state.store.put(key.clone(), object, "ADDED");
        drop(state);
        stored
    }

    /// Replaces a stored object (e.g. a pod's status), as the kubelet would.
    pub fn update(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) {
        let key = Key {
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        };
        let mut state = self.lock();
        let Some(mut object) = state.store.objects.get(&key).cloned() else {
            return;
        };
        edit(&mut object);
        state.store.put(key, object, "MODIFIED");
        drop(state);
    }

    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.lock()
            .store
            .objects
            .get(&Key {
                resource: resource.into(),
                namespace: namespace.map(str::to_string),
                name: name.into(),
            })
            .cloned()
    }

    /// Every stored object of a resource, in any namespace.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.lock()
            .store
            .objects
            .iter()
            .filter(|(key, _)| key.resource == resource)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Every change so far (ADDED/MODIFIED/DELETED), oldest first.
    pub fn history(&self) -> Vec<Change> {
        self.lock().store.history.clone()
    }

    pub fn fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every `verb` on `resource` is refused with 403, as RBAC would.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.fault(Fault {
            verb: verb.into(),
            resource: resource.into(),
            name: None,
            code: 403,
            message: None,
            times: None,
        });
    }

    /// Every store change from now on (ADDED/MODIFIED/DELETED), as watches see them.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// A log the pod serves as it is written (each request from its first line on).
    pub fn live_log(&self, namespace: &str, pod: &str) -> LiveLog {
        let log = LiveLog::new();
        self.lock()
            .live_logs
            .insert((namespace.into(), pod.into()), log.clone());
        log
    }

    /// What a pod's live log holds so far (empty when it has none).
    pub fn live_lines(&self, namespace: &str, pod: &str) -> Vec<String> {
        self.lock()
            .live_logs
            .get(&(namespace.to_string(), pod.to_string()))
            .map(LiveLog::lines)
            .unwrap_or_default()
    }

    /// The logs a pod serves, one script per `logs` request.
    pub fn logs(&self, namespace: &str, pod: &str, scripts: Vec<LogScript>) {
        self.lock()
            .logs
            .insert((namespace.into(), pod.into()), scripts.into());
    }

    /// How long a deleted namespace stays Terminating (content refused, like the namespace
    /// lifecycle admission does) before the namespace controller removes it; 100 ms by default.
    pub fn namespaces_finalize_in(&self, time: Duration) {
        self.lock().namespace_finalizing = time;
    }

    /// Plays Pod Security admission for pod creates (dry runs included): a pod with
    /// hostNetwork or an added NET_RAW is refused in a namespace whose enforce level (its label,
    /// else the default) is baseline or restricted, unless the namespace is exempt.
    pub fn pod_security(&self, policy: PodSecurity) {
        self.lock().pod_security = Some(policy);
    }

    /// Plays a policy engine's validating webhook (Kyverno, Gatekeeper) that refuses pods and
    /// DaemonSets adding any of `capabilities`, dry runs included.
    pub fn refuse_capabilities(&self, capabilities: &[&str], webhook: &str) {
        self.lock().refused_capabilities = Some((
            capabilities.iter().map(|c| c.to_string()).collect(),
            webhook.to_string(),
        ));
    }

    /// Marks a namespace Terminating, as its deletion does, and removes it after `time`.
    pub fn terminate_namespace(&self, name: &str, time: Duration) {
        let key = Key {
            resource: "namespaces".into(),
            namespace: None,
            name: name.into(),
        };
        let mut state = self.lock();
        state.store.start_terminating(&key);
        drop(state);
        self.finish_terminating(key, time);
    }

    fn finish_terminating(&self, key: Key, time: Duration) {
        let api = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            api.lock().store.remove_cascading(&key);
        });
    }

    /// Runs `hook` after every create of `resource` (not on dry runs).
    pub fn on_create(&self, resource: &str, hook: impl Fn(FakeApi, Value) + Send + Sync + 'static) {
        self.lock().hooks.push((resource.into(), Arc::new(hook)));
    }
}
