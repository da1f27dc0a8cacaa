//! Removing what runs created: one run's objects after a trace (on success, error or signal),
//! or every run's leftovers for `kubectl realip cleanup`. Deletes, then waits until gone.

use super::manifests::{MANAGED_SELECTOR, RUN_LABEL};
use crate::cluster::{Cluster, KubeError};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Where to look: one namespace (a run) or every namespace (cleanup).
#[derive(Debug, Clone)]
pub struct Scope {
    pub namespace: Option<String>,
    pub selector: String,
}

/// An object found, `kind namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Has an owner (a DaemonSet's pod): the garbage collector removes it with its owner.
    pub owned: bool,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

fn found<K: kube::Resource>(kind: &'static str, objects: Vec<K>) -> Vec<Found> {
    objects
        .into_iter()
        .map(|o| Found {
            kind,
            namespace: o.namespace().unwrap_or_default(),
            name: o.name_any(),
            owned: !o.owner_references().is_empty(),
        })
        .collect()
}

async fn list_kind<K>(cluster: &Cluster, scope: &Scope) -> Result<Vec<K>, KubeError>
where
    K: crate::cluster::ApiKind + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
{
    match &scope.namespace {
        Some(ns) => {
            cluster
                .namespaced::<K>(ns)
                .list(Some(&scope.selector))
                .await
        }
        None => cluster.all::<K>().list(Some(&scope.selector)).await,
    }
}

/// Everything of `scope` that still exists, owners first.
pub async fn inventory(cluster: &Cluster, scope: &Scope) -> Result<Vec<Found>, KubeError> {
    let mut all = found("job", list_kind::<Job>(cluster, scope).await?);
    all.extend(found(
        "daemonset",
        list_kind::<DaemonSet>(cluster, scope).await?,
    ));
    all.extend(found(
        "configmap",
        list_kind::<ConfigMap>(cluster, scope).await?,
    ));
    all.extend(found("pod", list_kind::<Pod>(cluster, scope).await?));
    Ok(all)
}

async fn delete(cluster: &Cluster, item: &Found) -> Result<(), KubeError> {
    match item.kind {
        "job" => {
            cluster
                .namespaced::<Job>(&item.namespace)
                .delete(&item.name)
                .await
        }
        "daemonset" => {
            cluster
                .namespaced::<DaemonSet>(&item.namespace)
                .delete(&item.name)
                .await
        }
        "configmap" => {
            cluster
                .namespaced::<ConfigMap>(&item.namespace)
                .delete(&item.name)
                .await
        }
        _ => {
            cluster
                .namespaced::<Pod>(&item.namespace)
                .delete(&item.name)
                .await
        }
    }
    .map(|_| ())
}

/// What a teardown did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub deleted: Vec<Found>,
    /// Still there after waiting, or not deletable: the user must know.
    pub left: Vec<String>,
}

/// Deletes everything of `scope` and waits (up to `wait`) until it is gone. Pods of a
/// DaemonSet go with it (foreground deletion); they are listed, not deleted one by one, unless
/// they outlive their owner.
pub async fn remove(cluster: &Cluster, scope: &Scope, wait: Duration) -> Outcome {
    let mut outcome = Outcome::default();
    let items = match inventory(cluster, scope).await {
        Ok(items) => items,
        Err(err) => {
            outcome
                .left
                .push(format!("could not list what to remove: {err}"));
            return outcome;
        }
    };
    let key = |i: &Found| (i.kind, i.namespace.clone(), i.name.clone());
    let mut refused = BTreeSet::new();
    for item in items.iter().filter(|i| i.kind != "pod" || !i.owned) {
        match delete(cluster, item).await {
            Ok(()) => outcome.deleted.push(item.clone()),
            Err(err) => {
                refused.insert(key(item));
                outcome.left.push(format!("{item}: {err}"));
            }
        }
    }
    let started = Instant::now();
    let mut orphans_deleted = false;
    loop {
        let remaining: Vec<Found> = match inventory(cluster, scope).await {
            Ok(items) => items
                .into_iter()
                .filter(|i| !refused.contains(&key(i)))
                .collect(),
            Err(err) => {
                outcome
                    .left
                    .push(format!("could not check that everything is gone: {err}"));
                return outcome;
            }
        };
        // What could not be deleted is reported, not waited for (nor the pods it owns).
        if remaining.is_empty() || (!refused.is_empty() && remaining.iter().all(|i| i.owned)) {
            break;
        }
        // Pods that outlive their owner are deleted directly.
        if !orphans_deleted && started.elapsed() > wait / 3 {
            orphans_deleted = true;
            for pod in remaining.iter().filter(|i| i.kind == "pod") {
                if let Err(err) = delete(cluster, pod).await {
                    outcome.left.push(format!("{pod}: {err}"));
                }
            }
        }
        if started.elapsed() > wait {
            outcome
                .left
                .extend(remaining.iter().map(|i| format!("{i}: still terminating")));
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let unique: BTreeSet<Found> = outcome.deleted.iter().cloned().collect();
    outcome.deleted = unique.into_iter().collect();
    outcome
}

/// Namespaces a run created (never one it did not).
pub async fn created_namespaces(
    cluster: &Cluster,
    run_id: Option<&str>,
) -> Result<Vec<String>, KubeError> {
    let selector = match run_id {
        Some(id) => format!("{MANAGED_SELECTOR},{RUN_LABEL}={id}"),
        None => MANAGED_SELECTOR.to_string(),
    };
    Ok(cluster
        .all::<Namespace>()
        .list(Some(&selector))
        .await?
        .into_iter()
        .map(|ns| ns.name_any())
        .collect())
}

/// Whether a namespace is being deleted: it stays, Terminating, while its content goes, and
/// refuses anything new meanwhile.
pub fn terminating(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Terminating")
}

/// Deletes a namespace a run created and waits (up to `wait`) until it is gone, so that the
/// next run can create it again.
pub async fn delete_namespace(cluster: &Cluster, name: &str, wait: Duration) -> Result<(), String> {
    cluster
        .all::<Namespace>()
        .delete(name)
        .await
        .map_err(|err| err.to_string())?;
    match wait_namespace_gone(cluster, name, wait).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "still terminating after {}s (it goes by itself)",
            wait.as_secs()
        )),
        Err(err) => Err(format!("could not check that it is gone: {err}")),
    }
}

/// Waits until the namespace no longer exists; false when it still does after `wait`.
pub async fn wait_namespace_gone(
    cluster: &Cluster,
    name: &str,
    wait: Duration,
) -> Result<bool, KubeError> {
    let started = Instant::now();
    loop {
        if cluster.all::<Namespace>().get_opt(name).await?.is_none() {
            return Ok(true);
        }
        if started.elapsed() >= wait {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
