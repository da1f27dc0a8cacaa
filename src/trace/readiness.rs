//! What a probe pod is doing, from its status: waiting, pulling, running, or failed and why.
//!
//! The kubelet retries what fails for a while (image pulls, crashed containers), so those are
//! still pending with their reason shown; only what no retry can fix ends a node's wait early.
//! `--ready-timeout` decides when a pending probe has failed.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not scheduled or not started yet, or retrying after a failure the kubelet retries
    /// (ErrImagePull, a back-off, a restarted container); the reason when the status gives one.
    Pending(String),
    /// Running and ready: its log can be followed.
    Running,
    /// Will not run without someone changing something.
    Failed(String),
}

impl PodState {
    pub fn settled(&self) -> bool {
        !matches!(self, PodState::Pending(_))
    }
}

/// Container waiting reasons no retry resolves: the pod's spec itself is refused.
const PERMANENT: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
];

/// Container waiting reasons the kubelet retries by itself: a registry's rate limit, a
/// network blip or a slow node resolve within `--ready-timeout` more often than not.
const RETRIED: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

pub fn pod_state(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Failed("the pod is being deleted".into());
    }
    let Some(status) = &pod.status else {
        return PodState::Pending("not scheduled yet".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if matches!(phase, "Failed" | "Succeeded") {
        let why = status
            .reason
            .iter()
            .chain(status.message.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(": ");
        return PodState::Failed(if why.is_empty() {
            format!("the pod ended ({phase})")
        } else {
            why
        });
    }
    for condition in status.conditions.iter().flatten() {
        if condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
        {
            return PodState::Failed(format!(
                "Unschedulable: {}",
                condition.message.as_deref().unwrap_or("no node fits")
            ));
        }
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let mut retrying = None;
    for container in containers {
        match container_problem(container) {
            Some(Problem::Permanent(text)) => return PodState::Failed(text),
            Some(Problem::Retried(text)) => {
                retrying.get_or_insert(text);
            }
            None => {}
        }
    }
    let probe_running = status
        .container_statuses
        .iter()
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    if phase == "Running" && probe_running {
        return PodState::Running;
    }
    if let Some(text) = retrying {
        return PodState::Pending(format!("{text} (the kubelet retries)"));
    }
    let waiting = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    PodState::Pending(match waiting {
        Some(reason) if reason == "ContainerCreating" || reason == "PodInitializing" => {
            "pulling and starting".into()
        }
        Some(reason) => reason,
        None if status.init_container_statuses.is_some() => "unpacking the probe".into(),
        None => "waiting for the kubelet".into(),
    })
}

enum Problem {
    Permanent(String),
    Retried(String),
}

fn container_problem(container: &ContainerStatus) -> Option<Problem> {
    let state = container.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let permanent = PERMANENT.contains(&reason);
        if !permanent && !RETRIED.contains(&reason) {
            return None;
        }
        let mut text = format!("{}: {reason}", container.name);
        if let Some(message) = &waiting.message {
            text.push_str(": ");
            text.push_str(message);
        }
        if let Some(last) = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
        {
            text.push_str(&format!(
                " (last exit {}{})",
                last.exit_code,
                exit_detail(last)
            ));
        }
        return Some(if permanent {
            Problem::Permanent(text)
        } else {
            Problem::Retried(text)
        });
    }
    // The unpack init container ends with 0; anything else is retried by the kubelet.
    let terminated = state.terminated.as_ref().filter(|t| t.exit_code != 0)?;
    Some(Problem::Retried(format!(
        "{} exited {}{}",
        container.name,
        terminated.exit_code,
        exit_detail(terminated)
    )))
}

fn exit_detail(terminated: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> String {
    terminated
        .message
        .as_deref()
        .or(terminated.reason.as_deref())
        .map(|m| format!(": {}", m.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn states() {
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending"}))),
            PodState::Pending("waiting for the kubelet".into())
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Running", "containerStatuses": [
                {"name": "probe", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {}}}]}))),
            PodState::Running
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "probe", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"busybox\""}}}]}))),
            PodState::Pending(
                "probe: ImagePullBackOff: Back-off pulling image \"busybox\" (the kubelet retries)"
                    .into()
            )
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "probe", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "InvalidImageName", "message": "couldn't parse image name \"Busy Box\""}}}]}))),
            PodState::Failed(
                "probe: InvalidImageName: couldn't parse image name \"Busy Box\"".into()
            )
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Running", "containerStatuses": [
                {"name": "probe", "ready": false, "restartCount": 1, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
                 "lastState": {"terminated": {"exitCode": 4, "message": "capturing packets needs CAP_NET_RAW\n"}}}]}))),
            PodState::Pending(
                "probe: CrashLoopBackOff: back-off 10s restarting failed container (last exit 4: capturing packets needs CAP_NET_RAW) (the kubelet retries)"
                    .into()
            )
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}))),
            PodState::Failed("Unschedulable: 0/3 nodes are available".into())
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "unpack", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 1, "message": "no realip-probe for riscv64"}}}]}))),
            PodState::Pending(
                "unpack exited 1: no realip-probe for riscv64 (the kubelet retries)".into()
            )
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "unpack", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "PodInitializing"}}}]}))),
            PodState::Pending("pulling and starting".into())
        );
        assert!(
            matches!(pod_state(&pod(json!({"phase": "Failed", "reason": "Evicted"}))), PodState::Failed(r) if r == "Evicted")
        );
    }
}
