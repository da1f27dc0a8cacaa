//! How a scenario's nodes are programmed besides the Services: kube-proxy's mode (iptables or
//! nftables), a CNI's own masquerade (Calico's natOutgoing) ahead of kube-proxy's, and a node
//! that reaches the other node's pods through its second NIC. Each is a rule or route the lab
//! installs, so that the rule named behind each rewrite can be checked against it.

use super::topology::Node;
use std::fmt::Write as _;

/// kube-proxy's proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// `iptables` rules in the `nat` and `filter` tables (`KUBE-*` chains).
    #[default]
    Iptables,
    /// The nftables mode: one `ip kube-proxy` table, no iptables rules.
    Nftables,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dataplane {
    pub proxy: ProxyMode,
    /// This node runs Calico's natOutgoing masquerade, in POSTROUTING ahead of kube-proxy's: pod
    /// traffic to addresses outside every IP pool is masqueraded to the node. Its pool holds
    /// only its own pods' block.
    pub cni_masquerade: Option<Node>,
    /// This node routes the other node's pods through its second NIC (eth1): MASQUERADE takes
    /// eth1's address there, not the node's InternalIP.
    pub second_nic: Option<Node>,
}

impl Dataplane {
    /// kube-proxy in iptables mode and nothing else: the lab's default.
    pub const KUBE_PROXY: Dataplane = Dataplane {
        proxy: ProxyMode::Iptables,
        cni_masquerade: None,
        second_nic: None,
    };
}

/// The chain Calico's natOutgoing masquerade sits in.
pub const CALICO_NAT_OUTGOING: &str = "cali-nat-outgoing";
/// Calico's ipsets: the IP pools with natOutgoing, and every IP pool.
pub const CALICO_MASQ_POOLS: &str = "cali40masq-ipam-pools";
pub const CALICO_ALL_POOLS: &str = "cali40all-ipam-pools";

/// `ipset` commands (arguments after `ipset`) that create Calico's pool sets on `node`: its pool
/// holds only its own pods' block.
pub fn calico_ipsets(node: Node) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for set in [CALICO_MASQ_POOLS, CALICO_ALL_POOLS] {
        out.push(
            ["create", set, "hash:net", "family", "inet", "-exist"]
                .map(String::from)
                .to_vec(),
        );
        out.push(
            ["add", set, &node.pod_cidr(), "-exist"]
                .map(String::from)
                .to_vec(),
        );
    }
    out
}

/// Calico's natOutgoing rules, for `iptables-restore --noflush`: its POSTROUTING jump inserted
/// first (Calico's default insert mode), the masquerade in `cali-nat-outgoing`, with Calico's
/// rule comments.
pub fn calico_rules() -> String {
    let mut out = String::from("*nat\n:cali-POSTROUTING - [0:0]\n");
    let _ = writeln!(out, ":{CALICO_NAT_OUTGOING} - [0:0]");
    out.push_str(
        "-I POSTROUTING 1 -m comment --comment \"cali:O3lYWMrLQYEMJtB5\" -j cali-POSTROUTING\n",
    );
    let _ = writeln!(
        out,
        "-A cali-POSTROUTING -m comment --comment \"cali:Z-c7XtVd2Bq7s_hA\" -j {CALICO_NAT_OUTGOING}"
    );
    let _ = writeln!(
        out,
        "-A {CALICO_NAT_OUTGOING} -m comment --comment \"cali:flqWnvo8yq4ULQLa\" -m set \
         --match-set {CALICO_MASQ_POOLS} src -m set ! --match-set {CALICO_ALL_POOLS} dst \
         -j MASQUERADE --random-fully"
    );
    out.push_str("COMMIT\n");
    out
}

/// Empty `nat` and `filter` tables, for `iptables-restore`: what kube-proxy's nftables mode
/// leaves of iptables.
pub fn empty_iptables() -> String {
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
     *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
     :POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_masquerades_pool_traffic_leaving_every_pool_ahead_of_kube_proxy() {
        let rules = calico_rules();
        assert!(rules.contains("-I POSTROUTING 1 "), "{rules}");
        assert!(rules.contains(
            "--match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE"
        ));
        let sets = calico_ipsets(Node::B);
        assert!(sets
            .iter()
            .any(|c| c.join(" ") == "add cali40all-ipam-pools 198.18.2.0/24 -exist"));
    }
}
