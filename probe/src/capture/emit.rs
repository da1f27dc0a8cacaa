//! The hot path of the stream: `syn` lines written straight into a byte buffer, byte for byte
//! what [`crate::wire::encode_line`] writes for the same [`Syn`](crate::wire::Syn) (a test
//! holds the two together), without building the event or allocating per packet. Every other
//! event goes through `wire` as usual.
//!
//! A line is assembled in place in the [`Batch`]'s spare room. Fixed pieces are copied with
//! lengths known at compile time and numbers are written digit pairs at a time, so a line usually
//! costs no `memcpy` call and no formatting machinery; short variable pieces (an address octet, the
//! interface's constant middle) are copied whole from padded tables and the cursor then moves
//! by their real length, leaving the padding to be overwritten.

use crate::parse::Segment;
use crate::wire::Direction;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};

/// Event lines waiting to be written out in one piece. Its bytes stay allocated and zeroed
/// past `used`, so a line can be assembled in place without growing the vector per byte.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    buf: Vec<u8>,
    used: usize,
}

impl Batch {
    pub fn with_capacity(bytes: usize) -> Self {
        Batch {
            buf: vec![0; bytes],
            used: 0,
        }
    }

    /// At least `n` writable bytes after the used part (grown once when short).
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.used < n {
            let grown = (self.used + n).max(self.buf.len() * 2);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.used..]
    }

    /// Appends bytes (a line from the general encoder).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.room(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.used]
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    pub fn clear(&mut self) {
        self.used = 0;
    }
}

/// The constant middle of one interface's lines, padded so it is always copied whole.
const MIDDLE_PAD: usize = 96;

/// Pre-rendered constant parts of one interface's `syn` lines.
#[derive(Debug, Clone)]
pub struct SynWriter {
    /// `,"node":"…","iface":"…","dir":"in","src":"` and the same for `out`, zero padded to a
    /// multiple of [`MIDDLE_PAD`].
    middle: [Vec<u8>; 2],
    /// Unpadded lengths of `middle`.
    middle_len: [usize; 2],
    /// Room a line may need: the middle, the variable fields and the padded copies' overhang.
    max_line: usize,
}

const HEAD: &[u8; 28] = br#"{"v":1,"type":"syn","ts_ns":"#;
const SPORT: &[u8; 10] = br#"","sport":"#;
const DST: &[u8; 8] = br#","dst":""#;
const DPORT: &[u8; 10] = br#"","dport":"#;
const ISN: &[u8; 7] = br#","isn":"#;
const TSVAL: &[u8; 9] = br#","tsval":"#;
const TTL: &[u8; 7] = br#","ttl":"#;
const IP_ID: &[u8; 9] = br#","ip_id":"#;
/// Everything but the middle: the fixed names (90 bytes), at most 20 + 5 + 5 + 10 + 10 + 3 + 5
/// digits, two addresses of at most 45 bytes and the line end, rounded up with slack for the
/// padded octet copies.
const VARIABLE_MAX: usize = 256;

impl SynWriter {
    pub fn new(node: &str, iface: &str) -> Self {
        // serde_json escapes the names exactly as the event encoder does.
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let part = |dir: &str| {
            format!(
                r#","node":{},"iface":{},"dir":"{dir}","src":""#,
                quoted(node),
                quoted(iface)
            )
            .into_bytes()
        };
        let (inbound, outbound) = (part("in"), part("out"));
        let middle_len = [inbound.len(), outbound.len()];
        let padded = |mut v: Vec<u8>| {
            v.resize(v.len().div_ceil(MIDDLE_PAD).max(1) * MIDDLE_PAD, 0);
            v
        };
        let middle = [padded(inbound), padded(outbound)];
        let max_line = middle[0].len().max(middle[1].len()) + VARIABLE_MAX;
        SynWriter {
            middle,
            middle_len,
            max_line,
        }
    }

    /// Appends one `syn` line (with its newline) for `seg` to `batch`.
    pub fn write(&self, batch: &mut Batch, ts_ns: u64, dir: Direction, seg: &Segment<'_>) {
        let out = batch.room(self.max_line);
        let mut at = 0;
        put(out, &mut at, HEAD);
        at += dec(&mut out[at..], ts_ns);
        let d = usize::from(dir == Direction::Out);
        let middle = self.middle[d].as_slice();
        match <&[u8; MIDDLE_PAD]>::try_from(middle) {
            // The usual case: one fixed-size copy.
            Ok(fixed) => out[at..at + MIDDLE_PAD].copy_from_slice(fixed),
            Err(_) => out[at..at + middle.len()].copy_from_slice(middle),
        }
        at += self.middle_len[d];
        at += ip(&mut out[at..], seg.src);
        put(out, &mut at, SPORT);
        at += dec(&mut out[at..], u64::from(seg.sport));
        put(out, &mut at, DST);
        at += ip(&mut out[at..], seg.dst);
        put(out, &mut at, DPORT);
        at += dec(&mut out[at..], u64::from(seg.dport));
        put(out, &mut at, ISN);
        at += dec(&mut out[at..], u64::from(seg.seq));
        if let Some(tsval) = seg.tsval {
            put(out, &mut at, TSVAL);
            at += dec(&mut out[at..], u64::from(tsval));
        }
        put(out, &mut at, TTL);
        at += dec(&mut out[at..], u64::from(seg.ttl));
        if let Some(id) = seg.ip_id {
            put(out, &mut at, IP_ID);
            at += dec(&mut out[at..], u64::from(id));
        }
        put(out, &mut at, b"}\n");
        batch.used += at;
    }
}

/// Copies a piece whose length the compiler knows, and moves the cursor past it.
#[inline(always)]
fn put<const N: usize>(out: &mut [u8], at: &mut usize, piece: &[u8; N]) {
    out[*at..*at + N].copy_from_slice(piece);
    *at += N;
}

/// "00" "01" … "99".
const PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Writes `v` in decimal at the start of `out` (at least 20 bytes); returns its length.
/// Numbers past `u32` (timestamps) are cut into 8-digit pieces written with 32-bit arithmetic.
#[inline]
fn dec(out: &mut [u8], v: u64) -> usize {
    const E8: u64 = 100_000_000;
    if let Ok(small) = u32::try_from(v) {
        return dec32(out, small);
    }
    let (high, low) = (v / E8, (v % E8) as u32);
    let len = if let Ok(high) = u32::try_from(high) {
        dec32(out, high)
    } else {
        let n = dec32(out, (high / E8) as u32);
        eight(&mut out[n..], (high % E8) as u32);
        n + 8
    };
    eight(&mut out[len..], low);
    len + 8
}

/// Writes `v` (below 10^8) as exactly eight digits, leading zeros kept.
#[inline]
fn eight(out: &mut [u8], v: u32) {
    let (high, low) = ((v / 10_000) as usize, (v % 10_000) as usize);
    let [a, b] = PAIRS[high / 100];
    let [c, d] = PAIRS[high % 100];
    let [e, f] = PAIRS[low / 100];
    let [g, h] = PAIRS[low % 100];
    out[..8].copy_from_slice(&[a, b, c, d, e, f, g, h]);
}

#[inline]
fn dec32(out: &mut [u8], mut v: u32) -> usize {
    let len = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let out = &mut out[..len];
    let mut end = len;
    while v >= 100 {
        let pair = PAIRS[(v % 100) as usize];
        v /= 100;
        out[end - 2..end].copy_from_slice(&pair);
        end -= 2;
    }
    if v >= 10 {
        out[..2].copy_from_slice(&PAIRS[v as usize]);
    } else {
        out[0] = b'0' + v as u8;
    }
    len
}

/// Each octet's decimal text, padded to 4 bytes, and its length.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let (h, te, o) = ((i / 100) as u8, ((i / 10) % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + te, b'0' + o, 0], 3)
        } else if i >= 10 {
            ([b'0' + te, b'0' + o, 0, 0], 2)
        } else {
            ([b'0' + o, 0, 0, 0], 1)
        };
        i += 1;
    }
    t
};

/// Writes an address as `IpAddr`'s `Display` does at the start of `out` (at least 64 bytes);
/// returns its length.
#[inline]
fn ip(out: &mut [u8], addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(v4) => {
            let mut at = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                let (text, len) = OCTETS[usize::from(octet)];
                out[at..at + 4].copy_from_slice(&text);
                at += usize::from(len);
                if i < 3 {
                    out[at] = b'.';
                    at += 1;
                }
            }
            at
        }
        IpAddr::V6(v6) => ipv6(out, v6),
    }
}

/// IPv6 text is rare on the hot path and its compression rules are subtle: `Display` writes it.
#[cold]
fn ipv6(out: &mut [u8], v6: Ipv6Addr) -> usize {
    let mut cursor = std::io::Cursor::new(&mut out[..48]);
    // 45 bytes is the longest IPv6 text form: it fits.
    let _ = write!(cursor, "{v6}");
    cursor.position() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_line, Event, Syn};
    use proptest::prelude::*;

    fn segment(syn: &Syn) -> Segment<'static> {
        Segment {
            src: syn.src,
            dst: syn.dst,
            sport: syn.sport,
            dport: syn.dport,
            seq: syn.isn,
            syn: true,
            ack: false,
            rst: false,
            fin: false,
            tsval: syn.tsval,
            ttl: syn.ttl,
            ip_id: syn.ip_id,
            payload: &[],
            link_dir: None,
            link_ifindex: None,
        }
    }

    fn check(syn: &Syn) {
        let seg = segment(syn);
        let writer = SynWriter::new(&syn.node, &syn.iface);
        // A line after another, and one into a buffer too small for it: neither may leave
        // padding behind or lose bytes.
        let mut batch = Batch::with_capacity(1);
        writer.write(&mut batch, syn.ts_ns, syn.dir, &seg);
        writer.write(&mut batch, syn.ts_ns, syn.dir, &seg);
        let line = encode_line(&Event::Syn(syn.clone())) + "\n";
        assert_eq!(
            String::from_utf8(batch.as_bytes().to_vec()).unwrap(),
            line.repeat(2)
        );
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            Just("::ffff:198.51.100.7".parse().unwrap()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn same_bytes_as_the_wire_encoder(
            ts_ns: u64, out: bool, src in any_ip(), dst in any_ip(), sport: u16, dport: u16, isn: u32,
            tsval: Option<u32>, ttl: u8, ip_id: Option<u16>,
            node in "[a-z\"\\\\ é\u{1}-]{0,120}", iface in "[a-z0-9.\"]{1,15}",
        ) {
            check(&Syn {
                ts_ns, node, iface,
                dir: if out { Direction::Out } else { Direction::In },
                src, sport, dst, dport, isn, tsval, ttl, ip_id,
            });
        }

        #[test]
        fn numbers_as_display_writes_them(v: u64) {
            let mut out = [0u8; 20];
            let n = dec(&mut out, v);
            let want = v.to_string();
            prop_assert_eq!(&out[..n], want.as_bytes());
        }
    }

    #[test]
    fn digit_count_boundaries() {
        let mut edges = vec![0u64, u64::MAX];
        for p in 1..20 {
            let t = 10u64.pow(p);
            edges.extend([t - 1, t, t + 1]);
        }
        for v in edges {
            let mut out = [0u8; 20];
            let n = dec(&mut out, v);
            assert_eq!(&out[..n], v.to_string().as_bytes());
        }
        for octet in 0..=255u8 {
            let addr = IpAddr::from([octet, 0, 255, octet]);
            let mut out = [0u8; 64];
            let n = ip(&mut out, addr);
            assert_eq!(&out[..n], addr.to_string().as_bytes());
        }
    }

    #[test]
    fn lines_from_many_writers_stay_apart() {
        // Middles shorter than, equal to and longer than the padding.
        let mut batch = Batch::with_capacity(64);
        let mut want = String::new();
        for node in ["n", &"x".repeat(40), &"y".repeat(200)] {
            let syn = Syn {
                ts_ns: 1_795_363_379_931_640_155,
                node: node.into(),
                iface: "eth0".into(),
                dir: Direction::Out,
                src: "198.51.100.7".parse().unwrap(),
                sport: 41770,
                dst: "203.0.113.1".parse().unwrap(),
                dport: 80,
                isn: 7,
                tsval: None,
                ttl: 64,
                ip_id: Some(0),
            };
            SynWriter::new(node, "eth0").write(&mut batch, syn.ts_ns, syn.dir, &segment(&syn));
            want += &(encode_line(&Event::Syn(syn)) + "\n");
        }
        assert_eq!(std::str::from_utf8(batch.as_bytes()).unwrap(), want);
    }
}
