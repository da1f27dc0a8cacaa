//! What a probe pod is doing, from its status: waiting, pulling, running, or failed and why.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not scheduled or not started yet; the reason when the status gives one.
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

/// Container waiting reasons that do not resolve by themselves.
const FATAL: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
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
    for container in containers {
        if let Some(failure) = container_failure(container) {
            return PodState::Failed(failure);
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

fn container_failure(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if FATAL.contains(&reason) {
            let mut text = format!("{}: {reason}", container.name);
            if let Some(message) = &waiting.message {
                text.push_str(": ");
                text.push_str(message);
            }
            if reason == "CrashLoopBackOff" {
                if let Some(last) = container
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                {
                    text.push_str(&format!(
                        " (last exit {}{})",
                        last.exit_code,
                        last.message
                            .as_deref()
                            .map(|m| format!(": {}", m.trim()))
                            .unwrap_or_default()
                    ));
                }
            }
            return Some(text);
        }
    }
    if let Some(terminated) = &state.terminated {
        // The unpack init container ends with 0; anything else is a failed delivery.
        if terminated.exit_code != 0 {
            return Some(format!(
                "{} exited {}{}",
                container.name,
                terminated.exit_code,
                terminated
                    .message
                    .as_deref()
                    .or(terminated.reason.as_deref())
                    .map(|m| format!(": {}", m.trim()))
                    .unwrap_or_default()
            ));
        }
    }
    None
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
            PodState::Failed("probe: ImagePullBackOff: Back-off pulling image \"busybox\"".into())
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
            PodState::Failed("unpack exited 1: no realip-probe for riscv64".into())
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
