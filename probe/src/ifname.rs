//! What an interface's name alone says about its kind. The probe classifies the interfaces it
//! sees from the kernel's facts first (link kind, default route, addresses) and falls back on
//! these names; a capture file gives nothing but the name, so analysis uses them as they are.

use crate::wire::IfaceKind;

/// Name prefixes of overlays and tunnels.
pub const TUNNEL_NAMES: [&str; 7] = [
    "flannel", "tunl", "cilium_", "vxlan", "wg", "geneve", "weave",
];
/// Name prefixes of the node side of pod links (veth, netkit, tap).
pub const POD_NAMES: [&str; 7] = ["veth", "cali", "lxc", "azv", "gke", "vnet", "tap"];
/// Name prefixes of the AWS VPC CNI's pod links.
pub const ENI_NAMES: [&str; 1] = ["eni"];
/// Name prefixes of Linux bridges that CNIs and container runtimes create.
pub const BRIDGE_NAMES: [&str; 6] = ["cbr", "cni", "docker", "br-", "virbr", "kube-bridge"];
/// Name prefixes of physical and cloud NICs (classic and predictable names) and bonds.
pub const UPLINK_NAMES: [&str; 8] = ["eth", "ens", "enp", "eno", "enx", "bond", "wlan", "wlp"];

/// The kind a name suggests; `None` when it suggests nothing (e.g. `ext0`, `any`).
pub fn kind_by_name(name: &str) -> Option<IfaceKind> {
    let named = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    if name == "lo" {
        Some(IfaceKind::Loopback)
    } else if named(&TUNNEL_NAMES) {
        Some(IfaceKind::Tunnel)
    } else if named(&ENI_NAMES) {
        Some(IfaceKind::Eni)
    } else if named(&POD_NAMES) {
        Some(IfaceKind::Veth)
    } else if named(&BRIDGE_NAMES) {
        Some(IfaceKind::Bridge)
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
    fn names_people_meet() {
        use IfaceKind::*;
        let cases = [
            ("lo", Some(Loopback)),
            ("eth0", Some(Uplink)),
            ("ens5", Some(Uplink)),
            ("enp0s3", Some(Uplink)),
            ("bond0", Some(Uplink)),
            ("eni3f2a9c", Some(Eni)),
            ("cbr0", Some(Bridge)),
            ("cni0", Some(Bridge)),
            ("docker0", Some(Bridge)),
            ("br-5e1f", Some(Bridge)),
            ("veth1a2b", Some(Veth)),
            ("cali12345", Some(Veth)),
            ("lxc_health", Some(Veth)),
            ("flannel.1", Some(Tunnel)),
            ("vxlan.calico", Some(Tunnel)),
            ("tunl0", Some(Tunnel)),
            ("cilium_vxlan", Some(Tunnel)),
            ("wg0", Some(Tunnel)),
            ("ext0", None),
            ("any", None),
            ("", None),
        ];
        for (name, kind) in cases {
            assert_eq!(kind_by_name(name), kind, "{name}");
        }
    }
}
