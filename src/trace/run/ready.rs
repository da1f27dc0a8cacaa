//! Waiting for the probes: the probe pods listed and watched until each node's runs or failed,
//! or the time is up.

use crate::cluster::{Cluster, Refusal};
use crate::error::{Failure, Kind, Result};
use crate::trace::manifests::RunPlan;
use crate::trace::progress::{NodeLines, Progress};
use crate::trace::readiness::{pod_state, PodState};
use crate::trace::{psa, TraceOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A probe pod that runs, by node.
#[derive(Debug, Clone)]
pub(super) struct ReadyProbe {
    pub node: String,
    pub pod: String,
}

/// Watches the probe pods until each node's is running or failed, or the time is up.
pub(super) async fn wait_ready(
    cluster: &Cluster,
    plan: &RunPlan,
    options: &TraceOptions,
    skipped: &mut BTreeMap<String, String>,
    progress: &Progress,
) -> Result<Vec<ReadyProbe>> {
    let mut progress_nodes = Progress::node_lines(progress);
    progress.step("waiting for the probes to start");
    let selector = plan.run_selector();
    let mut states: BTreeMap<String, (String, PodState)> = BTreeMap::new();
    let deadline = Instant::now() + options.ready_timeout;
    let mut failed_create: Option<String> = None;
    for node in &plan.nodes {
        progress_nodes.set(node, "waiting for a pod");
    }
    let stream = cluster.watch_pods(&plan.namespace, &selector);
    futures::pin_mut!(stream);
    // Until the first list has come back, a failed call is the answer (RBAC, say); after it
    // the watcher lists again after its backoff.
    let mut listed = false;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        if plan
            .nodes
            .iter()
            .all(|n| states.get(n).is_some_and(|(_, s)| s.settled()))
        {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => note_pod(&pod, &mut states, &mut progress_nodes),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                        states.insert(node, (pod.name_any(), PodState::Failed("the probe pod was deleted".into())));
                    }
                }
                Some(Ok(Event::InitDone)) => listed = true,
                Some(Ok(Event::Init)) => {}
                Some(Err(err)) if !listed => return Err(err.into()),
                Some(Err(err)) => tracing::info!("watching the probe pods: {err}"),
                None => break,
            },
            _ = tick.tick() => {
                if let Some(reason) = daemon_set_failure(cluster, plan).await? {
                    if Refusal::of_message(&reason) == Refusal::PodSecurity {
                        return Err(Failure::new(Kind::Cluster, format!("Pod Security refused the probe pods: {reason}"))
                            .hint(psa::refusal_hint(&plan.namespace)));
                    }
                    failed_create = Some(reason);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
    let mut ready = Vec::new();
    for node in &plan.nodes {
        match states.get(node) {
            Some((pod, PodState::Running)) => ready.push(ReadyProbe {
                node: node.clone(),
                pod: pod.clone(),
            }),
            Some((pod, PodState::Failed(reason))) => {
                let detail = pod_warning(cluster, &plan.namespace, pod).await;
                skipped.insert(node.clone(), format!("probe failed: {reason}{detail}"));
            }
            Some((pod, PodState::Pending(reason))) => {
                let detail = pod_warning(cluster, &plan.namespace, pod).await;
                skipped.insert(
                    node.clone(),
                    format!(
                        "probe not running after {}s (--ready-timeout): {reason}{detail}",
                        options.ready_timeout.as_secs()
                    ),
                );
            }
            None => {
                skipped.insert(
                    node.clone(),
                    match &failed_create {
                        Some(reason) => format!("no probe pod was created: {reason}"),
                        None => format!(
                            "no probe pod appeared within {}s",
                            options.ready_timeout.as_secs()
                        ),
                    },
                );
            }
        }
    }
    for node in &plan.nodes {
        if let Some(reason) = skipped.get(node) {
            progress.println(&format!("warning: {node}: {reason}"));
        }
    }
    if ready.is_empty() {
        let reasons: Vec<String> = plan
            .nodes
            .iter()
            .filter_map(|n| skipped.get(n).map(|r| format!("{n}: {r}")))
            .collect();
        return Err(Failure::new(
            Kind::Probe,
            format!("no probe started; {}", reasons.join("; ")),
        )
        .hint("an image pull failure needs a reachable image (--base-image or --image from a registry the nodes can pull from); `kubectl describe pod -l kubectl-realip/run` shows more while it runs"));
    }
    Ok(ready)
}

fn note_pod(
    pod: &Pod,
    states: &mut BTreeMap<String, (String, PodState)>,
    lines: &mut NodeLines<'_>,
) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    let state = pod_state(pod);
    lines.set(
        &node,
        &match &state {
            PodState::Pending(reason) => format!("pending: {reason}"),
            PodState::Running => "running".to_string(),
            PodState::Failed(reason) => format!("failed: {reason}"),
        },
    );
    states.insert(node, (pod.name_any(), state));
}

/// A Warning event of the DaemonSet (FailedCreate: Pod Security, quota...).
async fn daemon_set_failure(cluster: &Cluster, plan: &RunPlan) -> Result<Option<String>> {
    let fields = format!(
        "involvedObject.kind=DaemonSet,involvedObject.name={}",
        plan.daemon_set_name()
    );
    let events = match cluster
        .namespaced::<KubeEvent>(&plan.namespace)
        .list_fields(&fields)
        .await
    {
        Ok(events) => events,
        // Reading events is optional: without the grant, readiness still shows pod states.
        Err(err) if err.is_forbidden() => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(events
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("FailedCreate")
        })
        .filter_map(|e| e.message)
        .next_back())
}

/// The last Warning event of a pod, as ` (message)`.
async fn pod_warning(cluster: &Cluster, namespace: &str, pod: &str) -> String {
    let fields = format!("involvedObject.kind=Pod,involvedObject.name={pod}");
    cluster
        .namespaced::<KubeEvent>(namespace)
        .list_fields(&fields)
        .await
        .ok()
        .and_then(|events| {
            events
                .into_iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .filter_map(|e| e.message)
                .next_back()
        })
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}
