//! Writes the analyze benchmark capture: N connections, each SYN seen twice on node-a — `in` on
//! ens5 as the client sent it, then `out` on cbr0 after kube-proxy's DNAT and MASQUERADE — as a
//! pcapng file with one interface block per device and the direction in each packet's flags.
//!
//! cargo run --release --example analyze-bench-gen -- OUT.pcapng [CONNECTIONS] [MEAN_GAP_US]

use etherparse::{PacketBuilder, TcpOptionElement};
use std::fs::File;
use std::io::{self, BufWriter, Write};

/// A small deterministic generator: the same file every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn block(out: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let padded = body.len().div_ceil(4) * 4;
    let len = u32::try_from(12 + padded).map_err(io::Error::other)?;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&[0u8; 3][..padded - body.len()])?;
    out.write_all(&len.to_le_bytes())
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    body.resize(body.len().div_ceil(4) * 4, 0);
}

fn interface(out: &mut impl Write, name: &str) -> io::Result<()> {
    let mut body = Vec::new();
    body.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&262_144u32.to_le_bytes());
    option(&mut body, 2, name.as_bytes()); // if_name
    option(&mut body, 9, &[9]); // if_tsresol: nanoseconds
    option(&mut body, 0, &[]);
    block(out, 1, &body)
}

fn packet(
    out: &mut impl Write,
    iface: u32,
    ts_ns: u64,
    inbound: bool,
    frame: &[u8],
) -> io::Result<()> {
    let mut body = Vec::with_capacity(frame.len() + 40);
    body.extend_from_slice(&iface.to_le_bytes());
    body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(frame);
    body.resize(body.len().div_ceil(4) * 4, 0);
    option(
        &mut body,
        2,
        &(if inbound { 1u32 } else { 2u32 }).to_le_bytes(),
    ); // epb_flags
    option(&mut body, 0, &[]);
    block(out, 6, &body)
}

#[allow(clippy::too_many_arguments)]
fn syn(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    isn: u32,
    tsval: u32,
    ip_id: u16,
) -> io::Result<Vec<u8>> {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, ttl)
        .tcp(sport, dport, isn, 64_240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(tsval, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(80);
    builder.write(&mut frame, &[]).map_err(io::Error::other)?;
    // etherparse leaves the identification at 0; set it (and fix the header checksum) so that
    // retransmissions and collisions look like the kernel's.
    frame[18..20].copy_from_slice(&ip_id.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    Ok(frame)
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "analyze-bench.pcapng".into());
    let connections: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    // Mean gap between connections in µs (15 by default: a burst); a long capture spreads out.
    let gap_ns: u64 = args
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(15)
        .max(1)
        * 1000;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb)?;
    interface(&mut out, "ens5")?;
    interface(&mut out, "cbr0")?;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut ts: u64 = 1_763_800_000_000_000_000;
    for i in 0..connections {
        let r = rng.next();
        let client = [198, 18 + (i >> 16 & 1) as u8, (i >> 8) as u8, i as u8];
        let sport = 1024 + (r % 60_000) as u16;
        let isn = (r >> 16) as u32;
        let tsval = rng.next() as u32;
        let ip_id = (r >> 48) as u16;
        let masq_port = 1024 + (rng.next() % 60_000) as u16;
        ts += gap_ns / 3 + r % (gap_ns * 4 / 3);
        let before = syn(
            client,
            sport,
            [203, 0, 113, 10],
            31908,
            64,
            isn,
            tsval,
            ip_id,
        )?;
        packet(&mut out, 0, ts, true, &before)?;
        let after = syn(
            [10, 244, 0, 1],
            masq_port,
            [10, 244, 0, 5],
            8080,
            63,
            isn,
            tsval,
            ip_id,
        )?;
        packet(&mut out, 1, ts + 20_000, false, &after)?;
    }
    out.flush()?;
    eprintln!(
        "{path}: {connections} connections, {} SYN frames",
        connections * 2
    );
    Ok(())
}
