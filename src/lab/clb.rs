//! The cloud load balancer of the lab: L4 listeners DNAT and keep the client's address (CLB/NLB
//! pass-through), L7 listeners are served by a proxy process that opens new connections.

use super::topology::{CLB_VPC_IP, VIP};
use std::fmt::Write as _;
use std::net::SocketAddrV4;

/// One listener on the VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// TCP pass-through to a backend (a node's NodePort, or a pod IP for direct access).
    L4 {
        port: u16,
        backend: SocketAddrV4,
        /// The backend in words, for the rule's comment.
        backend_name: String,
        /// Also rewrites the source to the load balancer's own VPC address (a full-NAT load
        /// balancer, an NLB without client IP preservation): the client is lost before any
        /// node sees the SYN.
        snat: bool,
    },
    /// HTTP: a proxy in the load balancer adds X-Forwarded-For and connects to the backend.
    L7 { port: u16, backend: SocketAddrV4 },
}

/// The load balancer's `iptables-restore` input: one DNAT per L4 listener, and an SNAT to its
/// own VPC address after it for a full-NAT listener.
pub fn rules(listeners: &[Listener]) -> String {
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for listener in listeners {
        if let Listener::L4 {
            port,
            backend,
            backend_name,
            snat,
        } = listener
        {
            let _ = writeln!(
                out,
                r#"-A PREROUTING -d {VIP}/32 -p tcp -m tcp --dport {port} -m comment --comment "listener TCP:{port} -> {backend_name}" -j DNAT --to-destination {backend}"#
            );
            if *snat {
                let _ = writeln!(
                    out,
                    r#"-A POSTROUTING -d {ip}/32 -p tcp -m tcp --dport {bport} -m comment --comment "listener TCP:{port} full NAT" -j SNAT --to-source {CLB_VPC_IP}"#,
                    ip = backend.ip(),
                    bport = backend.port(),
                );
            }
        }
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_l4_listeners_become_dnat_rules_and_full_nat_ones_snat_too() {
        let text = rules(&[
            Listener::L4 {
                port: 80,
                backend: "198.51.100.11:31080".parse().unwrap(),
                backend_name: "node-a:31080".into(),
                snat: false,
            },
            Listener::L4 {
                port: 81,
                backend: "198.51.100.12:31080".parse().unwrap(),
                backend_name: "node-b:31080".into(),
                snat: true,
            },
            Listener::L7 {
                port: 8443,
                backend: "198.51.100.11:31080".parse().unwrap(),
            },
        ]);
        insta::assert_snapshot!(text);
    }
}
