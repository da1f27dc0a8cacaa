//! The fake API server's objects, kept as the API server's registry keeps them: each change
//! takes the next resource version, is kept in the history (a watch resumes from it) and is
//! published to watchers; a delete takes what the object owns with it, like the garbage
//! collector. Also which objects a list's selectors pick.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::broadcast;

/// Where an object lives: its resource (plural), namespace (None for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: &'static str,
    pub key: Key,
    pub object: Value,
}

/// Every object by key, with the resource version and uid counters and the change history.
pub(super) struct Store {
    /// Every change is published under the server's lock: watchers see them once and in order.
    changes: broadcast::Sender<Change>,
    pub(super) rv: u64,
    pub(super) uid: u64,
    pub(super) objects: BTreeMap<Key, Value>,
    pub(super) history: Vec<Change>,
}

impl Store {
    /// An empty store publishing its changes on `changes`.
    pub(super) fn new(changes: broadcast::Sender<Change>) -> Store {
        Store {
            changes,
            rv: 0,
            uid: 0,
            objects: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// Sets a namespace's deletionTimestamp and phase Terminating, and deletes what it holds.
    pub(super) fn start_terminating(&mut self, key: &Key) -> Option<Value> {
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

    pub(super) fn put(&mut self, key: Key, mut object: Value, kind: &'static str) -> Value {
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
    pub(super) fn remove_cascading(&mut self, key: &Key) -> Option<Value> {
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

/// Where `object` is stored: its kind's resource, its namespace and name.
pub(super) fn key_of(object: &Value) -> Option<Key> {
    let kind = object["kind"].as_str()?;
    let name = object["metadata"]["name"].as_str()?;
    Some(Key {
        resource: plural(kind),
        namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
        name: name.to_string(),
    })
}

/// The resource of a kind: its lower-case plural.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.as_str() {
        "endpoints" => lower,
        _ if lower.ends_with('s') => format!("{lower}es"),
        _ if lower.ends_with('y') => format!("{}ies", &lower[..lower.len() - 1]),
        _ => format!("{lower}s"),
    }
}

/// Label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`) and field selector
/// (`metadata.name=`, `metadata.namespace=`, `spec.nodeName=`, `involvedObject.name=`, ...).
pub(super) fn selected(object: &Value, query: &HashMap<String, String>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
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
    }
}
