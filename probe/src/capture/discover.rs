//! Which interfaces a node has and what each one is: uplink, bridge, pod-side veth, ENI, tunnel,
//! loopback. Classification is pure ([`classify`]); [`scan`] gathers its inputs from netlink and
//! `/proc/net/{route,ipv6_route}`.

use super::kernel;
use super::netlink::{self, Addr, Link};
use crate::ifname::{ENI_NAMES, POD_NAMES, TUNNEL_NAMES};
use crate::parse::Framing;
use crate::wire::{IfaceKind, Interface, LinkType};
use std::collections::HashSet;
use std::io;

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
/// Devices without a link header: ipip (TUNNEL), ip6tnl (TUNNEL6), sit, tun and wireguard (NONE).
const ARPHRD_RAW_IP: [u16; 4] = [768, 769, 776, 65534];

/// Link kinds (`IFLA_INFO_KIND`) of overlays and tunnels.
const TUNNEL_KINDS: [&str; 12] = [
    "vxlan",
    "geneve",
    "ipip",
    "ip6tnl",
    "sit",
    "gre",
    "gretap",
    "ip6gre",
    "ip6gretap",
    "wireguard",
    "tun",
    "ipvtap",
];

/// Everything [`classify`] needs, as read from the kernel.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    /// Interfaces that hold an IPv4 or IPv6 default route.
    pub default_route: HashSet<String>,
}

/// Link type from the ARPHRD hardware type.
pub fn link_type(hw_type: u16) -> LinkType {
    match hw_type {
        ARPHRD_ETHER => LinkType::Ethernet,
        ARPHRD_LOOPBACK => LinkType::Loopback,
        t if ARPHRD_RAW_IP.contains(&t) => LinkType::RawIp,
        _ => LinkType::Other,
    }
}

/// How captured frames of a link type begin; `None` for link types the probe cannot read.
pub fn framing(link: LinkType) -> Option<Framing> {
    match link {
        // Linux gives loopback frames a zeroed Ethernet header.
        LinkType::Ethernet | LinkType::Loopback => Some(Framing::Ethernet),
        LinkType::RawIp => Some(Framing::RawIp),
        LinkType::Other => None,
    }
}

fn kind_of(link: &Link, inv: &Inventory, has_global_addr: bool) -> IfaceKind {
    let kind = link.kind.as_deref().unwrap_or("");
    let named = |prefixes: &[&str]| prefixes.iter().any(|p| link.name.starts_with(p));
    if link.hw_type == ARPHRD_LOOPBACK {
        IfaceKind::Loopback
    } else if inv.default_route.contains(&link.name) {
        IfaceKind::Uplink
    } else if kind == "bridge" {
        IfaceKind::Bridge
    } else if TUNNEL_KINDS.contains(&kind) || (link.kind.is_none() && named(&TUNNEL_NAMES)) {
        IfaceKind::Tunnel
    } else if named(&ENI_NAMES) {
        IfaceKind::Eni
    } else if has_global_addr && link.master.is_none() && kind != "dummy" {
        // A node address on an interface of its own: where NodePort traffic arrives.
        IfaceKind::Uplink
    } else if matches!(kind, "veth" | "netkit") || named(&POD_NAMES) {
        IfaceKind::Veth
    } else {
        IfaceKind::Other
    }
}

/// Names and classifies every interface, in index order.
pub fn classify(inv: &Inventory) -> Vec<Interface> {
    let mut out: Vec<Interface> = inv
        .links
        .iter()
        .map(|link| {
            let own: Vec<&Addr> = inv.addrs.iter().filter(|a| a.index == link.index).collect();
            let has_global = own.iter().any(|a| a.scope == 0);
            Interface {
                index: link.index,
                name: link.name.clone(),
                kind: kind_of(link, inv, has_global),
                link_type: link_type(link.hw_type),
                addresses: own
                    .iter()
                    .map(|a| format!("{}/{}", a.ip, a.prefix))
                    .collect(),
                mtu: link.mtu,
                mac: link.mac.clone(),
            }
        })
        .collect();
    out.sort_by_key(|i| i.index);
    out
}

/// Interfaces holding a default route in `/proc/net/route` (IPv4) text.
pub fn default_routes_v4(text: &str) -> impl Iterator<Item = &str> {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; destination and mask 0.
    text.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0])
    })
}

/// Interfaces holding a default route in `/proc/net/ipv6_route` text.
pub fn default_routes_v6(text: &str) -> impl Iterator<Item = &str> {
    // dest dest_len src src_len next_hop metric refcnt use flags iface; ::/0, not `lo`
    // (the kernel's unreachable default lives there).
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo")
            .then(|| f[9])
    })
}

/// Reads the current interfaces, addresses and default routes of this network namespace.
pub fn scan() -> io::Result<Inventory> {
    let links = kernel::netlink_dump(netlink::RTM_GETLINK, 0)?
        .iter()
        .filter_map(|m| netlink::parse_link(m))
        .collect();
    let addrs = kernel::netlink_dump(netlink::RTM_GETADDR, 0)?
        .iter()
        .filter_map(|m| netlink::parse_addr(m))
        .collect();
    // Missing route files (no IPv6) just mean no default route of that family.
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let default_route = default_routes_v4(&v4)
        .chain(default_routes_v6(&v6))
        .map(str::to_owned)
        .collect();
    Ok(Inventory {
        links,
        addrs,
        default_route,
    })
}

#[cfg(test)]
mod tests {
    use super::super::netlink::{build, parse_addr, parse_link};
    use super::*;

    fn node() -> Inventory {
        let links = [
            build::link(1, "lo", ARPHRD_LOOPBACK, None, 0),
            build::link(2, "eth0", 1, None, 0),
            build::link(3, "cbr0", 1, Some("bridge"), 0),
            build::link(4, "veth1a2b3c", 1, Some("veth"), 3),
            build::link(5, "flannel.1", 1, Some("vxlan"), 0),
            build::link(6, "tunl0", 768, Some("ipip"), 0),
            build::link(7, "wg0", 65534, Some("wireguard"), 0),
            build::link(8, "cali12345", 1, Some("veth"), 0),
            build::link(9, "eni3f2a", 1, Some("veth"), 0),
            build::link(10, "kube-ipvs0", 1, Some("dummy"), 0),
            build::link(11, "eth1", 1, None, 0),
            build::link(12, "lxc_health", 1, None, 0),
            build::link(13, "can0", 280, Some("vcan"), 0),
        ];
        let addrs = [
            build::addr(1, "127.0.0.1".parse().unwrap(), 8, 254),
            build::addr(2, "198.51.100.1".parse().unwrap(), 24, 0),
            build::addr(2, "fe80::1".parse().unwrap(), 64, 253),
            build::addr(3, "10.244.0.1".parse().unwrap(), 24, 0),
            build::addr(10, "10.96.0.10".parse().unwrap(), 32, 0),
            build::addr(11, "2001:db8::11".parse().unwrap(), 64, 0),
        ];
        Inventory {
            links: links.iter().filter_map(|m| parse_link(m)).collect(),
            addrs: addrs.iter().filter_map(|m| parse_addr(m)).collect(),
            default_route: ["eth0".to_string()].into(),
        }
    }

    #[test]
    fn every_kind_of_node_interface_is_told_apart() {
        let got: Vec<(String, IfaceKind, LinkType)> = classify(&node())
            .into_iter()
            .map(|i| (i.name, i.kind, i.link_type))
            .collect();
        use IfaceKind::*;
        let want = [
            ("lo", Loopback, LinkType::Loopback),
            ("eth0", Uplink, LinkType::Ethernet),
            ("cbr0", Bridge, LinkType::Ethernet),
            ("veth1a2b3c", Veth, LinkType::Ethernet),
            ("flannel.1", Tunnel, LinkType::Ethernet),
            ("tunl0", Tunnel, LinkType::RawIp),
            ("wg0", Tunnel, LinkType::RawIp),
            ("cali12345", Veth, LinkType::Ethernet),
            ("eni3f2a", Eni, LinkType::Ethernet),
            ("kube-ipvs0", Other, LinkType::Ethernet),
            ("eth1", Uplink, LinkType::Ethernet),
            ("lxc_health", Veth, LinkType::Ethernet),
            ("can0", Other, LinkType::Other),
        ];
        let want: Vec<(String, IfaceKind, LinkType)> = want
            .into_iter()
            .map(|(n, k, l)| (n.to_string(), k, l))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn addresses_and_mtu_are_listed() {
        let eth0 = classify(&node())
            .into_iter()
            .find(|i| i.name == "eth0")
            .unwrap();
        assert_eq!(eth0.addresses, ["198.51.100.1/24", "fe80::1/64"]);
        assert_eq!(eth0.mtu, 1500);
        assert_eq!(eth0.mac.as_deref(), Some("02:00:00:00:00:02"));
    }

    #[test]
    fn default_routes_are_read_from_proc() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0164A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  cbr0\t0000F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_routes_v4(v4).collect::<Vec<_>>(), ["eth0"]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003 eth1\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1\n";
        assert_eq!(default_routes_v6(v6).collect::<Vec<_>>(), ["eth1"]);
        assert_eq!(default_routes_v4("garbage\n\n").count(), 0);
    }
}
