//! The capture-file parser on what other tools write: TCP options cut by a short snap length,
//! SYNs inside VXLAN, Geneve, GRE and IP-in-IP tunnels, and the Ethernet addresses of a frame.
//! The live probe's parser must keep refusing all of these as before.

use etherparse::PacketBuilder;
use realip_probe::parse::{parse, parse_captured, Framing, Macs, ParseError, Tunnel};
use std::net::IpAddr;

const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 7];
const NODE: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A Linux SYN's options as the kernel lays them out: MSS, SACK-permitted, timestamp
/// (TSval 2657712186, TSecr 0), NOP, window scale; 20 bytes.
const LINUX_SYN_OPTIONS: [u8; 20] = [
    2, 4, 5, 0xB4, 4, 2, 8, 10, 0x9E, 0x69, 0x78, 0x3A, 0, 0, 0, 0, 1, 3, 3, 7,
];

/// The inner SYN as an Ethernet frame: 10.244.0.5:41770 → 10.244.1.5:8080, TTL 63, id 4321.
fn inner_ethernet() -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 1, 5], [2, 0, 0, 0, 1, 1])
        .ipv4([10, 244, 0, 5], [10, 244, 1, 5], 63)
        .tcp(41770, 8080, 629798247, 64240)
        .syn()
        .options_raw(&LINUX_SYN_OPTIONS)
        .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    // Fixed identification, so tests can compare it.
    out[18..20].copy_from_slice(&4321u16.to_be_bytes());
    out
}

fn inner_ipv4() -> Vec<u8> {
    inner_ethernet()[14..].to_vec()
}

fn inner_ipv6() -> Vec<u8> {
    let b = PacketBuilder::ipv6(
        "2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
        "2001:db8:1::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
        62,
    )
    .tcp(41771, 8080, 7, 64240)
    .syn()
    .options_raw(&LINUX_SYN_OPTIONS)
    .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

/// An outer IPv4 header (underlay 192.0.2.10 → 192.0.2.11, TTL 64) around `payload`.
fn outer_v4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 10, 192, 0, 2, 11,
    ];
    let total = (20 + payload.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An outer IPv6 header (2001:db8:ff::a → 2001:db8:ff::b) around `payload`.
fn outer_v6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    h.extend(
        "2001:db8:ff::a"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend(
        "2001:db8:ff::b"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(payload);
    h
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = 50000u16.to_be_bytes().to_vec();
    u.extend(dport.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend_from_slice(payload);
    u
}

fn vxlan(inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    v.extend_from_slice(inner);
    v
}

fn geneve(proto: u16, options: usize, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![(options / 4) as u8, 0];
    g.extend(proto.to_be_bytes());
    g.extend([0, 0, 5, 0]);
    g.extend(vec![0u8; options]);
    g.extend_from_slice(inner);
    g
}

fn gre(flags: u16, proto: u16, inner: &[u8]) -> Vec<u8> {
    let mut g = flags.to_be_bytes().to_vec();
    g.extend(proto.to_be_bytes());
    for bit in [0x8000u16, 0x2000, 0x1000] {
        if flags & bit != 0 {
            g.extend([0xAA; 4]);
        }
    }
    g.extend_from_slice(inner);
    g
}

fn ethernet(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend(ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn underlay(payload: Vec<u8>) -> Vec<u8> {
    ethernet(NODE, CLIENT, 0x0800, &payload)
}

fn check_inner_v4(frame: &[u8], framing: Framing, tunnel: Tunnel) {
    let c = parse_captured(framing, frame).unwrap_or_else(|e| panic!("{tunnel:?}: {e}"));
    let s = c.segment;
    assert!(s.is_syn(), "{tunnel:?}");
    assert_eq!(
        (s.src, s.dst, s.sport, s.dport, s.seq),
        (ip("10.244.0.5"), ip("10.244.1.5"), 41770, 8080, 629798247),
        "{tunnel:?}"
    );
    // The inner packet's TTL and identification: what NAT and routing act on.
    assert_eq!(
        (s.ttl, s.ip_id, s.tsval),
        (63, Some(4321), Some(2657712186)),
        "{tunnel:?}"
    );
    assert_eq!(c.tunnel, Some(tunnel));
    assert!(!c.options_cut);
    // The live parser does not open tunnels: its filter never passes them.
    assert_eq!(parse(framing, frame), Err(ParseError::NotTcp), "{tunnel:?}");
}

#[test]
fn syns_inside_every_tunnel_are_read_with_the_inner_facts() {
    let cases: Vec<(Vec<u8>, Tunnel)> = vec![
        (
            underlay(outer_v4(17, &udp(4789, &vxlan(&inner_ethernet())))),
            Tunnel::Vxlan,
        ),
        // Flannel's VXLAN uses the Linux default port.
        (
            underlay(outer_v4(17, &udp(8472, &vxlan(&inner_ethernet())))),
            Tunnel::Vxlan,
        ),
        (
            underlay(outer_v4(
                17,
                &udp(6081, &geneve(0x6558, 8, &inner_ethernet())),
            )),
            Tunnel::Geneve,
        ),
        (
            underlay(outer_v4(17, &udp(6081, &geneve(0x0800, 0, &inner_ipv4())))),
            Tunnel::Geneve,
        ),
        (
            underlay(outer_v4(47, &gre(0, 0x0800, &inner_ipv4()))),
            Tunnel::Gre,
        ),
        // Checksum, key and sequence number present.
        (
            underlay(outer_v4(47, &gre(0xB000, 0x0800, &inner_ipv4()))),
            Tunnel::Gre,
        ),
        // Transparent Ethernet bridging (gretap).
        (
            underlay(outer_v4(47, &gre(0x2000, 0x6558, &inner_ethernet()))),
            Tunnel::Gre,
        ),
        (underlay(outer_v4(4, &inner_ipv4())), Tunnel::Ipip),
        (
            ethernet(NODE, CLIENT, 0x86DD, &outer_v6(4, &inner_ipv4())),
            Tunnel::Ip6tnl,
        ),
        (
            ethernet(
                NODE,
                CLIENT,
                0x86DD,
                &outer_v6(17, &udp(4789, &vxlan(&inner_ethernet()))),
            ),
            Tunnel::Vxlan,
        ),
    ];
    for (frame, tunnel) in &cases {
        check_inner_v4(frame, Framing::Ethernet, *tunnel);
        // The outer Ethernet addresses are the frame's, not the inner frame's.
        let c = parse_captured(Framing::Ethernet, frame).unwrap();
        assert_eq!(
            c.macs,
            Some(Macs {
                src: NODE,
                dst: CLIENT
            })
        );
    }
    // An ipip tunnel device's own capture has no link header.
    check_inner_v4(&outer_v4(4, &inner_ipv4()), Framing::RawIp, Tunnel::Ipip);
    // IPv6 inside IPv4 (sit) and inside IPv6.
    for (frame, tunnel) in [
        (outer_v4(41, &inner_ipv6()), Tunnel::Sit),
        (outer_v6(41, &inner_ipv6()), Tunnel::Ip6tnl),
    ] {
        let c = parse_captured(Framing::RawIp, &frame).unwrap();
        assert_eq!(c.segment.src, ip("2001:db8::5"));
        assert_eq!((c.segment.ttl, c.segment.ip_id), (62, None));
        assert_eq!(c.tunnel, Some(tunnel));
    }
}

#[test]
fn a_tunnel_inside_a_tunnel_names_the_innermost() {
    let vx = outer_v4(17, &udp(4789, &vxlan(&inner_ethernet())));
    let frame = underlay(outer_v4(47, &gre(0, 0x0800, &vx)));
    check_inner_v4(&frame, Framing::Ethernet, Tunnel::Vxlan);
    // Deeper than three tunnels is not followed.
    let mut deep = inner_ipv4();
    for _ in 0..4 {
        deep = outer_v4(4, &deep);
    }
    assert_eq!(
        parse_captured(Framing::RawIp, &deep),
        Err(ParseError::NotTcp)
    );
}

#[test]
fn what_is_not_a_tunnel_this_parser_opens_stays_not_tcp() {
    let not =
        |frame: Vec<u8>| parse_captured(Framing::Ethernet, &underlay(frame)).map(|c| c.segment.seq);
    // UDP to another port, PPTP's GRE version 1, GRE with source routing, VXLAN without its I
    // bit, Geneve of an unknown version, GRE carrying ARP.
    assert_eq!(
        not(outer_v4(17, &udp(53, &vxlan(&inner_ethernet())))),
        Err(ParseError::NotTcp)
    );
    assert_eq!(
        not(outer_v4(47, &gre(0x0001, 0x880B, &inner_ipv4()))),
        Err(ParseError::NotTcp)
    );
    assert_eq!(
        not(outer_v4(47, &gre(0x4000, 0x0800, &inner_ipv4()))),
        Err(ParseError::NotTcp)
    );
    let mut no_i = vxlan(&inner_ethernet());
    no_i[0] = 0;
    assert_eq!(
        not(outer_v4(17, &udp(4789, &no_i))),
        Err(ParseError::NotTcp)
    );
    let mut v1 = geneve(0x6558, 0, &inner_ethernet());
    v1[0] = 0x40;
    assert_eq!(not(outer_v4(17, &udp(6081, &v1))), Err(ParseError::NotTcp));
    assert_eq!(
        not(outer_v4(47, &gre(0, 0x0806, &[0; 28]))),
        Err(ParseError::NotIp)
    );
    // A tunnel carrying UDP is still not TCP.
    let mut dns = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(53, 53)
        .write(&mut dns, b"q")
        .unwrap();
    assert_eq!(not(outer_v4(4, &dns)), Err(ParseError::NotTcp));
}

#[test]
fn tunnel_headers_cut_short_are_truncated_at_every_length() {
    let frame = underlay(outer_v4(
        17,
        &udp(6081, &geneve(0x6558, 8, &inner_ethernet())),
    ));
    // 14 + 20 + 8 + 16 + 14 + 20 + 14: up to the inner TCP flags.
    let whole_enough = 14 + 20 + 8 + 16 + 14 + 20 + 14;
    for len in 0..frame.len() {
        let got = parse_captured(Framing::Ethernet, &frame[..len]);
        if len < 14 + 20 {
            assert!(got.is_err(), "{len}");
        } else if len < whole_enough {
            assert_eq!(got, Err(ParseError::Truncated), "{len}");
        } else {
            assert!(got.is_ok(), "{len}: {got:?}");
        }
    }
}

/// `tcpdump -s 68`: 14 + 20 + 20 bytes of headers and 14 of the 20 bytes of options. Linux puts
/// the TSval in option bytes 8 to 12, so an IPv4 SYN keeps it; a VLAN tag, or IPv6, cuts it.
#[test]
fn a_classic_68_byte_snap_length_keeps_the_syn() {
    let frame = inner_ethernet();
    assert_eq!(frame.len(), 74);
    let facts = |s: &realip_probe::parse::Segment<'_>| {
        (s.src, s.dst, s.sport, s.dport, s.seq, s.ttl, s.ip_id)
    };
    let want = (
        ip("10.244.0.5"),
        ip("10.244.1.5"),
        41770,
        8080,
        629798247,
        63,
        Some(4321),
    );
    let cut = &frame[..68];
    assert_eq!(parse(Framing::Ethernet, cut), Err(ParseError::Truncated));
    let c = parse_captured(Framing::Ethernet, cut).unwrap();
    assert!(c.segment.is_syn());
    assert_eq!(facts(&c.segment), want);
    assert_eq!((c.segment.tsval, c.options_cut), (Some(2657712186), false));
    assert!(c.segment.payload.is_empty());
    // Four bytes fewer (as with an 802.1Q tag at 68): the TSval is cut, the rest is there.
    let c = parse_captured(Framing::Ethernet, &frame[..64]).unwrap();
    assert_eq!(facts(&c.segment), want);
    assert_eq!((c.segment.tsval, c.options_cut), (None, true));
    // No option byte at all.
    let c = parse_captured(Framing::Ethernet, &frame[..54]).unwrap();
    assert_eq!((c.segment.tsval, c.options_cut), (None, true));
    // IPv6 at 68 bytes: 14 bytes of TCP header, flags included.
    let v6 = ethernet(CLIENT, NODE, 0x86DD, &inner_ipv6());
    let c = parse_captured(Framing::Ethernet, &v6[..68]).unwrap();
    assert!(c.segment.is_syn() && c.options_cut);
    assert_eq!((c.segment.sport, c.segment.seq), (41771, 7));
    assert_eq!(
        parse_captured(Framing::Ethernet, &v6[..67]),
        Err(ParseError::Truncated)
    );
    // A header the IP length field ends inside is malformed, not cut: not taken.
    let mut lying = frame.clone();
    lying[16..18].copy_from_slice(&44u16.to_be_bytes());
    assert_eq!(
        parse_captured(Framing::Ethernet, &lying),
        Err(ParseError::Malformed)
    );
}

#[test]
fn ethernet_addresses_and_unicast() {
    let frame = inner_ethernet();
    let macs = parse_captured(Framing::Ethernet, &frame)
        .unwrap()
        .macs
        .unwrap();
    assert_eq!(
        (macs.src, macs.dst),
        ([2, 0, 0, 0, 1, 5], [2, 0, 0, 0, 1, 1])
    );
    assert!(macs.unicast());
    let broadcast = Macs {
        src: NODE,
        dst: [0xff; 6],
    };
    assert!(!broadcast.unicast());
    let packet = inner_ipv4();
    let raw = parse_captured(Framing::RawIp, &packet).unwrap();
    assert_eq!((raw.macs, raw.tunnel), (None, None));
}

/// Every frame of every real capture (tests/fixtures): where the live parser reads a segment,
/// the capture-file parser reads the same; cut to 68 and 64 bytes as `tcpdump -s` would, every
/// SYN is still found with the facts it had whole.
#[test]
fn real_captures_read_alike_and_survive_short_snap_lengths() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut syns = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("pcap" | "pcapng")
        ) {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        let mut reader = realip_probe::pcapfile::PcapReader::new(file).unwrap();
        while let Some(r) = reader.next_record().unwrap() {
            let Ok(seg) = parse(r.framing, r.data) else {
                continue;
            };
            let c = parse_captured(r.framing, r.data).unwrap();
            assert_eq!(c.segment, seg, "{path:?}");
            assert!(c.tunnel.is_none() && !c.options_cut);
            if !seg.is_syn() {
                continue;
            }
            syns += 1;
            for snap in [68, 64] {
                let cut = &r.data[..r.data.len().min(snap)];
                match parse_captured(r.framing, cut) {
                    Ok(c) => {
                        let s = c.segment;
                        assert_eq!(
                            (s.src, s.dst, s.sport, s.dport, s.seq, s.ttl, s.ip_id),
                            (seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ttl, seg.ip_id),
                            "{path:?} at {snap}"
                        );
                        assert!(s.tsval == seg.tsval || (s.tsval.is_none() && c.options_cut));
                    }
                    // IPv6 behind a cooked or tagged header leaves fewer than 14 TCP bytes.
                    Err(ParseError::Truncated) => assert!(seg.ip_id.is_none(), "{path:?}"),
                    Err(e) => panic!("{path:?} at {snap}: {e}"),
                }
            }
        }
    }
    assert!(syns >= 15, "{syns} SYNs in the fixtures");
}
