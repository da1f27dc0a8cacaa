//! Frame → TCP segment facts. Pure, allocation-free, and total: any byte string yields either a
//! [`Segment`] or a [`ParseError`], never a panic.
//!
//! Hand-written rather than a general packet library because it runs once per captured frame and
//! needs only a few fields: link header → IPv4/IPv6 (extension headers, fragments) → TCP.
//!
//! Two entry points: [`parse`] reads what the live probe's own filter passed, strictly (the
//! filter keeps whole TCP headers and no tunnels). [`parse_captured`] reads frames of capture
//! files written by other tools: it also takes a TCP header whose options were cut by a short
//! snap length, opens VXLAN, Geneve, GRE and IP-in-IP tunnels, and reports the Ethernet
//! addresses so that the direction of a frame can be inferred from who owns them.

use crate::wire::Direction;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How a frame begins, chosen from the interface's (or capture file's) link type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Ethernet II, optionally behind 802.1Q / 802.1ad (QinQ) tags.
    Ethernet,
    /// The IP header first (tun, ipip, wireguard, pcap LINKTYPE_RAW).
    RawIp,
    /// Linux cooked capture v1 (`tcpdump -i any`, pcap LINKTYPE_LINUX_SLL).
    LinuxSll,
    /// Linux cooked capture v2 (pcap LINKTYPE_LINUX_SLL2): adds the interface index.
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in the writer's byte order (pcap LINKTYPE_NULL).
    Null,
}

/// What one TCP segment looked like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address.
    pub dst: IpAddr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// TCP sequence number (a SYN's is the ISN).
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub ack: bool,
    /// RST flag.
    pub rst: bool,
    /// FIN flag.
    pub fin: bool,
    /// TSval of the TCP timestamp option, when present and well formed.
    pub tsval: Option<u32>,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
    /// TCP payload bytes present in the frame (may be cut short by the capture length).
    pub payload: &'a [u8],
    /// Direction named by a Linux cooked header's packet type; `None` for other framings.
    pub link_dir: Option<Direction>,
    /// Interface index from a Linux cooked v2 header; `None` for other framings.
    pub link_ifindex: Option<u32>,
}

impl Segment<'_> {
    /// A connection's opening segment: SYN set, ACK clear.
    pub fn is_syn(&self) -> bool {
        self.syn && !self.ack
    }
}

/// Ethernet addresses of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Macs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

impl Macs {
    /// Sent to one station (not broadcast, not multicast): the I/G bit of the destination.
    pub fn unicast(&self) -> bool {
        self.dst[0] & 1 == 0
    }
}

/// A tunnel a captured frame carried its TCP segment in, named as Linux names such devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// VXLAN, UDP port 4789 (or 8472, the Linux default flannel uses).
    Vxlan,
    /// Geneve, UDP port 6081.
    Geneve,
    /// GRE, carrying IP or Ethernet (transparent Ethernet bridging).
    Gre,
    /// IPv4 in IPv4.
    Ipip,
    /// IPv6 in IPv4.
    Sit,
    /// IPv4 or IPv6 in IPv6.
    Ip6tnl,
}

impl Tunnel {
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Vxlan => "vxlan",
            Tunnel::Geneve => "geneve",
            Tunnel::Gre => "gre",
            Tunnel::Ipip => "ipip",
            Tunnel::Sit => "sit",
            Tunnel::Ip6tnl => "ip6tnl",
        }
    }
}

/// A segment read from a capture file, with what the file's frame said around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured<'a> {
    /// The TCP segment (the innermost one when the frame carried a tunnel).
    pub segment: Segment<'a>,
    /// The outer Ethernet addresses; `None` for other framings.
    pub macs: Option<Macs>,
    /// The capture's snap length cut the TCP options: a `tsval` of `None` is unknown, not absent,
    /// and the payload is empty.
    pub options_cut: bool,
    /// The innermost tunnel the segment was carried in. Its TTL, IP id and addresses are the
    /// inner packet's: those are what NAT and routing act on.
    pub tunnel: Option<Tunnel>,
}

/// Why a frame yields no TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The captured bytes end inside a header (snap length, or a runt frame).
    #[error("frame too short for its headers")]
    Truncated,
    /// The link header names another protocol (ARP, LLDP, …).
    #[error("not IPv4 or IPv6")]
    NotIp,
    /// IP carrying another protocol (UDP, ICMP, ESP, …).
    #[error("not TCP")]
    NotTcp,
    /// A non-first IP fragment: no TCP header in it.
    #[error("IP fragment without a TCP header")]
    Fragment,
    /// Length fields that cannot be true (IHL < 5, TCP data offset < 5, a header past the
    /// packet's own length).
    #[error("header fields contradict each other")]
    Malformed,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
/// 802.1Q, 802.1ad and the pre-standard QinQ tag.
const ETH_VLAN: [u16; 3] = [0x8100, 0x88A8, 0x9100];
/// More stacked VLAN tags than this is not a frame worth reading.
const MAX_VLAN_TAGS: usize = 4;
/// More IPv6 extension headers than this is treated as hostile.
const MAX_IPV6_EXT: usize = 8;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_IPIP: u8 = 4;
const PROTO_IPV6: u8 = 41;
const PROTO_GRE: u8 = 47;
/// Transparent Ethernet bridging: an Ethernet frame inside GRE or Geneve.
const ETH_TEB: u16 = 0x6558;
const VXLAN_PORTS: [u16; 2] = [4789, 8472];
const GENEVE_PORT: u16 = 6081;
/// Tunnels inside tunnels deeper than this are not followed.
const MAX_TUNNELS: usize = 3;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The network layer a link header leads to.
enum Net<'a> {
    /// An EtherType (after any VLAN tags) and the bytes after it.
    EtherType(u16, &'a [u8]),
    /// The IP header directly, its version to be read from the first nibble.
    Ip(&'a [u8]),
}

struct Link<'a> {
    net: Net<'a>,
    dir: Option<Direction>,
    ifindex: Option<u32>,
    macs: Option<Macs>,
}

/// Direction of a Linux `sll_pkttype` (PACKET_HOST … PACKET_OUTGOING).
fn pkttype_dir(pkttype: u16) -> Option<Direction> {
    match pkttype {
        0..=3 => Some(Direction::In),
        4 => Some(Direction::Out),
        _ => None,
    }
}

fn link(framing: Framing, frame: &[u8]) -> Result<Link<'_>, ParseError> {
    let (net, dir, ifindex, macs) = match framing {
        Framing::Ethernet => {
            let ty = be16(frame, 12).ok_or(ParseError::Truncated)?;
            let mut macs = Macs {
                dst: [0; 6],
                src: [0; 6],
            };
            macs.dst.copy_from_slice(&frame[..6]);
            macs.src.copy_from_slice(&frame[6..12]);
            (Net::EtherType(ty, &frame[14..]), None, None, Some(macs))
        }
        Framing::RawIp => (Net::Ip(frame), None, None, None),
        Framing::LinuxSll => {
            let ty = be16(frame, 14).ok_or(ParseError::Truncated)?;
            let dir = be16(frame, 0).and_then(pkttype_dir);
            (Net::EtherType(ty, &frame[16..]), dir, None, None)
        }
        Framing::LinuxSll2 => {
            let (Some(ty), Some(ifindex), Some(&pkttype)) =
                (be16(frame, 0), be32(frame, 4), frame.get(10))
            else {
                return Err(ParseError::Truncated);
            };
            if frame.len() < 20 {
                return Err(ParseError::Truncated);
            }
            let dir = pkttype_dir(u16::from(pkttype));
            (Net::EtherType(ty, &frame[20..]), dir, Some(ifindex), None)
        }
        Framing::Null => {
            let fam = frame.get(..4).ok_or(ParseError::Truncated)?;
            let fam = [fam[0], fam[1], fam[2], fam[3]];
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (the BSDs).
            let ip = |f: u32| matches!(f, 2 | 10 | 24 | 28 | 30);
            if !ip(u32::from_le_bytes(fam)) && !ip(u32::from_be_bytes(fam)) {
                return Err(ParseError::NotIp);
            }
            (Net::Ip(&frame[4..]), None, None, None)
        }
    };
    Ok(Link {
        net,
        dir,
        ifindex,
        macs,
    })
}

/// Skips VLAN tags and returns the IP bytes with their version (4 or 6).
fn network(net: Net<'_>) -> Result<(u8, &[u8]), ParseError> {
    match net {
        Net::Ip(ip) => match ip.first().map(|b| b >> 4) {
            None => Err(ParseError::Truncated),
            Some(v @ (4 | 6)) => Ok((v, ip)),
            Some(_) => Err(ParseError::NotIp),
        },
        Net::EtherType(mut ty, mut rest) => {
            for _ in 0..=MAX_VLAN_TAGS {
                match ty {
                    ETH_IPV4 => return Ok((4, rest)),
                    ETH_IPV6 => return Ok((6, rest)),
                    t if ETH_VLAN.contains(&t) => {
                        ty = be16(rest, 2).ok_or(ParseError::Truncated)?;
                        rest = &rest[4..];
                    }
                    _ => return Err(ParseError::NotIp),
                }
            }
            Err(ParseError::NotIp)
        }
    }
}

/// The IP facts a segment needs and the bytes of its transport header onwards.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    ip_id: Option<u16>,
    /// The upper-layer protocol (after IPv6 extension headers).
    proto: u8,
    /// From the transport header to the end of the IP packet (or of the captured bytes).
    transport: &'a [u8],
    /// The packet runs to the end of the frame, so a short header means a cut capture.
    to_frame_end: bool,
}

/// The error for a header that does not fit: cut by the capture, or by the IP length field.
fn short(cut_by_capture: bool) -> ParseError {
    if cut_by_capture {
        ParseError::Truncated
    } else {
        ParseError::Malformed
    }
}

fn ipv4(b: &[u8]) -> Result<Ip<'_>, ParseError> {
    let h = b.get(..20).ok_or(ParseError::Truncated)?;
    let ihl = usize::from(h[0] & 0x0F) * 4;
    if ihl < 20 {
        return Err(ParseError::Malformed);
    }
    if b.len() < ihl {
        return Err(ParseError::Truncated);
    }
    // Total length 0 is what GRO/TSO super-frames carry: the frame's end is the packet's end.
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let end = match total {
        0 => b.len(),
        t if t < ihl => return Err(ParseError::Malformed),
        t => t.min(b.len()),
    };
    let frag = u16::from_be_bytes([h[6], h[7]]);
    if frag & 0x1FFF != 0 {
        return Err(ParseError::Fragment);
    }
    Ok(Ip {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        ttl: h[8],
        ip_id: Some(u16::from_be_bytes([h[4], h[5]])),
        proto: h[9],
        transport: &b[ihl..end],
        to_frame_end: end == b.len(),
    })
}

fn ipv6(b: &[u8]) -> Result<Ip<'_>, ParseError> {
    let h = b.get(..40).ok_or(ParseError::Truncated)?;
    // Payload length 0 is a jumbogram or a BIG TCP super-frame: the frame's end is the packet's.
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = if plen == 0 {
        b.len()
    } else {
        (40 + plen).min(b.len())
    };
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let mut next = h[6];
    let mut at = 40;
    for _ in 0..=MAX_IPV6_EXT {
        let len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => {
                usize::from(*b.get(at + 1).ok_or(ParseError::Truncated)?) * 8 + 8
            }
            44 => {
                let off = be16(b, at + 2).ok_or(ParseError::Truncated)?;
                if off & 0xFFF8 != 0 {
                    return Err(ParseError::Fragment);
                }
                8
            }
            // Authentication header: length in 4-octet units, minus 2.
            51 => (usize::from(*b.get(at + 1).ok_or(ParseError::Truncated)?) + 2) * 4,
            proto => {
                return Ok(Ip {
                    src: addr(8),
                    dst: addr(24),
                    ttl: h[7],
                    ip_id: None,
                    proto,
                    transport: &b[at..end],
                    to_frame_end: end == b.len(),
                })
            }
        };
        next = *b.get(at).ok_or(ParseError::Truncated)?;
        at += len;
        if at > end {
            return Err(short(at > b.len()));
        }
    }
    Err(ParseError::Malformed)
}

/// The IP packet a network layer leads to.
fn ip_packet(net: Net<'_>) -> Result<Ip<'_>, ParseError> {
    match network(net)? {
        (4, b) => ipv4(b),
        (_, b) => ipv6(b),
    }
}

/// The network layer inside a tunnel packet, when `ip` is one this parser opens.
fn decapsulate<'a>(ip: &Ip<'a>) -> Result<(Tunnel, Net<'a>), ParseError> {
    let t = ip.transport;
    let cut = || short(ip.to_frame_end);
    // An inner Ethernet frame: only its EtherType matters, its addresses are the tunnel's.
    let ethernet = |inner: &'a [u8]| link(Framing::Ethernet, inner).map(|l| l.net);
    let in_v4 = ip.src.is_ipv4();
    match ip.proto {
        PROTO_IPIP if in_v4 => Ok((Tunnel::Ipip, Net::Ip(t))),
        PROTO_IPV6 if in_v4 => Ok((Tunnel::Sit, Net::Ip(t))),
        PROTO_IPIP | PROTO_IPV6 => Ok((Tunnel::Ip6tnl, Net::Ip(t))),
        PROTO_GRE => {
            let flags = be16(t, 0).ok_or_else(cut)?;
            let proto = be16(t, 2).ok_or_else(cut)?;
            // Version 0 only (1 is PPTP's); no RFC 1701 source routing.
            if flags & 0x0007 != 0 || flags & 0x4000 != 0 {
                return Err(ParseError::NotTcp);
            }
            // Checksum (with its reserved half), key and sequence number each add 4 bytes.
            let len = 4 + [0x8000u16, 0x2000, 0x1000]
                .iter()
                .filter(|&&bit| flags & bit != 0)
                .count()
                * 4;
            let inner = t.get(len..).ok_or_else(cut)?;
            match proto {
                ETH_TEB => Ok((Tunnel::Gre, ethernet(inner)?)),
                ty => Ok((Tunnel::Gre, Net::EtherType(ty, inner))),
            }
        }
        PROTO_UDP => {
            let dport = be16(t, 2).ok_or_else(cut)?;
            let udp = t.get(8..).ok_or_else(cut)?;
            if VXLAN_PORTS.contains(&dport) {
                // Flags (the I bit says a VNI is present), reserved, VNI, reserved.
                let flags = *udp.first().ok_or_else(cut)?;
                if flags & 0x08 == 0 {
                    return Err(ParseError::NotTcp);
                }
                let inner = udp.get(8..).ok_or_else(cut)?;
                Ok((Tunnel::Vxlan, ethernet(inner)?))
            } else if dport == GENEVE_PORT {
                // Version and option length (4-byte units), flags, protocol type, VNI.
                let first = *udp.first().ok_or_else(cut)?;
                let proto = be16(udp, 2).ok_or_else(cut)?;
                if first >> 6 != 0 {
                    return Err(ParseError::NotTcp);
                }
                let len = 8 + usize::from(first & 0x3F) * 4;
                let inner = udp.get(len..).ok_or_else(cut)?;
                match proto {
                    ETH_TEB => Ok((Tunnel::Geneve, ethernet(inner)?)),
                    ty => Ok((Tunnel::Geneve, Net::EtherType(ty, inner))),
                }
            } else {
                Err(ParseError::NotTcp)
            }
        }
        _ => Err(ParseError::NotTcp),
    }
}

/// Reads the TCP timestamp value from the option bytes; malformed options end the search.
fn tsval(mut opts: &[u8]) -> Option<u32> {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const TIMESTAMP: u8 = 8;
    loop {
        match *opts {
            [] | [EOL, ..] => return None,
            [NOP, ref rest @ ..] => opts = rest,
            [TIMESTAMP, 10, a, b, c, d, ..] => return Some(u32::from_be_bytes([a, b, c, d])),
            [_, len, ..] if len >= 2 && usize::from(len) <= opts.len() => {
                opts = &opts[usize::from(len)..]
            }
            _ => return None,
        }
    }
}

/// The Ethernet addresses of any frame (ARP, IPv6 neighbour discovery, …), when it has them.
pub fn macs(framing: Framing, frame: &[u8]) -> Option<Macs> {
    match framing {
        Framing::Ethernet if frame.len() >= 14 => link(framing, frame).ok()?.macs,
        _ => None,
    }
}

/// Parses one frame the live probe captured. Lax about IP length fields (GRO/TSO frames carry
/// total length 0) and strict about everything that decides where a header starts.
pub fn parse(framing: Framing, frame: &[u8]) -> Result<Segment<'_>, ParseError> {
    read(framing, frame, false).map(|c| c.segment)
}

/// Parses one frame of a capture file written by another tool: as [`parse`], and also a TCP
/// header whose options a short snap length cut (at least the 14 bytes up to the flags must be
/// there), and a segment inside VXLAN, Geneve, GRE, IPIP, SIT or ip6tnl tunnels.
pub fn parse_captured(framing: Framing, frame: &[u8]) -> Result<Captured<'_>, ParseError> {
    read(framing, frame, true)
}

fn read(framing: Framing, frame: &[u8], captured: bool) -> Result<Captured<'_>, ParseError> {
    let link = link(framing, frame)?;
    let mut ip = ip_packet(link.net)?;
    let mut tunnel = None;
    let mut depth = 0;
    while ip.proto != PROTO_TCP {
        if !captured || depth == MAX_TUNNELS {
            return Err(ParseError::NotTcp);
        }
        let (kind, net) = decapsulate(&ip)?;
        let outer_cut = ip.to_frame_end;
        ip = ip_packet(net)?;
        // The inner packet ends where the outer one does: cut only if that was cut.
        ip.to_frame_end &= outer_cut;
        tunnel = Some(kind);
        depth += 1;
    }
    let t = ip.transport;
    let cut_ok = captured && ip.to_frame_end;
    let h = match t.get(..20) {
        Some(h) => h,
        // Ports, sequence number, data offset and flags are in the first 14 bytes.
        None if cut_ok && t.len() >= 14 => t,
        None => return Err(short(ip.to_frame_end)),
    };
    let doff = usize::from(h[12] >> 4) * 4;
    if doff < 20 {
        return Err(ParseError::Malformed);
    }
    let (opts, payload, options_cut) = match t.get(20..doff) {
        Some(opts) => (opts, &t[doff..], false),
        None if cut_ok => (t.get(20..).unwrap_or_default(), &t[t.len()..], true),
        None => return Err(short(ip.to_frame_end)),
    };
    let flags = h[13];
    let segment = Segment {
        src: ip.src,
        dst: ip.dst,
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
        tsval: tsval(opts),
        ttl: ip.ttl,
        ip_id: ip.ip_id,
        payload,
        link_dir: link.dir,
        link_ifindex: link.ifindex,
    };
    Ok(Captured {
        segment,
        macs: link.macs,
        options_cut: options_cut && segment.tsval.is_none(),
        tunnel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};

    fn syn_frame() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 51, 100, 7], [198, 51, 100, 1], 63)
            .tcp(41770, 31908, 629798247, 64240)
            .syn()
            .options(&[TcpOptionElement::Timestamp(2657712186, 0)])
            .unwrap();
        let mut out = Vec::new();
        builder.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn syn_facts_are_read() {
        let frame = syn_frame();
        let seg = parse(Framing::Ethernet, &frame).unwrap();
        assert!(seg.is_syn());
        assert_eq!(seg.src, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(
            (seg.sport, seg.dport, seg.seq, seg.ttl),
            (41770, 31908, 629798247, 63)
        );
        assert_eq!(seg.tsval, Some(2657712186));
        assert_eq!((seg.link_dir, seg.link_ifindex), (None, None));
    }

    #[test]
    fn every_prefix_is_an_error_or_a_segment() {
        let frame = syn_frame();
        for len in 0..frame.len() {
            assert!(parse(Framing::Ethernet, &frame[..len]).is_err());
            for f in [
                Framing::RawIp,
                Framing::LinuxSll,
                Framing::LinuxSll2,
                Framing::Null,
            ] {
                let _ = parse(f, &frame[..len]);
            }
        }
        assert_eq!(parse(Framing::Ethernet, &[]), Err(ParseError::Truncated));
    }

    #[test]
    fn tcp_options_in_any_order() {
        let ts = [8, 10, 0x9E, 0x69, 0x0F, 0x3A, 0, 0, 0, 0];
        let cases: &[(&[u8], Option<u32>)] = &[
            (&ts, Some(0x9E690F3A)),
            (&[[4, 2].as_slice(), &ts].concat(), Some(0x9E690F3A)), // SACK-permitted first
            (
                &[[1, 1, 2, 4, 5, 0xB4].as_slice(), &ts].concat(),
                Some(0x9E690F3A),
            ),
            (&[[0].as_slice(), &ts].concat(), None), // after EOL nothing counts
            (&[[3, 0].as_slice(), &ts].concat(), None), // length 0 would loop
            (&[[3, 1].as_slice(), &ts].concat(), None), // length 1 is malformed
            (&[[3, 40].as_slice(), &ts].concat(), None), // runs past the options
            (&[8, 9, 1, 2, 3, 4, 5, 6, 7], None),    // timestamp of the wrong length
            (&[8, 10, 1, 2, 3], None),               // timestamp cut short
            (&[], None),
            (&[1], None),
        ];
        for (opts, want) in cases {
            assert_eq!(tsval(opts), *want, "{opts:?}");
        }
    }
}
