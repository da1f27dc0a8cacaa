//! Pass-through layer-4 load balancers (GKE, Azure, MetalLB, unknown ones) and the GKE Ingress.

use super::super::facts::{
    ClusterFacts, IngressFacts, IpMode, MetalLbMode, ServiceBackends, TrafficPolicy,
};
use super::super::model::{L4Source, L7Source};
use super::shared::{etp_setting, EnterNode, LbProvider};
use super::Trail;

/// Google front ends: where GKE Ingress (and health check) traffic comes from.
pub const GOOGLE_FRONT_END_RANGES: [&str; 2] = ["35.191.0.0/16", "130.211.0.0/22"];
/// Azure's platform address: load balancer health probes come from it.
pub const AZURE_PROBE_SOURCE: &str = "168.63.129.16";

pub fn gke_service_lb(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    from: &str,
    enter_node: EnterNode,
) -> Trail {
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("Google passthrough Network LB");
    trail.because(
        from,
        "GKE's LoadBalancer Services use a passthrough Network Load Balancer: packets reach the \
         nodes with the client address",
    );
    enter_node(cluster, backends, &mut trail);
    trail
}

pub fn azure_service_lb(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    from: &str,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("Azure Load Balancer");
    trail.because(
        from,
        "the Azure Load Balancer does not proxy: packets reach the nodes with the client address",
    );
    if svc.external_traffic_policy == TrafficPolicy::Local {
        let port = svc
            .health_check_node_port
            .map_or_else(|| "healthCheckNodePort".to_string(), |p| p.to_string());
        trail.because(
            format!("spec.healthCheckNodePort={port}"),
            format!(
                "health probes come from {AZURE_PROBE_SOURCE}: network security groups must allow \
                 it on port {port}, or every node looks down"
            ),
        );
    }
    enter_node(cluster, backends, &mut trail);
    trail
}

pub fn metallb_service_lb(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    from: &str,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    let mode = cluster
        .metallb
        .as_ref()
        .and_then(|m| m.value.map(|v| (v, m.from.clone())));
    match mode {
        Some((MetalLbMode::L2, setting)) => {
            trail.to("MetalLB (layer 2 announcing node)");
            let text = if svc.external_traffic_policy == TrafficPolicy::Local {
                "layer 2 mode: one node answers ARP for the address; with Local MetalLB announces \
                 only from a node that hosts an endpoint, so the client address is kept"
            } else {
                "layer 2 mode: one node answers ARP for the address and receives every connection, \
                 then kube-proxy spreads them to all pods"
            };
            trail.because(setting, text);
        }
        Some((MetalLbMode::Bgp, setting)) => {
            trail.to("MetalLB (BGP route)");
            let text = if svc.external_traffic_policy == TrafficPolicy::Local {
                "BGP mode: routers spread connections over the nodes that host an endpoint"
            } else {
                "BGP mode: routers spread connections over every node"
            };
            trail.because(setting, text);
        }
        None => {
            trail.to("MetalLB");
            trail.because(
                from,
                "MetalLB only attracts the traffic (ARP or BGP); the node receives the client address",
            );
        }
    }
    enter_node(cluster, backends, &mut trail);
    trail
}

/// A load balancer explain does not know: assume it passes the client address, and say so.
pub fn generic_service_lb(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    provider: LbProvider,
    from: &str,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("load balancer");
    let proxied = svc
        .lb_ingress
        .iter()
        .any(|i| i.ip_mode == Some(IpMode::Proxy));
    if proxied {
        trail.because(
            "status.loadBalancer.ingress[].ipMode=Proxy",
            "the load balancer says it proxies: it connects from its own address",
        );
        trail.new_connection(L4Source::Lb, "new connection from the load balancer");
    } else if provider == LbProvider::OtherClass {
        trail.because(
            from,
            "another controller implements this load balancer: assumed to pass the client address through",
        );
    } else {
        trail.because(
            from,
            "the load balancer is not recognised: assumed to pass the client address through to the nodes",
        );
    }
    enter_node(cluster, backends, &mut trail);
    if svc.external_traffic_policy == TrafficPolicy::Local && trail.source == L4Source::Lb {
        trail.because(
            etp_setting(svc),
            "Local keeps what the node received, which is already the load balancer's address",
        );
        trail.fix(
            "have the load balancer send PROXY protocol (and the application read it)",
            None,
        );
    }
    trail
}

/// Is container-native load balancing (NEG) on for the Ingress backend?
fn neg(backends: &ServiceBackends) -> Option<(bool, String)> {
    let value = backends.service.annotation("cloud.google.com/neg")?;
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    Some((
        compact.contains("\"ingress\":true"),
        format!("metadata.annotations[\"cloud.google.com/neg\"]={value}"),
    ))
}

/// The GKE Ingress (Google Application Load Balancer) in front of the Service of `backends`.
pub fn gce_ingress(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    ingress: &IngressFacts,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("Google front end (L7)");
    trail.because(
        ingress.controller.from.clone(),
        format!(
            "the Application Load Balancer terminates HTTP and connects from Google front-end \
             ranges {}; X-Forwarded-For carries \"client, load-balancer-ip\"",
            GOOGLE_FRONT_END_RANGES.join(" and ")
        ),
    );
    trail.l7 = L7Source::XForwardedFor;
    trail.new_connection(L4Source::Proxy, "new connection from a Google front end");
    let negs = match neg(backends) {
        Some(found) => Some(found),
        None if !svc.has_node_ports() => Some((
            true,
            "spec.type=ClusterIP on GKE (Ingress needs NEGs for it; assumed container-native)"
                .to_string(),
        )),
        None => None,
    };
    match negs {
        Some((true, setting)) => {
            trail.because(
                setting,
                "container-native load balancing: the front ends connect to the pod IPs",
            );
            trail.to("pod");
        }
        other => {
            let setting = other.map_or_else(
                || "metadata.annotations[\"cloud.google.com/neg\"] not set".to_string(),
                |(_, setting)| setting,
            );
            trail.because(
                setting,
                "instance groups: the front ends connect to the Service's NodePort",
            );
            if svc.has_node_ports() {
                enter_node(cluster, backends, &mut trail);
            } else {
                trail.unknown(
                    format!("spec.type={}", svc.type_.as_str()),
                    "instance-group backends need a NodePort Service; this one has none",
                );
            }
        }
    }
    trail
}
