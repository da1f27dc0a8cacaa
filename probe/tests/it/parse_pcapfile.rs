//! The capture file reader on hand-built pcap/pcapng files (both byte orders, every block kind
//! it reads or skips), on truncated copies of the real fixtures, and on corrupted headers.

use realip_probe::parse::Framing;
use realip_probe::pcapfile::{PcapError, PcapReader, MAX_RECORD};
use realip_probe::wire::Direction;

#[derive(Debug, Clone, PartialEq)]
struct Owned {
    ts_ns: u64,
    iface: Option<String>,
    iface_id: u32,
    framing: Framing,
    data: Vec<u8>,
    orig_len: u32,
    dir: Option<Direction>,
}

/// Every record until the end or the first error.
fn read(bytes: &[u8]) -> (Vec<Owned>, Option<PcapError>) {
    let mut reader = match PcapReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(r)) => out.push(Owned {
                ts_ns: r.ts_ns,
                iface: r.iface.map(str::to_string),
                iface_id: r.iface_id,
                framing: r.framing,
                data: r.data.to_vec(),
                orig_len: r.orig_len,
                dir: r.dir,
            }),
            Ok(None) => return (out, None),
            Err(e) => {
                // After a fatal error the reader stays at its end.
                if !matches!(e, PcapError::UnknownLinkType { .. }) {
                    assert!(matches!(reader.next_record(), Ok(None)));
                }
                return (out, Some(e));
            }
        }
    }
}

/// Writes integers in one byte order.
#[derive(Clone, Copy)]
struct W {
    big: bool,
}

impl W {
    fn u16(self, out: &mut Vec<u8>, v: u16) {
        out.extend(if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    fn u32(self, out: &mut Vec<u8>, v: u32) {
        out.extend(if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn pcap_header(self, magic: u32, linktype: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.u32(&mut out, magic);
        self.u16(&mut out, 2);
        self.u16(&mut out, 4);
        self.u32(&mut out, 0);
        self.u32(&mut out, 0);
        self.u32(&mut out, 262144);
        self.u32(&mut out, linktype);
        out
    }

    fn pcap_record(self, out: &mut Vec<u8>, sec: u32, frac: u32, data: &[u8], orig: u32) {
        self.u32(out, sec);
        self.u32(out, frac);
        self.u32(out, data.len() as u32);
        self.u32(out, orig);
        out.extend_from_slice(data);
    }

    /// A pcapng block: type, length, body padded to 4, length again.
    fn block(self, out: &mut Vec<u8>, ty: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        self.u32(out, ty);
        self.u32(out, len);
        out.extend_from_slice(body);
        out.resize(out.len() + padded - body.len(), 0);
        self.u32(out, len);
    }

    fn option(self, out: &mut Vec<u8>, code: u16, value: &[u8]) {
        self.u16(out, code);
        self.u16(out, value.len() as u16);
        out.extend_from_slice(value);
        out.resize(out.len() + value.len().div_ceil(4) * 4 - value.len(), 0);
    }

    fn shb(self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        self.u32(&mut body, 0x1A2B_3C4D);
        self.u16(&mut body, 1);
        self.u16(&mut body, 0);
        body.extend([0xFF; 8]); // section length unknown
        self.option(&mut body, 4, b"hand-built"); // shb_userappl
        self.u16(&mut body, 0);
        self.u16(&mut body, 0);
        self.block(out, 0x0A0D_0D0A, &body);
    }

    fn idb(self, out: &mut Vec<u8>, linktype: u16, opts: &[(u16, &[u8])]) {
        let mut body = Vec::new();
        self.u16(&mut body, linktype);
        self.u16(&mut body, 0);
        self.u32(&mut body, 0);
        for (code, value) in opts {
            self.option(&mut body, *code, value);
        }
        if !opts.is_empty() {
            self.u32(&mut body, 0); // opt_endofopt
        }
        self.block(out, 1, &body);
    }

    fn epb(self, out: &mut Vec<u8>, iface: u32, ts: u64, data: &[u8], flags: Option<u32>) {
        let mut body = Vec::new();
        self.u32(&mut body, iface);
        self.u32(&mut body, (ts >> 32) as u32);
        self.u32(&mut body, ts as u32);
        self.u32(&mut body, data.len() as u32);
        self.u32(&mut body, data.len() as u32 + 10);
        body.extend_from_slice(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        if let Some(f) = flags {
            let mut v = Vec::new();
            self.u32(&mut v, f);
            self.option(&mut body, 2, &v);
            self.u32(&mut body, 0);
        }
        self.block(out, 6, &body);
    }
}

const LE: W = W { big: false };
const BE: W = W { big: true };

#[test]
fn pcap_both_byte_orders_and_precisions() {
    for (w, magic, frac, want_ns) in [
        (LE, 0xA1B2_C3D4u32, 123_456u32, 1_700_000_000_123_456_000u64),
        (BE, 0xA1B2_C3D4, 123_456, 1_700_000_000_123_456_000),
        (LE, 0xA1B2_3C4D, 123_456_789, 1_700_000_000_123_456_789),
        (BE, 0xA1B2_3C4D, 123_456_789, 1_700_000_000_123_456_789),
    ] {
        let mut file = w.pcap_header(magic, 1);
        w.pcap_record(&mut file, 1_700_000_000, frac, b"abc", 3);
        w.pcap_record(&mut file, 1_700_000_001, 0, &[], 60);
        let (recs, err) = read(&file);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0],
            Owned {
                ts_ns: want_ns,
                iface: None,
                iface_id: 0,
                framing: Framing::Ethernet,
                data: b"abc".to_vec(),
                orig_len: 3,
                dir: None,
            }
        );
        assert_eq!((recs[1].data.len(), recs[1].orig_len), (0, 60));
    }
}

#[test]
fn link_types_map_to_framings_and_unknown_is_named() {
    for (lt, framing) in [
        (0, Framing::Null),
        (1, Framing::Ethernet),
        (12, Framing::RawIp),
        (14, Framing::RawIp),
        (101, Framing::RawIp),
        (108, Framing::Null),
        (113, Framing::LinuxSll),
        (228, Framing::RawIp),
        (229, Framing::RawIp),
        (276, Framing::LinuxSll2),
        // FCS-length bits above the link type do not change it.
        (0x1000_0001, Framing::Ethernet),
    ] {
        let mut file = LE.pcap_header(0xA1B2_C3D4, lt);
        LE.pcap_record(&mut file, 1, 0, b"x", 1);
        let (recs, err) = read(&file);
        assert!(err.is_none(), "{lt}: {err:?}");
        assert_eq!(recs[0].framing, framing, "{lt}");
    }
    let err = read(&LE.pcap_header(0xA1B2_C3D4, 127)).1.unwrap();
    assert!(matches!(
        err,
        PcapError::UnknownLinkType {
            linktype: 127,
            offset: 20,
            ..
        }
    ));
    assert!(err.to_string().contains("127 (802.11 radiotap)"), "{err}");
}

#[test]
fn corrupted_and_short_headers() {
    let (_, err) = read(b"");
    assert!(matches!(err, Some(PcapError::Truncated { offset: 0, .. })));
    let (_, err) = read(b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(err, Some(PcapError::NotPcap { .. })), "{err:?}");
    let header = LE.pcap_header(0xA1B2_C3D4, 1);
    let (_, err) = read(&header[..10]);
    assert!(matches!(err, Some(PcapError::Truncated { offset: 0, .. })));
    let mut v1 = header.clone();
    v1[4] = 1; // version 1.4
    assert!(matches!(
        read(&v1).1,
        Some(PcapError::Malformed { offset: 4, .. })
    ));
    // A record claiming 2 GiB is refused before anything is allocated for it.
    let mut file = header.clone();
    LE.u32(&mut file, 1);
    LE.u32(&mut file, 0);
    LE.u32(&mut file, 0x7FFF_FFFF);
    LE.u32(&mut file, 0x7FFF_FFFF);
    let err = read(&file).1.unwrap();
    assert!(
        matches!(err, PcapError::TooLong { offset: 24, max, .. } if max == MAX_RECORD),
        "{err:?}"
    );
    assert_eq!(err.offset(), 24);
    // A pcapng file whose byte-order magic is wrong.
    let mut ng = Vec::new();
    LE.shb(&mut ng);
    ng[8] = 0;
    assert!(matches!(
        read(&ng).1,
        Some(PcapError::Malformed { offset: 8, .. })
    ));
}

#[test]
fn pcapng_blocks_options_sections_and_byte_orders() {
    let mut file = Vec::new();
    // Section 1, big-endian: microseconds, a name, a direction flag.
    BE.shb(&mut file);
    BE.idb(&mut file, 1, &[(2, b"eth0"), (9, &[6])]);
    BE.block(&mut file, 4, &[0, 0, 0, 0]); // name resolution block: skipped
    BE.epb(&mut file, 0, 1_700_000_000_000_001, b"frame-1", Some(2));
    BE.block(&mut file, 0x0BAD_0001, b"custom data"); // unknown block: skipped
                                                      // Simple packet block: no time, length cut to the block.
    let mut spb = Vec::new();
    BE.u32(&mut spb, 5);
    spb.extend_from_slice(b"spb!!");
    BE.block(&mut file, 3, &spb);
    // Section 2, little-endian: interfaces start again; nanoseconds in 2^-n and an offset.
    LE.shb(&mut file);
    LE.idb(
        &mut file,
        113,
        &[(2, b"any"), (9, &[0x80 | 10]), (14, &5i64.to_le_bytes())],
    );
    LE.idb(&mut file, 101, &[(2, b"tun\x1b[2J\0")]);
    LE.epb(&mut file, 0, 3 * 1024 + 512, b"cooked", Some(1));
    LE.epb(&mut file, 1, 7, b"raw", Some(0));
    // Obsolete packet block: 16-bit interface id, 16-bit drops.
    let mut opb = Vec::new();
    LE.u16(&mut opb, 1);
    LE.u16(&mut opb, 0);
    LE.u32(&mut opb, 0);
    LE.u32(&mut opb, 9);
    LE.u32(&mut opb, 3);
    LE.u32(&mut opb, 3);
    opb.extend_from_slice(b"opb\0");
    LE.block(&mut file, 2, &opb);

    let (recs, err) = read(&file);
    assert!(err.is_none(), "{err:?}");
    let summary: Vec<_> = recs
        .iter()
        .map(|r| {
            (
                r.ts_ns,
                r.iface.as_deref(),
                r.iface_id,
                r.framing,
                r.data.as_slice(),
                r.dir,
            )
        })
        .collect();
    let eth = Framing::Ethernet;
    assert_eq!(
        summary,
        vec![
            (
                1_700_000_000_000_001_000,
                Some("eth0"),
                0,
                eth,
                &b"frame-1"[..],
                Some(Direction::Out)
            ),
            (
                1_700_000_000_000_001_000,
                Some("eth0"),
                0,
                eth,
                &b"spb!!"[..],
                None
            ),
            // 3.5 s in units of 2^-10 s, plus the 5 s offset.
            (
                8_500_000_000,
                Some("any"),
                0,
                Framing::LinuxSll,
                &b"cooked"[..],
                Some(Direction::In)
            ),
            (7_000, Some("tun?[2J"), 1, Framing::RawIp, &b"raw"[..], None),
            (9_000, Some("tun?[2J"), 1, Framing::RawIp, &b"opb"[..], None),
        ]
    );
    assert_eq!(recs[0].orig_len, 17);
}

#[test]
fn pcapng_unknown_link_type_is_named_and_skippable() {
    let mut file = Vec::new();
    LE.shb(&mut file);
    LE.idb(&mut file, 1, &[]);
    LE.idb(&mut file, 105, &[(2, b"wlan0")]);
    LE.epb(&mut file, 1, 1, b"wifi", None);
    LE.epb(&mut file, 0, 2, b"eth", None);
    let mut reader = PcapReader::new(file.as_slice()).unwrap();
    let err = reader.next_record().unwrap_err();
    assert!(
        matches!(err, PcapError::UnknownLinkType { linktype: 105, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("105 (IEEE 802.11)"), "{err}");
    assert_eq!(reader.next_record().unwrap().unwrap().data, b"eth");
    assert!(reader.next_record().unwrap().is_none());
}

#[test]
fn pcapng_corrupt_blocks() {
    let base = {
        let mut f = Vec::new();
        LE.shb(&mut f);
        LE.idb(&mut f, 1, &[]);
        f
    };
    let at = base.len() as u64;
    let epb = {
        let mut f = Vec::new();
        LE.epb(&mut f, 0, 1, b"data", None);
        f
    };
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut e = epb.clone();
        edit(&mut e);
        read(&[base.as_slice(), &e].concat()).1
    };
    // Trailing length differs from the leading one.
    let err = with(&|e| {
        let n = e.len();
        e[n - 4] ^= 0x04;
    });
    assert!(matches!(err, Some(PcapError::Malformed { .. })), "{err:?}");
    // Length not a multiple of 4.
    let err = with(&|e| e[4] = 37);
    assert!(matches!(err, Some(PcapError::Malformed { offset, .. }) if offset == at + 4));
    // Captured length larger than the block.
    let err = with(&|e| e[20] = 200);
    assert!(matches!(err, Some(PcapError::Malformed { offset, .. }) if offset == at));
    // Interface id without an interface block.
    let err = with(&|e| e[8] = 3);
    assert!(matches!(err, Some(PcapError::Malformed { .. })), "{err:?}");
    // A block claiming 1 GiB.
    let err = with(&|e| e[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes()));
    assert!(matches!(err, Some(PcapError::TooLong { offset, .. }) if offset == at));
    // An unknown block claiming more than the file holds: truncated where it began.
    let mut f = base.clone();
    LE.u32(&mut f, 0x0BAD);
    LE.u32(&mut f, 1 << 20);
    f.extend([0; 64]);
    assert!(matches!(read(&f).1, Some(PcapError::Truncated { offset, .. }) if offset == at));
}

/// Offsets where the file's header and each block or record begin, walked independently of the
/// reader (the fixtures are little-endian).
fn boundaries(bytes: &[u8]) -> Vec<u64> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ng = u32_at(0) == 0x0A0D_0D0A;
    let (mut at, mut out) = if ng { (0, vec![]) } else { (24, vec![0]) };
    while at < bytes.len() {
        out.push(at as u64);
        at += if ng {
            u32_at(at + 4)
        } else {
            16 + u32_at(at + 8)
        };
    }
    assert_eq!(at, bytes.len());
    out
}

/// Cutting a real capture anywhere keeps every whole record before the cut and names the offset
/// where the cut header, record or block began.
#[test]
fn truncated_fixtures_keep_what_was_whole() {
    for name in ["eth-ipv4.pcap", "eth-ipv6-nano.pcap", "two-ifaces.pcapng"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let bytes = std::fs::read(path).unwrap();
        let (full, err) = read(&bytes);
        assert!(err.is_none());
        // Where each record ends, as the reader counts bytes.
        let mut ends = Vec::new();
        let mut reader = PcapReader::new(bytes.as_slice()).unwrap();
        while reader.next_record().unwrap().is_some() {
            ends.push(reader.offset());
        }
        assert_eq!(ends.len(), full.len());
        let starts = boundaries(&bytes);
        for cut in 0..bytes.len() {
            let (recs, err) = read(&bytes[..cut]);
            let cut = cut as u64;
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(recs, full[..whole], "{name} cut at {cut}");
            let began = starts
                .iter()
                .copied()
                .filter(|&s| s < cut)
                .max()
                .unwrap_or(0);
            match err {
                None => assert!(cut > 0 && starts.contains(&cut), "{name} cut at {cut}"),
                Some(PcapError::Truncated { offset, .. }) => {
                    assert_eq!(offset, began, "{name} cut at {cut}")
                }
                Some(e) => panic!("{name} cut at {cut}: {e}"),
            }
        }
    }
}
