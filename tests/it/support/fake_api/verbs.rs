//! What each API verb does in the fake API server: get, list, watch, create (with admission),
//! update, patch, delete, deletecollection and pod logs, after recording the request and
//! playing any injected fault.

use super::admission::{capability_refusal, pod_security_refusal};
use super::http::{not_found, ok, status, streaming, text, Body, Route};
use super::store::{selected, Change, Key};
use super::{FakeApi, Hook, LiveLog, LogScript, Seen};
use bytes::Bytes;
use hyper::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// A request as the verbs see it, decoded by [`super::http`].
pub(super) struct Call {
    pub(super) verb: &'static str,
    pub(super) route: Route,
    pub(super) query: HashMap<String, String>,
    /// The query string as sent (what [`Seen`] keeps).
    pub(super) raw_query: String,
    pub(super) body: Bytes,
}

impl FakeApi {
    /// Records the request, answers with an injected fault when one matches, else does the verb.
    pub(super) async fn answer(&self, call: Call) -> Response<Body> {
        let Call {
            verb,
            route,
            query,
            raw_query,
            body,
        } = call;
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
        self.lock().store.objects.get(key).cloned()
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
            .store
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
                "metadata": {"resourceVersion": state.store.rv.to_string()},
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
                    .store
                    .objects
                    .iter()
                    .map(|(key, object)| Change {
                        rv: state.store.rv,
                        kind: "ADDED",
                        key: key.clone(),
                        object: object.clone(),
                    })
                    .collect()
            } else {
                state
                    .store
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
            let suffix = self.lock().store.uid + 1;
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
        if state.store.objects.contains_key(&key) {
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
            let Some(namespace) = state.store.objects.get(&ns_key) else {
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
        let stored = state.store.put(key, object, "ADDED");
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
        let Some(current) = state.store.objects.get(&key).cloned() else {
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
        let stored = state.store.put(key, next, "MODIFIED");
        drop(state);
        ok(200, &stored)
    }

    fn delete(&self, route: &Route) -> Response<Body> {
        let key = route.key();
        let mut state = self.lock();
        if key.resource == "namespaces" {
            // A namespace goes Terminating; the namespace controller removes it later.
            let Some(namespace) = state.store.start_terminating(&key) else {
                drop(state);
                return not_found(route);
            };
            let time = state.namespace_finalizing;
            drop(state);
            self.finish_terminating(key, time);
            return ok(200, &namespace);
        }
        let Some(object) = state.store.remove_cascading(&key) else {
            drop(state);
            return not_found(route);
        };
        drop(state);
        ok(200, &object)
    }

    fn delete_collection(&self, route: &Route, query: &HashMap<String, String>) -> Response<Body> {
        let mut state = self.lock();
        let keys: Vec<Key> = state
            .store
            .objects
            .iter()
            .filter(|(key, object)| route.matches(key) && selected(object, query))
            .map(|(key, _)| key.clone())
            .collect();
        let items: Vec<Value> = keys
            .iter()
            .filter_map(|key| state.store.remove_cascading(key))
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
            let body: String = script
                .lines
                .iter()
                .map(|(_, line)| format!("{line}\n"))
                .collect();
            return text(body);
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

    /// A live log: what was written so far, and with `follow` what comes, until the process
    /// ends or the pod is deleted.
    fn live_log_response(&self, route: &Route, live: LiveLog, follow: bool) -> Response<Body> {
        if !follow {
            let body: String = live.lines().iter().map(|l| format!("{l}\n")).collect();
            return text(body);
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
