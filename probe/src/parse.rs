//! Frame → TCP segment facts. Pure, allocation-free, and total: any byte string yields either a
//! [`Segment`] or a [`ParseError`], never a panic.

use etherparse::{LaxNetSlice, LaxSlicedPacket, TcpOptionElement, TransportSlice};
use std::net::IpAddr;

/// How a frame begins, chosen from the interface's (or capture file's) link type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Ethernet II, optionally behind 802.1Q / QinQ tags.
    Ethernet,
    /// The IP header first (tun, ipip, wireguard, pcap LINKTYPE_RAW).
    RawIp,
}

/// What one TCP segment looked like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
    pub tsval: Option<u32>,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
    /// TCP payload bytes present in the frame (may be cut short by the capture length).
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// A connection's opening segment: SYN set, ACK clear.
    pub fn is_syn(&self) -> bool {
        self.syn && !self.ack
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("frame too short for its headers")]
    Truncated,
    #[error("not IPv4 or IPv6")]
    NotIp,
    #[error("not TCP")]
    NotTcp,
    #[error("IP fragment without a TCP header")]
    Fragment,
}

/// Parses one frame. Lax about IP length fields (GRO/TSO frames carry total length 0).
pub fn parse(framing: Framing, frame: &[u8]) -> Result<Segment<'_>, ParseError> {
    let packet = match framing {
        Framing::Ethernet => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| ParseError::Truncated)?
        }
        Framing::RawIp => LaxSlicedPacket::from_ip(frame).map_err(|_| ParseError::Truncated)?,
    };
    let (src, dst, ttl, ip_id, fragmented) = match &packet.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.ttl(),
                Some(h.identification()),
                v4.is_payload_fragmented(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.hop_limit(),
                None,
                v6.is_payload_fragmented(),
            )
        }
        _ => return Err(ParseError::NotIp),
    };
    let tcp = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        _ if fragmented => return Err(ParseError::Fragment),
        _ if packet.stop_err.is_some() => return Err(ParseError::Truncated),
        _ => return Err(ParseError::NotTcp),
    };
    let tsval = tcp.options_iterator().find_map(|opt| match opt {
        Ok(TcpOptionElement::Timestamp(val, _)) => Some(val),
        _ => None,
    });
    Ok(Segment {
        src,
        dst,
        sport: tcp.source_port(),
        dport: tcp.destination_port(),
        seq: tcp.sequence_number(),
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
        fin: tcp.fin(),
        tsval,
        ttl,
        ip_id,
        payload: tcp.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

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
    }

    #[test]
    fn every_prefix_is_an_error_or_a_segment() {
        let frame = syn_frame();
        for len in 0..frame.len() {
            let _ = parse(Framing::Ethernet, &frame[..len]);
            let _ = parse(Framing::RawIp, &frame[..len]);
        }
        assert_eq!(parse(Framing::Ethernet, &[]), Err(ParseError::Truncated));
    }
}
