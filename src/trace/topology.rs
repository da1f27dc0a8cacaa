//! From the Service, its EndpointSlices and the nodes to what a trace needs: the ways in, the
//! backends, and which nodes to probe (and which to skip, with the reason shown).

use crate::analyze::view::{parse_cidr, ClusterView, NodeView, PodView};
use crate::explain::facts::{EndpointFacts, ServiceFacts, ServiceType};
use crate::explain::gather;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("Service {0} is of type ExternalName: it is a DNS alias, no traffic passes through the cluster's NAT")]
    ExternalName(String),
    #[error("Service {0} is headless (clusterIP: None): clients reach pods directly, no Service NAT to trace")]
    Headless(String),
    #[error("Service {service} has no ready endpoints{selector}")]
    NoEndpoints { service: String, selector: String },
    #[error("none of the Service's nodes can run the probe: {0}")]
    NothingToProbe(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// (type, address): InternalIP, ExternalIP, ...
    pub addresses: Vec<(String, String)>,
    /// `kubernetes.io/arch`: amd64, arm64.
    pub arch: Option<String>,
    /// Why the probe cannot run there, if it cannot.
    pub unusable: Option<String>,
    /// Cordoned or excluded from load balancers: still probed if it holds an endpoint.
    pub lb_excluded: Option<String>,
    /// `spec.podCIDRs` (or `podCIDR`).
    pub pod_cidrs: Vec<String>,
}

/// What the trace works on: the Service in explain's model, its endpoints and the nodes.
#[derive(Debug, Clone)]
pub struct Topology {
    pub service: ServiceFacts,
    /// Its endpoints, as its EndpointSlices list them.
    pub endpoints: Vec<EndpointFacts>,
    /// The TCP ports the endpoints listen on.
    pub endpoint_ports: Vec<u16>,
    pub nodes: Vec<NodeInfo>,
}

impl Topology {
    pub fn from_objects(
        service: &Service,
        slices: &[EndpointSlice],
        nodes: &[Node],
    ) -> Result<Topology, TopologyError> {
        let facts = gather::service_facts(service);
        let qualified = facts.qualified();
        if facts.type_ == ServiceType::ExternalName {
            return Err(TopologyError::ExternalName(qualified));
        }
        if facts.headless {
            return Err(TopologyError::Headless(qualified));
        }
        let endpoints = gather::endpoints(slices);
        if !endpoints.iter().any(|e| e.ready && !e.addresses.is_empty()) {
            let selector = if facts.selector.is_empty() {
                "; it has no selector and no EndpointSlice lists a ready address".to_string()
            } else {
                let terms: Vec<String> = facts
                    .selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("; its selector {} matches no ready pod", terms.join(","))
            };
            return Err(TopologyError::NoEndpoints {
                service: qualified,
                selector,
            });
        }
        Ok(Topology {
            service: facts,
            endpoints,
            endpoint_ports: gather::endpoint_tcp_ports(slices).collect(),
            nodes: nodes.iter().map(node_info).collect(),
        })
    }

    pub fn namespace(&self) -> &str {
        self.service.ns()
    }

    pub fn name(&self) -> &str {
        &self.service.name
    }

    /// Every endpoint address, each once, with its endpoint.
    pub fn addresses(&self) -> impl Iterator<Item = (&str, &EndpointFacts)> {
        let mut seen = BTreeSet::new();
        self.endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().map(move |a| (a.as_str(), e)))
            .filter(move |(address, _)| seen.insert(*address))
    }
}

fn node_info(node: &Node) -> NodeInfo {
    let name = node.metadata.name.clone().unwrap_or_default();
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| (a.type_.clone(), a.address.clone()))
        .collect();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let label = |key: &str| labels.get(key).map(String::as_str);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .cloned()
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let unusable =
        if label("kubernetes.io/os").or(label("beta.kubernetes.io/os")) == Some("windows") {
            Some("Windows node: the probe runs on Linux only".to_string())
        } else if label("node.kubernetes.io/instance-type") == Some("eklet") {
            Some("TKE super node (eklet): virtual, no node network to capture on".to_string())
        } else if label("eks.amazonaws.com/compute-type") == Some("fargate") {
            Some("EKS Fargate: virtual, no node network to capture on".to_string())
        } else if label("type") == Some("virtual-kubelet")
            || taints
                .iter()
                .any(|t| t.key.starts_with("virtual-kubelet.io/"))
        {
            Some(
            "virtual-kubelet node (e.g. Azure virtual nodes/ACI): no node network to capture on"
                .to_string(),
        )
        } else if !ready {
            Some("node is not Ready".to_string())
        } else {
            None
        };
    let lb_excluded = if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        Some("cordoned".to_string())
    } else if labels.contains_key("node.kubernetes.io/exclude-from-external-load-balancers") {
        Some("excluded from load balancers by label".to_string())
    } else {
        None
    };
    let spec = node.spec.as_ref();
    let pod_cidrs = spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|cidrs| !cidrs.is_empty())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    NodeInfo {
        name,
        addresses,
        arch: label("kubernetes.io/arch").map(str::to_string),
        unusable,
        lb_excluded,
        pod_cidrs,
    }
}

impl Topology {
    /// What the analysis is told of the cluster: its nodes, the Service's pods and addresses.
    pub fn cluster_view(&self) -> ClusterView {
        let service = &self.service;
        let nodes: Vec<NodeView> = self
            .nodes
            .iter()
            .map(|n| NodeView {
                name: n.name.clone(),
                addresses: n
                    .addresses
                    .iter()
                    .filter_map(|(_, a)| a.parse().ok())
                    .collect(),
                pod_cidrs: n.pod_cidrs.iter().filter_map(|c| parse_cidr(c)).collect(),
            })
            .collect();
        // An endpoint at a node's own address is a hostNetwork pod: the address is the node's.
        let host_network = |ip: &std::net::IpAddr| nodes.iter().any(|n| n.addresses.contains(ip));
        ClusterView {
            pods: self
                .addresses()
                .filter_map(|(address, endpoint)| {
                    let ip = address.parse().ok()?;
                    Some(PodView {
                        name: format!("{}/{}", self.namespace(), endpoint.pod.as_ref()?),
                        host_network: host_network(&ip),
                        ip,
                        node: endpoint.node.clone(),
                    })
                })
                .collect(),
            nodes,
            lb_addresses: service
                .lb_ingress
                .iter()
                .filter_map(|i| i.address.parse().ok())
                .collect(),
            lb_node_ports: if service.type_ == ServiceType::LoadBalancer {
                service.ports.iter().filter_map(|p| p.node_port).collect()
            } else {
                Vec::new()
            },
            cluster_ips: service.cluster_ips.clone(),
            senders: Vec::new(),
            unseen_delivery: None,
        }
    }
}

/// Why a node is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It runs a backend pod.
    Endpoint,
    /// With externalTrafficPolicy Cluster the load balancer or a NodePort client may land there.
    EntryNode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Nodes to probe, by name, with why.
    pub probe: BTreeMap<String, Why>,
    /// Nodes not probed, with the reason shown to the user.
    pub skipped: BTreeMap<String, String>,
}

/// Endpoint nodes always; with Cluster policy also the nodes traffic can enter by, limited to
/// `selected` (the `--nodes` selector's matches, when given) and to `max_extra` of them.
pub fn choose_nodes(
    topology: &Topology,
    selected: Option<&BTreeSet<String>>,
    max_extra: usize,
) -> Result<Choice, TopologyError> {
    let mut choice = Choice {
        probe: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    let endpoint_nodes: BTreeSet<&str> = topology
        .endpoints
        .iter()
        .filter_map(|e| e.node.as_deref())
        .collect();
    for node in &topology.nodes {
        if !endpoint_nodes.contains(node.name.as_str()) {
            continue;
        }
        match &node.unusable {
            Some(reason) => {
                choice.skipped.insert(node.name.clone(), reason.clone());
            }
            None => {
                choice.probe.insert(node.name.clone(), Why::Endpoint);
            }
        }
    }
    for name in endpoint_nodes {
        if !topology.nodes.iter().any(|n| n.name == name) {
            choice.skipped.insert(
                name.to_string(),
                "endpoint node not found among the cluster's nodes".into(),
            );
        }
    }
    if topology.service.forwards_between_nodes() {
        let mut extra = 0;
        for node in &topology.nodes {
            if choice.probe.contains_key(&node.name) || choice.skipped.contains_key(&node.name) {
                continue;
            }
            if selected.is_some_and(|s| !s.contains(&node.name)) {
                continue;
            }
            let reason = if let Some(reason) = &node.unusable {
                reason.clone()
            } else if let Some(reason) = &node.lb_excluded {
                format!("{reason}: the load balancer does not send traffic there")
            } else if extra >= max_extra {
                format!("beyond --max-nodes {max_extra}")
            } else {
                extra += 1;
                choice.probe.insert(node.name.clone(), Why::EntryNode);
                continue;
            };
            choice.skipped.insert(node.name.clone(), reason);
        }
    }
    if choice.probe.is_empty() {
        let reasons: Vec<String> = choice
            .skipped
            .iter()
            .map(|(node, reason)| format!("{node}: {reason}"))
            .collect();
        return Err(TopologyError::NothingToProbe(if reasons.is_empty() {
            "no node found".into()
        } else {
            reasons.join("; ")
        }));
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeAddress, NodeCondition, NodeSpec, NodeStatus, ObjectReference, ServiceSpec, Taint,
    };
    use k8s_openapi::api::discovery::v1::Endpoint;

    fn node(name: &str, labels: &[(&str, &str)], ready: bool) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        node.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        });
        node
    }

    fn service(type_: &str, policy: &str) -> Service {
        let mut svc = Service::default();
        svc.metadata.name = Some("web".into());
        svc.metadata.namespace = Some("shop".into());
        svc.spec = Some(ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: Some("10.96.0.10".into()),
            external_traffic_policy: Some(policy.into()),
            ..ServiceSpec::default()
        });
        svc
    }

    fn slice(endpoints: &[(&str, &str)]) -> EndpointSlice {
        EndpointSlice {
            endpoints: endpoints
                .iter()
                .map(|(ip, node)| Endpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    ..Endpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        }
    }

    #[test]
    fn refuses_external_name_headless_and_no_endpoints() {
        let nodes = [node("a", &[], true)];
        let external = service("ExternalName", "Cluster");
        assert!(matches!(
            Topology::from_objects(&external, &[], &nodes),
            Err(TopologyError::ExternalName(_))
        ));
        let mut headless = service("ClusterIP", "Cluster");
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert!(matches!(
            Topology::from_objects(&headless, &[slice(&[("10.244.0.5", "a")])], &nodes),
            Err(TopologyError::Headless(_))
        ));
        let err =
            Topology::from_objects(&service("LoadBalancer", "Cluster"), &[], &nodes).unwrap_err();
        assert!(err.to_string().contains("no ready endpoints"), "{err}");
    }

    #[test]
    fn cluster_policy_adds_entry_nodes_and_skips_with_reasons() {
        let mut cordoned = node("e", &[], true);
        cordoned.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..NodeSpec::default()
        });
        let mut vk = node("v", &[], true);
        vk.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "virtual-kubelet.io/provider".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        });
        let nodes = [
            node("a", &[], true),
            node("b", &[], true),
            node("c", &[], true),
            node("d", &[], false),
            cordoned,
            node("f", &[("node.kubernetes.io/instance-type", "eklet")], true),
            node("g", &[("eks.amazonaws.com/compute-type", "fargate")], true),
            node("w", &[("kubernetes.io/os", "windows")], true),
            vk,
        ];
        let topology = Topology::from_objects(
            &service("LoadBalancer", "Cluster"),
            &[slice(&[("10.244.1.5", "b"), ("10.244.6.5", "f")])],
            &nodes,
        )
        .unwrap();
        let choice = choose_nodes(&topology, None, 1).unwrap();
        assert_eq!(
            choice.probe,
            BTreeMap::from([("a".into(), Why::EntryNode), ("b".into(), Why::Endpoint)])
        );
        let skipped: Vec<(&str, &str)> = choice
            .skipped
            .iter()
            .map(|(k, v)| (k.as_str(), v.split(':').next().unwrap_or_default()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("c", "beyond --max-nodes 1"),
                ("d", "node is not Ready"),
                ("e", "cordoned"),
                ("f", "TKE super node (eklet)"),
                ("g", "EKS Fargate"),
                ("v", "virtual-kubelet node (e.g. Azure virtual nodes/ACI)"),
                ("w", "Windows node"),
            ]
        );
    }

    #[test]
    fn local_policy_and_selector_limit_to_endpoint_nodes() {
        let nodes = [
            node("a", &[], true),
            node("b", &[], true),
            node("c", &[], true),
        ];
        let endpoints = [slice(&[("10.244.1.5", "b")])];
        let local =
            Topology::from_objects(&service("LoadBalancer", "Local"), &endpoints, &nodes).unwrap();
        let choice = choose_nodes(&local, None, 10).unwrap();
        assert_eq!(choice.probe.keys().collect::<Vec<_>>(), ["b"]);

        let cluster =
            Topology::from_objects(&service("NodePort", "Cluster"), &endpoints, &nodes).unwrap();
        let only_c = BTreeSet::from(["c".to_string()]);
        let choice = choose_nodes(&cluster, Some(&only_c), 10).unwrap();
        assert_eq!(choice.probe.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn an_endpoint_at_its_nodes_address_is_a_host_network_pod() {
        let mut a = node("a", &[], true);
        a.status.as_mut().unwrap().addresses = Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: "192.168.0.11".into(),
        }]);
        let endpoint = |ip: &str, pod: &str| Endpoint {
            addresses: vec![ip.to_string()],
            node_name: Some("a".into()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let slices = [EndpointSlice {
            endpoints: vec![
                endpoint("192.168.0.11", "ingress"),
                endpoint("10.244.0.5", "web"),
            ],
            ..EndpointSlice::default()
        }];
        let topology =
            Topology::from_objects(&service("NodePort", "Cluster"), &slices, &[a]).unwrap();
        let view = topology.cluster_view();
        let pods: Vec<(&str, bool)> = view
            .pods
            .iter()
            .map(|p| (p.name.as_str(), p.host_network))
            .collect();
        assert_eq!(pods, [("shop/ingress", true), ("shop/web", false)]);
    }

    #[test]
    fn nothing_to_probe_names_each_reason() {
        let nodes = [node("w", &[("kubernetes.io/os", "windows")], true)];
        let topology = Topology::from_objects(
            &service("ClusterIP", "Cluster"),
            &[slice(&[("10.244.1.5", "w")])],
            &nodes,
        )
        .unwrap();
        let err = choose_nodes(&topology, None, 5).unwrap_err();
        assert!(err.to_string().contains("w: Windows node"), "{err}");
    }
}
