//! Properties over arbitrary input: the parsers (live and capture-file), the forwarding-facts
//! reader and the capture file reader never panic; a frame built from random facts parses back
//! to those facts; the capture-file parser agrees with the live one wherever that one reads.

use etherparse::{PacketBuilder, TcpOptionElement};
use proptest::prelude::*;
use realip_probe::l7;
use realip_probe::parse::{parse, parse_captured, Framing};
use realip_probe::pcapfile::PcapReader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const FRAMINGS: [Framing; 5] = [
    Framing::Ethernet,
    Framing::RawIp,
    Framing::LinuxSll,
    Framing::LinuxSll2,
    Framing::Null,
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 5000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that often look like the start of a real header, so the fuzzing goes deep.
fn framelike() -> impl Strategy<Value = Vec<u8>> {
    let prefixes: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        vec![0x60],
        [vec![0; 12], vec![0x08, 0x00, 0x45]].concat(),
        [vec![0; 12], vec![0x86, 0xDD, 0x60]].concat(),
        [vec![0; 12], vec![0x81, 0x00, 0, 1, 0x08, 0x00, 0x45]].concat(),
        [vec![0; 14], vec![0x86, 0xDD, 0x60]].concat(),
        vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x45,
        ],
        vec![2, 0, 0, 0, 0x45],
        // Tunnels: IPv4 carrying IPIP, GRE, and UDP to the VXLAN and Geneve ports.
        vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 4, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0x45,
        ],
        vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0, 0, 0x65, 0x58,
        ],
        vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0xC3, 0x50, 0x12,
            0xB5, 0, 0, 0, 0, 8,
        ],
        vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0xC3, 0x50, 0x17,
            0xC1, 0, 0, 0, 0,
        ],
        vec![0x60, 0, 0, 0, 0, 0, 41, 64],
    ];
    (
        prop::sample::select(prefixes),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(mut p, tail)| {
            p.extend(tail);
            p
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_never_panics(frame in framelike()) {
        for framing in FRAMINGS {
            let live = parse(framing, &frame);
            if let Ok(seg) = live {
                // What is returned lies inside the frame.
                prop_assert!(seg.payload.len() <= frame.len());
            }
            match parse_captured(framing, &frame) {
                Ok(c) => {
                    prop_assert!(c.segment.payload.len() <= frame.len());
                    // Whatever the live parser reads, the file parser reads the same way.
                    if let Ok(seg) = live {
                        prop_assert_eq!(c.segment, seg);
                        prop_assert!(c.tunnel.is_none() && !c.options_cut);
                    }
                }
                Err(_) => prop_assert!(live.is_err()),
            }
        }
    }

    #[test]
    fn l7_never_panics(payload in prop::collection::vec(any::<u8>(), 0..300), text in ".{0,80}") {
        let mut with_proxy = b"PROXY TCP4 ".to_vec();
        with_proxy.extend(&payload);
        let mut with_v2 = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        with_v2.extend(&payload);
        let mut with_http = b"GET / HTTP/1.1\r\nX-Forwarded-For: ".to_vec();
        with_http.extend(&payload);
        for p in [&payload, &with_proxy, &with_v2, &with_http] {
            let f = l7::forwarding_facts(p);
            for v in [&f.x_forwarded_for, &f.x_real_ip, &f.forwarded, &f.realip_token]
                .into_iter()
                .flatten()
            {
                prop_assert!(v.len() <= l7::MAX_VALUE);
                prop_assert!(v.bytes().all(|b| (0x20..0x7F).contains(&b)));
            }
            if let Ok(Some(h)) = l7::proxy_header(p) {
                prop_assert!(h.len <= p.len());
            }
        }
        let _ = l7::client_from_xff(&text);
        let _ = l7::client_from_forwarded(&text);
        let _ = l7::node_ip(&text);
    }

    #[test]
    fn pcap_reader_never_panics(
        header in prop::sample::select(vec![
            vec![0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0],
            vec![0xA1, 0xB2, 0x3C, 0x4D, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 101],
            vec![0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0,
                 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 28, 0, 0, 0,
                 1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 20, 0, 0, 0],
            vec![],
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = header;
        bytes.extend(tail);
        if let Ok(mut reader) = PcapReader::new(bytes.as_slice()) {
            // Each record consumes bytes, so this ends; the bound guards against a bug.
            for _ in 0..1000 {
                match reader.next_record() {
                    Ok(Some(r)) => {
                        let _ = parse(r.framing, r.data);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(e.offset() <= bytes.len() as u64);
                    }
                }
            }
            prop_assert!(matches!(reader.next_record(), Ok(None) | Err(_)));
        }
    }

    #[test]
    fn built_frames_parse_back(
        v6 in any::<bool>(),
        src4 in any::<[u8; 4]>(),
        dst4 in any::<[u8; 4]>(),
        src6 in any::<[u8; 16]>(),
        dst6 in any::<[u8; 16]>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        seq in any::<u32>(),
        ttl in any::<u8>(),
        ts in prop::option::of(any::<u32>()),
        before in prop::collection::vec(0u8..4, 0..3),
        vlans in 0usize..3,
        flags in any::<(bool, bool, bool, bool)>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // Other options in random order before the timestamp.
        let mut opts: Vec<TcpOptionElement> = before
            .iter()
            .map(|k| match k {
                0 => TcpOptionElement::Noop,
                1 => TcpOptionElement::SelectiveAcknowledgementPermitted,
                2 => TcpOptionElement::MaximumSegmentSize(1400),
                _ => TcpOptionElement::WindowScale(7),
            })
            .collect();
        if let Some(ts) = ts {
            opts.push(TcpOptionElement::Timestamp(ts, 0));
        }
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        macro_rules! finish {
            ($ip:expr) => {{
                let mut tcp = $ip.tcp(sport, dport, seq, 1000);
                let (syn, ack, rst, fin) = flags;
                if syn { tcp = tcp.syn(); }
                if ack { tcp = tcp.ack(1); }
                if rst { tcp = tcp.rst(); }
                if fin { tcp = tcp.fin(); }
                let tcp = tcp.options(&opts).unwrap();
                let mut out = Vec::new();
                tcp.write(&mut out, &payload).unwrap();
                out
            }};
        }
        macro_rules! ip {
            ($link:expr) => {
                if v6 { finish!($link.ipv6(src6, dst6, ttl)) } else { finish!($link.ipv4(src4, dst4, ttl)) }
            };
        }
        let frame = match vlans {
            0 => ip!(eth),
            1 => ip!(eth.single_vlan(5.try_into().unwrap())),
            _ => ip!(eth.double_vlan(6.try_into().unwrap(), 7.try_into().unwrap())),
        };
        let seg = parse(Framing::Ethernet, &frame).unwrap();
        let (src, dst) = if v6 {
            (IpAddr::from(Ipv6Addr::from(src6)), IpAddr::from(Ipv6Addr::from(dst6)))
        } else {
            (IpAddr::from(Ipv4Addr::from(src4)), IpAddr::from(Ipv4Addr::from(dst4)))
        };
        prop_assert_eq!((seg.src, seg.dst, seg.sport, seg.dport), (src, dst, sport, dport));
        prop_assert_eq!((seg.seq, seg.ttl, seg.tsval), (seq, ttl, ts));
        prop_assert_eq!((seg.syn, seg.ack, seg.rst, seg.fin), flags);
        prop_assert_eq!(seg.ip_id.is_none(), v6);
        prop_assert_eq!(seg.payload, payload.as_slice());
    }
}
