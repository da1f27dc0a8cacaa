//! Cluster fixtures (k8s-openapi objects) and stand-ins for the controllers and kubelets that
//! turn a DaemonSet into running pods.

use super::fake_api::{FakeApi, LogScript};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    Container, LoadBalancerIngress, LoadBalancerStatus, Namespace, Node, NodeAddress,
    NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec, ServiceStatus, Taint,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        }),
        ..ObjectMeta::default()
    }
}

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: meta(name, None, labels),
        ..Namespace::default()
    }
}

/// A ready Linux node with one InternalIP.
pub fn node(name: &str, ip: &str) -> Node {
    Node {
        metadata: meta(
            name,
            None,
            &[
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/hostname", name),
            ],
        ),
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("edge".into()),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// A LoadBalancer Service (externalTrafficPolicy Cluster) with one ingress IP.
pub fn lb_service(namespace: &str, name: &str, lb_ip: &str, port: i32, node_port: i32) -> Service {
    Service {
        metadata: meta(name, Some(namespace), &[]),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            cluster_ip: Some("10.96.0.10".into()),
            cluster_ips: Some(vec!["10.96.0.10".into()]),
            external_traffic_policy: Some("Cluster".into()),
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                node_port: Some(node_port),
                protocol: Some("TCP".into()),
                target_port: Some(
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080),
                ),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(lb_ip.into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        }),
    }
}

/// An application pod on a node.
pub fn app_pod(namespace: &str, name: &str, app: &str, node: &str, ip: &str) -> Pod {
    Pod {
        metadata: meta(name, Some(namespace), &[("app", app)]),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            ..PodStatus::default()
        }),
    }
}

/// The EndpointSlice of `service` listing `pods` as (name, node, ip).
pub fn endpoint_slice(
    namespace: &str,
    service: &str,
    pods: &[(&str, &str, &str)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(
            &format!("{service}-abcde"),
            Some(namespace),
            &[("kubernetes.io/service-name", service)],
        ),
        address_type: "IPv4".into(),
        endpoints: pods
            .iter()
            .map(|(pod, node, ip)| Endpoint {
                addresses: vec![ip.to_string()],
                node_name: Some(node.to_string()),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some(pod.to_string()),
                    namespace: Some(namespace.into()),
                    ..ObjectReference::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

/// What the kubelet of a node does with the probe pod scheduled there.
#[derive(Debug, Clone)]
pub enum Fate {
    /// Pending, then Running with these log streams (one per logs request, last repeats).
    Runs(Vec<LogScript>),
    /// The registry refuses the pull `failures` times (429 Too Many Requests: ErrImagePull,
    /// then ImagePullBackOff, with the kubelet's Warning events), then the pull succeeds and
    /// the probe runs with these log streams.
    PullRetried {
        failures: usize,
        then: Vec<LogScript>,
    },
    /// The image can never be pulled: ErrImagePull and ImagePullBackOff in turn, with Warning
    /// events, for as long as the pod exists.
    ImagePullBackOff,
    /// The scheduler cannot place it: PodScheduled=False Unschedulable.
    Unschedulable,
}

/// How long the fake kubelet takes between two status changes of a pod.
const KUBELET_STEP: Duration = Duration::from_millis(150);

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

/// The probe container waiting for its image, as the kubelet reports a failed pull.
fn pull_status(reason: &str, message: &str) -> Value {
    json!({
        "phase": "Pending",
        "containerStatuses": [{
            "name": "probe", "ready": false, "restartCount": 0, "image": "busybox:1.37", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}}
        }],
    })
}

/// A Warning event about `pod`, as the kubelet records one.
fn pod_event(api: &FakeApi, namespace: &str, pod: &str, n: usize, reason: &str, message: &str) {
    api.insert(&json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{pod}.{n}"), "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
        "reason": reason, "type": "Warning", "message": message,
    }));
}

const RATE_LIMITED: &str = "failed to pull and unpack image \"docker.io/library/busybox:1.37\": \
    failed to copy: httpReadSeeker: failed open: unexpected status code \
    https://registry-1.docker.io/v2/library/busybox/manifests/1.37: 429 Too Many Requests - \
    Server message: toomanyrequests: You have reached your unauthenticated pull rate limit";

/// Plays a pod's fate: its status changes (and events) one kubelet step apart.
async fn play(api: FakeApi, namespace: String, pod: String, fate: Fate) {
    let set = |status: Value| {
        api.update("pods", Some(&namespace), &pod, |p| p["status"] = status);
    };
    match fate {
        Fate::Runs(_) => {
            tokio::time::sleep(KUBELET_STEP).await;
            set(running_status());
        }
        Fate::PullRetried { failures, .. } => {
            for n in 0..failures {
                tokio::time::sleep(KUBELET_STEP).await;
                pod_event(
                    &api,
                    &namespace,
                    &pod,
                    2 * n,
                    "Failed",
                    &format!("Failed to pull image \"busybox:1.37\": {RATE_LIMITED}"),
                );
                set(pull_status("ErrImagePull", RATE_LIMITED));
                tokio::time::sleep(KUBELET_STEP).await;
                pod_event(
                    &api,
                    &namespace,
                    &pod,
                    2 * n + 1,
                    "BackOff",
                    "Back-off pulling image \"busybox:1.37\"",
                );
                set(pull_status(
                    "ImagePullBackOff",
                    "Back-off pulling image \"busybox:1.37\"",
                ));
            }
            tokio::time::sleep(KUBELET_STEP).await;
            set(running_status());
        }
        Fate::ImagePullBackOff => {
            let mut n = 0;
            while api.get("pods", Some(&namespace), &pod).is_some() {
                tokio::time::sleep(KUBELET_STEP).await;
                pod_event(
                    &api,
                    &namespace,
                    &pod,
                    n,
                    "Failed",
                    "Failed to pull image \"busybox\": no such host",
                );
                set(pull_status("ErrImagePull", "no such host"));
                tokio::time::sleep(KUBELET_STEP).await;
                set(pull_status(
                    "ImagePullBackOff",
                    "Back-off pulling image \"busybox\"",
                ));
                n += 1;
            }
        }
        Fate::Unschedulable => {
            tokio::time::sleep(KUBELET_STEP).await;
            set(json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient memory."}],
            }));
        }
    }
}

/// Acts as the DaemonSet controller, scheduler and kubelets: every DaemonSet created gets one pod
/// per node named in its node affinity, whose fate `fates` decides (default: runs, no logs).
pub fn run_daemonsets(api: &FakeApi, fates: HashMap<String, Fate>) {
    let fates = Arc::new(Mutex::new(fates));
    api.on_create("daemonsets", move |api, ds| {
        let namespace = ds["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ds_name = ds["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let template = ds["spec"]["template"].clone();
        for node in affinity_nodes(&ds) {
            let fate = fates
                .lock()
                .map(|f| f.get(&node).cloned())
                .ok()
                .flatten()
                .unwrap_or(Fate::Runs(Vec::new()));
            let pod_name = format!("{ds_name}-{node}");
            let mut pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
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
            if let Fate::Runs(scripts) | Fate::PullRetried { then: scripts, .. } = &fate {
                api.logs(&namespace, &pod_name, scripts.clone());
            }
            api.insert(&pod);
            tokio::spawn(play(api.clone(), namespace.clone(), pod_name, fate));
        }
    });
}

/// The node names a DaemonSet's required node affinity selects (matchFields metadata.name In).
pub fn affinity_nodes(ds: &Value) -> Vec<String> {
    let terms = &ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let mut nodes = Vec::new();
    for term in terms.as_array().into_iter().flatten() {
        for field in term["matchFields"].as_array().into_iter().flatten() {
            if field["key"] == "metadata.name" && field["operator"] == "In" {
                for value in field["values"].as_array().into_iter().flatten() {
                    if let Some(name) = value.as_str() {
                        nodes.push(name.to_string());
                    }
                }
            }
        }
    }
    nodes
}

/// Namespace shop, node-a and node-b, and the LoadBalancer Service shop/web (Cluster policy,
/// port 80, NodePort 31080) whose one endpoint, web-1, runs on node-b.
pub fn web_shop(api: &FakeApi) {
    api.insert(&namespace("shop", &[]));
    api.insert(&node("node-a", "198.51.100.1"));
    api.insert(&node("node-b", "198.51.100.2"));
    api.insert(&lb_service("shop", "web", "203.0.113.10", 80, 31080));
    api.insert(&endpoint_slice(
        "shop",
        "web",
        &[("web-1", "node-b", "10.244.1.5")],
    ));
}

/// Probes on node-a and node-b that run, say nothing, and keep their logs open.
pub fn quiet_probes(api: &FakeApi) {
    let quiet = || Fate::Runs(vec![LogScript::lines(Vec::new()).hold_open()]);
    run_daemonsets(
        api,
        HashMap::from([
            ("node-a".to_string(), quiet()),
            ("node-b".to_string(), quiet()),
        ]),
    );
}

/// The same fates with each log's last line (the probe's `bye`) taken away: probes that keep
/// capturing until something else ends the trace.
pub fn never_ending(mut fates: HashMap<String, Fate>) -> HashMap<String, Fate> {
    for fate in fates.values_mut() {
        if let Fate::Runs(scripts) = fate {
            for script in scripts {
                script.lines.pop();
            }
        }
    }
    fates
}
