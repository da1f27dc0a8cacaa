//! What the lab knows of its cluster beside the probes, as trace reads it from the API server,
//! and the words it names addresses with (through analyze's one owner resolver).

use super::kube_proxy::Service;
use super::topology::{Node, Pod, CLB_INET_IP, CLB_VPC_IP, CLIENT_IP, SECOND_NIC, VIP};
use crate::analyze::view::{ClusterView, NodeView, PodView};
use crate::analyze::{Owners, Role};
use realip_probe::wire::{IfaceKind, Interface, LinkType};
use std::net::Ipv4Addr;
use std::sync::LazyLock;

/// What the lab's cluster knows beside the probes, as `trace` reads it from the API server: the
/// nodes with their pod CIDRs, the pods, and the Services' addresses. The client is not in it:
/// the analysis must tell it from the evidence, as it must on a real cluster.
pub fn cluster_view(services: &[Service]) -> ClusterView {
    let ip = |v4: Ipv4Addr| std::net::IpAddr::V4(v4);
    ClusterView {
        nodes: Node::ALL
            .into_iter()
            .map(|node| NodeView {
                name: node.name().to_string(),
                addresses: vec![ip(node.ip())],
                pod_cidrs: {
                    let (net, prefix) = node.pod_net();
                    vec![(ip(net), prefix)]
                },
            })
            .collect(),
        pods: Pod::ALL
            .into_iter()
            .map(|pod| PodView {
                name: pod.name().to_string(),
                ip: ip(pod.ip()),
                node: Some(pod.node().name().to_string()),
                host_network: false,
            })
            .collect(),
        lb_addresses: services
            .iter()
            .filter_map(|s| s.load_balancer_ip)
            .map(ip)
            .collect(),
        lb_node_ports: services
            .iter()
            .filter(|s| s.load_balancer_ip.is_some())
            .filter_map(|s| s.node_port)
            .collect(),
        cluster_ips: services.iter().map(|s| ip(s.cluster_ip)).collect(),
        senders: Vec::new(),
        unseen_delivery: None,
    }
}

/// Who owns an address of the lab, in words ("node-a", "cbr0 of node-a", "pod app-a", "the client"):
/// analyze's resolver, fed the lab's cluster view and what its hosts' probes announce. The client
/// is left out of the view on purpose (the analysis must tell it from the evidence); the lab
/// names it from its own knowledge.
pub fn owner_of(addr: std::net::IpAddr) -> Option<String> {
    static RESOLVER: LazyLock<Owners> = LazyLock::new(|| {
        let mut owners = Owners::default();
        owners.set_view(cluster_view(&[]));
        for (host, interfaces) in announced() {
            owners.add_node(host, &interfaces);
        }
        owners
    });
    if addr == std::net::IpAddr::V4(CLIENT_IP) {
        return Some("the client".into());
    }
    match RESOLVER.role(addr)? {
        Role::LoadBalancer => Some("clb".into()),
        Role::Node { node, .. } if node == "clb" => Some(node),
        Role::Node {
            node,
            iface: Some(iface),
        } if iface != "eth0" => Some(format!("{iface} of {node}")),
        Role::Node { node, .. } => Some(node),
        Role::Pod {
            name: Some(name), ..
        } => Some(format!("pod {name}")),
        Role::Pod { name: None, .. } | Role::ClusterIp | Role::Sender => None,
    }
}

/// The interfaces with addresses each probed host of the lab announces in its `hello`: a node's
/// uplink (its InternalIP), its pod bridge and its second NIC; the load balancer's two legs and
/// the VIP on its loopback.
fn announced() -> Vec<(&'static str, Vec<Interface>)> {
    let iface = |index, name: &str, kind, address: String| Interface {
        index,
        name: name.to_string(),
        kind,
        link_type: LinkType::Ethernet,
        addresses: vec![address],
        mtu: 1500,
        mac: None,
    };
    let mut hosts = vec![(
        "clb",
        vec![
            iface(1, "lo", IfaceKind::Loopback, format!("{VIP}/32")),
            iface(2, "inet0", IfaceKind::Uplink, format!("{CLB_INET_IP}/24")),
            iface(3, "eth0", IfaceKind::Uplink, format!("{CLB_VPC_IP}/24")),
        ],
    )];
    for node in Node::ALL {
        hosts.push((
            node.name(),
            vec![
                iface(2, "eth0", IfaceKind::Uplink, format!("{}/24", node.ip())),
                iface(
                    3,
                    "cbr0",
                    IfaceKind::Bridge,
                    format!("{}/24", node.cbr0_ip()),
                ),
                iface(
                    4,
                    SECOND_NIC,
                    IfaceKind::Uplink,
                    format!("{}/24", node.second_nic_ip()),
                ),
            ],
        ));
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_name_every_address() {
        assert_eq!(
            owner_of(Node::A.cbr0_ip().into()).unwrap(),
            "cbr0 of node-a"
        );
        assert_eq!(owner_of(Node::B.ip().into()).unwrap(), "node-b");
        assert_eq!(owner_of(Pod::Toolbox.ip().into()).unwrap(), "pod toolbox");
        assert_eq!(owner_of("8.8.8.8".parse().unwrap()), None);
        for clb in [VIP, CLB_VPC_IP, CLB_INET_IP] {
            assert_eq!(owner_of(clb.into()).unwrap(), "clb");
        }
        assert_eq!(owner_of(CLIENT_IP.into()).unwrap(), "the client");
        assert_eq!(owner_of(Node::A.ip().into()).unwrap(), "node-a");
        assert_eq!(
            owner_of(Node::B.second_nic_ip().into()).unwrap(),
            "eth1 of node-b"
        );
        assert_eq!(owner_of(Pod::AppA.ip().into()).unwrap(), "pod app-a");
        // A pod address no pod holds is not named.
        assert_eq!(owner_of("198.18.1.99".parse().unwrap()), None);
    }
}
