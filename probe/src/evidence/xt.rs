//! x_tables extensions (`-m NAME …`, `-j NAME …`) rendered the way `iptables-save` prints them,
//! from the extension's name, revision and info bytes. The same bytes reach the probe from
//! iptables-legacy (`IPT_SO_GET_ENTRIES`) and from iptables-nft (the `match`/`target` compat
//! expressions), so one renderer serves both.
//!
//! Covered: the extensions kube-proxy and the CNIs write in the nat table and around it
//! (comment, mark, MARK, connmark, CONNMARK, addrtype, conntrack, state, statistic, tcp, udp,
//! multiport, set, physdev, iprange, mac, MASQUERADE, SNAT, DNAT, REDIRECT, RETURN-like verdicts,
//! REJECT, LOG). Anything else is printed as `-m NAME` / `-j NAME` followed by a marker saying its
//! options were not decoded; short or odd info bytes never panic.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which iptables flavour wrote the rule: addresses in info structs are read accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// How `-m set` prints an ipset whose name is not known: `[ipset #N]`.
pub const IPSET_PLACEHOLDER: &str = "[ipset #";

/// What rendering needs beyond the bytes: names of ipsets by index (`-m set`).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub ipsets: HashMap<u16, String>,
}

/// ` -m NAME OPTIONS`, as `iptables-save` prints a match.
pub fn render_match(
    out: &mut String,
    name: &str,
    rev: u8,
    info: &[u8],
    family: Family,
    cx: &Context,
) {
    let start = out.len();
    let shown = match_name(name, info);
    let _ = write!(out, " -m {shown}");
    if match_options(out, name, rev, info, family, cx).is_none() {
        out.truncate(start);
        let _ = write!(out, " -m {name} [rev {rev} not decoded]");
    }
}

/// ` -j NAME OPTIONS`, as `iptables-save` prints a target (`goto` prints `-g`).
pub fn render_target(out: &mut String, name: &str, rev: u8, info: &[u8], family: Family) {
    let start = out.len();
    let _ = write!(out, " -j {name}");
    if target_options(out, name, rev, info, family).is_none() {
        out.truncate(start);
        let _ = write!(out, " -j {name} [rev {rev} not decoded]");
    }
}

/// The name `iptables-save` shows: conntrack carrying the state alias flag is `-m state`.
fn match_name<'a>(name: &'a str, info: &[u8]) -> &'a str {
    if name == "conntrack" && u16_at(info, CT_MATCH_FLAGS).is_some_and(|f| f & CT_STATE_ALIAS != 0)
    {
        "state"
    } else {
        name
    }
}

const CT_MATCH_FLAGS: usize = 146;
const CT_STATE_ALIAS: u16 = 1 << 13;

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn v4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(
        <[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?,
    ))
}
fn v6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    Some(Ipv6Addr::from(
        <[u8; 16]>::try_from(b.get(at..at + 16)?).ok()?,
    ))
}
/// A `union nf_inet_addr` (16 bytes) read for the family.
fn inet_at(b: &[u8], at: usize, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => v4_at(b, at).map(IpAddr::V4),
        Family::V6 => v6_at(b, at).map(IpAddr::V6),
    }
}
/// A fixed-size C string field.
fn cstr_at(b: &[u8], at: usize, len: usize) -> Option<String> {
    let field = b.get(at..at + len)?;
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    Some(super::nl::text(&field[..end]))
}

/// `xtables_save_string`: bare when made of `[A-Za-z0-9_-]`, else double-quoted with `"`, `\`
/// and `'` escaped.
pub fn save_string(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    out.push(' ');
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `0xV/0xM`, or `0xV` when the mask is all ones.
fn mark(out: &mut String, value: u32, mask: u32) {
    if mask == u32::MAX {
        let _ = write!(out, " 0x{value:x}");
    } else {
        let _ = write!(out, " 0x{value:x}/0x{mask:x}");
    }
}

fn bang(out: &mut String, invert: bool) {
    if invert {
        out.push_str(" !");
    }
}

fn match_options(
    out: &mut String,
    name: &str,
    rev: u8,
    b: &[u8],
    family: Family,
    cx: &Context,
) -> Option<()> {
    match (name, rev) {
        ("comment", 0) => {
            out.push_str(" --comment");
            save_string(out, &cstr_at(b, 0, b.len().min(256))?);
        }
        ("mark", 1) | ("connmark", 1) => {
            bang(out, u8_at(b, 8)? != 0);
            out.push_str(" --mark");
            mark(out, u32_at(b, 0)?, u32_at(b, 4)?);
        }
        ("mark", 0) => {
            // xt_mark_info: two unsigned longs and the invert byte.
            bang(out, u8_at(b, 16)? != 0);
            out.push_str(" --mark");
            mark(out, u64_at(b, 0)? as u32, u64_at(b, 8)? as u32);
        }
        ("addrtype", 1) => {
            let (src, dst, flags) = (u16_at(b, 0)?, u16_at(b, 2)?, u32_at(b, 4)?);
            addrtypes(out, src, flags & 1 != 0, dst, flags & 2 != 0);
            if flags & 4 != 0 {
                out.push_str(" --limit-iface-in");
            }
            if flags & 8 != 0 {
                out.push_str(" --limit-iface-out");
            }
        }
        ("addrtype", 0) => {
            let (src, dst) = (u16_at(b, 0)?, u16_at(b, 2)?);
            addrtypes(out, src, u32_at(b, 4)? != 0, dst, u32_at(b, 8)? != 0);
        }
        ("conntrack", 1..=3) => conntrack(out, rev, b, family)?,
        ("state", 0) => {
            out.push_str(" --state");
            states(out, u32_at(b, 0)?, false);
        }
        ("statistic", 0) => {
            let (mode, flags) = (u16_at(b, 0)?, u16_at(b, 2)?);
            let inv = if flags & 1 != 0 { " !" } else { "" };
            match mode {
                0 => {
                    let p = f64::from(u32_at(b, 4)?) / f64::from(0x8000_0000u32);
                    let _ = write!(out, " --mode random{inv} --probability {p:.11}");
                }
                1 => {
                    let (every, packet) = (u32_at(b, 4)?, u32_at(b, 8)?);
                    let _ = write!(
                        out,
                        " --mode nth{inv} --every {} --packet {packet}",
                        u64::from(every) + 1
                    );
                }
                _ => return None,
            }
        }
        ("tcp", 0) => {
            let inv = u8_at(b, 11)?;
            ports(out, "--sport", u16_at(b, 0)?, u16_at(b, 2)?, inv & 1 != 0);
            ports(out, "--dport", u16_at(b, 4)?, u16_at(b, 6)?, inv & 2 != 0);
            let (option, mask, cmp) = (u8_at(b, 8)?, u8_at(b, 9)?, u8_at(b, 10)?);
            if option != 0 || inv & 8 != 0 {
                bang(out, inv & 8 != 0);
                let _ = write!(out, " --tcp-option {option}");
            }
            if mask != 0 || inv & 4 != 0 {
                bang(out, inv & 4 != 0);
                out.push_str(" --tcp-flags ");
                tcp_flags(out, mask);
                out.push(' ');
                tcp_flags(out, cmp);
            }
        }
        ("udp", 0) => {
            let inv = u8_at(b, 8)?;
            ports(out, "--sport", u16_at(b, 0)?, u16_at(b, 2)?, inv & 1 != 0);
            ports(out, "--dport", u16_at(b, 4)?, u16_at(b, 6)?, inv & 2 != 0);
        }
        ("multiport", 0 | 1) => {
            let (flags, count) = (u8_at(b, 0)?, usize::from(u8_at(b, 1)?).min(15));
            if rev == 1 {
                bang(out, u8_at(b, 47)? != 0);
            }
            out.push_str(match flags {
                0 => " --sports ",
                1 => " --dports ",
                2 => " --ports ",
                _ => return None,
            });
            let mut i = 0;
            while i < count {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", u16_at(b, 2 + 2 * i)?);
                if rev == 1 && u8_at(b, 32 + i)? != 0 && i + 1 < count {
                    i += 1;
                    let _ = write!(out, ":{}", u16_at(b, 2 + 2 * i)?);
                }
                i += 1;
            }
        }
        ("set", 1..=4) => {
            let (index, dim, flags) = (u16_at(b, 0)?, u8_at(b, 2)?, u8_at(b, 3)?);
            bang(out, flags & 1 != 0);
            out.push_str(" --match-set ");
            match cx.ipsets.get(&index) {
                Some(set) => out.push_str(set),
                None => {
                    let _ = write!(out, "{IPSET_PLACEHOLDER}{index}]");
                }
            }
            for i in 1..=dim.min(6) {
                out.push(if i == 1 { ' ' } else { ',' });
                out.push_str(if flags & (1 << i) != 0 { "src" } else { "dst" });
            }
            if rev >= 3 {
                let flags = u32_at(b, 40)?;
                if flags & 128 != 0 {
                    out.push_str(" --return-nomatch");
                }
                if flags & 8 != 0 {
                    out.push_str(" ! --update-counters");
                }
                if flags & 16 != 0 {
                    out.push_str(" ! --update-subcounters");
                }
                // v3: {u8 op; u64 value}; v4: {u64 value; u8 op}.
                let (op_at, value_at) = if rev == 3 { (8, 16) } else { (16, 8) };
                for (what, base) in [("packets", 0), ("bytes", 16)] {
                    let op = u8_at(b, op_at + base)?;
                    let value = u64_at(b, value_at + base)?;
                    let _ = match op {
                        1 => write!(out, " --{what}-eq {value}"),
                        2 => write!(out, " ! --{what}-eq {value}"),
                        3 => write!(out, " --{what}-lt {value}"),
                        4 => write!(out, " --{what}-gt {value}"),
                        _ => Ok(()),
                    };
                }
            }
        }
        ("physdev", 0) => {
            let (invert, ops) = (u8_at(b, 64)?, u8_at(b, 65)?);
            if ops & 8 != 0 {
                bang(out, invert & 8 != 0);
                out.push_str(" --physdev-is-in");
            }
            if ops & 1 != 0 {
                bang(out, invert & 1 != 0);
                let _ = write!(out, " --physdev-in {}", cstr_at(b, 0, 16)?);
            }
            if ops & 16 != 0 {
                bang(out, invert & 16 != 0);
                out.push_str(" --physdev-is-out");
            }
            if ops & 2 != 0 {
                bang(out, invert & 2 != 0);
                let _ = write!(out, " --physdev-out {}", cstr_at(b, 32, 16)?);
            }
            if ops & 4 != 0 {
                bang(out, invert & 4 != 0);
                out.push_str(" --physdev-is-bridged");
            }
        }
        ("iprange", 1) => {
            let flags = u8_at(b, 64)?;
            for (bit, inv, at, opt) in [(1, 0x10, 0, "--src-range"), (2, 0x20, 32, "--dst-range")] {
                if flags & bit != 0 {
                    bang(out, flags & inv != 0);
                    let _ = write!(
                        out,
                        " {opt} {}-{}",
                        inet_at(b, at, family)?,
                        inet_at(b, at + 16, family)?
                    );
                }
            }
        }
        ("mac", 0) => {
            let mac = b.get(0..6)?;
            bang(out, u32_at(b, 8)? != 0);
            out.push_str(" --mac-source ");
            let hex: Vec<String> = mac.iter().map(|x| format!("{x:02X}")).collect();
            out.push_str(&hex.join(":"));
        }
        _ => return None,
    }
    Some(())
}

const ADDR_TYPES: [&str; 12] = [
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

fn addrtypes(out: &mut String, src: u16, src_inv: bool, dst: u16, dst_inv: bool) {
    let names = |mask: u16| -> String {
        ADDR_TYPES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    };
    if src != 0 {
        bang(out, src_inv);
        let _ = write!(out, " --src-type {}", names(src));
    }
    if dst != 0 {
        bang(out, dst_inv);
        let _ = write!(out, " --dst-type {}", names(dst));
    }
}

/// `INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED[,SNAT,DNAT]` in iptables' order.
fn states(out: &mut String, mask: u32, conntrack: bool) {
    let untracked = if conntrack { 1 << 8 } else { 1 << 6 };
    let mut names = vec![];
    for (bit, name) in [
        (1, "INVALID"),
        (8, "NEW"),
        (4, "RELATED"),
        (2, "ESTABLISHED"),
    ] {
        if mask & bit != 0 {
            names.push(name);
        }
    }
    if mask & untracked != 0 {
        names.push("UNTRACKED");
    }
    if conntrack {
        if mask & (1 << 6) != 0 {
            names.push("SNAT");
        }
        if mask & (1 << 7) != 0 {
            names.push("DNAT");
        }
    }
    out.push(' ');
    out.push_str(&names.join(","));
}

fn ports(out: &mut String, opt: &str, lo: u16, hi: u16, invert: bool) {
    if lo == 0 && hi == u16::MAX {
        return;
    }
    bang(out, invert);
    if lo == hi {
        let _ = write!(out, " {opt} {lo}");
    } else {
        let _ = write!(out, " {opt} {lo}:{hi}");
    }
}

/// `FIN,SYN,RST,…` in iptables' order, `NONE` for none.
pub fn tcp_flags(out: &mut String, flags: u8) {
    const NAMES: [(u8, &str); 6] = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        out.push_str("NONE");
    } else {
        out.push_str(&names.join(","));
    }
}

/// xt_conntrack_mtinfo1/2/3: the fields share offsets up to the state and status masks, which
/// are u8 in revision 1 and u16 from revision 2; revision 3 adds port ranges.
fn conntrack(out: &mut String, rev: u8, b: &[u8], family: Family) -> Option<()> {
    let flags = u16_at(b, CT_MATCH_FLAGS)?;
    let inv = u16_at(b, 148)?;
    let (state, status) = if rev == 1 {
        (u32::from(u8_at(b, 150)?), u32::from(u8_at(b, 151)?))
    } else {
        (u32::from(u16_at(b, 150)?), u32::from(u16_at(b, 152)?))
    };
    let on = |bit: u16| flags & bit != 0;
    let inverted = |bit: u16| inv & bit != 0;
    if on(1) {
        bang(out, inverted(1));
        out.push_str(if on(CT_STATE_ALIAS) {
            " --state"
        } else {
            " --ctstate"
        });
        states(out, state, true);
    }
    if on(2) {
        bang(out, inverted(2));
        let _ = write!(out, " --ctproto {}", u16_at(b, 136)?);
    }
    for (bit, opt, at) in [
        (4, "--ctorigsrc", 0),
        (8, "--ctorigdst", 32),
        (16, "--ctreplsrc", 64),
        (32, "--ctrepldst", 96),
    ] {
        if on(bit) {
            bang(out, inverted(bit));
            let _ = write!(out, " {opt} {}", inet_at(b, at, family)?);
            out.push_str(&mask_suffix(b.get(at + 16..at + 32)?, family, ""));
        }
    }
    for (bit, opt, at, high_at) in [
        (256, "--ctorigsrcport", 138, 154),
        (512, "--ctorigdstport", 140, 156),
        (1024, "--ctreplsrcport", 142, 158),
        (2048, "--ctrepldstport", 144, 160),
    ] {
        if on(bit) {
            bang(out, inverted(bit));
            // Revision 3 keeps ports in host order (it compares ranges), 1 and 2 in network order.
            let low = if rev == 3 {
                u16_at(b, at)?
            } else {
                be16_at(b, at)?
            };
            let _ = write!(out, " {opt} {low}");
            if rev == 3 {
                let high = u16_at(b, high_at)?;
                if high != low {
                    let _ = write!(out, ":{high}");
                }
            }
        }
    }
    if on(64) {
        bang(out, inverted(64));
        out.push_str(" --ctstatus");
        let mut names = vec![];
        for (bit, name) in [
            (1, "EXPECTED"),
            (2, "SEEN_REPLY"),
            (4, "ASSURED"),
            (8, "CONFIRMED"),
        ] {
            if status & bit != 0 {
                names.push(name);
            }
        }
        if status == 0 {
            names.push("NONE");
        }
        out.push(' ');
        out.push_str(&names.join(","));
    }
    if on(128) {
        bang(out, inverted(128));
        let (min, max) = (u32_at(b, 128)?, u32_at(b, 132)?);
        if min == max {
            let _ = write!(out, " --ctexpire {min}");
        } else {
            let _ = write!(out, " --ctexpire {min}:{max}");
        }
    }
    if on(4096) {
        out.push_str(if inverted(4096) {
            " --ctdir REPLY"
        } else {
            " --ctdir ORIGINAL"
        });
    }
    Some(())
}

/// The `/N` (or `/a.b.c.d` for a non-contiguous IPv4 mask) after an address; `full` is what a
/// host mask prints as (`""` in match options, `"/32"` in a rule's `-s`/`-d`).
pub fn mask_suffix(mask: &[u8], family: Family, full: &str) -> String {
    let len = match family {
        Family::V4 => 4,
        Family::V6 => 16,
    };
    let Some(mask) = mask.get(..len) else {
        return String::new();
    };
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let contiguous = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1))
        .skip(ones as usize)
        .all(|bit| bit == 0);
    if contiguous && ones as usize == len * 8 {
        full.to_string()
    } else if contiguous {
        format!("/{ones}")
    } else if let Ok(v4) = <[u8; 4]>::try_from(mask) {
        format!("/{}", Ipv4Addr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(mask) {
        format!("/{}", Ipv6Addr::from(v6))
    } else {
        String::new()
    }
}

/// NF_NAT_RANGE_* flags.
const MAP_IPS: u32 = 1;
const PROTO_SPECIFIED: u32 = 2;
const PROTO_RANDOM: u32 = 4;
const PERSISTENT: u32 = 8;
const PROTO_RANDOM_FULLY: u32 = 16;

/// One NAT range, whatever struct it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatRange {
    pub flags: u32,
    pub min_addr: Option<IpAddr>,
    pub max_addr: Option<IpAddr>,
    pub min_port: u16,
    pub max_port: u16,
}

impl NatRange {
    pub fn addrs(&self) -> Option<(IpAddr, IpAddr)> {
        if self.flags & MAP_IPS == 0 {
            return None;
        }
        Some((self.min_addr?, self.max_addr.or(self.min_addr)?))
    }
    pub fn ports(&self) -> Option<(u16, u16)> {
        (self.flags & PROTO_SPECIFIED != 0).then_some((self.min_port, self.max_port))
    }
    /// random, fully-random, persistent: the flags a person reads.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut names = vec![];
        if self.flags & PROTO_RANDOM != 0 {
            names.push("random");
        }
        if self.flags & PROTO_RANDOM_FULLY != 0 {
            names.push("fully-random");
        }
        if self.flags & PERSISTENT != 0 {
            names.push("persistent");
        }
        names
    }
}

/// The NAT range of a MASQUERADE, SNAT, DNAT or REDIRECT target's info.
pub fn nat_range(name: &str, rev: u8, b: &[u8], family: Family) -> Option<NatRange> {
    if !matches!(name, "MASQUERADE" | "SNAT" | "DNAT" | "REDIRECT") {
        return None;
    }
    if family == Family::V4 && rev == 0 {
        // nf_nat_ipv4_multi_range_compat: rangesize, then {flags, min_ip, max_ip, min, max}.
        return Some(NatRange {
            flags: u32_at(b, 4)?,
            min_addr: v4_at(b, 8).map(IpAddr::V4),
            max_addr: v4_at(b, 12).map(IpAddr::V4),
            min_port: be16_at(b, 16)?,
            max_port: be16_at(b, 18)?,
        });
    }
    // nf_nat_range (rev 1, and rev 0 for IPv6) and nf_nat_range2 (rev 2): flags, min_addr,
    // max_addr, min_proto, max_proto[, base_proto].
    Some(NatRange {
        flags: u32_at(b, 0)?,
        min_addr: inet_at(b, 4, family),
        max_addr: inet_at(b, 20, family),
        min_port: be16_at(b, 36)?,
        max_port: be16_at(b, 38)?,
    })
}

/// `ADDR[-ADDR][:PORT[-PORT]]`, IPv6 in brackets when a port follows.
fn nat_range_text(r: &NatRange, family: Family) -> String {
    let mut s = String::new();
    let brackets = family == Family::V6 && r.ports().is_some();
    if let Some((min, max)) = r.addrs() {
        if brackets {
            s.push('[');
        }
        let _ = write!(s, "{min}");
        if max != min {
            let _ = write!(s, "-{max}");
        }
        if brackets {
            s.push(']');
        }
    }
    if let Some((min, max)) = r.ports() {
        let _ = write!(s, ":{min}");
        if max != min {
            let _ = write!(s, "-{max}");
        }
    }
    s
}

fn target_options(out: &mut String, name: &str, rev: u8, b: &[u8], family: Family) -> Option<()> {
    match (name, rev) {
        ("MASQUERADE" | "REDIRECT", 0) => {
            let r = nat_range(name, rev, b, family)?;
            if let Some((min, max)) = r.ports() {
                let _ = write!(out, " --to-ports {min}");
                if max != min {
                    let _ = write!(out, "-{max}");
                }
            }
            if r.flags & PROTO_RANDOM != 0 {
                out.push_str(" --random");
            }
            if r.flags & PROTO_RANDOM_FULLY != 0 {
                out.push_str(" --random-fully");
            }
        }
        ("SNAT" | "DNAT", 0..=2) => {
            let r = nat_range(name, rev, b, family)?;
            let opt = if name == "SNAT" {
                "--to-source"
            } else {
                "--to-destination"
            };
            let range = nat_range_text(&r, family);
            if !range.is_empty() {
                let _ = write!(out, " {opt} {range}");
            }
            if r.flags & PROTO_RANDOM != 0 {
                out.push_str(" --random");
            }
            if r.flags & PROTO_RANDOM_FULLY != 0 {
                out.push_str(" --random-fully");
            }
            if r.flags & PERSISTENT != 0 {
                out.push_str(" --persistent");
            }
        }
        ("MARK", 2) => {
            let _ = write!(
                out,
                " --set-xmark 0x{:x}/0x{:x}",
                u32_at(b, 0)?,
                u32_at(b, 4)?
            );
        }
        ("MARK", 1) => {
            let value = u64_at(b, 0)?;
            let opt = match u8_at(b, 8)? {
                0 => "--set-mark",
                1 => "--and-mark",
                2 => "--or-mark",
                _ => return None,
            };
            let _ = write!(out, " {opt} 0x{value:x}");
        }
        ("CONNMARK", 1 | 2) => {
            // tginfo1 ends with the mode; tginfo2 has shift_dir and shift_bits before it.
            let mode_at = if rev == 2 { 14 } else { 12 };
            let (ctmark, ctmask, nfmask, mode) = (
                u32_at(b, 0)?,
                u32_at(b, 4)?,
                u32_at(b, 8)?,
                u8_at(b, mode_at)?,
            );
            let _ = match mode {
                0 => write!(out, " --set-xmark 0x{ctmark:x}/0x{ctmask:x}"),
                1 => write!(
                    out,
                    " --save-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
                ),
                2 => write!(
                    out,
                    " --restore-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
                ),
                _ => return None,
            };
            if rev == 2 {
                let (dir, bits) = (u8_at(b, 12)?, u8_at(b, 13)?);
                if bits != 0 {
                    let dir = if dir == 1 { "right" } else { "left" };
                    let _ = write!(out, " --{dir}-shift-mark {bits}");
                }
            }
        }
        ("REJECT", 0) => {
            let with = u32_at(b, 0)?;
            let names: &[&str] = match family {
                Family::V4 => &[
                    "icmp-net-unreachable",
                    "icmp-host-unreachable",
                    "icmp-proto-unreachable",
                    "icmp-port-unreachable",
                    "icmp-echo-reply",
                    "icmp-net-prohibited",
                    "icmp-host-prohibited",
                    "tcp-reset",
                    "icmp-admin-prohibited",
                ],
                Family::V6 => &[
                    "icmp6-no-route",
                    "icmp6-adm-prohibited",
                    "icmp6-not-neighbor",
                    "icmp6-addr-unreachable",
                    "icmp6-port-unreachable",
                    "icmp6-echo-reply",
                    "tcp-reset",
                    "icmp6-policy-fail",
                    "icmp6-reject-route",
                ],
            };
            let _ = write!(out, " --reject-with {}", names.get(with as usize)?);
        }
        ("LOG", 0) => {
            let (level, flags) = (u8_at(b, 0)?, u8_at(b, 1)?);
            let prefix = cstr_at(b, 2, 30)?;
            if !prefix.is_empty() {
                out.push_str(" --log-prefix");
                save_string(out, &prefix);
            }
            if level != 4 {
                let _ = write!(out, " --log-level {level}");
            }
            for (bit, opt) in [
                (1, "--log-tcp-sequence"),
                (2, "--log-tcp-options"),
                (4, "--log-ip-options"),
                (8, "--log-uid"),
                (0x20, "--log-macdecode"),
            ] {
                if flags & bit != 0 {
                    let _ = write!(out, " {opt}");
                }
            }
        }
        // Targets without options.
        ("NOTRACK" | "ACCEPT" | "DROP" | "RETURN" | "QUEUE", _) => {}
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, rev: u8, info: &[u8]) -> String {
        let mut s = String::new();
        render_match(&mut s, name, rev, info, Family::V4, &Context::default());
        s
    }

    fn t(name: &str, rev: u8, info: &[u8]) -> String {
        let mut s = String::new();
        render_target(&mut s, name, rev, info, Family::V4);
        s
    }

    #[test]
    fn strings_are_quoted_like_iptables_save() {
        let mut s = String::new();
        save_string(&mut s, "default/echo");
        save_string(&mut s, "plain_Name-1");
        save_string(&mut s, "say \"hi\"");
        assert_eq!(s, r#" "default/echo" plain_Name-1 "say \"hi\"""#);
    }

    #[test]
    fn short_info_is_marked_not_decoded() {
        assert_eq!(m("mark", 1, &[1, 2]), " -m mark [rev 1 not decoded]");
        assert_eq!(t("SNAT", 9, &[]), " -j SNAT [rev 9 not decoded]");
        assert_eq!(m("fancy", 0, &[0; 64]), " -m fancy [rev 0 not decoded]");
    }

    #[test]
    fn masks_print_as_prefix_or_dotted() {
        assert_eq!(mask_suffix(&[255, 255, 0, 0], Family::V4, ""), "/16");
        assert_eq!(mask_suffix(&[255; 4], Family::V4, "/32"), "/32");
        assert_eq!(
            mask_suffix(&[255, 0, 255, 0], Family::V4, ""),
            "/255.0.255.0"
        );
    }
}
