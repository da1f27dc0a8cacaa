//! Conntrack entries by tuple over ctnetlink (`IPCTNL_MSG_CT_GET`): the request for one tuple and
//! the reply read into a [`wire::Conntrack`](crate::wire::Conntrack)'s parts. Pure.

use super::nl::{self, attr, u16_be, u32_be, Request};
use crate::wire::CtTuple;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;

/// Which direction of the entry a looked-up tuple names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The tuple as the first packet arrived (before NAT).
    Orig,
    /// The tuple replies carry (after NAT, reversed).
    Reply,
}

/// An entry as ctnetlink describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub orig: CtTuple,
    pub reply: CtTuple,
    pub status: u32,
    pub mark: u32,
    pub zone: u16,
    pub id: Option<u32>,
    pub tcp_state: Option<u8>,
}

/// The request for the entry whose `side` tuple is `tuple`, in conntrack zone 0.
pub fn get_request(tuple: &CtTuple, side: Side, seq: u32) -> Vec<u8> {
    let family = if tuple.src.is_ipv4() { 2 } else { 10 };
    let (src_attr, dst_attr) = if tuple.src.is_ipv4() { (1, 2) } else { (3, 4) };
    let bytes = |ip: IpAddr| match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let which = match side {
        Side::Orig => CTA_TUPLE_ORIG,
        Side::Reply => CTA_TUPLE_REPLY,
    };
    Request::new(
        NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET,
        0,
        &[family, 0, 0, 0],
    )
    .nest(which)
    .nest(CTA_TUPLE_IP)
    .attr(src_attr, &bytes(tuple.src))
    .attr(dst_attr, &bytes(tuple.dst))
    .end()
    .nest(CTA_TUPLE_PROTO)
    .attr(CTA_PROTO_NUM, &[tuple.proto])
    .attr(CTA_PROTO_SRC_PORT, &tuple.sport.to_be_bytes())
    .attr(CTA_PROTO_DST_PORT, &tuple.dport.to_be_bytes())
    .end()
    .end()
    .finish(seq)
}

fn tuple(b: &[u8]) -> Option<CtTuple> {
    let ip = attr(b, CTA_TUPLE_IP)?;
    let v4 = |k| -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(attr(ip, k)?.get(..4)?).ok()?,
        )))
    };
    let v6 = |k| -> Option<IpAddr> {
        Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(attr(ip, k)?.get(..16)?).ok()?,
        )))
    };
    let (src, dst) = match (v4(1), v4(2)) {
        (Some(s), Some(d)) => (s, d),
        _ => (v6(3)?, v6(4)?),
    };
    let proto = attr(b, CTA_TUPLE_PROTO)?;
    Some(CtTuple {
        src,
        dst,
        proto: *attr(proto, CTA_PROTO_NUM)?.first()?,
        sport: attr(proto, CTA_PROTO_SRC_PORT)
            .and_then(u16_be)
            .unwrap_or(0),
        dport: attr(proto, CTA_PROTO_DST_PORT)
            .and_then(u16_be)
            .unwrap_or(0),
    })
}

/// Reads an `IPCTNL_MSG_CT_NEW` reply message (header included).
pub fn parse_entry(msg: &[u8]) -> Option<Entry> {
    let m = nl::messages(msg).next()?;
    if m.kind != NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW {
        return None;
    }
    let a = m.payload.get(4..)?;
    let tcp_state = attr(a, CTA_PROTOINFO)
        .and_then(|p| attr(p, 1))
        .and_then(|t| attr(t, 1))
        .and_then(|s| s.first().copied());
    Some(Entry {
        orig: tuple(attr(a, CTA_TUPLE_ORIG)?)?,
        reply: tuple(attr(a, CTA_TUPLE_REPLY)?)?,
        status: attr(a, CTA_STATUS).and_then(u32_be).unwrap_or(0),
        mark: attr(a, CTA_MARK).and_then(u32_be).unwrap_or(0),
        zone: attr(a, CTA_ZONE).and_then(u16_be).unwrap_or(0),
        id: attr(a, CTA_ID).and_then(u32_be),
        tcp_state,
    })
}

/// Status bits by name, lowest first.
pub fn status_names(status: u32) -> Vec<String> {
    const NAMES: [&str; 16] = [
        "expected",
        "seen-reply",
        "assured",
        "confirmed",
        "src-nat",
        "dst-nat",
        "seq-adjust",
        "src-nat-done",
        "dst-nat-done",
        "dying",
        "fixed-timeout",
        "template",
        "untracked",
        "helper",
        "offload",
        "hw-offload",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| status & (1 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The TCP state by name, as `conntrack -L` prints it.
pub fn tcp_state_name(state: u8) -> String {
    const NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    NAMES
        .get(usize::from(state))
        .map_or_else(|| state.to_string(), |s| s.to_string())
}

/// The tuple reversed: how a sighting after NAT names the entry's reply direction.
pub fn reversed(t: &CtTuple) -> CtTuple {
    CtTuple {
        src: t.dst,
        sport: t.dport,
        dst: t.src,
        dport: t.sport,
        proto: t.proto,
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! A ctnetlink reply as the kernel writes it, for tests.
    use super::*;

    pub fn reply(orig: &CtTuple, reply: &CtTuple, status: u32, mark: u32) -> Vec<u8> {
        let addr = |r: Request, t: &CtTuple| -> Request {
            let bytes = |ip: IpAddr| match ip {
                IpAddr::V4(v) => v.octets().to_vec(),
                IpAddr::V6(v) => v.octets().to_vec(),
            };
            let (s, d) = if t.src.is_ipv4() { (1, 2) } else { (3, 4) };
            r.nest(CTA_TUPLE_IP)
                .attr(s, &bytes(t.src))
                .attr(d, &bytes(t.dst))
                .end()
                .nest(CTA_TUPLE_PROTO)
                .attr(CTA_PROTO_NUM, &[t.proto])
                .attr(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes())
                .attr(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes())
                .end()
        };
        let r = Request::new(NFNL_SUBSYS_CTNETLINK << 8, 0, &[2, 0, 0, 0]).nest(CTA_TUPLE_ORIG);
        let r = addr(r, orig).end().nest(CTA_TUPLE_REPLY);
        addr(r, reply)
            .end()
            .attr(CTA_STATUS, &status.to_be_bytes())
            .attr(CTA_MARK, &mark.to_be_bytes())
            .attr(CTA_ID, &7u32.to_be_bytes())
            .nest(CTA_PROTOINFO)
            .nest(1)
            .attr(1, &[1])
            .end()
            .end()
            .finish(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str, sport: u16, dst: &str, dport: u16) -> CtTuple {
        CtTuple {
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
            proto: 6,
        }
    }

    #[test]
    fn a_reply_reads_back() {
        let orig = t("198.51.100.7", 41770, "198.51.100.1", 31908);
        let rep = t("10.244.0.5", 8080, "10.244.0.1", 41770);
        let e = parse_entry(&build::reply(&orig, &rep, 0x1b8, 0x4000)).unwrap();
        assert_eq!(
            (e.orig, e.reply, e.mark, e.id),
            (orig, rep, 0x4000, Some(7))
        );
        assert_eq!(
            status_names(e.status),
            [
                "confirmed",
                "src-nat",
                "dst-nat",
                "src-nat-done",
                "dst-nat-done"
            ]
        );
        assert_eq!(e.tcp_state.map(tcp_state_name).as_deref(), Some("SYN_SENT"));
        assert_eq!(reversed(&rep).dst, "10.244.0.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_request_names_the_tuple() {
        let req = get_request(&t("10.0.0.1", 1, "10.0.0.2", 2), Side::Reply, 9);
        let m = nl::messages(&req).next().unwrap();
        assert_eq!((m.kind, m.seq), (0x101, 9));
        let tuple_attr = attr(&m.payload[4..], CTA_TUPLE_REPLY).unwrap();
        assert_eq!(tuple(tuple_attr), Some(t("10.0.0.1", 1, "10.0.0.2", 2)));
    }
}
