//! What is known of each node's interfaces: what its probe announced (`hello`, `iface`: index,
//! name, kind, hardware address) and which of them the inputs captured. Capture files are read
//! through it (a cooked header's interface index becomes the announced name; an announced
//! hardware address tells a frame's direction), and the summary says what a capture set lacks.

use realip_probe::ifname::kind_by_name;
use realip_probe::parse::Macs;
use realip_probe::wire::{Direction, IfaceKind, Interface};
use std::collections::{BTreeMap, BTreeSet};

/// An Ethernet address.
pub type Mac = [u8; 6];

/// What names an interface carried in a capture file's tunnel: `eth0+vxlan`.
pub const TUNNEL_SEPARATOR: char = '+';

#[derive(Debug, Clone)]
struct Announced {
    index: u32,
    name: String,
    kind: IfaceKind,
    mac: Option<Mac>,
}

#[derive(Debug, Default)]
struct Node {
    announced: Vec<Announced>,
    /// Interfaces some input captured: a probe captures what it announces; a capture file
    /// holds the interfaces its frames (or its pcapng interface blocks) name.
    captured: BTreeSet<String>,
    /// A capture of every interface at once (`tcpdump -i any`, Linux cooked frames).
    all: bool,
}

#[derive(Debug, Default)]
pub struct NodeIfaces {
    nodes: BTreeMap<String, Node>,
    /// Counts announcements and new capture points, so that what is derived from them can be
    /// cached.
    generation: u64,
}

/// `02:00:00:00:0a:01` → bytes; anything else → `None`.
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl NodeIfaces {
    fn node(&mut self, node: &str) -> &mut Node {
        self.nodes.entry(node.to_string()).or_default()
    }

    /// A probe's `hello`: the interfaces it captures.
    pub fn announce(&mut self, node: &str, interfaces: &[Interface]) {
        for iface in interfaces {
            self.announce_one(node, iface);
        }
    }

    /// One interface a probe announced (in `hello`, or joining later); a later announcement of
    /// the same index (a reused one) replaces the earlier.
    pub fn announce_one(&mut self, node: &str, iface: &Interface) {
        self.generation += 1;
        let n = self.node(node);
        n.announced
            .retain(|a| a.index != iface.index && a.name != iface.name);
        n.announced.push(Announced {
            index: iface.index,
            name: iface.name.clone(),
            kind: iface.kind,
            mac: iface.mac.as_deref().and_then(parse_mac),
        });
        n.captured.insert(iface.name.clone());
    }

    /// An input of `node` holds frames of `iface`.
    pub fn captured(&mut self, node: &str, iface: &str) {
        let known = self
            .nodes
            .get(node)
            .is_some_and(|n| n.captured.contains(iface));
        if !known {
            self.generation += 1;
            self.node(node).captured.insert(iface.to_string());
        }
    }

    /// A capture file of `node` holds every interface (`-i any`).
    pub fn captured_all(&mut self, node: &str) {
        self.generation += 1;
        self.node(node).all = true;
    }

    /// Changes whenever an interface is announced or found captured.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The announced name of interface `index` of `node`.
    pub fn name_of_index(&self, node: &str, index: u32) -> Option<&str> {
        let n = self.nodes.get(node)?;
        n.announced
            .iter()
            .find(|a| a.index == index)
            .map(|a| a.name.as_str())
    }

    /// The direction of an Ethernet frame by the hardware addresses `node`'s probe announced:
    /// sent from one of them `out`, sent to one of them `in`.
    pub fn direction(&self, node: &str, macs: &Macs) -> Option<Direction> {
        let n = self.nodes.get(node)?;
        let own = |mac: &Mac| n.announced.iter().any(|a| a.mac.as_ref() == Some(mac));
        match (own(&macs.src), own(&macs.dst)) {
            (true, false) => Some(Direction::Out),
            (false, true) => Some(Direction::In),
            _ => None,
        }
    }

    /// An interface's kind: announced, else suggested by its name (a tunnel's inner traffic,
    /// `eth0+vxlan`, is a tunnel's); `None` when nothing says.
    pub fn kind(&self, node: &str, iface: &str) -> Option<IfaceKind> {
        let announced = self
            .nodes
            .get(node)
            .and_then(|n| n.announced.iter().find(|a| a.name == iface));
        if let Some(a) = announced {
            return Some(a.kind);
        }
        if iface.contains(TUNNEL_SEPARATOR) {
            return Some(IfaceKind::Tunnel);
        }
        kind_by_name(iface)
    }

    /// What the inputs captured of `node`: every interface (`None`), or these.
    pub fn captured_of(&self, node: &str) -> Option<Vec<&str>> {
        match self.nodes.get(node) {
            Some(n) if n.all => None,
            Some(n) => Some(n.captured.iter().map(String::as_str).collect()),
            None => Some(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_probe::wire::LinkType;

    fn iface(index: u32, name: &str, kind: IfaceKind, mac: Option<&str>) -> Interface {
        Interface {
            index,
            name: name.into(),
            kind,
            link_type: LinkType::Ethernet,
            addresses: vec![],
            mtu: 1500,
            mac: mac.map(Into::into),
        }
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:00:00:0a:01"), Some([2, 0, 0, 0, 0x0a, 1]));
        assert_eq!(parse_mac("02-00-00-00-0A-01"), Some([2, 0, 0, 0, 0x0a, 1]));
        for bad in [
            "",
            "02:00:00:00:0a",
            "02:00:00:00:0a:01:02",
            "2:0:0:0:a:1",
            "zz:00:00:00:00:00",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn announced_names_kinds_and_addresses() {
        let mut ifaces = NodeIfaces::default();
        ifaces.announce(
            "node-b",
            &[
                iface(2, "ens5", IfaceKind::Uplink, Some("02:00:00:00:0b:05")),
                iface(3, "cbr0", IfaceKind::Bridge, Some("02:00:00:00:0b:01")),
            ],
        );
        assert_eq!(ifaces.name_of_index("node-b", 3), Some("cbr0"));
        assert_eq!(ifaces.name_of_index("node-b", 9), None);
        assert_eq!(ifaces.name_of_index("node-a", 3), None);
        // A new pod's veth reuses index 3 after a rename: the latest wins.
        ifaces.announce_one("node-b", &iface(3, "veth9", IfaceKind::Veth, None));
        assert_eq!(ifaces.name_of_index("node-b", 3), Some("veth9"));
        let out = Macs {
            src: [2, 0, 0, 0, 0x0b, 5],
            dst: [2, 0, 0, 0, 0, 7],
        };
        let back = Macs {
            src: out.dst,
            dst: out.src,
        };
        assert_eq!(ifaces.direction("node-b", &out), Some(Direction::Out));
        assert_eq!(ifaces.direction("node-b", &back), Some(Direction::In));
        assert_eq!(ifaces.direction("node-a", &out), None);
        assert_eq!(ifaces.kind("node-b", "ens5"), Some(IfaceKind::Uplink));
        assert_eq!(ifaces.kind("node-b", "eth1"), Some(IfaceKind::Uplink));
        assert_eq!(ifaces.kind("node-b", "node-b"), None);
        assert_eq!(ifaces.kind("node-b", "ext0+vxlan"), Some(IfaceKind::Tunnel));
        ifaces.captured("node-c", "eth0");
        assert_eq!(ifaces.captured_of("node-c"), Some(vec!["eth0"]));
        ifaces.captured_all("node-c");
        assert_eq!(ifaces.captured_of("node-c"), None);
    }
}
