//! Tencent TKE behind a CLB: direct access to pods (VPC-CNI, GlobalRouter with
//! GlobalRouteDirectAccess, super nodes), NodePort forwarding otherwise, the CLB layer-7 Ingress
//! (class `qcloud`), and the Local-policy annotations of the TKE service controller.

use super::super::facts::{
    ClusterFacts, IngressFacts, ServiceBackends, TkeNetwork, TrafficPolicy, VirtualPlacement,
};
use super::super::model::{L4Source, L7Source};
use super::shared::{annotate_svc, patch_svc, EnterNode};
use super::Trail;

pub const DIRECT_ACCESS: &str = "service.cloud.tencent.com/direct-access";
pub const INGRESS_DIRECT_ACCESS: &str = "ingress.cloud.tencent.com/direct-access";
pub const WEIGHTED_BALANCE: &str = "service.cloud.tencent.com/local-svc-weighted-balance";
pub const ONLY_BIND_NODE_WITH_POD: &str = "service.kubernetes.io/local-svc-only-bind-node-with-pod";
pub const GLOBAL_ROUTE_DIRECT_ACCESS_PATCH: &str = "kubectl patch cm tke-service-controller-config -n kube-system --patch '{\"data\":{\"GlobalRouteDirectAccess\":\"true\"}}'";

/// Marks what holds on TKE only, so that a reader of another cluster can tell it from what
/// Kubernetes does everywhere (the lab, modelled on TKE, lists these after the others).
pub const LABEL: &str = "TKE: ";

/// `text`, marked as TKE's.
pub fn tke(text: impl Into<String>) -> String {
    format!("{LABEL}{}", text.into())
}

/// Whether a reason's or fix's text is one of TKE's.
pub fn is_tke(text: &str) -> bool {
    text.starts_with(LABEL)
}

/// Whether the CLB can send to the pod IPs of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// Yes, because of the given setting.
    Works(String, String),
    /// No: setting, why, and the fix.
    Blocked(String, String, Option<(String, Option<String>)>),
    /// Cannot tell: what is missing.
    Unknown(String, String),
}

/// Can the CLB reach the Service's pods directly (no NodePort, no SNAT)?
pub fn direct_reach(cluster: &ClusterFacts, backends: &ServiceBackends) -> Direct {
    if let Some(virt) = &backends.on_virtual_nodes {
        if virt.value == VirtualPlacement::All {
            return Direct::Works(
                virt.from.clone(),
                "the pods run on super nodes, which have VPC addresses: the CLB reaches them directly"
                    .into(),
            );
        }
    }
    if let Some(eni) = backends.eni_pods.as_ref().filter(|f| f.value) {
        return Direct::Works(
            eni.from.clone(),
            "the pods have VPC-CNI (ENI) addresses the CLB can reach".into(),
        );
    }
    let grda = cluster.global_route_direct_access.as_ref();
    match cluster.tke_network.as_ref().map(|n| (n.value, n.from.clone())) {
        Some((TkeNetwork::VpcCni, from)) => Direct::Works(
            from,
            "VPC-CNI pods have VPC addresses the CLB can reach".into(),
        ),
        Some((TkeNetwork::GlobalRouter, from)) => match grda {
            Some(f) if f.value => Direct::Works(
                f.from.clone(),
                "GlobalRouter pods are reachable from the CLB because GlobalRouteDirectAccess is on"
                    .into(),
            ),
            Some(f) => Direct::Blocked(
                f.from.clone(),
                "GlobalRouter needs GlobalRouteDirectAccess=\"true\" in \
                 kube-system/tke-service-controller-config for direct access: the CLB keeps \
                 forwarding to NodePorts"
                    .into(),
                Some((
                    "turn on GlobalRouteDirectAccess for the cluster".into(),
                    Some(GLOBAL_ROUTE_DIRECT_ACCESS_PATCH.into()),
                )),
            ),
            None => Direct::Unknown(
                format!("{from}; kube-system/tke-service-controller-config not read"),
                "on GlobalRouter direct access works only with GlobalRouteDirectAccess=\"true\" \
                 in kube-system/tke-service-controller-config, which was not available"
                    .into(),
            ),
        },
        Some((TkeNetwork::CiliumOverlay, from)) => Direct::Blocked(
            from,
            "Cilium-Overlay pod addresses are not routable in the VPC: the CLB cannot reach \
             them and forwards to NodePorts"
                .into(),
            Some((
                "schedule the pods on super nodes or use VPC-CNI pods to get direct access".into(),
                None,
            )),
        ),
        None => match grda {
            Some(f) if f.value => Direct::Works(
                f.from.clone(),
                "GlobalRouteDirectAccess is on, and VPC-CNI pods are always reachable".into(),
            ),
            _ => Direct::Unknown(
                "TKE network mode unknown".into(),
                "direct access needs VPC-CNI pods, GlobalRouter with GlobalRouteDirectAccess=\"true\", \
                 or super nodes; none of these could be seen"
                    .into(),
            ),
        },
    }
}

/// The Service's own CLB (layer 4).
pub fn service_lb(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    from: &str,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("CLB");
    trail.because(
        from,
        tke("the CLB (layer 4) passes the client address through to its backends"),
    );
    let annotated = svc.annotation_true(DIRECT_ACCESS);
    let direct_setting = match svc.annotation(DIRECT_ACCESS) {
        Some(v) => format!("metadata.annotations[\"{DIRECT_ACCESS}\"]=\"{v}\""),
        None => format!("metadata.annotations[\"{DIRECT_ACCESS}\"] not set"),
    };
    let reach = direct_reach(cluster, backends);
    let all_virtual = backends
        .on_virtual_nodes
        .as_ref()
        .is_some_and(|v| v.value == VirtualPlacement::All);
    let reach_fix = match &reach {
        Direct::Blocked(_, _, fix) => fix.clone(),
        _ => None,
    };
    if annotated || all_virtual {
        match reach {
            Direct::Works(setting, text) => {
                if annotated {
                    trail.because(
                        direct_setting,
                        tke(
                            "the CLB registers the pod IPs as backends: no NodePort, no \
                             kube-proxy, no SNAT",
                        ),
                    );
                }
                trail.because(setting, tke(text));
                trail.to("pod");
                return trail;
            }
            Direct::Blocked(setting, text, fix) => {
                trail.because(direct_setting, tke("direct access was asked for"));
                trail.because(setting, tke(text));
                if let Some((text, apply)) = fix {
                    trail.fix(tke(text), apply);
                }
            }
            Direct::Unknown(setting, text) => {
                trail.because(direct_setting, tke("direct access was asked for"));
                trail.unknown(setting, tke(text));
                trail.fix(
                    tke("check the cluster's network mode; on GlobalRouter set GlobalRouteDirectAccess"),
                    Some(GLOBAL_ROUTE_DIRECT_ACCESS_PATCH.into()),
                );
                return trail;
            }
        }
    } else {
        trail.because(
            direct_setting,
            tke("without direct access the CLB forwards to every node's NodePort"),
        );
    }
    if svc.external_traffic_policy == TrafficPolicy::Local {
        local_annotations(svc, &mut trail);
    }
    enter_node(cluster, backends, &mut trail);
    if trail.source != L4Source::Client && !annotated {
        trail.fix(
            tke(
                "or let the CLB reach the pods directly (VPC-CNI, or GlobalRouter with \
                 GlobalRouteDirectAccess, or super nodes)",
            ),
            Some(annotate_svc(svc, DIRECT_ACCESS, "true")),
        );
        // What else direct access needs here (e.g. GlobalRouteDirectAccess).
        if let Some((text, apply)) = reach_fix {
            trail.fix(tke(text), apply);
        }
    }
    trail
}

/// The TKE annotations that matter with externalTrafficPolicy=Local.
fn local_annotations(svc: &super::super::facts::ServiceFacts, trail: &mut Trail) {
    if svc.annotation_true(ONLY_BIND_NODE_WITH_POD) {
        trail.because(
            format!("metadata.annotations[\"{ONLY_BIND_NODE_WITH_POD}\"]=\"true\""),
            tke("the CLB binds only the nodes that host a pod"),
        );
    } else {
        trail.because(
            format!("metadata.annotations[\"{ONLY_BIND_NODE_WITH_POD}\"] not \"true\""),
            tke(
                "the CLB binds every node; nodes without a pod drop the traffic or fail the \
                 health check",
            ),
        );
        trail.fix(
            tke("bind only the nodes that host a pod"),
            Some(annotate_svc(svc, ONLY_BIND_NODE_WITH_POD, "true")),
        );
    }
    if svc.annotation_true(WEIGHTED_BALANCE) {
        trail.because(
            format!("metadata.annotations[\"{WEIGHTED_BALANCE}\"]=\"true\""),
            tke("the CLB weights each node by its number of pods, so Local stays balanced"),
        );
    } else {
        trail.because(
            format!("metadata.annotations[\"{WEIGHTED_BALANCE}\"] not \"true\""),
            tke("every bound node gets the same weight: pods on crowded nodes get less traffic each"),
        );
    }
}

/// The CLB layer-7 Ingress (class qcloud) in front of the Service of `backends`.
pub fn qcloud_ingress(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    ingress: &IngressFacts,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("CLB (layer 7)");
    trail.because(
        ingress.controller.from.clone(),
        tke(
            "a CLB layer-7 listener terminates HTTP and opens new connections to the \
             backends, adding X-Forwarded-For and X-Real-IP with the client address",
        ),
    );
    trail.l7 = L7Source::XForwardedFor;
    let direct = ingress
        .annotation(INGRESS_DIRECT_ACCESS)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let direct_setting = match ingress.annotation(INGRESS_DIRECT_ACCESS) {
        Some(v) => format!(
            "ingress {} metadata.annotations[\"{INGRESS_DIRECT_ACCESS}\"]=\"{v}\"",
            ingress.name
        ),
        None => format!(
            "ingress {} metadata.annotations[\"{INGRESS_DIRECT_ACCESS}\"] not set",
            ingress.name
        ),
    };
    let all_virtual = backends
        .on_virtual_nodes
        .as_ref()
        .is_some_and(|v| v.value == VirtualPlacement::All);
    if direct || all_virtual {
        match direct_reach(cluster, backends) {
            Direct::Works(setting, text) => {
                trail.because(direct_setting, tke("the CLB sends to the pod IPs directly"));
                trail.because(setting, tke(text));
                trail.rewritten("pod", L4Source::Proxy, "new connection from the CLB");
                return trail;
            }
            Direct::Blocked(setting, text, fix) => {
                trail.because(direct_setting, tke("direct access was asked for"));
                trail.because(setting, tke(text));
                if let Some((text, apply)) = fix {
                    trail.fix(tke(text), apply);
                }
            }
            Direct::Unknown(setting, text) => {
                trail.because(direct_setting, tke("direct access was asked for"));
                trail.source = L4Source::Unknown;
                trail.because(setting, tke(text));
                return trail;
            }
        }
    } else {
        trail.because(
            direct_setting,
            tke("without direct access the CLB forwards to the Service's NodePort on the nodes"),
        );
    }
    if !svc.has_node_ports() {
        trail.unknown(
            format!("spec.type={}", svc.type_.as_str()),
            tke(
                "a non-direct qcloud Ingress forwards to NodePorts, and this Service has none: \
                 the CLB has no backend (404/503)",
            ),
        );
        trail.l7 = L7Source::Unknown;
        trail.fix(
            tke("make the Service type NodePort"),
            Some(patch_svc(svc, r#"{"spec":{"type":"NodePort"}}"#)),
        );
        return trail;
    }
    trail.new_connection(L4Source::Proxy, "new connection from the CLB");
    trail.because(
        "CLB layer 7",
        tke("the new connection's source is the CLB's own address"),
    );
    enter_node(cluster, backends, &mut trail);
    trail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::facts::Fact;

    fn cluster(network: Option<TkeNetwork>, grda: Option<bool>) -> ClusterFacts {
        ClusterFacts {
            tke_network: network.map(|n| Fact::new(n, "test")),
            global_route_direct_access: grda.map(|g| Fact::new(g, "test")),
            ..ClusterFacts::default()
        }
    }

    #[test]
    fn direct_access_needs_a_reachable_pod_address() {
        let plain = ServiceBackends::default();
        let works =
            |c: &ClusterFacts, b: &ServiceBackends| matches!(direct_reach(c, b), Direct::Works(..));
        assert!(works(&cluster(Some(TkeNetwork::VpcCni), None), &plain));
        assert!(works(
            &cluster(Some(TkeNetwork::GlobalRouter), Some(true)),
            &plain
        ));
        assert!(matches!(
            direct_reach(
                &cluster(Some(TkeNetwork::GlobalRouter), Some(false)),
                &plain
            ),
            Direct::Blocked(..)
        ));
        assert!(matches!(
            direct_reach(&cluster(Some(TkeNetwork::GlobalRouter), None), &plain),
            Direct::Unknown(..)
        ));
        assert!(matches!(
            direct_reach(
                &cluster(Some(TkeNetwork::CiliumOverlay), Some(true)),
                &plain
            ),
            Direct::Blocked(..)
        ));
        assert!(matches!(
            direct_reach(&cluster(None, None), &plain),
            Direct::Unknown(..)
        ));
        let eni = ServiceBackends {
            eni_pods: Some(Fact::new(true, "pod requests eni-ip")),
            ..ServiceBackends::default()
        };
        assert!(works(
            &cluster(Some(TkeNetwork::GlobalRouter), Some(false)),
            &eni
        ));
        let super_node = ServiceBackends {
            on_virtual_nodes: Some(Fact::new(VirtualPlacement::All, "eklet")),
            ..ServiceBackends::default()
        };
        assert!(works(&cluster(None, None), &super_node));
    }
}
