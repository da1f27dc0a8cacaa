//! Kubernetes Services themselves: what kube-proxy (iptables, IPVS, nftables) does to the
//! source address on NodePorts, load balancer addresses, ClusterIPs and hairpin connections.

use super::super::facts::{ClusterFacts, IpMode, ProxyMode, ServiceBackends, TrafficPolicy};
use super::super::model::{L4Source, Owner};
use super::shared::{
    arrive_at_node, etp_setting, fix_local, proxy_mode, proxy_setting, Arrival, EnterNode,
};
use super::Trail;
use std::ops::ControlFlow;

/// Whether a connection that kube-proxy forwards lands on the node it entered (Some(true)),
/// always on another node (Some(false)), or either.
pub fn same_node(cluster: &ClusterFacts, backends: &ServiceBackends) -> Option<bool> {
    let endpoints = backends.endpoint_nodes.as_ref()?;
    if endpoints.is_empty() {
        return None;
    }
    if let Some(entry) = &cluster.entry_node {
        let here = endpoints.iter().filter(|n| *n == entry).count();
        return match here {
            0 => Some(false),
            n if n == endpoints.len() => Some(true),
            _ => None,
        };
    }
    let real_nodes: Vec<_> = cluster.nodes.iter().filter(|n| !n.virtual_node).collect();
    if real_nodes.len() == 1 && endpoints.iter().all(|e| *e == real_nodes[0].name) {
        return Some(true);
    }
    None
}

/// Whether the pod runs on the node the connection is handled on (ENI pods never count: they
/// are reached over the VPC, not a bridge); None when it cannot be told.
fn pod_on_handling_node(cluster: &ClusterFacts, backends: &ServiceBackends) -> Option<bool> {
    if backends.eni_pods.as_ref().is_some_and(|f| f.value) {
        Some(false)
    } else {
        same_node(cluster, backends)
    }
}

/// kube-proxy's MASQUERADE: which address replaces the source, and the hop label.
fn masquerade(trail: &mut Trail, cluster: &ClusterFacts, backends: &ServiceBackends, what: &str) {
    match pod_on_handling_node(cluster, backends) {
        Some(true) => {
            trail.snat("pod", L4Source::Bridge, Owner::KubeProxy, what);
            trail.because(
                "MASQUERADE on the pod's node",
                "the pod runs on the node that received the connection: MASQUERADE picks the \
                 address of the interface toward the pod, the bridge (cbr0/cni0) IP",
            );
        }
        Some(false) => {
            trail.snat("pod", L4Source::Node, Owner::KubeProxy, what);
            trail.because(
                "MASQUERADE toward another node",
                "the pod runs on another node: MASQUERADE picks the receiving node's IP",
            );
        }
        None => {
            trail.snat("pod", L4Source::Node, Owner::KubeProxy, what);
            trail.because(
                "MASQUERADE",
                "the pod sees the receiving node's IP when it runs on another node, or the \
                 node's bridge (cbr0/cni0) IP when it runs on the node that received the connection",
            );
        }
    }
    if cluster.multi_nic() {
        trail.because(
            "status.addresses: several InternalIP",
            "nodes have several interfaces: MASQUERADE uses the primary address of the interface \
             the packet leaves by, which may not be the node's first InternalIP",
        );
    }
}

/// MASQUERADE of a connection a node opens itself: it already has the address of the interface
/// it leaves by, so toward another node nothing changes; only toward a pod on the same node does
/// it become the bridge's address.
fn node_masquerade(trail: &mut Trail, cluster: &ClusterFacts, backends: &ServiceBackends) {
    match pod_on_handling_node(cluster, backends) {
        Some(true) => {
            trail.snat(
                "pod",
                L4Source::Bridge,
                Owner::KubeProxy,
                "SNAT by kube-proxy (MASQUERADE)",
            );
            trail.because(
                "MASQUERADE on the pod's node",
                "the pod runs on the calling node: MASQUERADE picks the address of the \
                 interface toward the pod, the bridge (cbr0/cni0) IP",
            );
        }
        Some(false) => {
            trail.to("pod");
            trail.because(
                "MASQUERADE toward another node",
                "the pod runs on another node: MASQUERADE picks the node's own address, which \
                 the connection already has, so the source does not change",
            );
        }
        None => {
            trail.to("pod");
            trail.because(
                "MASQUERADE",
                "the pod sees the calling node's address, unchanged, when it runs on another \
                 node, or the node's bridge (cbr0/cni0) IP when it runs on the calling node",
            );
        }
    }
}

/// External traffic arriving at a node (NodePort or LB address) with `trail.source` as sender,
/// as kube-proxy handles it.
pub fn enter_node(cluster: &ClusterFacts, backends: &ServiceBackends, trail: &mut Trail) {
    let svc = &backends.service;
    match arrive_at_node(backends, trail) {
        Arrival::Stopped => return,
        Arrival::Delivered => {}
        Arrival::Cluster => {
            let mode = proxy_mode(cluster);
            trail.because(
                etp_setting(svc),
                format!(
                    "kube-proxy ({}) may forward to a pod on any node, so it marks external \
                     traffic for MASQUERADE (KUBE-MARK-MASQ) to get the replies back",
                    mode.name()
                ),
            );
            trail.because(
                proxy_setting(cluster),
                format!("kube-proxy runs in {} mode", mode.name()),
            );
            masquerade(trail, cluster, backends, "SNAT by kube-proxy (MASQUERADE)");
            fix_local(trail, svc);
        }
    }
    if proxy_mode(cluster) == ProxyMode::Nftables {
        trail.because(
            proxy_setting(cluster),
            "nftables mode serves NodePorts only on the node's primary addresses (nodePortAddresses \
             default), not on 127.0.0.1",
        );
    }
}

/// A client outside the cluster to an address in spec.externalIPs, routed to a node and handed
/// on to its service proxy by `enter_node`.
pub fn external_ip(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    if svc.external_traffic_policy == TrafficPolicy::Local && proxy_mode(cluster) == ProxyMode::Ipvs
    {
        trail.to(&format!("node ({})", svc.external_ips.join(", ")));
        trail.because(
            proxy_setting(cluster),
            "IPVS mode ignores externalTrafficPolicy=Local for spec.externalIPs: it balances over \
             all endpoints and masquerades",
        );
        masquerade(
            &mut trail,
            cluster,
            backends,
            "SNAT by kube-proxy IPVS (Local ignored)",
        );
        trail.fix(
            "use type LoadBalancer (a loadBalancerIP, e.g. from MetalLB) instead of externalIPs, \
             or run kube-proxy in iptables or nftables mode",
            None,
        );
        return trail;
    }
    trail.because(
        "spec.externalIPs",
        "kube-proxy treats traffic to an external IP like load balancer traffic",
    );
    enter_node(cluster, backends, &mut trail);
    trail
}

/// Another pod to the Service's ClusterIP, up to the service proxy; `Break` with the whole
/// path when the Service is headless (no proxy takes part).
pub fn to_cluster_ip(backends: &ServiceBackends) -> ControlFlow<Trail, Trail> {
    let svc = &backends.service;
    let mut trail = Trail::start("client pod", L4Source::Pod);
    if svc.headless {
        trail.because(
            "spec.clusterIP=None",
            "a headless Service resolves to the pod IPs: the connection is plain pod-to-pod",
        );
        trail.to("pod");
        return ControlFlow::Break(trail);
    }
    trail.to(&format!("ClusterIP of {}", svc.name));
    if svc.internal_traffic_policy == TrafficPolicy::Local {
        trail.because(
            "spec.internalTrafficPolicy=Local",
            "only endpoints on the caller's node are used; callers on nodes without one fail",
        );
    }
    ControlFlow::Continue(trail)
}

/// A path that starts at `at` and reaches the Service's ClusterIP.
pub fn via_cluster_ip(at: &str, source: L4Source, backends: &ServiceBackends) -> Trail {
    let mut trail = Trail::start(at, source);
    trail.to(&format!("ClusterIP of {}", backends.service.name));
    trail
}

/// Another pod through the Service's ClusterIP ([`to_cluster_ip`]), as kube-proxy handles it.
pub fn pod_to_cluster_ip(cluster: &ClusterFacts, backends: &ServiceBackends, trail: &mut Trail) {
    if let Some(masq) = cluster.masquerade_all.as_ref().filter(|m| m.value) {
        trail.because(
            masq.from.clone(),
            "kube-proxy masquerades every connection to a Service IP, pods included",
        );
        masquerade(
            trail,
            cluster,
            backends,
            "SNAT by kube-proxy (masqueradeAll)",
        );
        trail.fix(
            "turn off masqueradeAll in the kube-proxy configuration (kube-system/kube-proxy)",
            None,
        );
        return;
    }
    trail.because(
        proxy_setting(cluster),
        "kube-proxy only DNATs pod-to-ClusterIP traffic: it masquerades sources outside the \
         cluster CIDR, and a pod address is inside it",
    );
    trail.to("pod");
}

/// A pod reaching itself through its own Service ([`via_cluster_ip`]), as kube-proxy handles
/// it.
pub fn hairpin(cluster: &ClusterFacts, backends: &ServiceBackends, trail: &mut Trail) {
    trail.because(
        proxy_setting(cluster),
        "when the chosen endpoint is the caller itself, kube-proxy marks the connection for \
         MASQUERADE (the KUBE-SEP rule for -s <pod IP>) so the reply can come back through the \
         bridge (kubelet hairpin mode)",
    );
    let eni = backends.eni_pods.as_ref().is_some_and(|f| f.value);
    if eni {
        trail.snat(
            "pod (itself)",
            L4Source::Node,
            Owner::KubeProxy,
            "SNAT by kube-proxy (hairpin)",
        );
    } else {
        trail.snat(
            "pod (itself)",
            L4Source::Bridge,
            Owner::KubeProxy,
            "SNAT by kube-proxy (hairpin)",
        );
        trail.because(
            "hairpin MASQUERADE",
            "the packet leaves toward the pod through the node's bridge, so the pod sees the \
             bridge (cbr0/cni0) IP",
        );
    }
}

/// A host-network process on a node through the Service's ClusterIP ([`via_cluster_ip`]), as
/// kube-proxy handles it.
pub fn node_to_cluster_ip(cluster: &ClusterFacts, backends: &ServiceBackends, trail: &mut Trail) {
    trail.because(
        proxy_setting(cluster),
        "a node's own address is outside the cluster CIDR, so kube-proxy masquerades it",
    );
    masquerade(trail, cluster, backends, "SNAT by kube-proxy (node source)");
}

/// A pod (`from_node` false) or a node (true) to the load balancer's address, up to the
/// service proxy: `Continue` when the node intercepts the address, `Break` when the connection
/// goes out to the load balancer (whose own caveats come next, then the pod).
pub fn to_lb_address_start(
    backends: &ServiceBackends,
    from_node: bool,
) -> ControlFlow<Trail, Trail> {
    let svc = &backends.service;
    let (caller, source) = if from_node {
        ("node", L4Source::Node)
    } else {
        ("client pod", L4Source::Pod)
    };
    let mut trail = Trail::start(caller, source);
    let proxied = svc
        .lb_ingress
        .iter()
        .find(|i| i.ip_mode == Some(IpMode::Proxy));
    let hostname = svc.lb_ingress.iter().find(|i| i.is_hostname);
    let leaves = proxied.map(|i| {
        (
            format!("status.loadBalancer.ingress[{}].ipMode=Proxy", i.address),
            "kube-proxy does not short-circuit an address with ipMode Proxy: the connection \
             really goes out to the load balancer and comes back",
        )
    });
    let leaves = leaves.or_else(|| {
        hostname.map(|i| {
            (
                format!("status.loadBalancer.ingress[].hostname={}", i.address),
                "the load balancer is published as a hostname, which kube-proxy cannot intercept: \
                 the connection goes out to the load balancer and comes back",
            )
        })
    });
    if let Some((setting, text)) = leaves {
        trail.because(setting, text);
        trail.rewritten(
            "load balancer",
            L4Source::Node,
            "egress SNAT of the caller's node",
        );
        trail.because(
            "egress from the cluster",
            "the caller's connection leaves with its node's address (or a NAT gateway's), so at \
             best the pod sees that node, never a pod IP",
        );
        return ControlFlow::Break(trail);
    }
    // The DNAT happens before the caller's SYN leaves its node: in a node's own output path
    // before any interface, so a capture there shows the pod's address, never the LB's.
    trail.to(if from_node {
        "LB address, DNATed on the node before any interface"
    } else {
        "LB address, DNATed on the pod's node"
    });
    trail.because(
        "status.loadBalancer.ingress[].ip",
        "the node's service proxy (kube-proxy, or Cilium) intercepts the load balancer's IP on \
         every node and DNATs it to an endpoint: the connection never reaches the load balancer",
    );
    ControlFlow::Continue(trail)
}

/// A pod or a node to the load balancer's address the node intercepts
/// ([`to_lb_address_start`]), as kube-proxy handles it.
pub fn to_lb_address(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    from_node: bool,
    trail: &mut Trail,
) {
    let svc = &backends.service;
    match (svc.external_traffic_policy, from_node) {
        (TrafficPolicy::Local, false) => {
            trail.because(
                etp_setting(svc),
                "with Local, kube-proxy sends pod traffic for the LB address to the ClusterIP \
                 chain without masquerading it",
            );
            if proxy_mode(cluster) == ProxyMode::Ipvs {
                trail.because(
                    proxy_setting(cluster),
                    "older IPVS kube-proxies only use local endpoints for a Local LB address, so \
                     callers on nodes without one time out (kubernetes#75262)",
                );
            }
            trail.to("pod");
        }
        (TrafficPolicy::Local, true) => {
            trail.because(
                etp_setting(svc),
                "even with Local, kube-proxy marks LB-address traffic that starts on the node \
                 itself (src-type LOCAL) for MASQUERADE",
            );
            node_masquerade(trail, cluster, backends);
        }
        (TrafficPolicy::Cluster, true) => {
            trail.because(
                etp_setting(svc),
                "kube-proxy marks traffic to the LB address for MASQUERADE like any external \
                 traffic",
            );
            node_masquerade(trail, cluster, backends);
        }
        (TrafficPolicy::Cluster, false) => {
            trail.because(
                etp_setting(svc),
                "kube-proxy masquerades traffic to the LB address like any external traffic",
            );
            masquerade(trail, cluster, backends, "SNAT by kube-proxy (MASQUERADE)");
        }
    }
    if !from_node && trail.source != L4Source::Pod {
        trail.fix(
            "call the Service by its name (ClusterIP) from inside the cluster: pods then see the \
             caller's pod IP",
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::facts::NodeFacts;

    fn node(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            virtual_node: false,
            internal_ips: 1,
        }
    }

    fn backends(nodes: &[&str]) -> ServiceBackends {
        ServiceBackends {
            endpoint_nodes: Some(nodes.iter().map(|n| n.to_string()).collect()),
            ..ServiceBackends::default()
        }
    }

    #[test]
    fn same_node_needs_to_know_where_traffic_enters() {
        let mut cluster = ClusterFacts {
            nodes: vec![node("a"), node("b")],
            ..ClusterFacts::default()
        };
        assert_eq!(same_node(&cluster, &backends(&["a"])), None);
        assert_eq!(same_node(&cluster, &ServiceBackends::default()), None);
        cluster.entry_node = Some("a".into());
        assert_eq!(same_node(&cluster, &backends(&["a"])), Some(true));
        assert_eq!(same_node(&cluster, &backends(&["b"])), Some(false));
        assert_eq!(same_node(&cluster, &backends(&["a", "b"])), None);
        let single = ClusterFacts {
            nodes: vec![node("a")],
            ..ClusterFacts::default()
        };
        assert_eq!(same_node(&single, &backends(&["a", "a"])), Some(true));
    }

    #[test]
    fn entry_node_decides_bridge_or_node() {
        let cluster = |entry: &str| ClusterFacts {
            nodes: vec![node("a"), node("b")],
            entry_node: Some(entry.into()),
            ..ClusterFacts::default()
        };
        let b = backends(&["a"]);
        let node_port = |cluster: &ClusterFacts, b: &ServiceBackends| {
            let mut trail = Trail::start("client", L4Source::Client);
            enter_node(cluster, b, &mut trail);
            trail
        };
        assert_eq!(node_port(&cluster("a"), &b).source, L4Source::Bridge);
        assert_eq!(node_port(&cluster("b"), &b).source, L4Source::Node);
    }
}
