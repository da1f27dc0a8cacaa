//! iptables-legacy tables as the kernel hands them out (`IPT_SO_GET_INFO` and
//! `IPT_SO_GET_ENTRIES`, and the IPv6 twins): a blob of `ipt_entry` records, each with its
//! matches and target. Walked with a bounds check on every offset; chains are rebuilt the way
//! libiptc does (built-in chains from the hook offsets, user chains from their `ERROR` heads).

use super::ipt::{Cidr, Iface, IpPart, IptRule, Match, Target};
use super::xt::{self, Family};
use super::{hook_name, Chain, Counters, Hook, Rule};
use crate::wire::{NatKind, NatTarget, Syntax};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `sizeof(struct ipt_getinfo)` (the same for IPv6).
pub const GETINFO_LEN: usize = 84;
/// `sizeof(struct ipt_get_entries)` before the entries.
pub const GET_ENTRIES_HEAD: usize = 40;

/// What `IPT_SO_GET_INFO` says of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub valid_hooks: u32,
    pub hook_entry: [u32; 5],
    pub underflow: [u32; 5],
    pub num_entries: u32,
    /// Bytes of the entries blob.
    pub size: u32,
}

/// The `ipt_getinfo` request: the table name, the rest zero.
pub fn info_request(table: &str) -> [u8; GETINFO_LEN] {
    let mut buf = [0u8; GETINFO_LEN];
    for (slot, b) in buf.iter_mut().zip(table.bytes().take(31)) {
        *slot = b;
    }
    buf
}

pub fn parse_info(b: &[u8]) -> Option<Info> {
    let u = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut hook_entry = [0; 5];
    let mut underflow = [0; 5];
    for i in 0..5 {
        hook_entry[i] = u(36 + 4 * i)?;
        underflow[i] = u(56 + 4 * i)?;
    }
    Some(Info {
        valid_hooks: u(32)?,
        hook_entry,
        underflow,
        num_entries: u(76)?,
        size: u(80)?,
    })
}

/// The `ipt_get_entries` request: name and size, followed by room for the entries.
pub fn entries_request(table: &str, size: u32) -> Vec<u8> {
    let mut buf = vec![0u8; GET_ENTRIES_HEAD + size as usize];
    for (slot, b) in buf.iter_mut().zip(table.bytes().take(31)) {
        *slot = b;
    }
    buf[32..36].copy_from_slice(&size.to_ne_bytes());
    buf
}

/// Offsets into `ipt_entry` / `ip6t_entry`.
struct Layout {
    family: Family,
    entry: usize,
    target_offset: usize,
    next_offset: usize,
    counters: usize,
    ifaces: usize,
    proto: usize,
    flags: usize,
    invflags: usize,
    goto_flag: u8,
}

const V4: Layout = Layout {
    family: Family::V4,
    entry: 112,
    target_offset: 88,
    next_offset: 90,
    counters: 96,
    ifaces: 16,
    proto: 80,
    flags: 82,
    invflags: 83,
    goto_flag: 0x02,
};

const V6: Layout = Layout {
    family: Family::V6,
    entry: 168,
    target_offset: 140,
    next_offset: 142,
    counters: 152,
    ifaces: 64,
    proto: 128,
    flags: 131,
    invflags: 132,
    goto_flag: 0x04,
};

/// One entry as found in the blob.
struct Entry<'a> {
    offset: u32,
    ip: IpPart,
    goto: bool,
    counters: Counters,
    matches: Vec<(String, u8, &'a [u8])>,
    target: (String, u8, &'a [u8]),
    next: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn name_at(b: &[u8], at: usize) -> Option<String> {
    let field = b.get(at..at + 29)?;
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    Some(super::nl::text(&field[..end]))
}

/// An `xt_entry_match`/`xt_entry_target`: size, name, revision, data.
fn extension(b: &[u8], at: usize) -> Option<(String, u8, &[u8], usize)> {
    let size = usize::from(u16_at(b, at)?);
    if size < 32 {
        return None;
    }
    let name = name_at(b, at + 2)?;
    let rev = *b.get(at + 31)?;
    let data = b.get(at + 32..at + size)?;
    Some((name, rev, data, size))
}

fn ip_part(e: &[u8], l: &Layout) -> Option<IpPart> {
    let width = if l.family == Family::V4 { 4 } else { 16 };
    let inv = *e.get(l.invflags)?;
    let addr = |at: usize| -> Option<IpAddr> {
        let b = e.get(at..at + width)?;
        Some(match l.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?)),
        })
    };
    let cidr = |a: usize, m: usize, invert: bool| -> Option<Option<Cidr>> {
        let mask = e.get(m..m + width)?.to_vec();
        let ip = addr(a)?;
        let empty = mask.iter().all(|&b| b == 0) && ip.is_unspecified() && !invert;
        Some((!empty).then_some(Cidr {
            addr: ip,
            mask,
            invert,
        }))
    };
    // As iptables-save prints it: the characters the mask covers, then `+` when the mask
    // stops before the name does.
    let iface = |at: usize, mask_at: usize, invert: bool| -> Option<Option<Iface>> {
        let name = e.get(at..at + 16)?;
        let mask = e.get(mask_at..mask_at + 16)?;
        if mask[0] == 0 {
            return Some(None);
        }
        let covered = mask.iter().position(|&m| m == 0).unwrap_or(16);
        let shown: Vec<u8> = name[..covered]
            .iter()
            .copied()
            .take_while(|&c| c != 0)
            .collect();
        let wildcard = covered < 16 && covered > 0 && name[covered - 1] != 0;
        Some(Some(Iface {
            name: super::nl::text(&shown),
            wildcard,
            invert,
        }))
    };
    let f = l.ifaces;
    Some(IpPart {
        src: cidr(0, 2 * width, inv & 0x08 != 0)?,
        dst: cidr(width, 3 * width, inv & 0x10 != 0)?,
        iniface: iface(f, f + 32, inv & 0x01 != 0)?,
        outiface: iface(f + 16, f + 48, inv & 0x02 != 0)?,
        proto: u16_at(e, l.proto)?,
        proto_invert: inv & 0x40 != 0,
        fragment: (l.family == Family::V4 && e.get(l.flags)? & 0x01 != 0)
            .then_some(inv & 0x20 != 0),
    })
}

fn entry<'a>(blob: &'a [u8], offset: u32, l: &Layout) -> Option<Entry<'a>> {
    let e = blob.get(offset as usize..)?;
    let target_offset = usize::from(u16_at(e, l.target_offset)?);
    let next = u32::from(u16_at(e, l.next_offset)?);
    if target_offset < l.entry || usize::try_from(next).ok()? < target_offset + 32 {
        return None;
    }
    let e = e.get(..next as usize)?;
    let mut matches = vec![];
    let mut at = l.entry;
    while at < target_offset {
        let (name, rev, data, size) = extension(e, at)?;
        matches.push((name, rev, data));
        at += size;
    }
    let (tname, trev, tdata, _) = extension(e, target_offset)?;
    Some(Entry {
        offset,
        ip: ip_part(e, l)?,
        goto: e.get(l.flags)? & l.goto_flag != 0,
        counters: Counters {
            packets: u64_at(e, l.counters)?,
            bytes: u64_at(e, l.counters + 8)?,
        },
        matches,
        target: (tname, trev, tdata),
        next,
    })
}

fn verdict_of(data: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

/// Walks the entries one at a time, each parsed when reached: a table of tens of thousands of
/// rules is never held parsed all at once.
fn walk<'a>(blob: &'a [u8], l: &'a Layout, limit: u32) -> impl Iterator<Item = Entry<'a>> + 'a {
    let mut offset = 0u32;
    let mut seen = 0usize;
    std::iter::from_fn(move || {
        if offset as usize >= blob.len() || seen > limit as usize {
            return None;
        }
        let e = entry(blob, offset, l)?;
        offset = offset.saturating_add(e.next);
        seen += 1;
        Some(e)
    })
}

/// What the chain structure needs of an entry.
struct Head {
    offset: u32,
    /// The chain name of an `ERROR` head (`ERROR` for the table's end).
    error: Option<String>,
    /// A user chain's closing RETURN (no match, no address, standard RETURN verdict).
    closing: bool,
    /// What the entry says as a built-in chain's policy: its verdict and counters.
    policy: (&'static str, Counters),
}

fn head(e: &Entry<'_>) -> Head {
    let verdict = if e.target.0.is_empty() {
        verdict_of(e.target.2)
    } else {
        None
    };
    Head {
        offset: e.offset,
        error: (e.target.0 == "ERROR").then(|| super::nl::text(e.target.2)),
        closing: verdict == Some(-5) && e.matches.is_empty() && e.ip == IpPart::default(),
        policy: (
            if verdict == Some(-1) {
                "drop"
            } else {
                "accept"
            },
            e.counters,
        ),
    }
}

/// Reads the chains of a table from its entries. `v6` selects the ip6t layout.
pub fn parse_table(info: &Info, blob: &[u8], v6: bool, cx: &xt::Context) -> Vec<Chain> {
    let l = if v6 { &V6 } else { &V4 };
    let heads: Vec<Head> = walk(blob, l, info.num_entries).map(|e| head(&e)).collect();
    // Built-in chains begin at their hooks' offsets; user chains right after an ERROR head.
    let mut starts: Vec<(u32, String, Option<u32>)> = vec![];
    for h in 0..5 {
        if info.valid_hooks & (1 << h) != 0 {
            starts.push((
                info.hook_entry[h],
                hook_name(h as u32).to_ascii_uppercase(),
                Some(h as u32),
            ));
        }
    }
    let mut first_rule_of: HashMap<u32, String> = HashMap::new();
    for (i, h) in heads.iter().enumerate() {
        if let Some(name) = h.error.as_ref().filter(|n| *n != "ERROR") {
            if let Some(n) = heads.get(i + 1) {
                first_rule_of.insert(n.offset, name.clone());
                starts.push((n.offset, name.clone(), None));
            }
        }
    }
    starts.sort_by_key(|s| s.0);
    let index_of: HashMap<u32, usize> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| (h.offset, i))
        .collect();
    let mut chains = vec![];
    for (start, name, hook) in starts {
        let mut chain = Chain {
            name: name.clone(),
            hook: hook.map(|h| Hook {
                hook: hook_name(h),
                // NF_IP_PRI_NAT_DST before routing and on output, NF_IP_PRI_NAT_SRC after.
                priority: if h == 0 || h == 3 { -100 } else { 100 },
                kind: "nat".into(),
                policy: String::new(),
            }),
            counters: None,
            rules: vec![],
        };
        let from = index_of.get(&start).copied().unwrap_or(heads.len());
        for h in &heads[from..] {
            if let Some(hook) = hook {
                if h.offset == info.underflow[hook as usize] {
                    // The policy entry: its verdict and counters belong to the chain.
                    if let Some(hk) = chain.hook.as_mut() {
                        hk.policy = h.policy.0.into();
                    }
                    chain.counters = Some(h.policy.1);
                    break;
                }
            } else if h.closing {
                break;
            }
            if h.error.is_some() {
                break;
            }
            let Some(e) = entry(blob, h.offset, l) else {
                break;
            };
            chain.rules.push(rule(&e, &name, l, &first_rule_of, cx));
        }
        chains.push(chain);
    }
    chains
}

fn rule(
    e: &Entry<'_>,
    chain: &str,
    l: &Layout,
    first_rule_of: &HashMap<u32, String>,
    cx: &xt::Context,
) -> Rule {
    let (tname, trev, tdata) = &e.target;
    let target = if tname.is_empty() {
        match verdict_of(tdata) {
            Some(-2) => Target::Verdict("ACCEPT"),
            Some(-1) => Target::Verdict("DROP"),
            Some(-4) => Target::Verdict("QUEUE"),
            Some(-5) => Target::Verdict("RETURN"),
            Some(v) if v >= 0 && v as u32 == e.offset + e.next => Target::None,
            Some(v) if v >= 0 => match first_rule_of.get(&(v as u32)) {
                Some(c) if e.goto => Target::Goto(c.clone()),
                Some(c) => Target::Jump(c.clone()),
                None => Target::None,
            },
            _ => Target::None,
        }
    } else {
        Target::Xt {
            name: tname.clone(),
            rev: *trev,
            info: tdata.to_vec(),
        }
    };
    let ipt = IptRule {
        chain: chain.to_string(),
        ip: e.ip.clone(),
        matches: e
            .matches
            .iter()
            .map(|(name, rev, data)| Match::Xt {
                name: name.clone(),
                rev: *rev,
                info: data.to_vec(),
            })
            .collect(),
        target,
    };
    from_ipt(&ipt, l.family, Some(e.counters), None, cx)
}

/// The model's rule for an iptables rule from either transport.
pub fn from_ipt(
    ipt: &IptRule,
    family: Family,
    counters: Option<Counters>,
    handle: Option<u64>,
    cx: &xt::Context,
) -> Rule {
    let (jump, goto) = match &ipt.target {
        Target::Jump(c) => (Some(c.clone()), false),
        Target::Goto(c) => (Some(c.clone()), true),
        _ => (None, false),
    };
    let nat = match &ipt.target {
        Target::Xt { name, rev, info } => nat_target(name, *rev, info, family),
        _ => None,
    };
    Rule {
        handle,
        syntax: Syntax::Iptables,
        text: ipt.render(family, cx),
        counters,
        nat,
        jump,
        goto,
        comment: ipt.comment(),
        ifaces: ipt.ifaces(),
    }
}

/// What a NAT target rewrites to.
pub fn nat_target(name: &str, rev: u8, info: &[u8], family: Family) -> Option<NatTarget> {
    let kind = match name {
        "MASQUERADE" => NatKind::Masquerade,
        "SNAT" => NatKind::Snat,
        "DNAT" => NatKind::Dnat,
        "REDIRECT" => NatKind::Redirect,
        _ => return None,
    };
    let r = xt::nat_range(name, rev, info, family)?;
    let (addr_min, addr_max) = match r.addrs() {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let (port_min, port_max) = match r.ports() {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    Some(NatTarget {
        kind,
        addr_min,
        addr_max,
        port_min,
        port_max,
        flags: r.flag_names().into_iter().map(String::from).collect(),
    })
}
