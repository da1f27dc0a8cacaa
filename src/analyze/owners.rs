//! Who owns an address: the interfaces the probes announced in `hello` (and later `iface`
//! events), so that a rewrite can say "cbr0 of node-a" instead of a bare address.

use realip_probe::wire::{IfaceKind, Interface};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

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
    nodes: HashSet<String>,
    /// Every announced interface's kind, addressed or not (a pod's veth often has no address).
    kinds: HashMap<(String, String), IfaceKind>,
    cache: HashMap<IpAddr, Option<String>>,
}

impl Owners {
    pub fn add_node(&mut self, node: &str, interfaces: &[Interface]) {
        self.nodes.insert(node.to_string());
        for iface in interfaces {
            self.add_interface(node, iface);
        }
    }

    pub fn add_interface(&mut self, node: &str, iface: &Interface) {
        self.cache.clear();
        self.kinds
            .insert((node.to_string(), iface.name.clone()), iface.kind);
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

    /// The kind `node`'s probe announced for `iface`; `None` when nothing was announced.
    pub fn kind(&self, node: &str, iface: &str) -> Option<IfaceKind> {
        self.kinds
            .get(&(node.to_string(), iface.to_string()))
            .copied()
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
        let o = self
            .owned
            .iter()
            .filter(|o| o.kind != IfaceKind::Loopback && contains(o.addr, o.prefix, addr))
            .max_by_key(|o| o.prefix)?;
        Some(match o.kind {
            IfaceKind::Bridge | IfaceKind::Veth | IfaceKind::Eni => {
                format!("a pod behind {} of {}", o.iface, o.node)
            }
            _ => format!("the {} network of {}", o.iface, o.node),
        })
    }
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
