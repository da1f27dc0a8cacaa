//! The parser, the forwarding-facts reader and the capture file reader on real captures made by
//! `tests/fixtures/make.sh` (see `tests/fixtures/README.md`).

use realip_probe::l7::{self, Forwarding};
use realip_probe::parse::{self, Framing, Segment};
use realip_probe::pcapfile::{PcapReader, Record};
use realip_probe::wire::{Direction, ProxySource};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

/// One record, owned.
struct Frame {
    ts_ns: u64,
    iface: Option<String>,
    framing: Framing,
    data: Vec<u8>,
    orig_len: u32,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_all(name: &str) -> Vec<Frame> {
    let file = std::fs::File::open(fixture(name)).unwrap();
    let mut reader = PcapReader::new(file).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        let Record {
            ts_ns,
            iface,
            framing,
            data,
            orig_len,
            ..
        } = r;
        out.push(Frame {
            ts_ns,
            iface: iface.map(str::to_string),
            framing,
            data: data.to_vec(),
            orig_len,
        });
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What every fixture's flows must show: each client SYN, its first data segment at ISN + 1 with
/// the same TSval clock, and the forwarding facts `client.py` sent.
struct Expect {
    file: &'static str,
    framing: Framing,
    /// Client source ports of the flows in the file.
    ports: &'static [u16],
    /// Whether the request was captured whole (no snap length cut).
    whole: bool,
}

fn check(e: &Expect) -> Vec<Frame> {
    let frames = read_all(e.file);
    assert!(!frames.is_empty(), "{}", e.file);
    let segs: Vec<Segment<'_>> = frames
        .iter()
        .map(|f| {
            assert_eq!(f.framing, e.framing, "{}", e.file);
            assert!(f.data.len() <= f.orig_len as usize);
            parse::parse(f.framing, &f.data).unwrap_or_else(|err| panic!("{}: {err}", e.file))
        })
        .collect();
    let mut seen = BTreeSet::new();
    for syn in segs.iter().filter(|s| s.is_syn()) {
        assert_eq!(syn.dport, 8080, "{}", e.file);
        assert!(syn.payload.is_empty());
        assert!(syn.tsval.is_some(), "{}: SYN without TSval", e.file);
        assert!(syn.ttl == 64, "{}: ttl {}", e.file, syn.ttl);
        seen.insert(syn.sport);
        // The SYN-ACK acknowledges this ISN; the first data segment starts at ISN + 1.
        let data = segs
            .iter()
            .find(|s| s.sport == syn.sport && s.src == syn.src && !s.payload.is_empty())
            .unwrap_or_else(|| panic!("{}: no data for port {}", e.file, syn.sport));
        assert_eq!(data.seq, syn.seq.wrapping_add(1), "{}", e.file);
        assert!(data.tsval.unwrap().wrapping_sub(syn.tsval.unwrap()) < 10_000);
        let facts = l7::forwarding_facts(data.payload);
        if !e.whole {
            assert!(data.payload.len() < 205, "{}: not cut", e.file);
            assert!(facts.x_forwarded_for.is_none());
            continue;
        }
        let proxy = facts.proxy_protocol.clone();
        let kind = match &proxy {
            Some(p) if p.version == 2 => "proxy2",
            Some(_) => "proxy1",
            None => "plain",
        };
        assert_eq!(
            facts,
            Forwarding {
                x_forwarded_for: Some("203.0.113.7, 10.0.0.1".into()),
                x_real_ip: Some("203.0.113.7".into()),
                forwarded: Some(r#"for="[2001:db8:cafe::17]:4711";proto=http"#.into()),
                proxy_protocol: proxy,
                realip_token: Some(format!("{kind}-{}", syn.sport)),
            },
            "{}",
            e.file
        );
        let fwd = facts.forwarded.as_deref().unwrap();
        assert_eq!(
            l7::client_from_forwarded(fwd).as_deref(),
            Some("2001:db8:cafe::17")
        );
        let xff = facts.x_forwarded_for.as_deref().unwrap();
        assert_eq!(l7::client_from_xff(xff).as_deref(), Some("203.0.113.7"));
    }
    let want: BTreeSet<u16> = e.ports.iter().copied().collect();
    assert_eq!(seen, want, "{}", e.file);
    // Timestamps: this century, never going back.
    assert!(frames[0].ts_ns > 1_600_000_000_000_000_000);
    assert!(frames.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    frames
}

#[test]
fn ethernet_ipv4_microseconds() {
    let frames = check(&Expect {
        file: "eth-ipv4.pcap",
        framing: Framing::Ethernet,
        ports: &[40001, 40002],
        whole: true,
    });
    assert!(frames
        .iter()
        .all(|f| f.ts_ns % 1000 == 0 && f.iface.is_none()));
    let proxy = frames
        .iter()
        .filter_map(|f| parse::parse(f.framing, &f.data).ok())
        .find_map(|s| l7::forwarding_facts(s.payload).proxy_protocol)
        .unwrap();
    assert_eq!(
        proxy,
        ProxySource {
            version: 1,
            src: ip("192.0.2.77"),
            sport: 50077,
            dst: ip("198.51.100.1"),
            dport: 443
        }
    );
}

#[test]
fn ethernet_ipv4_cut_by_snap_length() {
    let frames = check(&Expect {
        file: "eth-ipv4-snap96.pcap",
        framing: Framing::Ethernet,
        ports: &[40001, 40002],
        whole: false,
    });
    assert!(frames.iter().all(|f| f.data.len() <= 96));
    assert!(frames.iter().any(|f| (f.orig_len as usize) > f.data.len()));
}

#[test]
fn ethernet_ipv6_nanoseconds() {
    let frames = check(&Expect {
        file: "eth-ipv6-nano.pcap",
        framing: Framing::Ethernet,
        ports: &[40003, 40004],
        whole: true,
    });
    // Nanosecond files keep digits a microsecond file cannot have.
    assert!(frames.iter().any(|f| f.ts_ns % 1000 != 0));
    let seg = parse::parse(Framing::Ethernet, &frames[0].data).unwrap();
    assert_eq!(seg.src, ip("2001:db8::2"));
    assert_eq!(seg.ip_id, None);
}

#[test]
fn vlan_and_qinq_tags() {
    for (file, tag_bytes) in [("vlan.pcap", 4), ("qinq.pcap", 8)] {
        let frames = check(&Expect {
            file,
            framing: Framing::Ethernet,
            ports: &[40005, 40006],
            whole: true,
        });
        // The tags really are on the frame.
        let ty = u16::from_be_bytes([frames[0].data[12], frames[0].data[13]]);
        assert!(ty == 0x8100 || ty == 0x88A8, "{file}: {ty:#x}");
        assert_eq!(frames[0].data.len(), 74 + tag_bytes, "{file}");
        let proxy = frames
            .iter()
            .filter_map(|f| parse::parse(f.framing, &f.data).ok())
            .find_map(|s| l7::forwarding_facts(s.payload).proxy_protocol)
            .unwrap();
        assert_eq!((proxy.version, proxy.src), (2, ip("192.0.2.78")));
    }
}

#[test]
fn raw_ip_tunnel() {
    let frames = check(&Expect {
        file: "raw-ip.pcap",
        framing: Framing::RawIp,
        ports: &[40010],
        whole: true,
    });
    assert_eq!(frames[0].data[0] >> 4, 4);
}

#[test]
fn linux_cooked_v1_and_v2_name_direction() {
    for (file, framing) in [
        ("any-sll.pcap", Framing::LinuxSll),
        ("any-sll2.pcap", Framing::LinuxSll2),
    ] {
        let frames = check(&Expect {
            file,
            framing,
            ports: &[40007, 40008, 40009],
            whole: true,
        });
        for f in &frames {
            let seg = parse::parse(framing, &f.data).unwrap();
            assert_eq!(
                seg.link_ifindex.is_some(),
                framing == Framing::LinuxSll2,
                "{file}"
            );
            // On the server's veth a client SYN comes in and the SYN-ACK goes out.
            if seg.sport == 40007 && seg.is_syn() {
                assert_eq!(seg.link_dir, Some(Direction::In), "{file}");
            }
            if seg.dport == 40007 && seg.syn {
                assert_eq!(seg.link_dir, Some(Direction::Out), "{file}");
            }
        }
    }
}

#[test]
fn pcapng_names_interfaces() {
    let frames = check(&Expect {
        file: "two-ifaces.pcapng",
        framing: Framing::Ethernet,
        ports: &[40011, 40012],
        whole: true,
    });
    let names: BTreeSet<_> = frames.iter().filter_map(|f| f.iface.clone()).collect();
    assert_eq!(names, ["lo".to_string(), "veth-a".to_string()].into());
    for f in &frames {
        let seg = parse::parse(f.framing, &f.data).unwrap();
        let lo = seg.src.is_loopback();
        assert_eq!(f.iface.as_deref() == Some("lo"), lo);
    }
}
