//! What an interface's name says of its kind, for captures that carry no `hello` (a pcap from
//! tcpdump or dumpcap): the probe itself classifies by the kernel's link kind first and uses the
//! same name lists only where the kernel says nothing.

use crate::wire::IfaceKind;

/// Name prefixes of tunnels, for devices whose kind is not reported.
pub const TUNNEL_NAMES: [&str; 7] = [
    "flannel", "tunl", "cilium_", "vxlan", "wg", "geneve", "weave",
];
/// Name prefixes of the node side of pod links, for devices whose kind is not reported (or
/// that are not veth: netkit, tap).
pub const POD_NAMES: [&str; 7] = ["veth", "cali", "lxc", "azv", "gke", "vnet", "tap"];
/// Linux bridges CNIs create.
pub const BRIDGE_NAMES: [&str; 5] = ["cbr0", "cni0", "docker0", "br-", "kube-bridge"];
/// Names Linux and cloud images give the NICs.
pub const UPLINK_NAMES: [&str; 5] = ["eth", "ens", "enp", "eno", "bond"];

/// The kind a bare interface name suggests; `None` when it says nothing (e.g. "if7", "any").
pub fn kind_from_name(name: &str) -> Option<IfaceKind> {
    let named = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    if name == "lo" {
        Some(IfaceKind::Loopback)
    } else if named(&BRIDGE_NAMES) {
        Some(IfaceKind::Bridge)
    } else if named(&TUNNEL_NAMES) {
        Some(IfaceKind::Tunnel)
    } else if name.starts_with("eni") {
        Some(IfaceKind::Eni)
    } else if named(&POD_NAMES) {
        Some(IfaceKind::Veth)
    } else if named(&UPLINK_NAMES) {
        Some(IfaceKind::Uplink)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_what_they_can() {
        assert_eq!(kind_from_name("eth0"), Some(IfaceKind::Uplink));
        assert_eq!(kind_from_name("ens5"), Some(IfaceKind::Uplink));
        assert_eq!(kind_from_name("cbr0"), Some(IfaceKind::Bridge));
        assert_eq!(kind_from_name("cali1234abcd"), Some(IfaceKind::Veth));
        assert_eq!(kind_from_name("veth-app-a"), Some(IfaceKind::Veth));
        assert_eq!(kind_from_name("eni3a1f"), Some(IfaceKind::Eni));
        assert_eq!(kind_from_name("flannel.1"), Some(IfaceKind::Tunnel));
        assert_eq!(kind_from_name("lo"), Some(IfaceKind::Loopback));
        assert_eq!(kind_from_name("if7"), None);
        assert_eq!(kind_from_name("any"), None);
    }
}
