//! What a capture set lacks, per node: a node where connections were first seen but none of
//! whose uplinks or tunnels was captured (the way in was not seen), and a node where
//! connections were last seen but none of whose pod-side interfaces was captured (where they
//! went was not seen). Interface kinds come from the node's `hello`, else from interface names;
//! a node with an interface of unknown kind (a plain pcap names none), or captured whole
//! (`tcpdump -i any`), gets no such warning.

use super::model::{EndsAt, Flow};
use super::node_ifaces::NodeIfaces;
use realip_probe::wire::{Direction, IfaceKind};
use std::collections::BTreeMap;

/// Connections per node, and the interface where the first of them was seen there.
type Seen = BTreeMap<String, (usize, String)>;

#[derive(Debug, Default)]
pub struct Coverage {
    /// Connections first seen on a node, other than those a pod of that node opened.
    entries: Seen,
    /// Connections last seen on a node, other than those that ended at its own socket.
    ends: Seen,
}

fn count(seen: &mut Seen, node: &str, iface: &str) {
    match seen.get_mut(node) {
        Some((n, _)) => *n += 1,
        None => {
            seen.insert(node.to_string(), (1, iface.to_string()));
        }
    }
}

impl Coverage {
    pub fn flow(&mut self, flow: &Flow, ifaces: &NodeIfaces) {
        if let Some(first) = flow.hops.first() {
            let pod_side = matches!(
                ifaces.kind(&first.node, &first.iface),
                Some(IfaceKind::Veth | IfaceKind::Eni)
            );
            if !(pod_side && first.dir == Direction::In) {
                count(&mut self.entries, &first.node, &first.iface);
            }
        }
        if let Some(last) = flow.hops.last() {
            if flow.ends_at != EndsAt::Host {
                count(&mut self.ends, &last.node, &last.iface);
            }
        }
    }

    pub fn warnings(&self, ifaces: &NodeIfaces) -> Vec<String> {
        // The interfaces captured of `node`, when every one is of a known kind, none of `kinds`.
        let lacks = |node: &str, kinds: &[IfaceKind]| -> Option<Vec<String>> {
            let captured = ifaces.captured_of(node)?;
            let known: Option<Vec<IfaceKind>> =
                captured.iter().map(|i| ifaces.kind(node, i)).collect();
            let known = known.filter(|k| !k.is_empty())?;
            (!known.iter().any(|k| kinds.contains(k)))
                .then(|| captured.iter().map(|i| i.to_string()).collect())
        };
        let mut out = Vec::new();
        for (node, (n, iface)) in &self.entries {
            if lacks(node, &[IfaceKind::Uplink, IfaceKind::Tunnel]).is_some() {
                out.push(format!(
                    "{node}: no uplink captured; the entry was not seen ({n} connection(s) \
                     first seen on {iface})"
                ));
            }
        }
        for (node, (n, _)) in &self.ends {
            if let Some(captured) =
                lacks(node, &[IfaceKind::Veth, IfaceKind::Bridge, IfaceKind::Eni])
            {
                let verb = if captured.len() == 1 { "was" } else { "were" };
                out.push(format!(
                    "{node}: only {} {verb} captured; the pod side (veth/bridge) was not, where \
                     {n} connection(s) were seen last",
                    captured.join(", ")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::model::Hop;
    use realip_probe::wire::{Interface, LinkType};

    fn hop(node: &str, iface: &str, dir: Direction) -> Hop {
        Hop {
            node: node.into(),
            iface: iface.into(),
            dir,
            src: "198.51.100.7".parse().unwrap(),
            sport: 1,
            dst: "192.0.2.10".parse().unwrap(),
            dport: 80,
            ts_ns: 0,
            dir_inferred: false,
            ttl: 64,
        }
    }

    fn flow(hops: Vec<Hop>, ends_at: EndsAt) -> Flow {
        Flow {
            ends_at,
            ..Flow::of_hops(1, hops)
        }
    }

    #[test]
    fn a_node_captured_only_on_its_uplink_where_connections_end() {
        let mut ifaces = NodeIfaces::default();
        ifaces.captured("node-a", "eth0");
        let mut c = Coverage::default();
        c.flow(
            &flow(vec![hop("node-a", "eth0", Direction::In)], EndsAt::Unknown),
            &ifaces,
        );
        assert_eq!(
            c.warnings(&ifaces),
            [
                "node-a: only eth0 was captured; the pod side (veth/bridge) was not, where 1 \
              connection(s) were seen last"
            ]
        );
        // The same node captured whole (`-i any`) lacks nothing.
        ifaces.captured_all("node-a");
        assert!(c.warnings(&ifaces).is_empty());
    }

    #[test]
    fn a_node_captured_only_on_its_pod_side_where_connections_start() {
        let mut ifaces = NodeIfaces::default();
        ifaces.captured("node-b", "cbr0");
        ifaces.captured("node-b", "veth1");
        let mut c = Coverage::default();
        let path = vec![
            hop("node-b", "cbr0", Direction::Out),
            hop("node-b", "veth1", Direction::Out),
        ];
        c.flow(&flow(path, EndsAt::Pod), &ifaces);
        // A pod of the node opening a connection: its entry is its veth, seen.
        c.flow(
            &flow(vec![hop("node-b", "veth1", Direction::In)], EndsAt::Unknown),
            &ifaces,
        );
        assert_eq!(
            c.warnings(&ifaces),
            ["node-b: no uplink captured; the entry was not seen (1 connection(s) first seen on \
              cbr0)"]
        );
    }

    #[test]
    fn what_cannot_be_told_or_is_whole_is_not_warned_about() {
        let mut ifaces = NodeIfaces::default();
        // A plain pcap names the interface after the node: unknown kind.
        ifaces.captured("node-a", "node-a");
        // A probe that captured a node without pods, where connections end at its socket.
        ifaces.announce(
            "clb",
            &[Interface {
                index: 2,
                name: "eth0".into(),
                kind: IfaceKind::Uplink,
                link_type: LinkType::Ethernet,
                addresses: vec![],
                mtu: 1500,
                mac: None,
            }],
        );
        let mut c = Coverage::default();
        c.flow(
            &flow(
                vec![hop("node-a", "node-a", Direction::In)],
                EndsAt::Unknown,
            ),
            &ifaces,
        );
        c.flow(
            &flow(vec![hop("clb", "eth0", Direction::In)], EndsAt::Host),
            &ifaces,
        );
        // Sightings of a node nothing was recorded for (events pushed by a library user).
        c.flow(
            &flow(vec![hop("node-c", "eth0", Direction::In)], EndsAt::Unknown),
            &ifaces,
        );
        assert!(c.warnings(&ifaces).is_empty(), "{:?}", c.warnings(&ifaces));
    }
}
