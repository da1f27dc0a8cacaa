//! Streaming reader of pcap and pcapng capture files over any [`std::io::Read`].
//!
//! One reusable buffer, records capped at [`MAX_RECORD`] bytes, every error naming the byte
//! offset where it arose. Records already returned stay valid facts when a later error comes (a
//! truncated file is read up to its last whole record).

use crate::parse::Framing;
use crate::wire::Direction;
use std::io::{self, BufReader, Read};

/// Largest captured frame accepted (tcpdump's default snap length).
pub const MAX_RECORD: usize = 256 * 1024;
/// Largest pcapng packet block: a full record plus room for its options.
const MAX_BLOCK: usize = MAX_RECORD + 64 * 1024;
/// Read-ahead of the internal buffered reader.
const READ_AHEAD: usize = 256 * 1024;

const PCAP_MICRO: u32 = 0xA1B2_C3D4;
const PCAP_NANO: u32 = 0xA1B2_3C4D;
const NG_SHB: u32 = 0x0A0D_0D0A;
const NG_BYTE_ORDER: u32 = 0x1A2B_3C4D;
const NG_IDB: u32 = 1;
const NG_OPB: u32 = 2;
const NG_SPB: u32 = 3;
const NG_EPB: u32 = 6;

/// One captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time in nanoseconds since the Unix epoch (a pcapng simple packet block carries no
    /// time: it gets the previous record's).
    pub ts_ns: u64,
    /// The pcapng interface's `if_name`; `None` in pcap files or when the IDB has none.
    pub iface: Option<&'a str>,
    /// The pcapng interface id (index of its IDB in the section); 0 in pcap files.
    pub iface_id: u32,
    /// How the frame begins, from the link type.
    pub framing: Framing,
    /// The captured bytes (possibly fewer than `orig_len`).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Direction from pcapng `epb_flags`; `None` when the file does not say.
    pub dir: Option<Direction>,
}

/// Why a capture file could not be read further.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The underlying reader failed.
    #[error("cannot read the capture at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The file starts with neither a pcap magic nor a pcapng section header.
    #[error("not a pcap or pcapng file (starts with {magic:#010x})")]
    NotPcap { magic: u32 },
    /// The file ends inside a header, record or block that began at `offset`.
    #[error("the file ends inside a {what} at byte {offset}")]
    Truncated { offset: u64, what: &'static str },
    /// A record or block longer than this reader accepts (a corrupt length field).
    #[error("{what} at byte {offset} claims {len} bytes, more than the {max} this reader accepts")]
    TooLong {
        offset: u64,
        what: &'static str,
        len: u64,
        max: usize,
    },
    /// Frames of a link type the parser does not read (Wi-Fi, USB, …).
    #[error("link type {linktype} ({name}) at byte {offset} carries no Ethernet, IP or Linux cooked frames")]
    UnknownLinkType {
        linktype: u32,
        name: &'static str,
        offset: u64,
    },
    /// Fields that contradict the format.
    #[error("malformed {what} at byte {offset}")]
    Malformed { offset: u64, what: &'static str },
}

impl PcapError {
    /// Byte offset in the file where the problem was found (0 for a bad magic).
    pub fn offset(&self) -> u64 {
        match self {
            PcapError::NotPcap { .. } => 0,
            PcapError::Io { offset, .. }
            | PcapError::Truncated { offset, .. }
            | PcapError::TooLong { offset, .. }
            | PcapError::UnknownLinkType { offset, .. }
            | PcapError::Malformed { offset, .. } => *offset,
        }
    }
}

/// The framing of a pcap/pcapng link type (LINKTYPE_* numbers), `None` for ones not read.
pub fn framing_of(linktype: u32) -> Option<Framing> {
    match linktype {
        1 => Some(Framing::Ethernet),
        // LINKTYPE_RAW, the DLT_RAW values some systems wrote, LINKTYPE_IPV4 and LINKTYPE_IPV6.
        101 | 12 | 14 | 228 | 229 => Some(Framing::RawIp),
        113 => Some(Framing::LinuxSll),
        276 => Some(Framing::LinuxSll2),
        // LINKTYPE_NULL (host byte order) and LINKTYPE_LOOP (network byte order).
        0 | 108 => Some(Framing::Null),
        _ => None,
    }
}

/// A name for link types people meet, for error messages.
fn linktype_name(linktype: u32) -> &'static str {
    match linktype {
        6 => "IEEE 802.5",
        9 => "PPP",
        105 => "IEEE 802.11",
        127 => "802.11 radiotap",
        147..=162 => "user-defined",
        187 => "Bluetooth HCI",
        192 => "PPI",
        220 => "USB",
        _ => "unknown",
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let a = [b[at], b[at + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
}

/// How a pcapng interface stamps time.
#[derive(Clone, Copy)]
enum TsResol {
    /// Units of 10^-n seconds.
    Decimal(u8),
    /// Units of 2^-n seconds.
    Binary(u8),
}

impl TsResol {
    fn to_ns(self, ts: u64) -> u64 {
        let ns: u128 = match self {
            TsResol::Decimal(n) if n <= 9 => u128::from(ts) * 10u128.pow(u32::from(9 - n)),
            TsResol::Decimal(n) => u128::from(ts) / 10u128.pow(u32::from(n.min(38) - 9)),
            TsResol::Binary(n) => (u128::from(ts) * 1_000_000_000) >> n.min(127),
        };
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// A pcapng interface description (or the single interface of a pcap file).
struct Iface {
    /// Link type, kept to name it if a packet arrives on an unreadable one.
    linktype: u32,
    framing: Option<Framing>,
    name: Option<String>,
    resol: TsResol,
    /// if_tsoffset: seconds added to every timestamp.
    offset_s: i64,
    snaplen: u32,
}

enum Format {
    Pcap { nano: bool, framing: Framing },
    PcapNg,
}

/// A streaming capture reader; call [`PcapReader::next_record`] until it returns `Ok(None)`.
pub struct PcapReader<R: Read> {
    src: BufReader<R>,
    endian: Endian,
    format: Format,
    ifaces: Vec<Iface>,
    buf: Vec<u8>,
    /// Bytes consumed from the start of the file.
    offset: u64,
    last_ts_ns: u64,
    /// Set after an error the stream cannot continue from.
    failed: bool,
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_up_to(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match src.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header (pcap global header or pcapng section header) and prepares to
    /// stream records.
    pub fn new(src: R) -> Result<Self, PcapError> {
        let mut reader = PcapReader {
            src: BufReader::with_capacity(READ_AHEAD, src),
            endian: Endian::Little,
            format: Format::PcapNg,
            ifaces: Vec::new(),
            buf: Vec::new(),
            offset: 0,
            last_ts_ns: 0,
            failed: false,
        };
        let mut magic = [0u8; 4];
        if !reader.read_exact_or_eof(&mut magic, "file header", 0)? {
            return Err(PcapError::Truncated {
                offset: 0,
                what: "file header",
            });
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let pcap = |endian, nano| Some((endian, nano));
        let kind = match (le, be) {
            (PCAP_MICRO, _) => pcap(Endian::Little, false),
            (PCAP_NANO, _) => pcap(Endian::Little, true),
            (_, PCAP_MICRO) => pcap(Endian::Big, false),
            (_, PCAP_NANO) => pcap(Endian::Big, true),
            (NG_SHB, _) => None,
            _ => return Err(PcapError::NotPcap { magic: be }),
        };
        match kind {
            Some((endian, nano)) => reader.pcap_header(endian, nano)?,
            None => reader.section_header(0)?,
        }
        reader.buf = vec![0; MAX_BLOCK];
        Ok(reader)
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The interfaces of the file (of its current section, for pcapng) described so far, by
    /// interface id: their `if_name` (none in pcap files) and framing (none for an unknown link
    /// type). A pcapng file describes them before their first packet, used or not.
    pub fn interfaces(&self) -> impl Iterator<Item = (Option<&str>, Option<Framing>)> {
        self.ifaces.iter().map(|i| (i.name.as_deref(), i.framing))
    }

    /// Fills `out` completely (`Ok(true)`) or finds the end of the file before its first byte
    /// (`Ok(false)`); a partial fill is a truncated `what` that began at byte `at`.
    fn read_exact_or_eof(
        &mut self,
        out: &mut [u8],
        what: &'static str,
        at: u64,
    ) -> Result<bool, PcapError> {
        let n = read_up_to(&mut self.src, out).map_err(|source| PcapError::Io {
            offset: self.offset,
            source,
        })?;
        self.offset += n as u64;
        match n {
            0 if !out.is_empty() => Ok(false),
            n if n == out.len() => Ok(true),
            _ => Err(PcapError::Truncated { offset: at, what }),
        }
    }

    /// Like `read_exact_or_eof`, where the end of the file is also a truncation.
    fn read_exact(&mut self, out: &mut [u8], what: &'static str, at: u64) -> Result<(), PcapError> {
        match self.read_exact_or_eof(out, what, at)? {
            true => Ok(()),
            false => Err(PcapError::Truncated { offset: at, what }),
        }
    }

    /// Reads `len` bytes into the start of the reusable buffer.
    fn read_body(&mut self, len: usize, what: &'static str, at: u64) -> Result<(), PcapError> {
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.read_exact(&mut buf[..len], what, at);
        self.buf = buf;
        res
    }

    /// Discards `len` bytes (an unknown or uninteresting block).
    fn skip(&mut self, len: u64, what: &'static str, at: u64) -> Result<(), PcapError> {
        let copied = io::copy(&mut (&mut self.src).take(len), &mut io::sink())
            .map_err(|source| PcapError::Io { offset: at, source })?;
        self.offset += copied;
        if copied < len {
            return Err(PcapError::Truncated { offset: at, what });
        }
        Ok(())
    }

    fn pcap_header(&mut self, endian: Endian, nano: bool) -> Result<(), PcapError> {
        let mut h = [0u8; 20];
        self.read_exact(&mut h, "pcap file header", 0)?;
        let major = endian.u16(&h, 0);
        if major != 2 {
            return Err(PcapError::Malformed {
                offset: 4,
                what: "pcap file header (version is not 2.x)",
            });
        }
        // The upper bits of the link type field carry FCS information, not the type.
        let linktype = endian.u32(&h, 16) & 0xFFFF;
        let framing = framing_of(linktype).ok_or(PcapError::UnknownLinkType {
            linktype,
            name: linktype_name(linktype),
            offset: 20,
        })?;
        self.endian = endian;
        self.format = Format::Pcap { nano, framing };
        self.ifaces = vec![Iface {
            linktype,
            framing: Some(framing),
            name: None,
            resol: TsResol::Decimal(if nano { 9 } else { 6 }),
            offset_s: 0,
            snaplen: endian.u32(&h, 12),
        }];
        Ok(())
    }

    /// Reads a pcapng section header block whose 4-byte type was just consumed at `at`.
    fn section_header(&mut self, at: u64) -> Result<(), PcapError> {
        let mut h = [0u8; 8];
        self.read_exact(&mut h, "pcapng section header", at)?;
        self.endian = match u32::from_le_bytes([h[4], h[5], h[6], h[7]]) {
            NG_BYTE_ORDER => Endian::Little,
            m if m.swap_bytes() == NG_BYTE_ORDER => Endian::Big,
            _ => {
                return Err(PcapError::Malformed {
                    offset: at + 8,
                    what: "pcapng section header (byte-order magic)",
                })
            }
        };
        let len = self.endian.u32(&h, 0);
        if len < 28 || !len.is_multiple_of(4) {
            return Err(PcapError::Malformed {
                offset: at + 4,
                what: "pcapng section header (block length)",
            });
        }
        self.format = Format::PcapNg;
        self.ifaces.clear();
        // Version, section length and options: nothing this reader needs.
        self.skip(u64::from(len) - 12, "pcapng section header", at)
    }

    /// The next frame, `Ok(None)` at a clean end of file.
    ///
    /// After [`PcapError::UnknownLinkType`] the stream may be read on (that record is skipped);
    /// after any other error it stays at its end.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        if self.failed {
            return Ok(None);
        }
        let res = match self.format {
            Format::Pcap { nano, framing } => self.next_pcap(nano, framing),
            Format::PcapNg => self.next_pcapng(),
        };
        match res {
            Ok(Some(found)) => Ok(Some(self.record(found))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = !matches!(e, PcapError::UnknownLinkType { .. });
                Err(e)
            }
        }
    }

    fn record(&self, f: Found) -> Record<'_> {
        let iface = &self.ifaces[f.iface];
        Record {
            ts_ns: f.ts_ns,
            iface: iface.name.as_deref(),
            iface_id: f.iface as u32,
            framing: f.framing,
            data: &self.buf[f.data.0..f.data.1],
            orig_len: f.orig_len,
            dir: f.dir,
        }
    }

    fn next_pcap(&mut self, nano: bool, framing: Framing) -> Result<Option<Found>, PcapError> {
        let at = self.offset;
        let mut h = [0u8; 16];
        if !self.read_exact_or_eof(&mut h, "pcap record header", at)? {
            return Ok(None);
        }
        let e = self.endian;
        let (sec, frac) = (u64::from(e.u32(&h, 0)), u64::from(e.u32(&h, 4)));
        let (caplen, orig_len) = (e.u32(&h, 8), e.u32(&h, 12));
        if caplen as usize > MAX_RECORD {
            return Err(PcapError::TooLong {
                offset: at,
                what: "pcap record",
                len: caplen.into(),
                max: MAX_RECORD,
            });
        }
        self.read_body(caplen as usize, "pcap record", at)?;
        let frac_ns = if nano {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        Ok(Some(Found {
            ts_ns: sec.saturating_mul(1_000_000_000).saturating_add(frac_ns),
            iface: 0,
            framing,
            data: (0, caplen as usize),
            orig_len,
            dir: None,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Found>, PcapError> {
        loop {
            let at = self.offset;
            let mut h = [0u8; 8];
            if !self.read_exact_or_eof(&mut h[..4], "pcapng block header", at)? {
                return Ok(None);
            }
            let ty = self.endian.u32(&h, 0);
            if ty == NG_SHB {
                self.section_header(at)?;
                continue;
            }
            self.read_exact(&mut h[4..], "pcapng block header", at)?;
            let len = self.endian.u32(&h, 4);
            if len < 12 || !len.is_multiple_of(4) {
                return Err(PcapError::Malformed {
                    offset: at + 4,
                    what: "pcapng block (length not a multiple of 4 of at least 12)",
                });
            }
            let body = len as usize - 12;
            if !matches!(ty, NG_IDB | NG_EPB | NG_SPB | NG_OPB) {
                self.skip(u64::from(len) - 8, "pcapng block", at)?;
                continue;
            }
            if body + 4 > MAX_BLOCK {
                return Err(PcapError::TooLong {
                    offset: at,
                    what: "pcapng block",
                    len: len.into(),
                    max: MAX_BLOCK,
                });
            }
            // Body plus the trailing copy of the length, which must agree.
            self.read_body(body + 4, "pcapng block", at)?;
            if self.endian.u32(&self.buf, body) != len {
                return Err(PcapError::Malformed {
                    offset: at + u64::from(len) - 4,
                    what: "pcapng block (trailing length differs)",
                });
            }
            let found = match ty {
                NG_IDB => {
                    self.interface_block(body, at)?;
                    continue;
                }
                NG_EPB => self.packet_block(body, at, true)?,
                NG_OPB => self.packet_block(body, at, false)?,
                _ => self.simple_block(body, at)?,
            };
            return Ok(Some(found));
        }
    }

    fn interface_block(&mut self, body: usize, at: u64) -> Result<(), PcapError> {
        let e = self.endian;
        let b = &self.buf[..body];
        if body < 8 {
            return Err(PcapError::Malformed {
                offset: at,
                what: "pcapng interface block (too short)",
            });
        }
        let linktype = u32::from(e.u16(b, 0));
        let mut iface = Iface {
            linktype,
            framing: framing_of(linktype),
            name: None,
            resol: TsResol::Decimal(6),
            offset_s: 0,
            snaplen: e.u32(b, 4),
        };
        for (code, value) in Options::new(e, &b[8..]) {
            match (code, value) {
                (2, name) => {
                    // Names end up in reports on terminals: no control characters.
                    let name = String::from_utf8_lossy(name);
                    let name = name.trim_end_matches('\0').chars();
                    iface.name = Some(name.map(|c| if c.is_control() { '?' } else { c }).collect());
                }
                (9, &[r, ..]) => {
                    iface.resol = if r & 0x80 == 0 {
                        TsResol::Decimal(r)
                    } else {
                        TsResol::Binary(r & 0x7F)
                    };
                }
                (14, &[a, b, c, d, e2, f, g, h, ..]) => {
                    let raw = [a, b, c, d, e2, f, g, h];
                    iface.offset_s = match e {
                        Endian::Little => i64::from_le_bytes(raw),
                        Endian::Big => i64::from_be_bytes(raw),
                    };
                }
                _ => {}
            }
        }
        self.ifaces.push(iface);
        Ok(())
    }

    /// The interface a packet block names and its framing, if its frames can be parsed.
    fn readable_iface(&self, id: u32, at: u64) -> Result<(usize, Framing), PcapError> {
        let Some(iface) = self.ifaces.get(id as usize) else {
            return Err(PcapError::Malformed {
                offset: at,
                what: "pcapng packet block (interface id without an interface block)",
            });
        };
        match iface.framing {
            Some(framing) => Ok((id as usize, framing)),
            None => Err(PcapError::UnknownLinkType {
                linktype: iface.linktype,
                name: linktype_name(iface.linktype),
                offset: at,
            }),
        }
    }

    /// Enhanced (`enhanced` = true) or obsolete packet block: both have a 20-byte fixed part.
    fn packet_block(&mut self, body: usize, at: u64, enhanced: bool) -> Result<Found, PcapError> {
        const FIXED: usize = 20;
        let e = self.endian;
        let b = &self.buf[..body];
        if body < FIXED {
            return Err(PcapError::Malformed {
                offset: at,
                what: "pcapng packet block (too short)",
            });
        }
        let id = if enhanced {
            e.u32(b, 0)
        } else {
            u32::from(e.u16(b, 0))
        };
        let ts = (u64::from(e.u32(b, 4)) << 32) | u64::from(e.u32(b, 8));
        let (caplen, orig_len) = (e.u32(b, 12) as usize, e.u32(b, 16));
        let padded = caplen.div_ceil(4) * 4;
        if caplen > MAX_RECORD || FIXED + padded > body {
            return Err(PcapError::Malformed {
                offset: at,
                what: "pcapng packet block (captured length exceeds the block)",
            });
        }
        let (iface, framing) = self.readable_iface(id, at)?;
        let mut dir = None;
        for (code, value) in Options::new(e, &b[FIXED + padded..]) {
            // epb_flags (OPB: pack_flags) bits 0-1: 01 inbound, 10 outbound.
            if let (2, &[x0, x1, x2, x3, ..]) = (code, value) {
                dir = match e.u32(&[x0, x1, x2, x3], 0) & 0b11 {
                    1 => Some(Direction::In),
                    2 => Some(Direction::Out),
                    _ => None,
                };
            }
        }
        let ifc = &self.ifaces[iface];
        let ns = ifc.resol.to_ns(ts);
        let ts_ns = ns.saturating_add_signed(ifc.offset_s.saturating_mul(1_000_000_000));
        self.last_ts_ns = ts_ns;
        Ok(Found {
            ts_ns,
            iface,
            framing,
            data: (FIXED, FIXED + caplen),
            orig_len,
            dir,
        })
    }

    fn simple_block(&mut self, body: usize, at: u64) -> Result<Found, PcapError> {
        if body < 4 {
            return Err(PcapError::Malformed {
                offset: at,
                what: "pcapng simple packet block (too short)",
            });
        }
        let (iface, framing) = self.readable_iface(0, at)?;
        let orig_len = self.endian.u32(&self.buf, 0);
        // The captured length is implied: the original length cut by the snap length and block.
        let snap = match self.ifaces[iface].snaplen {
            0 => usize::MAX,
            s => s as usize,
        };
        let caplen = (orig_len as usize).min(snap).min(body - 4);
        Ok(Found {
            ts_ns: self.last_ts_ns,
            iface,
            framing,
            data: (4, 4 + caplen),
            orig_len,
            dir: None,
        })
    }
}

/// Where a record's pieces are, before borrowing them from the reader.
struct Found {
    ts_ns: u64,
    iface: usize,
    framing: Framing,
    data: (usize, usize),
    orig_len: u32,
    dir: Option<Direction>,
}

/// pcapng options: (code, value) pairs up to `opt_endofopt` or the end of the bytes.
struct Options<'a> {
    e: Endian,
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    fn new(e: Endian, rest: &'a [u8]) -> Self {
        Options { e, rest }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let code = self.e.u16(self.rest, 0);
        let len = usize::from(self.e.u16(self.rest, 2));
        let value = self.rest.get(4..4 + len)?;
        if code == 0 {
            return None;
        }
        let next = (4 + len.div_ceil(4) * 4).min(self.rest.len());
        self.rest = &self.rest[next..];
        Some((code, value))
    }
}

/// Whether `head`, a file's first four bytes, is the magic number of a pcap (either byte order,
/// micro- or nanosecond timestamps) or pcapng file: what tells a capture from anything else.
pub fn is_capture(head: &[u8]) -> bool {
    let Ok(head) = <[u8; 4]>::try_from(head) else {
        return false;
    };
    let (le, be) = (u32::from_le_bytes(head), u32::from_be_bytes(head));
    [PCAP_MICRO, PCAP_NANO, NG_SHB].contains(&le) || [PCAP_MICRO, PCAP_NANO].contains(&be)
}

/// Opens a capture file for streaming.
pub fn open(path: &std::path::Path) -> Result<PcapReader<std::fs::File>, PcapError> {
    let file = std::fs::File::open(path).map_err(|source| PcapError::Io { offset: 0, source })?;
    PcapReader::new(file)
}
