//! The hot path of the stream: `syn` lines written straight into a byte buffer, byte for byte
//! what [`crate::wire::encode_line`] writes for the same [`Syn`](crate::wire::Syn) (a test
//! holds the two together), without building the event or allocating per packet. Every other
//! event goes through `wire` as usual.

use crate::parse::Segment;
use crate::wire::Direction;
use std::io::Write;
use std::net::IpAddr;

/// Pre-rendered constant parts of one interface's `syn` lines.
#[derive(Debug, Clone)]
pub struct SynWriter {
    /// `,"node":"…","iface":"…","dir":"in","src":"` and the same for `out`.
    after_ts: [Vec<u8>; 2],
    /// Scratch space for the variable end of a line, reused so it is not cleared per packet.
    tail: Tail,
}

const HEAD: &[u8] = br#"{"v":1,"type":"syn","ts_ns":"#;

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
        SynWriter {
            after_ts: [part("in"), part("out")],
            tail: Tail::default(),
        }
    }

    /// Appends one `syn` line (with its newline) for `seg` to `buf`.
    pub fn write(&mut self, buf: &mut Vec<u8>, ts_ns: u64, dir: Direction, seg: &Segment<'_>) {
        let mut num = itoa::Buffer::new();
        buf.extend_from_slice(HEAD);
        buf.extend_from_slice(num.format(ts_ns).as_bytes());
        buf.extend_from_slice(&self.after_ts[usize::from(dir == Direction::Out)]);
        // The rest has a bounded length: assemble it on the stack, append it once.
        let tail = &mut self.tail;
        tail.len = 0;
        tail.ip(seg.src);
        tail.put(br#"","sport":"#);
        tail.put(num.format(seg.sport).as_bytes());
        tail.put(br#","dst":""#);
        tail.ip(seg.dst);
        tail.put(br#"","dport":"#);
        tail.put(num.format(seg.dport).as_bytes());
        tail.put(br#","isn":"#);
        tail.put(num.format(seg.seq).as_bytes());
        if let Some(tsval) = seg.tsval {
            tail.put(br#","tsval":"#);
            tail.put(num.format(tsval).as_bytes());
        }
        tail.put(br#","ttl":"#);
        tail.put(num.format(seg.ttl).as_bytes());
        if let Some(id) = seg.ip_id {
            tail.put(br#","ip_id":"#);
            tail.put(num.format(id).as_bytes());
        }
        tail.put(b"}\n");
        buf.extend_from_slice(tail.as_bytes());
    }
}

/// The variable end of a `syn` line: two addresses (at most 45 bytes each as text), five
/// numbers and the field names fit in 256 bytes.
#[derive(Debug, Clone)]
struct Tail {
    bytes: [u8; 256],
    len: usize,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl Tail {
    fn put(&mut self, s: &[u8]) {
        // Cannot overflow (see the type's comment); were it to, the line is cut, not a panic.
        let end = (self.len + s.len()).min(self.bytes.len());
        let n = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&s[..n]);
        self.len = end;
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                let mut num = itoa::Buffer::new();
                let [a, b, c, d] = v4.octets();
                self.put(num.format(a).as_bytes());
                self.put(b".");
                self.put(num.format(b).as_bytes());
                self.put(b".");
                self.put(num.format(c).as_bytes());
                self.put(b".");
                self.put(num.format(d).as_bytes());
            }
            IpAddr::V6(v6) => {
                let mut text = [0u8; 48];
                let mut cursor = std::io::Cursor::new(&mut text[..]);
                // 45 bytes is the longest IPv6 text form: it fits.
                let _ = write!(cursor, "{v6}");
                let n = cursor.position() as usize;
                self.put(&text[..n]);
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_line, Event, Syn};
    use proptest::prelude::*;

    fn check(syn: &Syn) {
        let seg = Segment {
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
        };
        let mut fast = Vec::new();
        let mut writer = SynWriter::new(&syn.node, &syn.iface);
        // Twice through the same writer: the reused scratch space must not leak between lines.
        writer.write(&mut fast, syn.ts_ns, syn.dir, &seg);
        fast.clear();
        writer.write(&mut fast, syn.ts_ns, syn.dir, &seg);
        let reference = encode_line(&Event::Syn(syn.clone())) + "\n";
        assert_eq!(String::from_utf8(fast).unwrap(), reference);
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            Just("::ffff:198.51.100.7".parse().unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_wire_encoder(
            ts_ns: u64, out: bool, src in ip(), dst in ip(), sport: u16, dport: u16, isn: u32,
            tsval: Option<u32>, ttl: u8, ip_id: Option<u16>,
            node in "[a-z\"\\\\ é\u{1}]{0,12}", iface in "[a-z0-9.\"]{1,15}",
        ) {
            check(&Syn {
                ts_ns, node, iface,
                dir: if out { Direction::Out } else { Direction::In },
                src, sport, dst, dport, isn, tsval, ttl, ip_id,
            });
        }
    }
}
