//! Throughput of the capture path: pcap reading, frame parsing and forwarding facts over a
//! 400k-frame capture built from the real fixtures. Ignored by default (timings belong to a
//! quiet machine):
//!
//!   cargo test --release -p realip-probe --test it parse_bench:: -- --ignored --nocapture
//!
//! Set `REALIP_BENCH_PCAP=/path` to keep the generated capture (e.g. to time tshark on it).

use realip_probe::l7;
use realip_probe::parse::{parse, Framing};
use realip_probe::pcapfile::PcapReader;
use std::time::Instant;

const FRAMES: usize = 400_000;

/// A little-endian microsecond pcap of `FRAMES` Ethernet frames taken round-robin from the
/// Ethernet fixtures.
fn big_pcap() -> Vec<u8> {
    let mut frames = Vec::new();
    for name in [
        "eth-ipv4.pcap",
        "eth-ipv6-nano.pcap",
        "vlan.pcap",
        "qinq.pcap",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let mut r = realip_probe::pcapfile::open(&path).unwrap();
        while let Some(rec) = r.next_record().unwrap() {
            frames.push(rec.data.to_vec());
        }
    }
    let mut out = Vec::with_capacity(FRAMES * 120);
    out.extend(0xA1B2_C3D4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0; 8]);
    out.extend(262_144u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for i in 0..FRAMES {
        let f = &frames[i % frames.len()];
        out.extend((1_700_000_000 + (i / 1_000_000) as u32).to_le_bytes());
        out.extend(((i % 1_000_000) as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn read_and_parse_400k_frames() {
    let bytes = big_pcap();
    if let Ok(path) = std::env::var("REALIP_BENCH_PCAP") {
        std::fs::write(&path, &bytes).unwrap();
        println!("wrote {path}");
    }
    let frames: Vec<Vec<u8>> = {
        let mut r = PcapReader::new(bytes.as_slice()).unwrap();
        let mut v = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            v.push(rec.data.to_vec());
        }
        v
    };
    assert_eq!(frames.len(), FRAMES);

    let t = Instant::now();
    let mut syns = 0usize;
    for f in &frames {
        if parse(Framing::Ethernet, f).is_ok_and(|s| s.is_syn()) {
            syns += 1;
        }
    }
    let parse_ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;

    let t = Instant::now();
    let mut lax = 0usize;
    for f in &frames {
        if etherparse::LaxSlicedPacket::from_ethernet(f).is_ok() {
            lax += 1;
        }
    }
    let lax_ns = t.elapsed().as_nanos() as f64 / FRAMES as f64;

    let t = Instant::now();
    let (mut n, mut facts) = (0usize, 0usize);
    let mut r = PcapReader::new(bytes.as_slice()).unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        n += 1;
        if let Ok(seg) = parse(rec.framing, rec.data) {
            if !seg.payload.is_empty() && !l7::forwarding_facts(seg.payload).is_empty() {
                facts += 1;
            }
        }
    }
    let all = t.elapsed();
    assert_eq!(n, FRAMES);
    assert!(syns > 0 && facts > 0 && lax == FRAMES);
    println!(
        "parse: {parse_ns:.1} ns/frame (etherparse lax slicing alone: {lax_ns:.1} ns/frame); \
         read + parse + l7 of {FRAMES} frames ({} MB): {:.1} ms ({:.0} ns/frame)",
        bytes.len() / 1_000_000,
        all.as_secs_f64() * 1e3,
        all.as_nanos() as f64 / FRAMES as f64
    );
}
