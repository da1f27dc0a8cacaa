//! The cloud load balancer of the lab: L4 listeners DNAT and keep the client's address (CLB/NLB
//! pass-through), L7 listeners are served by a proxy process that opens new connections.

use super::topology::VIP;
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
    },
    /// HTTP: a proxy in the load balancer adds X-Forwarded-For and connects to the backend.
    L7 { port: u16, backend: SocketAddrV4 },
}

/// The load balancer's `iptables-restore` input: one DNAT per L4 listener.
pub fn rules(listeners: &[Listener]) -> String {
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for listener in listeners {
        if let Listener::L4 {
            port,
            backend,
            backend_name,
        } = listener
        {
            let _ = writeln!(
                out,
                r#"-A PREROUTING -d {VIP}/32 -p tcp -m tcp --dport {port} -m comment --comment "listener TCP:{port} -> {backend_name}" -j DNAT --to-destination {backend}"#
            );
        }
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_l4_listeners_become_dnat_rules() {
        let text = rules(&[
            Listener::L4 {
                port: 80,
                backend: "198.51.100.11:31080".parse().unwrap(),
                backend_name: "node-a:31080".into(),
            },
            Listener::L7 {
                port: 8443,
                backend: "198.51.100.11:31080".parse().unwrap(),
            },
        ]);
        insta::assert_snapshot!(text);
    }
}
