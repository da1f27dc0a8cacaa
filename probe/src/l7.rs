//! Forwarding facts from a flow's first data segment: a PROXY protocol (v1/v2) header and the
//! HTTP/1.x request headers X-Forwarded-For, X-Real-IP, Forwarded and X-Realip-Token. Nothing else
//! of the payload is read or kept. Pure and total: any bytes yield a value, never a panic.

use crate::parse::Segment;
use crate::wire::{Direction, ProxySource, L7};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest value kept for one forwarding field (longer values are cut).
pub const MAX_VALUE: usize = 512;

/// Longest PROXY protocol v1 line including its CRLF (spec: 107 bytes).
const V1_MAX: usize = 107;

/// The 12-byte PROXY protocol v2 signature.
const V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The forwarding facts one data segment carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// X-Forwarded-For, every occurrence joined with ", ".
    pub x_forwarded_for: Option<String>,
    /// X-Real-IP (first occurrence).
    pub x_real_ip: Option<String>,
    /// Forwarded (RFC 7239), every occurrence joined with ", ".
    pub forwarded: Option<String>,
    /// Source announced by a PROXY protocol header.
    pub proxy_protocol: Option<ProxySource>,
    /// X-Realip-Token of a test request (first occurrence).
    pub realip_token: Option<String>,
}

impl Forwarding {
    /// True when the segment carried no forwarding fact at all.
    pub fn is_empty(&self) -> bool {
        *self == Forwarding::default()
    }

    /// The `l7` wire event for these facts, found in `seg` as seen at `ts_ns` on `iface` of
    /// `node`: the one place a segment and its facts become an event (probe and capture files).
    pub fn into_event(
        self,
        seg: &Segment<'_>,
        ts_ns: u64,
        node: String,
        iface: String,
        dir: Option<Direction>,
    ) -> L7 {
        L7 {
            ts_ns,
            node,
            iface,
            dir,
            src: Some(seg.src),
            sport: seg.sport,
            dst: Some(seg.dst),
            dport: seg.dport,
            seq: seg.seq,
            x_forwarded_for: self.x_forwarded_for,
            x_real_ip: self.x_real_ip,
            forwarded: self.forwarded,
            proxy_protocol: self.proxy_protocol,
            realip_token: self.realip_token,
        }
    }
}

/// A complete PROXY protocol header found at the start of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The announced TCP source; `None` for v1 `UNKNOWN`, v2 `LOCAL` or a non-TCP v2 family.
    pub source: Option<ProxySource>,
    /// Bytes the header occupies (strip these to reach the proxied stream).
    pub len: usize,
}

/// Why the start of a payload is not a usable PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes so far are a valid beginning: read more.
    #[error("PROXY protocol header incomplete")]
    Incomplete,
    /// It starts like a PROXY header but breaks the protocol.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Reads a PROXY protocol v1 or v2 header at the start of `payload`; `Ok(None)` when the payload
/// does not begin with one (an empty payload included: wait for a byte before asking).
pub fn proxy_header(payload: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if starts_like(payload, &V2_SIG) {
        let v2 = parse_v2(payload)?;
        if payload.len() < v2.len {
            return Err(ProxyError::Incomplete);
        }
        return Ok(Some(ProxyHeader {
            source: v2.source,
            len: v2.len,
        }));
    }
    if starts_like(payload, b"PROXY ") {
        return parse_v1(payload).map(Some);
    }
    Ok(None)
}

/// Reads the forwarding facts of a flow's first data segment (possibly cut by the snap length).
pub fn forwarding_facts(payload: &[u8]) -> Forwarding {
    let mut facts = Forwarding::default();
    let rest = if starts_like(payload, &V2_SIG) {
        // The addresses sit right after the fixed part: keep them even when TLVs were cut off.
        match parse_v2(payload) {
            Ok(v2) => {
                facts.proxy_protocol = v2.source;
                payload.get(v2.len..).unwrap_or_default()
            }
            Err(_) => return facts,
        }
    } else if starts_like(payload, b"PROXY ") {
        match parse_v1(payload) {
            Ok(h) => {
                facts.proxy_protocol = h.source;
                &payload[h.len..]
            }
            Err(_) => return facts,
        }
    } else {
        payload
    };
    http_forwarding_into(rest, &mut facts);
    facts
}

/// Reads only the HTTP/1.x forwarding headers of a request that starts at `request`.
pub fn http_forwarding(request: &[u8]) -> Forwarding {
    let mut facts = Forwarding::default();
    http_forwarding_into(request, &mut facts);
    facts
}

/// True when `buf` is a prefix of `sig` or starts with all of it.
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    n > 0 && buf[..n] == sig[..n]
}

fn parse_v1(payload: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let window = &payload[..payload.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return Err(if payload.len() < V1_MAX {
            ProxyError::Incomplete
        } else {
            ProxyError::Malformed("v1 line longer than 107 bytes")
        });
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ProxyError::Malformed("v1 line not ended by CRLF"));
    }
    let line = std::str::from_utf8(&window[..lf - 1])
        .map_err(|_| ProxyError::Malformed("v1 line not ASCII"))?;
    let len = lf + 1;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let source = match fields.next() {
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = || {
                fields
                    .next()
                    .ok_or(ProxyError::Malformed("v1 line too short"))
            };
            let (src, dst) = (next()?, next()?);
            let (sport, dport) = (next()?, next()?);
            let addr = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip = if family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| ProxyError::Malformed("v1 address does not match its family"))
            };
            let source = ProxySource {
                version: 1,
                src: addr(src)?,
                sport: v1_port(sport)?,
                dst: addr(dst)?,
                dport: v1_port(dport)?,
            };
            if fields.next().is_some() {
                return Err(ProxyError::Malformed("v1 line has extra fields"));
            }
            Some(source)
        }
        _ => return Err(ProxyError::Malformed("v1 family not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(ProxyHeader { source, len })
}

fn v1_port(s: &str) -> Result<u16, ProxyError> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| s.parse::<u16>().ok())
        .flatten()
        .ok_or(ProxyError::Malformed("v1 port not a number below 65536"))
}

/// A v2 header whose fixed part and addresses were read; `len` may exceed the bytes present.
struct V2 {
    source: Option<ProxySource>,
    len: usize,
}

fn parse_v2(payload: &[u8]) -> Result<V2, ProxyError> {
    let Some(fixed) = payload.get(..16) else {
        return Err(ProxyError::Incomplete);
    };
    let (ver_cmd, fam) = (fixed[12], fixed[13]);
    let len = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version not 2"));
    }
    let proxied = match ver_cmd & 0x0F {
        0 => false,
        1 => true,
        _ => return Err(ProxyError::Malformed("v2 command not LOCAL or PROXY")),
    };
    // Address block sizes by family (UNSPEC, INET, INET6, UNIX).
    let need = match fam >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(ProxyError::Malformed("v2 unknown address family")),
    };
    if len - 16 < need {
        return Err(ProxyError::Malformed(
            "v2 length shorter than its addresses",
        ));
    }
    const STREAM: u8 = 1;
    if !proxied || fam & 0x0F != STREAM || !(1..=2).contains(&(fam >> 4)) {
        return Ok(V2 { source: None, len });
    }
    let Some(a) = payload.get(16..16 + need) else {
        return Err(ProxyError::Incomplete);
    };
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    let source = if need == 12 {
        ProxySource {
            version: 2,
            src: IpAddr::from([a[0], a[1], a[2], a[3]]),
            dst: IpAddr::from([a[4], a[5], a[6], a[7]]),
            sport: port(8),
            dport: port(10),
        }
    } else {
        let v6 = |at: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&a[at..at + 16]);
            IpAddr::from(b)
        };
        ProxySource {
            version: 2,
            src: v6(0),
            dst: v6(16),
            sport: port(32),
            dport: port(34),
        }
    };
    Ok(V2 {
        source: Some(source),
        len,
    })
}

/// Which forwarding header a header line names.
#[derive(Clone, Copy)]
enum Field {
    Xff,
    RealIp,
    Forwarded,
    Token,
}

fn field_of(name: &[u8]) -> Option<Field> {
    const FIELDS: [(&[u8], Field); 4] = [
        (b"x-forwarded-for", Field::Xff),
        (b"x-real-ip", Field::RealIp),
        (b"forwarded", Field::Forwarded),
        (b"x-realip-token", Field::Token),
    ];
    FIELDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, f)| f)
}

fn http_forwarding_into(buf: &[u8], facts: &mut Forwarding) {
    let mut lines = CompleteLines { rest: buf };
    // Servers ignore empty lines before a request line (RFC 9112 §2.2); a few are enough.
    match lines.by_ref().take(4).find(|l| !l.is_empty()) {
        Some(first) if is_request_line(first) => {}
        _ => return,
    }
    for line in lines {
        if line.is_empty() {
            break; // end of the header block: the body is never read
        }
        // Folded continuation lines (obsolete) are skipped rather than guessed at.
        if matches!(line[0], b' ' | b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Some(field) = field_of(&line[..colon]) else {
            continue;
        };
        let value = trim_ows(&line[colon + 1..]);
        match field {
            Field::Xff => append(&mut facts.x_forwarded_for, value),
            Field::Forwarded => append(&mut facts.forwarded, value),
            Field::RealIp => first(&mut facts.x_real_ip, value),
            Field::Token => first(&mut facts.realip_token, value),
        }
    }
}

/// Lines ended by LF (an optional CR before it is dropped); an unterminated tail is not yielded.
struct CompleteLines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for CompleteLines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let lf = self.rest.iter().position(|&b| b == b'\n')?;
        let line = &self.rest[..lf];
        self.rest = &self.rest[lf + 1..];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// `METHOD SP target SP HTTP/1.x`, with a token method.
fn is_request_line(line: &[u8]) -> bool {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let method = &line[..sp];
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !method.is_empty()
        && method.iter().all(token)
        && line.len() > sp + 9
        && (line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Printable ASCII only (others become '?'), at most `room` bytes.
fn push_sanitized(out: &mut String, value: &[u8], room: usize) {
    out.extend(value.iter().take(room).map(|&b| {
        if (0x20..0x7F).contains(&b) {
            b as char
        } else {
            '?'
        }
    }));
}

fn first(slot: &mut Option<String>, value: &[u8]) {
    if slot.is_none() {
        let mut s = String::with_capacity(value.len().min(MAX_VALUE));
        push_sanitized(&mut s, value, MAX_VALUE);
        *slot = Some(s);
    }
}

/// Joins list-valued header occurrences with ", " as HTTP combines them; empty ones add nothing.
fn append(slot: &mut Option<String>, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    let s = slot.get_or_insert_with(String::new);
    if !s.is_empty() {
        if s.len() + 2 >= MAX_VALUE {
            return;
        }
        s.push_str(", ");
    }
    let room = MAX_VALUE - s.len();
    push_sanitized(s, value, room);
}

/// The left-most X-Forwarded-For entry as an IP address string (the client the first proxy saw);
/// `None` when that entry is not an address (e.g. `unknown`).
pub fn client_from_xff(value: &str) -> Option<String> {
    let first = value.split(',').next()?;
    node_ip(first).map(|ip| ip.to_string())
}

/// The left-most `for=` of a Forwarded header (RFC 7239) as an IP address string; `None` when
/// no element has `for=` or the first one is not an address (`unknown`, `_hidden`).
pub fn client_from_forwarded(value: &str) -> Option<String> {
    let node = split_quoted(value, ',').find_map(|element| {
        split_quoted(element, ';').find_map(|pair| {
            let (key, val) = pair.split_once('=')?;
            key.trim().eq_ignore_ascii_case("for").then_some(val)
        })
    })?;
    node_ip(&unquote(node.trim())).map(|ip| ip.to_string())
}

/// One address as forwarding headers write it: optional quotes, `[v6]`, `[v6]:port`, `v4:port`;
/// an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, written by dual-stack proxies) becomes IPv4.
pub fn node_ip(node: &str) -> Option<IpAddr> {
    node_ip_as_written(node).map(|ip| ip.to_canonical())
}

fn node_ip_as_written(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"').trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = node.strip_prefix('[') {
        let (v6, after) = inner.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
        return port_ok
            .then(|| v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    let (v4, port) = node.split_once(':')?;
    port.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))
        .flatten()
}

/// Splits on `sep` outside double quotes (a backslash escapes inside quotes).
fn split_quoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + c.len_utf8()..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// Removes surrounding double quotes and backslash escapes of a quoted-string.
fn unquote(s: &str) -> String {
    let Some(inner) = s.strip_prefix('"') else {
        return s.to_string();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if c == '\\' && !escaped {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v2(cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIG.to_vec();
        out.push(0x20 | cmd);
        out.push(fam);
        let len = (addrs.len() + tlvs.len()) as u16;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(addrs);
        out.extend_from_slice(tlvs);
        out
    }

    fn v4_addrs() -> Vec<u8> {
        let mut a = vec![203, 0, 113, 9, 198, 51, 100, 1];
        a.extend_from_slice(&51234u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        a
    }

    #[test]
    fn v1_tcp4_with_http_after_it() {
        let p = b"PROXY TCP4 203.0.113.9 198.51.100.1 51234 443\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n";
        let h = proxy_header(p).unwrap().unwrap();
        assert_eq!(&p[h.len..h.len + 3], b"GET");
        let src = h.source.unwrap();
        assert_eq!(
            (src.version, src.src, src.sport, src.dst, src.dport),
            (1, ip("203.0.113.9"), 51234, ip("198.51.100.1"), 443)
        );
        let f = forwarding_facts(p);
        assert_eq!(f.proxy_protocol, Some(src));
        assert_eq!(f.x_forwarded_for.as_deref(), Some("192.0.2.7"));
        assert!(!f.is_empty());
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let p = b"PROXY TCP6 2001:db8::9 2001:db8::1 4000 80\r\n";
        let h = proxy_header(p).unwrap().unwrap();
        assert_eq!(h.len, p.len());
        assert_eq!(h.source.unwrap().src, ip("2001:db8::9"));
        let u = proxy_header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest").unwrap();
        assert_eq!(
            u,
            Some(ProxyHeader {
                source: None,
                len: 35
            })
        );
        assert_eq!(proxy_header(b"PROXY UNKNOWN\r\n").unwrap().unwrap().len, 15);
    }

    #[test]
    fn v1_malformed_and_incomplete() {
        use ProxyError::*;
        assert_eq!(proxy_header(b"PRO"), Err(Incomplete));
        assert_eq!(proxy_header(b"PROXY TCP4 203.0.113.9"), Err(Incomplete));
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
            b"PROXY TCP6 203.0.113.9 2001:db8::1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 203.0.113.9 198.51.100.1 -1 2\r\n",
            b"PROXY TCP4 203.0.113.9 198.51.100.1 +1 2\r\n",
            b"PROXY TCP4 203.0.113.9 198.51.100.1 1\r\n",
            b"PROXY TCP4 203.0.113.9 198.51.100.1 1 2 3\r\n",
            b"PROXY TCP4 203.0.113.9 198.51.100.1 1 2\n",
            b"PROXY UDP4 203.0.113.9 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 \xff\xfe 1 2\r\n",
            b"PROXY \r\n",
        ];
        for p in bad {
            assert!(
                matches!(proxy_header(p), Err(Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(p)
            );
            assert!(forwarding_facts(p).is_empty());
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
        assert!(matches!(proxy_header(&long), Err(Malformed(_))));
    }

    #[test]
    fn not_proxy_is_none() {
        assert_eq!(proxy_header(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert_eq!(proxy_header(b"\x16\x03\x01"), Ok(None));
        assert_eq!(proxy_header(b""), Ok(None));
    }

    #[test]
    fn v2_inet_with_tlvs_and_body() {
        let tlvs = [0x04, 0x00, 0x03, b'a', b'b', b'c'];
        let mut p = v2(1, 0x11, &v4_addrs(), &tlvs);
        let hlen = p.len();
        p.extend_from_slice(b"GET /x HTTP/1.0\r\nx-real-ip: 192.0.2.1\r\n\r\n");
        let h = proxy_header(&p).unwrap().unwrap();
        assert_eq!(h.len, hlen);
        let src = h.source.unwrap();
        assert_eq!(
            (src.version, src.src, src.sport, src.dst, src.dport),
            (2, ip("203.0.113.9"), 51234, ip("198.51.100.1"), 443)
        );
        let f = forwarding_facts(&p);
        assert_eq!(f.proxy_protocol, Some(src));
        assert_eq!(f.x_real_ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn v2_inet6_local_unspec_dgram() {
        let mut a = Vec::new();
        a.extend_from_slice(&ip6("2001:db8::9"));
        a.extend_from_slice(&ip6("2001:db8::1"));
        a.extend_from_slice(&[0, 80, 1, 187]);
        let h = proxy_header(&v2(1, 0x21, &a, &[])).unwrap().unwrap();
        let s = h.source.unwrap();
        assert_eq!((s.src, s.sport, s.dport), (ip("2001:db8::9"), 80, 443));
        // LOCAL: health checks from the proxy itself, no source.
        let local = proxy_header(&v2(0, 0x11, &v4_addrs(), &[]))
            .unwrap()
            .unwrap();
        assert_eq!((local.source, local.len), (None, 28));
        let unspec = proxy_header(&v2(1, 0x00, &[], &[])).unwrap().unwrap();
        assert_eq!((unspec.source, unspec.len), (None, 16));
        let dgram = proxy_header(&v2(1, 0x12, &v4_addrs(), &[]))
            .unwrap()
            .unwrap();
        assert_eq!(dgram.source, None);
    }

    fn ip6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn v2_malformed_incomplete_and_cut_tlvs() {
        use ProxyError::*;
        let good = v2(1, 0x11, &v4_addrs(), &[0x04, 0x00, 0x40]);
        assert_eq!(proxy_header(&good[..5]), Err(Incomplete));
        assert_eq!(proxy_header(&good[..20]), Err(Incomplete));
        // TLVs cut by the snap length: the header is incomplete, but the source is known.
        assert_eq!(proxy_header(&good[..30]), Err(Incomplete));
        assert_eq!(
            forwarding_facts(&good[..30]).proxy_protocol.unwrap().src,
            ip("203.0.113.9")
        );
        let mut bad_version = good.clone();
        bad_version[12] = 0x11;
        assert!(matches!(proxy_header(&bad_version), Err(Malformed(_))));
        let mut bad_cmd = good.clone();
        bad_cmd[12] = 0x2F;
        assert!(matches!(proxy_header(&bad_cmd), Err(Malformed(_))));
        let mut bad_fam = good.clone();
        bad_fam[13] = 0x41;
        assert!(matches!(proxy_header(&bad_fam), Err(Malformed(_))));
        let short = v2(1, 0x21, &v4_addrs(), &[]); // INET6 needs 36 bytes
        assert!(matches!(proxy_header(&short), Err(Malformed(_))));
        assert!(forwarding_facts(&short).is_empty());
    }

    #[test]
    fn http_headers_case_insensitive_joined_and_bounded() {
        let p = b"POST /login HTTP/1.1\r\nHost: a\r\nx-FORWARDED-for: 203.0.113.7, 10.0.0.1\r\nCookie: secret\r\nX-Forwarded-For:198.51.100.2\r\nX-Real-IP: \t203.0.113.7 \r\nForwarded: for=192.0.2.60;proto=http\r\nX-Realip-Token: tok-123\r\nX-Real-IP: 192.0.2.99\r\n\r\nX-Forwarded-For: body\r\n";
        let f = forwarding_facts(p);
        assert_eq!(
            f,
            Forwarding {
                x_forwarded_for: Some("203.0.113.7, 10.0.0.1, 198.51.100.2".into()),
                x_real_ip: Some("203.0.113.7".into()),
                forwarded: Some("for=192.0.2.60;proto=http".into()),
                proxy_protocol: None,
                realip_token: Some("tok-123".into()),
            }
        );
        let long = format!(
            "GET / HTTP/1.1\r\nX-Forwarded-For: {}\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: {}\r\n\r\n",
            "1".repeat(600),
            "2".repeat(600)
        );
        let f = http_forwarding(long.as_bytes());
        assert_eq!(f.x_forwarded_for.unwrap().len(), MAX_VALUE);
        assert_eq!(f.x_real_ip.unwrap().len(), MAX_VALUE);
    }

    #[test]
    fn http_values_are_sanitized() {
        let p = b"GET / HTTP/1.1\r\nX-Real-IP: 203.0.113.7\x1b[31m\xc3\xa9\x00\r\n\r\n";
        assert_eq!(
            forwarding_facts(p).x_real_ip.as_deref(),
            Some("203.0.113.7?[31m???")
        );
    }

    #[test]
    fn truncated_header_block_yields_complete_lines_only() {
        let p = b"GET / HTTP/1.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-For: 203.0.1";
        let f = forwarding_facts(p);
        assert_eq!(f.x_real_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(f.x_forwarded_for, None);
        // Empty lines before the request line and bare LF line ends are tolerated.
        let crlf = forwarding_facts(b"\r\n\r\nGET / HTTP/1.1\r\nX-Real-IP: 192.0.2.1\r\n\r\n");
        assert_eq!(crlf.x_real_ip.as_deref(), Some("192.0.2.1"));
        let lf = forwarding_facts(b"GET / HTTP/1.0\nX-Real-IP: 192.0.2.1\n\n");
        assert_eq!(lf.x_real_ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn non_http_and_hostile_payloads_yield_nothing() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"X-Forwarded-For: 203.0.113.7\r\n\r\n",
            b"GET / HTTP/1.1", // request line not complete
            b"G\x00T / HTTP/1.1\r\nX-Real-IP: 1\r\n\r\n",
            b" HTTP/1.1\r\nX-Real-IP: 1\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ];
        for p in cases {
            assert!(forwarding_facts(p).is_empty(), "{:?}", p);
        }
        // Folded lines and malformed names are skipped, not merged.
        let f = forwarding_facts(
            b"GET / HTTP/1.1\r\nX-Real-IP : 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\n 192.0.2.3\r\nnocolon\r\n:\r\n\r\n",
        );
        assert_eq!(f.x_real_ip, None);
        assert_eq!(f.x_forwarded_for.as_deref(), Some("192.0.2.2"));
    }

    #[test]
    fn xff_client_is_left_most_address() {
        assert_eq!(
            client_from_xff("203.0.113.7, 10.0.0.1").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client_from_xff(" 203.0.113.7:51234 ,x").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client_from_xff("[2001:db8::7]:443").as_deref(),
            Some("2001:db8::7")
        );
        assert_eq!(
            client_from_xff("2001:DB8::7").as_deref(),
            Some("2001:db8::7")
        );
        assert_eq!(
            client_from_xff("::ffff:203.0.113.7, 10.0.0.1").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client_from_xff("[::ffff:203.0.113.7]:80").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(client_from_xff("unknown, 203.0.113.7"), None);
        assert_eq!(client_from_xff(""), None);
        assert_eq!(client_from_xff("203.0.113.7:port"), None);
        assert_eq!(client_from_xff("[2001:db8::7"), None);
    }

    #[test]
    fn forwarded_client_handles_quotes_brackets_ports() {
        let f = |s: &str| client_from_forwarded(s);
        assert_eq!(
            f("for=192.0.2.60;proto=http;by=203.0.113.43").as_deref(),
            Some("192.0.2.60")
        );
        assert_eq!(
            f(r#"For="[2001:db8:cafe::17]:4711", for=192.0.2.1"#).as_deref(),
            Some("2001:db8:cafe::17")
        );
        assert_eq!(
            f(r#"proto=https;by="a,b", for="198.51.100.3:80""#).as_deref(),
            Some("198.51.100.3")
        );
        assert_eq!(
            f(r#"for="\[2001:db8::1\]""#).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(f("for=unknown, for=192.0.2.1"), None);
        assert_eq!(f("for=_hidden"), None);
        assert_eq!(f("proto=http"), None);
        assert_eq!(f(r#"for=""#), None);
        assert_eq!(f(""), None);
    }

    #[test]
    fn event_carries_the_segment_and_every_fact() {
        let payload: &[u8] =
            b"PROXY TCP4 203.0.113.9 198.51.100.1 1 2\r\nGET / HTTP/1.1\r\nX-Realip-Token: t\r\n\r\n";
        let seg = Segment {
            src: "198.51.100.7".parse().unwrap(),
            dst: "198.51.100.1".parse().unwrap(),
            sport: 41770,
            dport: 80,
            seq: 629798248,
            syn: false,
            ack: true,
            rst: false,
            fin: false,
            tsval: None,
            ttl: 64,
            ip_id: None,
            payload,
            link_dir: None,
            link_ifindex: None,
        };
        let f = forwarding_facts(payload);
        let l7 = f
            .clone()
            .into_event(&seg, 7, "node-a".into(), "eth0".into(), Some(Direction::In));
        assert_eq!(l7.realip_token.as_deref(), Some("t"));
        assert_eq!(l7.proxy_protocol, f.proxy_protocol);
        assert_eq!(
            (l7.src, l7.sport, l7.seq),
            (Some(seg.src), 41770, 629798248)
        );
        assert_eq!((l7.node.as_str(), l7.dir), ("node-a", Some(Direction::In)));
        assert!(Forwarding::default().is_empty());
    }
}
