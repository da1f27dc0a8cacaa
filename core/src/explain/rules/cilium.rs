//! Cilium's kube-proxy replacement: eBPF service load balancing with SNAT, DSR or hybrid
//! forwarding of external traffic, socket-level load balancing for pods.

use super::super::facts::{CiliumLbMode, ClusterFacts, ServiceBackends};
use super::super::model::{L4Source, Owner};
use super::shared::{arrive_at_node, etp_setting, fix_local, Arrival};
use super::Trail;

const FORWARDING_ANNOTATION: &str = "service.cilium.io/forwarding-mode";

fn mode_setting(cluster: &ClusterFacts) -> String {
    cluster.proxy.as_ref().map_or_else(
        || "cilium-config bpf-lb-mode".to_string(),
        |p| p.from.clone(),
    )
}

/// External traffic arriving at a node (NodePort or LB address) with `trail.source` as sender,
/// as Cilium handles it.
pub fn enter_node(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    lb_mode: CiliumLbMode,
    trail: &mut Trail,
) {
    if arrive_at_node(backends, trail) == Arrival::Cluster {
        enter_node_cluster(cluster, backends, lb_mode, trail);
    }
}

/// External traffic on a node with externalTrafficPolicy=Cluster.
fn enter_node_cluster(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    lb_mode: CiliumLbMode,
    trail: &mut Trail,
) {
    let svc = &backends.service;
    // Cilium 1.16+: a per-Service override when bpf-lb-mode-annotation is on.
    let (mode, setting) = match svc.annotation(FORWARDING_ANNOTATION) {
        Some("dsr") => (
            CiliumLbMode::Dsr,
            format!("metadata.annotations[\"{FORWARDING_ANNOTATION}\"]=\"dsr\""),
        ),
        Some("snat") => (
            CiliumLbMode::Snat,
            format!("metadata.annotations[\"{FORWARDING_ANNOTATION}\"]=\"snat\""),
        ),
        _ => (lb_mode, mode_setting(cluster)),
    };
    trail.because(
        etp_setting(svc),
        "Cilium may forward external traffic to a pod on another node",
    );
    let dsr = match mode {
        CiliumLbMode::Dsr => true,
        CiliumLbMode::Hybrid => !svc.only_udp(),
        CiliumLbMode::Snat => false,
    };
    if dsr {
        let text = "direct server return: the packet reaches the pod's node with the client's \
                    address and the pod answers the client directly, so nothing is rewritten";
        if mode == CiliumLbMode::Hybrid {
            trail.because(setting, format!("{text} (hybrid mode does this for TCP)"));
        } else {
            trail.because(setting, text);
        }
        trail.to("pod");
    } else {
        trail.because(
            setting,
            "SNAT mode: a node forwarding to a pod on another node rewrites the source to its own \
             IP; a pod on the receiving node keeps the client address",
        );
        trail.snat(
            "pod",
            L4Source::Node,
            Owner::Cilium,
            "SNAT by Cilium (bpf-lb-mode=snat)",
        );
        fix_local(trail, svc);
        trail.fix(
            "or run Cilium with bpf-lb-mode=dsr (or hybrid) so remote backends see the client",
            Some(
                "cilium config set bpf-lb-mode dsr   # or Helm: --set loadBalancer.mode=dsr"
                    .to_string(),
            ),
        );
    }
}

/// A pod to a Service address: socket-level load balancing connects straight to the backend.
pub fn pod_to_service(cluster: &ClusterFacts, trail: &mut Trail) {
    trail.because(
        mode_setting(cluster),
        "Cilium's socket load balancer rewrites the destination at connect(): the pod connects \
         straight to the backend pod and no SNAT happens",
    );
    trail.to("pod");
}

/// A pod reaching itself through its Service.
pub fn hairpin(trail: &mut Trail) {
    trail.because(
        "cilium loopback-ipv4 (169.254.42.1)",
        "a pod reaching itself through a Service is source-rewritten to Cilium's loopback \
         address 169.254.42.1 so the reply can return",
    );
    trail.snat(
        "pod (itself)",
        L4Source::Node,
        Owner::Cilium,
        "SNAT by Cilium (loopback hairpin)",
    );
}

/// A host process to a Service address.
pub fn node_to_service(trail: &mut Trail) {
    trail.because(
        "Cilium host routing",
        "a host process connects from the node's address (cilium_host for a pod on the same \
         node); the pod sees the node",
    );
    trail.to("pod");
}
