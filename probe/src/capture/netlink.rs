//! Route-netlink replies (`RTM_NEWLINK`, `RTM_NEWADDR`) → plain link and address records.
//! Pure: the bytes come from [`super::kernel::netlink_dump`]; anything malformed is skipped.

use crate::evidence::nl::{attrs, string as string_of, u32_ne as u32_of, NLMSG_HDRLEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RTM_GETLINK: u16 = 18;
pub const RTM_GETADDR: u16 = 22;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// One network interface as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// ARPHRD_* hardware type.
    pub hw_type: u16,
    pub mtu: u32,
    /// `IFLA_INFO_KIND`: veth, bridge, vxlan, wireguard, … (`None` for physical devices).
    pub kind: Option<String>,
    /// Index of the bridge or bond this interface is enslaved to.
    pub master: Option<u32>,
    pub mac: Option<String>,
}

/// One address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    /// RT_SCOPE_*: 0 universe (global), 253 link, 254 host.
    pub scope: u8,
}

/// Reads an `RTM_NEWLINK` message (header included); `None` for other messages or garbage.
pub fn parse_link(msg: &[u8]) -> Option<Link> {
    if u16::from_ne_bytes([*msg.get(4)?, *msg.get(5)?]) != RTM_NEWLINK {
        return None;
    }
    let body = msg.get(NLMSG_HDRLEN..)?;
    let hw_type = u16::from_ne_bytes([*body.get(2)?, *body.get(3)?]);
    let index = u32_of(body.get(4..8)?)?;
    let mut link = Link {
        index,
        name: String::new(),
        hw_type,
        mtu: 0,
        kind: None,
        master: None,
        mac: None,
    };
    for (kind, payload) in attrs(body.get(16..)?) {
        match kind {
            IFLA_IFNAME => link.name = string_of(payload),
            IFLA_MTU => link.mtu = u32_of(payload).unwrap_or(0),
            IFLA_MASTER => link.master = u32_of(payload).filter(|&m| m != 0),
            IFLA_ADDRESS if payload.len() == 6 => {
                link.mac = Some(
                    payload
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
            IFLA_LINKINFO => {
                link.kind = attrs(payload)
                    .find(|(k, _)| *k == IFLA_INFO_KIND)
                    .map(|(_, v)| string_of(v));
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// Reads an `RTM_NEWADDR` message (header included); `None` for other messages or garbage.
pub fn parse_addr(msg: &[u8]) -> Option<Addr> {
    if u16::from_ne_bytes([*msg.get(4)?, *msg.get(5)?]) != RTM_NEWADDR {
        return None;
    }
    let body = msg.get(NLMSG_HDRLEN..)?;
    let (family, prefix, scope) = (*body.first()?, *body.get(1)?, *body.get(3)?);
    let index = u32_of(body.get(4..8)?)?;
    let ip_of = |b: &[u8]| -> Option<IpAddr> {
        match family as i32 {
            2 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
            10 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
            _ => None,
        }
    };
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is this end.
    let (mut local, mut address) = (None, None);
    for (kind, payload) in attrs(body.get(8..)?) {
        match kind {
            IFA_LOCAL => local = ip_of(payload),
            IFA_ADDRESS => address = ip_of(payload),
            _ => {}
        }
    }
    Some(Addr {
        index,
        ip: local.or(address)?,
        prefix,
        scope,
    })
}

#[cfg(test)]
pub(crate) mod build {
    //! Builders for netlink messages, shared by the tests of this module and of discovery.

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    fn message(kind: u16, body: Vec<u8>) -> Vec<u8> {
        let mut out = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend([0u8; 10]);
        out.extend(body);
        out
    }

    pub fn link(index: u32, name: &str, hw: u16, kind: Option<&str>, master: u32) -> Vec<u8> {
        let mut body = vec![0u8, 0];
        body.extend(hw.to_ne_bytes());
        body.extend(index.to_ne_bytes());
        body.extend([0u8; 8]);
        body.extend(attr(3, format!("{name}\0").as_bytes()));
        body.extend(attr(4, &1500u32.to_ne_bytes()));
        body.extend(attr(1, &[2, 0, 0, 0, 0, index as u8]));
        if master != 0 {
            body.extend(attr(10, &master.to_ne_bytes()));
        }
        if let Some(kind) = kind {
            // Nested attribute: the kernel sets NLA_F_NESTED on IFLA_LINKINFO.
            body.extend(attr(18 | 0x8000, &attr(1, format!("{kind}\0").as_bytes())));
        }
        message(16, body)
    }

    pub fn addr(index: u32, ip: std::net::IpAddr, prefix: u8, scope: u8) -> Vec<u8> {
        let (family, bytes) = match ip {
            std::net::IpAddr::V4(v4) => (2u8, v4.octets().to_vec()),
            std::net::IpAddr::V6(v6) => (10u8, v6.octets().to_vec()),
        };
        let mut body = vec![family, prefix, 0, scope];
        body.extend(index.to_ne_bytes());
        body.extend(attr(1, &bytes));
        body.extend(attr(2, &bytes));
        message(20, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_attributes_are_read() {
        let link = parse_link(&build::link(7, "veth1a2b", 1, Some("veth"), 4)).unwrap();
        assert_eq!(link.index, 7);
        assert_eq!(link.name, "veth1a2b");
        assert_eq!(link.hw_type, 1);
        assert_eq!(link.mtu, 1500);
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert_eq!(link.master, Some(4));
        assert_eq!(link.mac.as_deref(), Some("02:00:00:00:00:07"));
    }

    #[test]
    fn addresses_are_read() {
        let ip: IpAddr = "2001:db8::4".parse().unwrap();
        let addr = parse_addr(&build::addr(3, ip, 64, 0)).unwrap();
        assert_eq!(
            (addr.index, addr.ip, addr.prefix, addr.scope),
            (3, ip, 64, 0)
        );
        assert!(parse_link(&build::addr(3, ip, 64, 0)).is_none());
    }

    #[test]
    fn truncated_messages_are_skipped() {
        let msg = build::link(7, "eth0", 1, Some("veth"), 0);
        for len in 0..msg.len() {
            let _ = parse_link(&msg[..len]);
            let _ = parse_addr(&msg[..len]);
        }
        assert!(parse_link(&msg[..20]).is_none());
    }
}
