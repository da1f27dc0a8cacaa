//! Route lookups over route netlink (`RTM_GETROUTE` for one destination) and the address
//! MASQUERADE takes on the egress interface. Pure.

use super::nl::{self, attr, u32_ne, Request};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;

/// The route the kernel picked for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub prefsrc: Option<IpAddr>,
    pub table: u32,
    /// RTN_*: 1 unicast, 2 local, …
    pub kind: u8,
}

/// The request `ip route get DST` sends.
pub fn get_request(dst: IpAddr, seq: u32) -> Vec<u8> {
    let (family, len, bytes) = match dst {
        IpAddr::V4(v) => (2u8, 32u8, v.octets().to_vec()),
        IpAddr::V6(v) => (10u8, 128u8, v.octets().to_vec()),
    };
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let head = [family, len, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    Request::new(RTM_GETROUTE, 0, &head)
        .attr(RTA_DST, &bytes)
        .finish(seq)
}

fn ip(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        2 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(b.get(..4)?).ok()?,
        ))),
        10 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(b.get(..16)?).ok()?,
        ))),
        _ => None,
    }
}

/// Reads an `RTM_NEWROUTE` reply (header included).
pub fn parse_route(msg: &[u8]) -> Option<Lookup> {
    let m = nl::messages(msg).next()?;
    if m.kind != RTM_NEWROUTE {
        return None;
    }
    let b = m.payload;
    let (family, table, kind) = (*b.first()?, *b.get(4)?, *b.get(7)?);
    let a = b.get(12..)?;
    Some(Lookup {
        oif: attr(a, RTA_OIF).and_then(u32_ne),
        gateway: attr(a, RTA_GATEWAY).and_then(|g| ip(family, g)),
        prefsrc: attr(a, RTA_PREFSRC).and_then(|p| ip(family, p)),
        table: attr(a, RTA_TABLE)
            .and_then(u32_ne)
            .unwrap_or(u32::from(table)),
        kind,
    })
}

/// The kernel's route types (RTN_*) by number, as `ip route` names them.
pub const RTN_NAMES: [&str; 12] = [
    "unspec",
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "xresolve",
];

/// RTN_* by name.
pub fn kind_name(kind: u8) -> String {
    RTN_NAMES
        .get(usize::from(kind))
        .map_or_else(|| kind.to_string(), |s| s.to_string())
}

/// The source MASQUERADE picks on an interface (`inet_select_addr`): the first of its
/// addresses (`a.b.c.d/len`, primary ones first, in the kernel's order) whose subnet holds the
/// next hop, else the first. Same family as the next hop only.
pub fn masquerade_source(addresses: &[String], next_hop: IpAddr) -> Option<IpAddr> {
    let parsed: Vec<(IpAddr, u8)> = addresses
        .iter()
        .filter_map(|a| {
            let (ip, len) = a.split_once('/')?;
            Some((ip.parse().ok()?, len.parse().ok()?))
        })
        .filter(|(ip, _): &(IpAddr, u8)| ip.is_ipv4() == next_hop.is_ipv4())
        .collect();
    let same_subnet = |(ip, len): &(IpAddr, u8)| -> bool {
        match (ip, next_hop) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from((*len).min(32)))
                    .unwrap_or(0);
                u32::from(*a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from((*len).min(128)))
                    .unwrap_or(0);
                u128::from(*a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    };
    parsed
        .iter()
        .find(|a| same_subnet(a))
        .or(parsed.first())
        .map(|(ip, _)| *ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerade_prefers_the_next_hops_subnet() {
        let addrs = vec![
            "192.0.2.10/24".to_string(),
            "203.0.113.10/24".into(),
            "fd00::1/64".into(),
        ];
        let pick = |nh: &str| masquerade_source(&addrs, nh.parse().unwrap());
        assert_eq!(pick("203.0.113.1"), Some("203.0.113.10".parse().unwrap()));
        assert_eq!(pick("198.51.100.1"), Some("192.0.2.10".parse().unwrap()));
        assert_eq!(pick("fd00::9"), Some("fd00::1".parse().unwrap()));
        assert_eq!(masquerade_source(&[], "10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn a_route_reply_reads_back() {
        let head = [2u8, 32, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0];
        let msg = Request::new(RTM_NEWROUTE, 0, &head)
            .attr(RTA_DST, &[10, 0, 0, 9])
            .attr(RTA_OIF, &3u32.to_ne_bytes())
            .attr(RTA_GATEWAY, &[10, 0, 0, 1])
            .attr(RTA_PREFSRC, &[10, 0, 0, 2])
            .attr(RTA_TABLE, &254u32.to_ne_bytes())
            .finish(1);
        let r = parse_route(&msg).unwrap();
        assert_eq!(r.oif, Some(3));
        assert_eq!(r.gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.prefsrc, Some("10.0.0.2".parse().unwrap()));
        assert_eq!((r.table, kind_name(r.kind).as_str()), (254, "unicast"));
        let req = get_request("10.0.0.9".parse().unwrap(), 4);
        assert_eq!(
            nl::messages(&req).next().map(|m| m.kind),
            Some(RTM_GETROUTE)
        );
    }
}
