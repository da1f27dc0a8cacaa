//! Each scenario's cause and fix, in explain's words: the scenario's manifests, completed with
//! what the lab's topology says (kube-proxy's mode, the nodes, where each endpoint runs) as API
//! objects, go through the same rules as `kubectl realip explain -f`, told the node each
//! connection enters by; only the ways in the scenario exercises are kept. Scenarios explain has
//! nothing to say about fall back to their own line.
//!
//! The lab's load balancer is modelled on TKE's CLB, so its nodes are TKE's and explain adds
//! TKE's own reasons and fixes: they are marked TKE and come after what Kubernetes does on any
//! cluster, and a generic fix always comes first.

use super::clb::Listener;
use super::scenario::{Connection, From, ModelError, Scenario};
use super::topology::{Node, Pod};
use crate::explain::objects::Objects;
use crate::explain::rules::tke;
use crate::explain::{
    self,
    model::{Explanation, Fix},
};
use crate::output::{wrap, WIDTH};
use k8s_openapi::api::core::v1::{ConfigMap, Node as K8sNode, NodeAddress, NodeSpec, NodeStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// explain's verdicts for the ways in `scenario` exercises (empty when none applies), each
/// predicted for the node its connection enters by.
pub fn explanations(scenario: &Scenario) -> Vec<Explanation> {
    let Ok(objects) = lab_objects(scenario) else {
        return Vec::new();
    };
    let mut out: Vec<Explanation> = Vec::new();
    for conn in &scenario.connections {
        let Some((origin, via)) = conn.explained_by else {
            continue;
        };
        let entry = entry_node(scenario, conn);
        let Ok(all) = explain::explain_objects(&objects, entry.map(Node::name)) else {
            continue;
        };
        for mut explanation in all {
            explanation
                .origins
                .retain(|v| v.origin == origin && v.via == via);
            kubernetes_first(&mut explanation, scenario.fix);
            if explanation.origins.is_empty() {
                continue;
            }
            // Ways in the scenario does not open are not its subject.
            explanation.closed.clear();
            match out
                .iter_mut()
                .find(|e| e.service == explanation.service && e.namespace == explanation.namespace)
            {
                Some(known) => {
                    for verdict in explanation.origins {
                        if !known.origins.contains(&verdict) {
                            known.origins.push(verdict);
                        }
                    }
                    for assumption in explanation.assumptions {
                        if !known.assumptions.contains(&assumption) {
                            known.assumptions.push(assumption);
                        }
                    }
                }
                None => out.push(explanation),
            }
        }
    }
    out
}

/// What holds on any cluster before what holds on TKE only; when every fix is TKE's, the
/// scenario's own generic fix goes first.
fn kubernetes_first(explanation: &mut Explanation, generic_fix: &str) {
    for verdict in &mut explanation.origins {
        // Stable: each group keeps explain's order (the order of the path).
        verdict.reasons.sort_by_key(|r| tke::is_tke(&r.text));
        verdict.fixes.sort_by_key(|f| tke::is_tke(&f.text));
        if !verdict.fixes.is_empty() && verdict.fixes.iter().all(|f| tke::is_tke(&f.text)) {
            verdict.fixes.insert(
                0,
                Fix {
                    text: squash(generic_fix),
                    apply: None,
                },
            );
        }
    }
}

/// The node where kube-proxy first handles `conn`: the node the load balancer's listener sends
/// to, the node a host connection starts on, or the node of the pod that opens it. `None` when
/// the listener targets something else.
fn entry_node(scenario: &Scenario, conn: &Connection) -> Option<Node> {
    match conn.from {
        From::NodeHost(node) => Some(node),
        From::Pod(pod) => Some(pod.node()),
        From::Client => scenario.listeners.iter().find_map(|listener| {
            let (port, backend) = match listener {
                Listener::L4 { port, backend, .. } | Listener::L7 { port, backend } => {
                    (*port, *backend)
                }
            };
            (port == conn.to.port())
                .then(|| node_at(*backend.ip()))
                .flatten()
        }),
    }
}

/// The node that owns `ip`: its own address, or one of its pods'.
fn node_at(ip: Ipv4Addr) -> Option<Node> {
    Node::ALL
        .into_iter()
        .find(|n| n.ip() == ip)
        .or_else(|| Pod::ALL.into_iter().find(|p| p.ip() == ip).map(Pod::node))
}

/// The scenario's manifests with what the lab's topology adds, so that explain does not assume:
/// kube-proxy's mode, the two nodes (TKE nodes with routed pod CIDRs, as GlobalRouter:
/// the load balancer is modelled on a CLB), and an EndpointSlice per modelled Service with the
/// node each endpoint runs on.
fn lab_objects(scenario: &Scenario) -> Result<Objects, ModelError> {
    let mut objects = scenario.objects()?;
    let mode = match scenario.dataplane.proxy {
        super::dataplane::ProxyMode::Iptables => "iptables",
        super::dataplane::ProxyMode::Nftables => "nftables",
    };
    objects.add_config_map(ConfigMap {
        metadata: ObjectMeta {
            name: Some("kube-proxy".into()),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "config.conf".to_string(),
            format!("kind: KubeProxyConfiguration\nmode: {mode}\n"),
        )])),
        ..ConfigMap::default()
    });
    for node in Node::ALL {
        let mut addresses = vec![NodeAddress {
            type_: "InternalIP".into(),
            address: node.ip().to_string(),
        }];
        // A node with a second NIC in use lists its address too, as multi-NIC nodes do.
        if scenario.dataplane.second_nic == Some(node) {
            addresses.push(NodeAddress {
                type_: "InternalIP".into(),
                address: node.second_nic_ip().to_string(),
            });
        }
        objects.nodes.push(K8sNode {
            metadata: ObjectMeta {
                name: Some(node.name().into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some(format!("qcloud:///lab/{node}")),
                pod_cidr: Some(node.pod_cidr()),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(addresses),
                ..NodeStatus::default()
            }),
        });
    }
    for service in scenario.services()? {
        objects.slices.push(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{}-lab", service.name)),
                namespace: Some(service.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/service-name".to_string(),
                    service.name.clone(),
                )])),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some(service.port_name.clone()),
                port: Some(i32::from(service.target_port)),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
            endpoints: service
                .endpoints
                .iter()
                .map(|endpoint| Endpoint {
                    addresses: vec![endpoint.ip.to_string()],
                    node_name: Some(endpoint.node.name().into()),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
        });
    }
    Ok(objects)
}

/// The text under a scenario's report.
pub fn cause_text(scenario: &Scenario) -> String {
    let explained = explanations(scenario);
    if explained.is_empty() {
        let mut text = String::new();
        for (label, line) in [("cause:", scenario.cause), ("fix:  ", scenario.fix)] {
            for l in wrap(&format!("{label} {}", squash(line)), WIDTH, "", "       ") {
                text.push_str(&l);
                text.push('\n');
            }
        }
        return text;
    }
    let says_tke = explained.iter().flat_map(|e| &e.origins).any(|v| {
        v.reasons.iter().any(|r| tke::is_tke(&r.text))
            || v.fixes.iter().any(|f| tke::is_tke(&f.text))
    });
    let heading = if says_tke {
        "why (kubectl realip explain on this scenario's manifests; the lab's nodes are TKE \
         nodes, so explain adds TKE's own reasons and fixes, marked TKE):"
    } else {
        "why (kubectl realip explain on this scenario's manifests):"
    };
    let mut text = String::new();
    for line in wrap(heading, WIDTH, "", "  ") {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&explain::render_text(&explained));
    // explain proposes fixes only for what is broken; the lab always ends with one.
    if explained
        .iter()
        .flat_map(|e| &e.origins)
        .all(|v| v.fixes.is_empty())
    {
        text.push('\n');
        for l in wrap(
            &format!("fix: {}", squash(scenario.fix)),
            WIDTH,
            "  ",
            "       ",
        ) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    text
}

/// Joins the continuation lines of the scenario table's long strings.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::model::{L4Source, L7Source};
    use crate::lab::scenario::{self, Expect, Who};
    use crate::lab::topology::Pod;

    /// Whether explain's prediction fits what the lab expects. Told the entry node and where
    /// the pods run, explain must tell the node from the bridge.
    fn fits(predicted: L4Source, who: Who) -> bool {
        match who {
            Who::Client => predicted == L4Source::Client,
            Who::NodeIp(_) | Who::SecondNic(_) => predicted == L4Source::Node,
            Who::Bridge(_) => predicted == L4Source::Bridge,
            Who::Pod(Pod::Ingress) => predicted == L4Source::Proxy,
            Who::Pod(_) => predicted == L4Source::Pod,
            Who::Lb => predicted == L4Source::Lb,
        }
    }

    #[test]
    fn explain_predicts_what_the_lab_expects() {
        for scenario in scenario::all() {
            let explained = explanations(&scenario);
            for conn in &scenario.connections {
                let Some((origin, via)) = conn.explained_by else {
                    continue;
                };
                let verdict = explained
                    .iter()
                    .flat_map(|e| &e.origins)
                    .find(|v| v.origin == origin && v.via == via)
                    .unwrap_or_else(|| {
                        panic!("{}: explain has no {origin:?} via {via}", scenario.name)
                    });
                let Expect::Answered { by, l4, xff } = conn.expect else {
                    continue;
                };
                // Behind an ingress controller pod, explain speaks of the controller's Service:
                // what the controller accepts is what it writes into X-Forwarded-For.
                let (l4, xff) = match (l4, xff) {
                    (Who::Pod(Pod::Ingress), Some(seen)) => (seen, None),
                    other => other,
                };
                assert!(
                    fits(verdict.l4_source_seen_by_pod, l4),
                    "{}: explain says {:?}, the lab expects pod {by} to see {l4}",
                    scenario.name,
                    verdict.l4_source_seen_by_pod
                );
                let l7 = if xff.is_some() {
                    L7Source::XForwardedFor
                } else {
                    L7Source::None
                };
                assert_eq!(verdict.l7_client_ip, l7, "{}", scenario.name);
            }
        }
    }

    #[test]
    fn the_lab_topology_leaves_explain_nothing_to_assume() {
        for scenario in scenario::all() {
            for explanation in explanations(&scenario) {
                assert_eq!(
                    explanation.assumptions,
                    Vec::<String>::new(),
                    "{}",
                    scenario.name
                );
            }
            let text = crate::output::plain(&cause_text(&scenario));
            assert!(!text.contains("assumed"), "{}: {text}", scenario.name);
        }
    }

    #[test]
    fn each_connection_enters_where_the_lab_sends_it() {
        let entry = |name: &str| {
            let scenario = scenario::select(name).unwrap().remove(0);
            scenario
                .connections
                .iter()
                .map(|c| entry_node(&scenario, c))
                .collect::<Vec<_>>()
        };
        assert_eq!(entry("cluster-same-node"), [Some(Node::A)]);
        assert_eq!(entry("nginx-ingress-cluster"), [Some(Node::B)]);
        assert_eq!(entry("l7-ingress"), [Some(Node::A)]);
        // Direct access: the listener targets a pod on node-a.
        assert_eq!(entry("direct"), [Some(Node::A)]);
        assert_eq!(entry("in-cluster-to-lb"), [Some(Node::B), Some(Node::B)]);
    }

    /// What each scenario's report says under "why": explain's words, told the entry node.
    #[test]
    fn cause_text_snapshots() {
        for scenario in scenario::all() {
            insta::assert_snapshot!(
                format!("cause-{}", scenario.name),
                crate::output::plain(&cause_text(&scenario))
            );
        }
    }

    /// On any cluster the first fix is a Kubernetes one, and TKE's come marked, after the rest.
    #[test]
    fn kubernetes_comes_first_and_tke_is_marked() {
        for scenario in scenario::all() {
            for explanation in explanations(&scenario) {
                for verdict in &explanation.origins {
                    let first_tke = |tke: Vec<bool>| tke.iter().position(|t| *t);
                    let reasons: Vec<bool> = verdict
                        .reasons
                        .iter()
                        .map(|r| tke::is_tke(&r.text))
                        .collect();
                    let fixes: Vec<bool> =
                        verdict.fixes.iter().map(|f| tke::is_tke(&f.text)).collect();
                    for marks in [&reasons, &fixes] {
                        if let Some(at) = first_tke(marks.to_vec()) {
                            assert!(marks[at..].iter().all(|t| *t), "{}", scenario.name);
                        }
                    }
                    assert_ne!(fixes.first(), Some(&true), "{}", scenario.name);
                    for reason in &verdict.reasons {
                        let tke_only = reason.setting.contains("qcloud")
                            || reason.setting.contains("tencent")
                            || reason.setting.contains("local-svc-");
                        assert!(!tke_only || tke::is_tke(&reason.text), "{reason:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_scenario_has_a_cause() {
        for scenario in scenario::all() {
            let text = crate::output::plain(&cause_text(&scenario));
            assert!(text.contains("fix"), "{}: {text}", scenario.name);
        }
    }
}
