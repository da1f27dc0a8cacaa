//! The frame parser on hand-built frames for what is hard to capture: every link framing,
//! IPv6 extension headers, IPv4 fragments and options, GRO/TSO length fields, truncation,
//! Ethernet padding and malformed TCP headers.

use etherparse::{PacketBuilder, TcpOptionElement};
use realip_probe::parse::{parse, Framing, ParseError, Segment};
use realip_probe::wire::Direction;
use std::net::IpAddr;

const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An IPv4 TCP segment without link header: 198.51.100.7:41770 → 198.51.100.1:31908.
fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4([198, 51, 100, 7], [198, 51, 100, 1], 63)
        .tcp(41770, 31908, 629798247, 64240)
        .options(&[TcpOptionElement::Timestamp(2657712186, 0)])
        .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// An IPv6 TCP segment without link header: [2001:db8::7]:41770 → [2001:db8::1]:443.
fn ipv6_tcp(payload: &[u8]) -> Vec<u8> {
    let src = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let dst = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let b = PacketBuilder::ipv6(src, dst, 61)
        .tcp(41770, 443, 7, 64240)
        .syn()
        .options(&[TcpOptionElement::Timestamp(99, 0)])
        .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn eth(ip_packet: &[u8], ethertype: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend(ethertype.to_be_bytes());
    f.extend_from_slice(ip_packet);
    f
}

fn check_v4(seg: &Segment<'_>) {
    assert_eq!(
        (seg.src, seg.dst, seg.sport, seg.dport, seg.seq),
        (
            ip("198.51.100.7"),
            ip("198.51.100.1"),
            41770,
            31908,
            629798247
        )
    );
    assert_eq!((seg.tsval, seg.ttl), (Some(2657712186), 63));
    assert!(seg.ip_id.is_some());
}

#[test]
fn every_framing_reaches_the_same_segment() {
    let v4 = ipv4_tcp(PAYLOAD);
    // Linux cooked v1: packet type 4 (outgoing), ARPHRD_ETHER, 6-byte address, protocol.
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&v4);
    // Linux cooked v2: protocol, reserved, ifindex 7, ARPHRD_ETHER, type 0 (host), addr len 6.
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(&v4);
    /// Framing, frame, and the link facts it must yield.
    type Case = (Framing, Vec<u8>, Option<Direction>, Option<u32>);
    let cases: Vec<Case> = vec![
        (Framing::RawIp, v4.clone(), None, None),
        (Framing::Ethernet, eth(&v4, 0x0800), None, None),
        (Framing::LinuxSll, sll, Some(Direction::Out), None),
        (Framing::LinuxSll2, sll2, Some(Direction::In), Some(7)),
        // BSD loopback: AF_INET in either byte order.
        (
            Framing::Null,
            [&[2, 0, 0, 0], v4.as_slice()].concat(),
            None,
            None,
        ),
        (
            Framing::Null,
            [&[0, 0, 0, 2], v4.as_slice()].concat(),
            None,
            None,
        ),
    ];
    for (framing, frame, dir, ifindex) in cases {
        let seg = parse(framing, &frame).unwrap_or_else(|e| panic!("{framing:?}: {e}"));
        check_v4(&seg);
        assert_eq!(seg.payload, PAYLOAD, "{framing:?}");
        assert_eq!(
            (seg.link_dir, seg.link_ifindex),
            (dir, ifindex),
            "{framing:?}"
        );
    }
    // Every AF_INET6 value a loopback header may carry.
    let v6 = ipv6_tcp(&[]);
    for fam in [10u32, 24, 28, 30] {
        let frame = [fam.to_le_bytes().as_slice(), &v6].concat();
        assert_eq!(parse(Framing::Null, &frame).unwrap().src, ip("2001:db8::7"));
    }
    let other = [[7, 0, 0, 0].as_slice(), &v4].concat();
    assert_eq!(parse(Framing::Null, &other), Err(ParseError::NotIp));
}

#[test]
fn vlan_tags_single_double_and_too_many() {
    let single = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(100.try_into().unwrap())
        .ipv4([198, 51, 100, 7], [198, 51, 100, 1], 63)
        .tcp(41770, 31908, 629798247, 64240)
        .options(&[TcpOptionElement::Timestamp(2657712186, 0)])
        .unwrap();
    let mut frame = Vec::new();
    single.write(&mut frame, PAYLOAD).unwrap();
    check_v4(&parse(Framing::Ethernet, &frame).unwrap());
    let double = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .double_vlan(300.try_into().unwrap(), 200.try_into().unwrap())
        .ipv4([198, 51, 100, 7], [198, 51, 100, 1], 63)
        .tcp(41770, 31908, 629798247, 64240)
        .options(&[TcpOptionElement::Timestamp(2657712186, 0)])
        .unwrap();
    let mut frame = Vec::new();
    double.write(&mut frame, PAYLOAD).unwrap();
    let seg = parse(Framing::Ethernet, &frame).unwrap();
    check_v4(&seg);
    assert_eq!(seg.payload, PAYLOAD);
    // 802.1ad outer tag, then 802.1Q, then the old 0x9100 QinQ tag.
    let mut tagged = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for tpid in [0x88A8u16, 0x8100, 0x9100] {
        tagged.extend(tpid.to_be_bytes());
        tagged.extend([0, 7]);
    }
    tagged.extend([0x08, 0x00]);
    tagged.extend_from_slice(&ipv4_tcp(&[]));
    check_v4(&parse(Framing::Ethernet, &tagged).unwrap());
    // A tag cut in half, and more tags than any network stacks.
    assert_eq!(
        parse(Framing::Ethernet, &tagged[..16]),
        Err(ParseError::Truncated)
    );
    let mut deep = vec![0u8; 12];
    for _ in 0..8 {
        deep.extend([0x81, 0x00, 0, 1]);
    }
    deep.extend([0x08, 0x00]);
    deep.extend_from_slice(&ipv4_tcp(&[]));
    assert_eq!(parse(Framing::Ethernet, &deep), Err(ParseError::NotIp));
}

#[test]
fn not_ip_and_not_tcp() {
    let arp = eth(&[0; 28], 0x0806);
    assert_eq!(parse(Framing::Ethernet, &arp), Err(ParseError::NotIp));
    assert_eq!(parse(Framing::RawIp, &[0x50; 40]), Err(ParseError::NotIp));
    assert_eq!(parse(Framing::RawIp, &[]), Err(ParseError::Truncated));
    let udp = PacketBuilder::ipv4([198, 51, 100, 7], [198, 51, 100, 1], 63).udp(53, 53);
    let mut frame = Vec::new();
    udp.write(&mut frame, b"dns").unwrap();
    assert_eq!(parse(Framing::RawIp, &frame), Err(ParseError::NotTcp));
}

#[test]
fn ipv4_length_fields_padding_gro_and_snaplen() {
    let v4 = ipv4_tcp(PAYLOAD);
    // Ethernet padding after a short packet is not payload.
    let mut padded = eth(&ipv4_tcp(&[]), 0x0800);
    padded.extend([0; 6]);
    assert_eq!(parse(Framing::Ethernet, &padded).unwrap().payload, b"");
    // GRO/TSO super-frames carry total length 0: the frame's end is the packet's.
    let mut gro = v4.clone();
    gro[2..4].copy_from_slice(&[0, 0]);
    assert_eq!(parse(Framing::RawIp, &gro).unwrap().payload, PAYLOAD);
    // A snap length cut: the payload is what was captured.
    let cut = &v4[..v4.len() - 4];
    assert_eq!(
        parse(Framing::RawIp, cut).unwrap().payload,
        &PAYLOAD[..PAYLOAD.len() - 4]
    );
    // Total length shorter than the IP header, or ending inside the TCP header.
    let mut short = v4.clone();
    short[2..4].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(parse(Framing::RawIp, &short), Err(ParseError::Malformed));
    let mut inside = v4.clone();
    inside[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(parse(Framing::RawIp, &inside), Err(ParseError::Malformed));
    // Cut by the capture inside the TCP header: truncated.
    assert_eq!(parse(Framing::RawIp, &v4[..30]), Err(ParseError::Truncated));
    // IHL below 5.
    let mut ihl = v4.clone();
    ihl[0] = 0x44;
    assert_eq!(parse(Framing::RawIp, &ihl), Err(ParseError::Malformed));
}

#[test]
fn ipv4_options_and_fragments() {
    // IHL 6: one 4-byte option (NOP NOP NOP EOL) before TCP.
    let v4 = ipv4_tcp(PAYLOAD);
    let mut opts = v4[..20].to_vec();
    opts[0] = 0x46;
    opts[2..4].copy_from_slice(&((v4.len() + 4) as u16).to_be_bytes());
    opts.extend([1, 1, 1, 0]);
    opts.extend_from_slice(&v4[20..]);
    let seg = parse(Framing::RawIp, &opts).unwrap();
    check_v4(&seg);
    assert_eq!(seg.payload, PAYLOAD);
    // First fragment (MF set, offset 0) still has the TCP header.
    let mut first = v4.clone();
    first[6] = 0x20;
    check_v4(&parse(Framing::RawIp, &first).unwrap());
    // A later fragment has none.
    let mut later = v4.clone();
    later[6..8].copy_from_slice(&185u16.to_be_bytes());
    assert_eq!(parse(Framing::RawIp, &later), Err(ParseError::Fragment));
}

/// Inserts an IPv6 extension header (its next-header byte is filled in) right after the fixed
/// header, fixing the chain and the payload length.
fn with_ext(v6: &[u8], kind: u8, mut ext: Vec<u8>) -> Vec<u8> {
    ext[0] = v6[6];
    let mut out = v6[..40].to_vec();
    out[6] = kind;
    let plen = u16::from_be_bytes([v6[4], v6[5]]) + ext.len() as u16;
    out[4..6].copy_from_slice(&plen.to_be_bytes());
    out.extend(ext);
    out.extend_from_slice(&v6[40..]);
    out
}

#[test]
fn ipv6_extension_header_chains() {
    let v6 = ipv6_tcp(PAYLOAD);
    let hop = vec![0, 0, 1, 4, 0, 0, 0, 0]; // PadN
    let dest = vec![0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // 16 bytes
    let routing = vec![0, 0, 4, 0, 0, 0, 0, 0]; // segments left 0
    let frag_first = vec![0, 0, 0, 1, 0, 0, 0, 42]; // offset 0, M set
    let auth = vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]; // (1 + 2) * 4 = 12 bytes
    let mut p = v6.clone();
    for (kind, ext) in [
        (51, auth),
        (44, frag_first),
        (60, dest),
        (43, routing),
        (0, hop),
    ] {
        p = with_ext(&p, kind, ext);
    }
    let seg = parse(Framing::RawIp, &p).unwrap();
    assert_eq!((seg.src, seg.dport, seg.seq), (ip("2001:db8::7"), 443, 7));
    assert_eq!((seg.tsval, seg.ttl, seg.ip_id), (Some(99), 61, None));
    assert_eq!(seg.payload, PAYLOAD);
    assert!(seg.is_syn());
    // A later fragment.
    let later = with_ext(&v6, 44, vec![0, 0, 0x05, 0x38, 0, 0, 0, 42]);
    assert_eq!(parse(Framing::RawIp, &later), Err(ParseError::Fragment));
    // ESP hides the transport; no-next-header has none.
    for kind in [50, 59] {
        let mut esp = v6.clone();
        esp[6] = kind;
        assert_eq!(parse(Framing::RawIp, &esp), Err(ParseError::NotTcp));
    }
    // An extension header longer than the packet (within the frame): malformed; past the
    // captured bytes: truncated.
    let mut long = with_ext(&v6, 60, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    long[41] = 200;
    assert_eq!(parse(Framing::RawIp, &long), Err(ParseError::Truncated));
    let mut over = with_ext(&v6, 60, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    over[41] = 1; // 16 bytes, but the packet says the payload is shorter
    over[4..6].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(parse(Framing::RawIp, &over), Err(ParseError::Malformed));
    // Payload length 0 (BIG TCP / jumbogram): the frame's end is the packet's.
    let mut big = v6.clone();
    big[4..6].copy_from_slice(&[0, 0]);
    assert_eq!(parse(Framing::RawIp, &big).unwrap().payload, PAYLOAD);
    // An endless chain of hop-by-hop headers is refused, not followed.
    let mut chain = v6.clone();
    for _ in 0..12 {
        chain = with_ext(&chain, 0, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(parse(Framing::RawIp, &chain), Err(ParseError::Malformed));
}

#[test]
fn tcp_header_and_options() {
    let options: &[&[TcpOptionElement]] = &[
        &[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(5, 6),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ],
        // Timestamp after SACK-permitted and NOPs, as some stacks order them.
        &[
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(5, 6),
        ],
        &[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(5, 6),
            TcpOptionElement::MaximumSegmentSize(1460),
        ],
    ];
    for opts in options {
        let b = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(1, 2, 3, 4)
            .syn()
            .options(opts)
            .unwrap();
        let mut f = Vec::new();
        b.write(&mut f, &[]).unwrap();
        assert_eq!(
            parse(Framing::RawIp, &f).unwrap().tsval,
            Some(5),
            "{opts:?}"
        );
    }
    // Raw option bytes: EOL before the timestamp, and a zero-length option.
    for raw in [
        [0u8, 8, 10, 0, 0, 0, 5, 0, 0, 0, 0, 0],
        [3, 0, 8, 10, 0, 0, 0, 5, 0, 0, 0, 0],
    ] {
        let b = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(1, 2, 3, 4)
            .options_raw(&raw)
            .unwrap();
        let mut f = Vec::new();
        b.write(&mut f, &[]).unwrap();
        assert_eq!(parse(Framing::RawIp, &f).unwrap().tsval, None, "{raw:?}");
    }
    // Flags.
    let b = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .tcp(1, 2, 3, 4)
        .rst()
        .fin()
        .ack(9);
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    let seg = parse(Framing::RawIp, &f).unwrap();
    assert!(seg.rst && seg.fin && seg.ack && !seg.syn && !seg.is_syn());
    assert_eq!(seg.tsval, None);
    // Data offset below 5, and a data offset past the captured bytes.
    let mut bad = f.clone();
    bad[32] = 0x40;
    assert_eq!(parse(Framing::RawIp, &bad), Err(ParseError::Malformed));
    let mut past = f.clone();
    past[32] = 0xF0;
    past[2..4].copy_from_slice(&[0, 0]);
    assert_eq!(parse(Framing::RawIp, &past), Err(ParseError::Truncated));
}

#[test]
fn link_headers_cut_short() {
    let v4 = ipv4_tcp(&[]);
    for (framing, header) in [
        (Framing::Ethernet, 14),
        (Framing::LinuxSll, 16),
        (Framing::LinuxSll2, 20),
        (Framing::Null, 4),
    ] {
        let frame = [vec![0u8; header - 2], vec![0x08, 0x00], v4.clone()].concat();
        for len in 0..header {
            assert_eq!(
                parse(framing, &frame[..len]),
                Err(ParseError::Truncated),
                "{framing:?} {len}"
            );
        }
    }
}
