//! What the caller knows of the cluster beside the capture: nodes, pods, the load balancer and
//! Service addresses, the addresses a test sender used. `trace` reads it from the API server, the
//! lab from its own topology; `analyze` of bare files has none. Plain data: the analysis decides
//! nothing from names, only from these addresses.

use std::net::IpAddr;

/// The cluster around a capture. Every list may be empty: the verdicts then rest on the probes'
/// `hello` and on the address ranges alone, and say so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
    pub pods: Vec<PodView>,
    /// The Service's load balancer addresses (`status.loadBalancer.ingress`).
    pub lb_addresses: Vec<IpAddr>,
    /// NodePorts a load balancer sends to (a `LoadBalancer` Service's): a SYN arriving at a node
    /// on one of them came through the load balancer.
    pub lb_node_ports: Vec<u16>,
    /// Service cluster IPs.
    pub cluster_ips: Vec<IpAddr>,
    /// Addresses test connections were opened from (`trace --send`): a source that is one of
    /// them is the client by construction.
    pub senders: Vec<IpAddr>,
    /// Why the cluster's dataplane delivers to pods where packet capture cannot see, when the
    /// cluster says so (e.g. Cilium's eBPF host routing); `None` when nothing says.
    pub unseen_delivery: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// InternalIP, ExternalIP and any other address the Node reports.
    pub addresses: Vec<IpAddr>,
    /// `spec.podCIDRs`, as (network, prefix length).
    pub pod_cidrs: Vec<(IpAddr, u8)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// `namespace/name`.
    pub name: String,
    pub ip: IpAddr,
    pub node: Option<String>,
    /// Not its own network namespace: the pod's address is its node's.
    pub host_network: bool,
}

/// `10.0.0.4/24` → (10.0.0.4, 24); a bare address is a host route.
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (
            a.trim().parse::<IpAddr>().ok()?,
            p.trim().parse::<u8>().ok()?,
        ),
        None => {
            let a = text.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

/// Whether `addr` lies in `net/prefix`. Host routes (/32, /128) contain only themselves.
pub fn contains(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            prefix > 0 && u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            prefix > 0 && u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}
