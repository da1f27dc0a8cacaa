//! Who owns an address: the one resolver of the analysis. It joins what the probes announced in
//! `hello` (and later `iface` events) with what the caller knows of the cluster
//! ([`ClusterView`]), so that a rewrite can say "cbr0 of node-a" instead of a bare address, and a
//! verdict can tell a node's, a pod's or the load balancer's address from a client's.

use super::node_ifaces::NodeIfaces;
use super::view::{contains, parse_cidr, ClusterView};
use realip_probe::wire::{IfaceKind, Interface};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// What an address is, as far as the probes and the cluster view tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// One of a node's own addresses: an interface's (`iface` known) or the Node object's.
    Node { node: String, iface: Option<String> },
    /// A pod's: named by the view, or inside a node's pod network (a bridge's, a veth's or ENI's
    /// subnet, or the Node's pod CIDR).
    Pod {
        name: Option<String>,
        node: Option<String>,
    },
    /// The Service's load balancer.
    LoadBalancer,
    /// A Service's cluster IP.
    ClusterIp,
    /// An address test connections were opened from.
    Sender,
}

#[derive(Debug, Clone)]
struct Owned {
    node: String,
    iface: String,
    kind: IfaceKind,
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Default)]
pub struct Owners {
    owned: Vec<Owned>,
    view: ClusterView,
    nodes: HashSet<String>,
    /// Each node's interfaces, announced (addressed or not: a pod's veth often has none) and
    /// captured.
    ifaces: NodeIfaces,
    /// [`Owners::pod_side_seen`] per node, as of the interfaces' generation it was found at.
    pod_side: HashMap<String, (u64, bool)>,
    cache: HashMap<IpAddr, Option<String>>,
}

impl Owners {
    /// What the caller knows of the cluster; replaces what was given before.
    pub fn set_view(&mut self, view: ClusterView) {
        self.cache.clear();
        self.pod_side.clear();
        self.view = view;
    }

    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    pub fn ifaces(&self) -> &NodeIfaces {
        &self.ifaces
    }

    /// Readers of capture files name interfaces and mark what they captured through it.
    pub fn ifaces_mut(&mut self) -> &mut NodeIfaces {
        &mut self.ifaces
    }

    pub fn add_node(&mut self, node: &str, interfaces: &[Interface]) {
        self.nodes.insert(node.to_string());
        for iface in interfaces {
            self.add_interface(node, iface);
        }
    }

    pub fn add_interface(&mut self, node: &str, iface: &Interface) {
        self.cache.clear();
        self.ifaces.announce_one(node, iface);
        for text in &iface.addresses {
            if let Some((addr, prefix)) = parse_cidr(text) {
                let owned = Owned {
                    node: node.to_string(),
                    iface: iface.name.clone(),
                    kind: iface.kind,
                    addr,
                    prefix,
                };
                if !self
                    .owned
                    .iter()
                    .any(|o| o.node == owned.node && o.iface == owned.iface && o.addr == addr)
                {
                    self.owned.push(owned);
                }
            }
        }
    }

    /// Whether a probe on `node` said hello (so silence about an address means something).
    pub fn knows_node(&self, node: &str) -> bool {
        self.nodes.contains(node)
    }

    /// The kind `node`'s probe announced for `iface`; without a `hello` naming it, what the
    /// name says (`eth0`, `cbr0`, `veth…`); `None` when neither tells.
    pub fn kind(&self, node: &str, iface: &str) -> Option<IfaceKind> {
        self.ifaces.kind(node, iface)
    }

    /// Whether the way from `node` to its pods could be seen: one of its captured interfaces
    /// (announced, or holding sightings) faces pods, and its datapath does not bypass them.
    /// A capture of every interface (`-i any`) counts as seeing it.
    pub fn pod_side_seen(&mut self, node: &str) -> bool {
        let generation = self.ifaces.generation();
        if let Some(&(at, seen)) = self.pod_side.get(node) {
            if at == generation {
                return seen;
            }
        }
        let seen = self.find_pod_side(node);
        self.pod_side.insert(node.to_string(), (generation, seen));
        seen
    }

    fn find_pod_side(&self, node: &str) -> bool {
        self.unseen_delivery(node).is_none() && self.has_pod_facing_point(node)
    }

    /// Whether `node` is one of the cluster's: the view lists it, or (without a view of the
    /// nodes) it has interfaces facing pods. A load balancer's host, probed too, has none.
    pub fn is_cluster_node(&self, node: &str) -> bool {
        if self.view.nodes.is_empty() {
            self.has_pod_facing_point(node)
        } else {
            self.view.nodes.iter().any(|n| n.name == node)
        }
    }

    fn has_pod_facing_point(&self, node: &str) -> bool {
        match self.ifaces.captured_of(node) {
            None => true,
            Some(captured) => captured.iter().any(|iface| {
                matches!(
                    self.kind(node, iface),
                    Some(IfaceKind::Veth | IfaceKind::Bridge | IfaceKind::Eni)
                )
            }),
        }
    }

    /// Whether `addr` is one of the addresses of `iface` on `node`.
    pub fn is_address_of(&self, node: &str, iface: &str, addr: IpAddr) -> bool {
        self.owned
            .iter()
            .any(|o| o.addr == addr && o.node == node && o.iface == iface)
    }

    /// Whether `addr` is an address of any interface of `node` (a local socket can accept it).
    pub fn is_node_address(&self, node: &str, addr: IpAddr) -> bool {
        self.owned.iter().any(|o| o.addr == addr && o.node == node)
    }

    /// "cbr0 of node-a" for an interface's own address; "a pod behind cbr0 of node-b" or
    /// "the ens5 network of node-a" for an address inside an interface's subnet.
    pub fn owner(&mut self, addr: IpAddr) -> Option<String> {
        if let Some(hit) = self.cache.get(&addr) {
            return hit.clone();
        }
        let found = self.lookup(addr);
        self.cache.insert(addr, found.clone());
        found
    }

    fn lookup(&self, addr: IpAddr) -> Option<String> {
        if let Some(o) = self.owned.iter().find(|o| o.addr == addr) {
            return Some(format!("{} of {}", o.iface, o.node));
        }
        let by_role = self.role(addr).map(|role| match role {
            Role::Node { node, .. } => format!("node {node}"),
            Role::Pod {
                name: Some(name), ..
            } => format!("pod {name}"),
            Role::LoadBalancer => "the load balancer".to_string(),
            Role::ClusterIp => "a Service's cluster IP".to_string(),
            Role::Sender => "the test client".to_string(),
            Role::Pod { name: None, node } => match (self.subnet_of(addr), node) {
                (Some(o), _) => format!("a pod behind {} of {}", o.iface, o.node),
                (None, Some(node)) => format!("a pod on {node}"),
                (None, None) => "a pod".to_string(),
            },
        });
        by_role.or_else(|| {
            let o = self.subnet_of(addr)?;
            Some(format!("the {} network of {}", o.iface, o.node))
        })
    }

    /// The narrowest announced subnet holding `addr` (loopbacks aside).
    fn subnet_of(&self, addr: IpAddr) -> Option<&Owned> {
        self.owned
            .iter()
            .filter(|o| o.kind != IfaceKind::Loopback && contains(o.addr, o.prefix, addr))
            .max_by_key(|o| o.prefix)
    }

    /// What `addr` is: a node's, a pod's, the load balancer's, a cluster IP, a test sender's;
    /// `None` when neither the probes nor the view say.
    pub fn role(&self, addr: IpAddr) -> Option<Role> {
        let view = &self.view;
        if view.senders.contains(&addr) {
            return Some(Role::Sender);
        }
        // Before the interfaces: a probed load balancer announces its VIP as its own. But an
        // address the API names a node's is the node's (k3s ServiceLB gives a Service the
        // node's own address; the node then makes every rewrite).
        let api_node = view.nodes.iter().find(|n| n.addresses.contains(&addr));
        if view.lb_addresses.contains(&addr) && api_node.is_none() {
            return Some(Role::LoadBalancer);
        }
        if let Some(o) = self.owned.iter().find(|o| o.addr == addr) {
            return Some(Role::Node {
                node: o.node.clone(),
                iface: Some(o.iface.clone()),
            });
        }
        if let Some(pod) = view.pods.iter().find(|p| p.ip == addr && !p.host_network) {
            return Some(Role::Pod {
                name: Some(pod.name.clone()),
                node: pod.node.clone(),
            });
        }
        if let Some(node) = api_node {
            return Some(Role::Node {
                node: node.name.clone(),
                iface: None,
            });
        }
        if view.cluster_ips.contains(&addr) {
            return Some(Role::ClusterIp);
        }
        if let Some(o) = self.subnet_of(addr) {
            if matches!(o.kind, IfaceKind::Bridge | IfaceKind::Veth | IfaceKind::Eni) {
                return Some(Role::Pod {
                    name: None,
                    node: Some(o.node.clone()),
                });
            }
        }
        view.nodes
            .iter()
            .find(|n| n.pod_cidrs.iter().any(|(net, p)| contains(*net, *p, addr)))
            .map(|n| Role::Pod {
                name: None,
                node: Some(n.name.clone()),
            })
    }

    /// The uplink of cluster node `node` whose network holds `addr` (not one of the node's own
    /// addresses): a neighbour on the node's own network, e.g. a load balancer's or a router's
    /// interface.
    pub fn on_uplink_network(&self, node: &str, addr: IpAddr) -> Option<String> {
        if !self.is_cluster_node(node) {
            return None;
        }
        self.owned
            .iter()
            .filter(|o| o.node == node && o.kind == IfaceKind::Uplink && o.addr != addr)
            .find(|o| contains(o.addr, o.prefix, addr))
            .map(|o| {
                let net = network(o.addr, o.prefix);
                format!("{node}'s {} network ({net}/{})", o.iface, o.prefix)
            })
    }

    /// Why `node` delivers to pods where packet capture cannot see, when its interfaces or the
    /// cluster view tell: Cilium's eBPF datapath (cilium_host, lxc*) or netkit devices.
    pub fn unseen_delivery(&self, node: &str) -> Option<String> {
        let names = self.ifaces.captured_of(node).unwrap_or_default();
        ebpf_datapath(names).or_else(|| self.view.unseen_delivery.clone())
    }
}

/// The eBPF datapath a node's interface names betray, if any. Cilium's host routing and netkit
/// hand packets to the pod's namespace directly, past every capture point on the node.
pub fn ebpf_datapath<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let (mut cilium, mut netkit) = (false, false);
    for name in names {
        cilium |= matches!(name, "cilium_host" | "cilium_net") || name.starts_with("lxc");
        netkit |= name.starts_with("netkit");
    }
    if cilium {
        Some("its eBPF datapath (Cilium) delivers to pods unseen by packet capture".into())
    } else if netkit {
        Some("its netkit devices deliver to pods unseen by packet capture".into())
    } else {
        None
    }
}

/// The network address of `addr/prefix`.
fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_probe::wire::LinkType;

    fn iface(name: &str, kind: IfaceKind, addr: &str) -> Interface {
        Interface {
            index: 1,
            name: name.into(),
            kind,
            link_type: LinkType::Ethernet,
            addresses: vec![addr.into()],
            mtu: 1500,
            mac: None,
        }
    }

    #[test]
    fn exact_then_subnet_then_nothing() {
        let mut owners = Owners::default();
        owners.add_node(
            "node-a",
            &[
                iface("ens5", IfaceKind::Uplink, "192.0.2.10/24"),
                iface("cbr0", IfaceKind::Bridge, "10.244.0.1/24"),
            ],
        );
        assert_eq!(
            owners.owner("10.244.0.1".parse().unwrap()).as_deref(),
            Some("cbr0 of node-a")
        );
        assert_eq!(
            owners.owner("10.244.0.9".parse().unwrap()).as_deref(),
            Some("a pod behind cbr0 of node-a")
        );
        assert_eq!(
            owners.owner("192.0.2.11".parse().unwrap()).as_deref(),
            Some("the ens5 network of node-a")
        );
        assert_eq!(owners.owner("203.0.113.1".parse().unwrap()), None);
        assert!(owners.knows_node("node-a"));
    }

    #[test]
    fn a_load_balancer_address_that_is_a_nodes_is_the_nodes() {
        use crate::analyze::view::{ClusterView, NodeView};
        let node_ip: IpAddr = "192.168.1.10".parse().unwrap();
        let vip: IpAddr = "203.0.113.100".parse().unwrap();
        let mut owners = Owners::default();
        owners.set_view(ClusterView {
            nodes: vec![NodeView {
                name: "k3s-1".into(),
                addresses: vec![node_ip],
                pod_cidrs: Vec::new(),
            }],
            lb_addresses: vec![node_ip, vip],
            ..ClusterView::default()
        });
        assert_eq!(
            owners.role(node_ip),
            Some(Role::Node {
                node: "k3s-1".into(),
                iface: None
            })
        );
        assert_eq!(owners.role(vip), Some(Role::LoadBalancer));
    }

    #[test]
    fn cidr_edge_cases() {
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
        assert_eq!(parse_cidr("nonsense"), None);
        assert!(contains(
            "2001:db8::1".parse().unwrap(),
            64,
            "2001:db8::9".parse().unwrap()
        ));
        assert!(!contains(
            "10.0.0.1".parse().unwrap(),
            0,
            "10.0.0.1".parse().unwrap()
        ));
    }
}
