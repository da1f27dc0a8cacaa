//! An in-process Kubernetes API server speaking real API JSON over real HTTP.
//!
//! Tests start it on 127.0.0.1:0 and point a kubeconfig at it. It keeps a store of objects
//! (serialized k8s-openapi types), answers get/list/create/delete/patch/watch and pod logs, runs
//! hooks on create (a stand-in for controllers), collects garbage by ownerReferences like the
//! cluster's garbage collector, and fails on demand with real `Status` bodies (403/404/409/...).

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

type Body = BoxBody<Bytes, Infallible>;

/// Where an object lives: its resource (plural), namespace (None for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

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

/// A store change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: &'static str,
    pub key: Key,
    pub object: Value,
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
    /// Every change is published under the lock: watchers see them once and in order.
    changes: broadcast::Sender<Change>,
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
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
                changes: changes.clone(),
                rv: 0,
                uid: 0,
                objects: BTreeMap::new(),
                history: Vec::new(),
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
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
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
        let stored = state.put(key.clone(), object, "ADDED");
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
        let Some(mut object) = state.objects.get(&key).cloned() else {
            return;
        };
        edit(&mut object);
        state.put(key, object, "MODIFIED");
        drop(state);
    }

    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.lock()
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
        self.lock().history.clone()
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
        state.start_terminating(&key);
        drop(state);
        self.finish_terminating(key, time);
    }

    fn finish_terminating(&self, key: Key, time: Duration) {
        let api = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            api.lock().remove_cascading(&key);
        });
    }

    /// Runs `hook` after every create of `resource` (not on dry runs).
    pub fn on_create(&self, resource: &str, hook: impl Fn(FakeApi, Value) + Send + Sync + 'static) {
        self.lock().hooks.push((resource.into(), Arc::new(hook)));
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = parse_query(req.uri().query().unwrap_or(""));
        let raw_query = req.uri().query().unwrap_or("").to_string();
        let body = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let Some(route) = Route::parse(&path) else {
            return status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
                None,
            );
        };
        let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
        let verb = match (&method, route.name.is_some(), watching) {
            (&Method::GET, true, _) => "get",
            (&Method::GET, false, true) => "watch",
            (&Method::GET, false, false) => "list",
            (&Method::POST, _, _) => "create",
            (&Method::PUT, _, _) => "update",
            (&Method::PATCH, _, _) => "patch",
            (&Method::DELETE, true, _) => "delete",
            (&Method::DELETE, false, _) => "deletecollection",
            _ => return status(405, "MethodNotAllowed", "method not allowed", None),
        };
        let resource = match &route.sub {
            Some(sub) => format!("{}/{sub}", route.resource),
            None => route.resource.clone(),
        };
        let dry_run = query.contains_key("dryRun");
        if let Some(response) = self.record_and_fault(
            Seen {
                verb: verb.into(),
                resource: resource.clone(),
                namespace: route.namespace.clone(),
                name: route.name.clone(),
                query: raw_query,
                dry_run,
            },
            &route,
        ) {
            return response;
        }

        match (verb, route.sub.as_deref()) {
            ("get", Some("log")) => self.pod_log(&route, &query).await,
            ("get", None) => match self.get_key(&route.key()) {
                Some(object) => ok(200, &object),
                None => not_found(&route),
            },
            ("list", None) => self.list(&route, &query),
            ("watch", None) => self.watch(&route, &query),
            ("create", None) => self.create(&route, &body, dry_run),
            ("update", None) | ("patch", None) => self.modify(&route, &body, verb == "patch"),
            ("delete", None) => self.delete(&route),
            ("deletecollection", None) => self.delete_collection(&route, &query),
            _ => status(
                404,
                "NotFound",
                &format!("{resource} is not served by the fake API"),
                None,
            ),
        }
    }

    fn get_key(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    fn record_and_fault(&self, seen: Seen, route: &Route) -> Option<Response<Body>> {
        let mut state = self.lock();
        state.seen.push(seen.clone());
        let index = state.faults.iter().position(|fault| {
            fault.verb == seen.verb
                && fault.resource == seen.resource
                && (fault.name.is_none() || fault.name == seen.name)
                && fault.times != Some(0)
        })?;
        let fault = &mut state.faults[index];
        if let Some(times) = fault.times.as_mut() {
            *times -= 1;
        }
        let fault = fault.clone();
        drop(state);
        let group = route.group.as_deref().unwrap_or("");
        let message = fault.message.unwrap_or_else(|| match fault.code {
            403 => {
                let mut text = format!(
                    "{}{} is forbidden: User \"tester\" cannot {} resource \"{}\" in API group \"{group}\"",
                    route.resource,
                    if group.is_empty() { String::new() } else { format!(".{group}") },
                    seen.verb,
                    seen.resource,
                );
                match &seen.namespace {
                    Some(ns) => text.push_str(&format!(" in the namespace \"{ns}\"")),
                    None => text.push_str(" at the cluster scope"),
                }
                text
            }
            404 => format!("{} \"{}\" not found", route.resource, seen.name.clone().unwrap_or_default()),
            409 => format!("{} \"{}\" already exists", route.resource, seen.name.clone().unwrap_or_default()),
            code => format!("injected failure {code}"),
        });
        let reason = match fault.code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "AlreadyExists",
            422 => "Invalid",
            _ => "InternalError",
        };
        Some(status(fault.code, reason, &message, Some(route)))
    }

    fn list(&self, route: &Route, query: &HashMap<String, String>) -> Response<Body> {
        let state = self.lock();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|(key, object)| route.matches(key) && selected(object, query))
            .map(|(_, object)| object.clone())
            .collect();
        let (api_version, kind) = type_of(&route.resource, &route.api_version());
        ok(
            200,
            &json!({
                "apiVersion": api_version,
                "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": state.rv.to_string()},
                "items": items,
            }),
        )
    }

    fn watch(&self, route: &Route, query: &HashMap<String, String>) -> Response<Body> {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        // Backlog and subscription under one lock: no change falls between them.
        let (backlog, mut live) = {
            let state = self.lock();
            let backlog: Vec<Change> = if from == 0 {
                state
                    .objects
                    .iter()
                    .map(|(key, object)| Change {
                        rv: state.rv,
                        kind: "ADDED",
                        key: key.clone(),
                        object: object.clone(),
                    })
                    .collect()
            } else {
                state
                    .history
                    .iter()
                    .filter(|c| c.rv > from)
                    .cloned()
                    .collect()
            };
            (backlog, self.changes.subscribe())
        };
        let last = backlog.iter().map(|c| c.rv).max().unwrap_or(from);
        let route = route.clone();
        let query = query.clone();
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(290));
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let line = |change: &Change| {
                let mut text = json!({"type": change.kind, "object": change.object}).to_string();
                text.push('\n');
                Bytes::from(text)
            };
            for change in backlog
                .iter()
                .filter(|c| route.matches(&c.key) && selected(&c.object, &query))
            {
                if tx.send(line(change)).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    change = live.recv() => match change {
                        Ok(change) if change.rv > last && route.matches(&change.key) && selected(&change.object, &query) => {
                            if tx.send(line(&change)).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        streaming(rx, "application/json")
    }

    fn create(&self, route: &Route, body: &[u8], dry_run: bool) -> Response<Body> {
        let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
            return status(
                400,
                "BadRequest",
                "the request body is not JSON",
                Some(route),
            );
        };
        if route.resource == "selfsubjectaccessreviews" {
            return self.access_review(object);
        }
        let meta = &mut object["metadata"];
        if meta.get("name").and_then(Value::as_str).is_none() {
            let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return status(422, "Invalid", "metadata.name: Required value", Some(route));
            };
            let suffix = self.lock().uid + 1;
            meta["name"] = json!(format!("{prefix}{suffix:05x}"));
        }
        if let Some(ns) = &route.namespace {
            meta["namespace"] = json!(ns);
        }
        let key = Key {
            resource: route.resource.clone(),
            namespace: route.namespace.clone(),
            name: meta["name"].as_str().unwrap_or_default().to_string(),
        };
        let mut state = self.lock();
        if state.objects.contains_key(&key) {
            drop(state);
            return status(
                409,
                "AlreadyExists",
                &format!("{} \"{}\" already exists", route.resource, key.name),
                Some(route),
            );
        }
        if let Some(ns) = &route.namespace {
            let ns_key = Key {
                resource: "namespaces".into(),
                namespace: None,
                name: ns.clone(),
            };
            let Some(namespace) = state.objects.get(&ns_key) else {
                drop(state);
                return status(
                    404,
                    "NotFound",
                    &format!("namespaces \"{ns}\" not found"),
                    Some(route),
                );
            };
            if route.resource == "pods" {
                if let Some(refusal) = state
                    .pod_security
                    .as_ref()
                    .and_then(|policy| pod_security_refusal(policy, namespace, &object))
                {
                    drop(state);
                    return status(403, "Forbidden", &refusal, Some(route));
                }
            }
            if let Some(refusal) =
                state
                    .refused_capabilities
                    .as_ref()
                    .and_then(|(caps, webhook)| {
                        capability_refusal(caps, webhook, &route.resource, &object)
                    })
            {
                drop(state);
                return status(403, "Forbidden", &refusal, Some(route));
            }
            // NamespaceLifecycle admission, dry runs included.
            if !namespace["metadata"]["deletionTimestamp"].is_null() {
                drop(state);
                let group = route
                    .group
                    .as_deref()
                    .map(|g| format!(".{g}"))
                    .unwrap_or_default();
                return status(
                    403,
                    "Forbidden",
                    &format!(
                        "{}{group} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        route.resource, key.name
                    ),
                    Some(route),
                );
            }
        }
        if dry_run {
            return ok(201, &object);
        }
        let stored = state.put(key, object, "ADDED");
        let hooks: Vec<Hook> = state
            .hooks
            .iter()
            .filter(|(resource, _)| *resource == route.resource)
            .map(|(_, hook)| hook.clone())
            .collect();
        drop(state);
        for hook in hooks {
            hook(self.clone(), stored.clone());
        }
        ok(201, &stored)
    }

    /// A SelfSubjectAccessReview, answered by the RBAC this server plays: what [`forbid`]
    /// refused is denied (other 403 faults are admission's, which reviews do not see).
    ///
    /// [`forbid`]: FakeApi::forbid
    fn access_review(&self, mut review: Value) -> Response<Body> {
        let attributes = &review["spec"]["resourceAttributes"];
        let verb = attributes["verb"].as_str().unwrap_or_default();
        let mut resource = attributes["resource"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(sub) = attributes["subresource"].as_str().filter(|s| !s.is_empty()) {
            resource = format!("{resource}/{sub}");
        }
        let denied = self.lock().faults.iter().any(|fault| {
            fault.code == 403
                && fault.message.is_none()
                && fault.name.is_none()
                && fault.times != Some(0)
                && fault.verb == verb
                && fault.resource == resource
        });
        review["status"] = if denied {
            json!({"allowed": false})
        } else {
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"tester\" of ClusterRole \"cluster-admin\" to User \"tester\""})
        };
        ok(201, &review)
    }

    fn modify(&self, route: &Route, body: &[u8], patch: bool) -> Response<Body> {
        let Ok(change) = serde_json::from_slice::<Value>(body) else {
            return status(
                400,
                "BadRequest",
                "the request body is not JSON",
                Some(route),
            );
        };
        let key = route.key();
        let mut state = self.lock();
        let Some(current) = state.objects.get(&key).cloned() else {
            drop(state);
            return not_found(route);
        };
        let next = if patch {
            let mut merged = current;
            merge_patch(&mut merged, &change);
            merged
        } else {
            change
        };
        let stored = state.put(key, next, "MODIFIED");
        drop(state);
        ok(200, &stored)
    }

    fn delete(&self, route: &Route) -> Response<Body> {
        let key = route.key();
        let mut state = self.lock();
        if key.resource == "namespaces" {
            // A namespace goes Terminating; the namespace controller removes it later.
            let Some(namespace) = state.start_terminating(&key) else {
                drop(state);
                return not_found(route);
            };
            let time = state.namespace_finalizing;
            drop(state);
            self.finish_terminating(key, time);
            return ok(200, &namespace);
        }
        let Some(object) = state.remove_cascading(&key) else {
            drop(state);
            return not_found(route);
        };
        drop(state);
        ok(200, &object)
    }

    fn delete_collection(&self, route: &Route, query: &HashMap<String, String>) -> Response<Body> {
        let mut state = self.lock();
        let keys: Vec<Key> = state
            .objects
            .iter()
            .filter(|(key, object)| route.matches(key) && selected(object, query))
            .map(|(key, _)| key.clone())
            .collect();
        let items: Vec<Value> = keys
            .iter()
            .filter_map(|key| state.remove_cascading(key))
            .collect();
        drop(state);
        let (api_version, kind) = type_of(&route.resource, &route.api_version());
        ok(
            200,
            &json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {}, "items": items}),
        )
    }

    async fn pod_log(&self, route: &Route, query: &HashMap<String, String>) -> Response<Body> {
        let namespace = route.namespace.clone().unwrap_or_default();
        let pod = route.name.clone().unwrap_or_default();
        if self.get_key(&route.key()).is_none() {
            return not_found(route);
        }
        let follow = matches!(query.get("follow").map(String::as_str), Some("true" | "1"));
        let live = self
            .lock()
            .live_logs
            .get(&(namespace.clone(), pod.clone()))
            .cloned();
        if let Some(live) = live {
            return self.live_log_response(route, live, follow);
        }
        let script = {
            let mut state = self.lock();
            match state.logs.get_mut(&(namespace.clone(), pod.clone())) {
                Some(queue) if queue.len() > 1 => queue.pop_front().unwrap_or_default(),
                Some(queue) => queue.front().cloned().unwrap_or_default(),
                None => LogScript::default(),
            }
        };
        if !follow {
            let text: String = script
                .lines
                .iter()
                .map(|(_, line)| format!("{line}\n"))
                .collect();
            return Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(text)).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()));
        }
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let mut live = self.changes.subscribe();
        let api = self.clone();
        let key = route.key();
        tokio::spawn(async move {
            for (pause, line) in script.lines {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
            if !script.hold_open {
                return;
            }
            // The stream of a running container ends when the pod goes away.
            loop {
                if api.get_key(&key).is_none() {
                    return;
                }
                match tokio::time::timeout(Duration::from_millis(200), live.recv()).await {
                    Ok(Ok(change)) if change.kind == "DELETED" && change.key == key => return,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return,
                    _ => {}
                }
            }
        });
        streaming(rx, "text/plain")
    }
}

impl FakeApi {
    /// A live log: what was written so far, and with `follow` what comes, until the process
    /// ends or the pod is deleted.
    fn live_log_response(&self, route: &Route, live: LiveLog, follow: bool) -> Response<Body> {
        if !follow {
            let text: String = live.lines().iter().map(|l| format!("{l}\n")).collect();
            return Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(text)).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()));
        }
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let api = self.clone();
        let key = route.key();
        tokio::spawn(async move {
            let mut progress = live.progress.subscribe();
            let mut sent = 0;
            loop {
                let (written, ended) = *progress.borrow_and_update();
                let new: Vec<String> = live.lines()[sent..written].to_vec();
                sent = written;
                for line in new {
                    if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                        return;
                    }
                }
                if ended || api.get_key(&key).is_none() {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), progress.changed()).await;
            }
        });
        streaming(rx, "text/plain")
    }
}

impl State {
    /// Sets a namespace's deletionTimestamp and phase Terminating, and deletes what it holds.
    fn start_terminating(&mut self, key: &Key) -> Option<Value> {
        let mut namespace = self.objects.get(key)?.clone();
        if namespace["metadata"]["deletionTimestamp"].is_null() {
            namespace["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:05Z");
            namespace["status"]["phase"] = json!("Terminating");
            namespace = self.put(key.clone(), namespace, "MODIFIED");
            let content: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.namespace.as_deref() == Some(key.name.as_str()))
                .cloned()
                .collect();
            for child in content {
                self.remove_cascading(&child);
            }
        }
        Some(namespace)
    }

    fn record(&mut self, change: Change) {
        let _ = self.changes.send(change.clone());
        self.history.push(change);
    }

    fn put(&mut self, key: Key, mut object: Value, kind: &'static str) -> Value {
        self.rv += 1;
        let meta = &mut object["metadata"];
        if meta.get("uid").and_then(Value::as_str).is_none() {
            self.uid += 1;
            meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        }
        if meta.get("creationTimestamp").is_none_or(Value::is_null) {
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        meta["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.record(Change {
            rv: self.rv,
            kind,
            key,
            object: object.clone(),
        });
        object
    }

    /// Deletes an object and, like the garbage collector, everything it owns (transitively).
    fn remove_cascading(&mut self, key: &Key) -> Option<Value> {
        let object = self.objects.remove(key)?;
        self.rv += 1;
        let mut gone = object.clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change {
            rv: self.rv,
            kind: "DELETED",
            key: key.clone(),
            object: gone,
        });
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let owned: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, child)| {
                child["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str()))
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for child in owned {
            self.remove_cascading(&child);
        }
        Some(object)
    }
}

/// What Pod Security admission says of a pod in `namespace`, when it refuses it.
fn pod_security_refusal(policy: &PodSecurity, namespace: &Value, pod: &Value) -> Option<String> {
    let name = namespace["metadata"]["name"].as_str().unwrap_or_default();
    if policy.exempt_namespaces.iter().any(|exempt| exempt == name) {
        return None;
    }
    let level = namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        .as_str()
        .unwrap_or(&policy.default_level);
    if level == "privileged" {
        return None;
    }
    let mut violations = Vec::new();
    if pod["spec"]["hostNetwork"] == true {
        violations.push("host namespaces (hostNetwork=true)".to_string());
    }
    // What the baseline level lets a container add.
    const BASELINE: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let added: Vec<String> = container["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|c| !BASELINE.contains(c))
            .map(|c| format!("\"{c}\""))
            .collect();
        if !added.is_empty() {
            violations.push(format!(
                "non-default capabilities (container \"{}\" must not include {} in securityContext.capabilities.add)",
                container["name"].as_str().unwrap_or_default(),
                added.join(", ")
            ));
        }
    }
    (!violations.is_empty()).then(|| {
        format!(
            "pods \"{}\" is forbidden: violates PodSecurity \"{level}:latest\": {}",
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            violations.join(", ")
        )
    })
}

/// What a policy engine's webhook refusing `caps` says of a pod or DaemonSet that adds one.
fn capability_refusal(
    caps: &[String],
    webhook: &str,
    resource: &str,
    object: &Value,
) -> Option<String> {
    let spec = match resource {
        "pods" => &object["spec"],
        "daemonsets" => &object["spec"]["template"]["spec"],
        _ => return None,
    };
    let added: Vec<&str> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c["securityContext"]["capabilities"]["add"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
        .filter(|c| caps.iter().any(|refused| refused == c))
        .collect();
    let first = added.first()?;
    Some(format!(
        "admission webhook \"{webhook}\" denied the request: policy {}/{} for resource violation: \
         disallow-capabilities: adding {first} is not allowed",
        object["kind"].as_str().unwrap_or("Pod"),
        object["metadata"]["name"].as_str().unwrap_or_default()
    ))
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`, then `[namespaces/NS/]RESOURCE[/NAME[/SUB]]`.
#[derive(Debug, Clone)]
struct Route {
    group: Option<String>,
    version: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (None, version.to_string(), rest),
            ["apis", group, version, rest @ ..] => {
                (Some(group.to_string()), version.to_string(), rest)
            }
            _ => return None,
        };
        let owned = |s: Option<&&str>| s.map(|s| s.to_string());
        let (resource, namespace, name, sub) = match rest {
            ["namespaces", ns, resource, tail @ ..] => (
                resource.to_string(),
                Some(ns.to_string()),
                owned(tail.first()),
                owned(tail.get(1)),
            ),
            [resource, tail @ ..] => (
                resource.to_string(),
                None,
                owned(tail.first()),
                owned(tail.get(1)),
            ),
            [] => return None,
        };
        Some(Route {
            group,
            version,
            resource,
            namespace,
            name,
            sub,
        })
    }

    fn key(&self) -> Key {
        Key {
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    fn api_version(&self) -> String {
        match &self.group {
            Some(group) => format!("{group}/{}", self.version),
            None => self.version.clone(),
        }
    }

    /// A collection route covers its resource in its namespace, or in all namespaces.
    fn matches(&self, key: &Key) -> bool {
        key.resource == self.resource
            && (self.namespace.is_none() || self.namespace == key.namespace)
    }
}

fn key_of(object: &Value) -> Option<Key> {
    let kind = object["kind"].as_str()?;
    let name = object["metadata"]["name"].as_str()?;
    Some(Key {
        resource: plural(kind),
        namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
        name: name.to_string(),
    })
}

fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.as_str() {
        "endpoints" => lower,
        _ if lower.ends_with('s') => format!("{lower}es"),
        _ if lower.ends_with('y') => format!("{}ies", &lower[..lower.len() - 1]),
        _ => format!("{lower}s"),
    }
}

/// The apiVersion and kind of a resource, for list responses.
fn type_of(resource: &str, api_version: &str) -> (String, String) {
    let kind = match resource {
        "pods" => "Pod",
        "services" => "Service",
        "nodes" => "Node",
        "namespaces" => "Namespace",
        "configmaps" => "ConfigMap",
        "events" => "Event",
        "endpointslices" => "EndpointSlice",
        "daemonsets" => "DaemonSet",
        "jobs" => "Job",
        "ingresses" => "Ingress",
        other => other,
    };
    (api_version.to_string(), kind.to_string())
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`) and field selector
/// (`metadata.name=`, `metadata.namespace=`, `spec.nodeName=`, `involvedObject.name=`, ...).
fn selected(object: &Value, query: &HashMap<String, String>) -> bool {
    let labels = &object["metadata"]["labels"];
    let label_ok = query.get("labelSelector").is_none_or(|selector| {
        split_selector(selector).iter().all(|term| {
            let term = term.trim();
            if let Some((key, values)) = term.split_once(" in ") {
                let values = values.trim().trim_start_matches('(').trim_end_matches(')');
                let value = labels[key.trim()].as_str();
                return values.split(',').any(|v| Some(v.trim()) == value);
            }
            if let Some((key, value)) = term.split_once("!=") {
                return labels[key.trim()].as_str() != Some(value.trim());
            }
            if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                return labels[key.trim()].as_str() == Some(value.trim());
            }
            if let Some(key) = term.strip_prefix('!') {
                return labels[key.trim()].is_null();
            }
            term.is_empty() || !labels[term].is_null()
        })
    });
    let field_ok = query.get("fieldSelector").is_none_or(|selector| {
        selector.split(',').filter(|t| !t.is_empty()).all(|term| {
            let (path, want, equal) = match term.split_once("!=") {
                Some((path, want)) => (path, want, false),
                None => match term.split_once("==").or_else(|| term.split_once('=')) {
                    Some((path, want)) => (path, want, true),
                    None => return true,
                },
            };
            let mut value = object;
            for part in path.split('.') {
                value = &value[part];
            }
            let actual = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == want) == equal
        })
    });
    label_ok && field_ok
}

/// Splits on commas outside parentheses (`a in (x,y),b=c`).
fn split_selector(selector: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut depth = 0;
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = terms.last_mut() {
            last.push(c);
        }
    }
    terms.retain(|t| !t.trim().is_empty());
    terms
}

/// RFC 7386 JSON merge patch (also good enough for the strategic merges tests send).
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn ok(code: u16, object: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(object.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn not_found(route: &Route) -> Response<Body> {
    status(
        404,
        "NotFound",
        &format!(
            "{} \"{}\" not found",
            route.resource,
            route.name.clone().unwrap_or_default()
        ),
        Some(route),
    )
}

/// A real `Status` body, as the API server sends with every error.
fn status(code: u16, reason: &str, message: &str, route: Option<&Route>) -> Response<Body> {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(route) = route {
        body["details"] = json!({"kind": route.resource});
        // The namespace lifecycle admission names its cause (metav1.NamespaceTerminatingCause).
        if let Some((_, rest)) = message.split_once("in namespace ") {
            if let Some(ns) = rest.strip_suffix(" because it is being terminated") {
                body["details"]["causes"] = json!([{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace",
                }]);
            }
        }
        if let Some(name) = &route.name {
            body["details"]["name"] = json!(name);
        }
        if let Some(group) = &route.group {
            body["details"]["group"] = json!(group);
        }
    }
    ok(code, &body)
}

fn streaming(rx: mpsc::Receiver<Bytes>, content_type: &str) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Route::parse("/apis/apps/v1/namespaces/shop/daemonsets/x").unwrap();
        assert_eq!(
            (
                r.resource.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref()
            ),
            ("daemonsets", Some("shop"), Some("x"))
        );
        let r = Route::parse("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (r.resource.as_str(), r.namespace, r.name.as_deref()),
            ("namespaces", None, Some("shop"))
        );
        let r = Route::parse("/api/v1/namespaces/shop/pods/p/log").unwrap();
        assert_eq!(r.sub.as_deref(), Some("log"));
        assert_eq!(plural("EndpointSlice"), "endpointslices");
        assert_eq!(plural("Ingress"), "ingresses");
        assert_eq!(plural("Service"), "services");
    }

    #[test]
    fn selectors() {
        let object = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "x"}}, "spec": {"nodeName": "n1"}});
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(selected(&object, &q("labelSelector", "app=web,tier")));
        assert!(selected(
            &object,
            &q("labelSelector", "app in (db,web),!gone")
        ));
        assert!(!selected(&object, &q("labelSelector", "app!=web")));
        assert!(selected(&object, &q("fieldSelector", "spec.nodeName=n1")));
        assert!(!selected(&object, &q("fieldSelector", "metadata.name=b")));
        assert_eq!(percent_decode("a%3Db%2Cc"), "a=b,c");
    }
}
