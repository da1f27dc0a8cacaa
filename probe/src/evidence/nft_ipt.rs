//! iptables-nft rules read back into an [`IptRule`]: x_tables `match`/`target` expressions stay
//! extensions, and the native expressions iptables-nft writes for the common options become
//! what `iptables-nft-save` prints for them — `-s`/`-d` (payload + cmp, a bitwise for an odd
//! prefix), `-i`/`-o` (meta iifname/oifname), `-p` (meta l4proto), `-m tcp|udp --sport/--dport`
//! (transport payload), `-m mark --mark` (meta mark & mask), the verdict or jump. A rule with an
//! expression iptables-nft would not write returns `None` (it is printed in nft syntax instead).

use super::ipt::{Cidr, Iface, IpPart, IptRule, Match, Target};
use super::nft::{Data, Expr, NFT_GOTO, NFT_JUMP, NFT_RETURN, NF_ACCEPT, NF_DROP, NF_QUEUE};
use super::xt::{self, Family};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the last load put in the register being compared.
#[derive(Debug, Clone, PartialEq)]
enum Loaded {
    Payload { base: u32, offset: u32, len: u32 },
    Meta(u32),
}

/// Port options gathered into one `-m tcp`/`-m udp` as iptables-nft does.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ports {
    sport: Option<(u16, u16, bool)>,
    dport: Option<(u16, u16, bool)>,
    /// `--tcp-flags MASK COMP`, inverted or not.
    flags: Option<(u8, u8, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Ports(Ports),
    Other(Match),
}

pub fn to_ipt(chain: &str, exprs: &[Expr], family: Family) -> Option<IptRule> {
    let mut ip = IpPart::default();
    let mut items: Vec<Item> = vec![];
    let mut target = Target::None;
    let mut loaded: Option<Loaded> = None;
    let mut mask: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < exprs.len() {
        match &exprs[i] {
            Expr::Payload {
                dreg: Some(_),
                base,
                offset,
                len,
                ..
            } => {
                loaded = Some(Loaded::Payload {
                    base: *base,
                    offset: *offset,
                    len: *len,
                });
                mask = None;
            }
            Expr::Meta {
                key, dreg: Some(_), ..
            } => {
                loaded = Some(Loaded::Meta(*key));
                mask = None;
            }
            Expr::Bitwise {
                op: 0,
                mask: m,
                xor,
                ..
            } if xor.iter().all(|&b| b == 0) => mask = Some(m.clone()),
            Expr::Cmp { op, data, .. } => {
                let invert = match op {
                    0 => false,
                    1 => true,
                    5 => {
                        // gte + lte: a port range.
                        let Some(Expr::Cmp {
                            op: 3, data: hi, ..
                        }) = exprs.get(i + 1)
                        else {
                            return None;
                        };
                        port_cond(
                            &mut items,
                            loaded.as_ref()?,
                            be16(data)?,
                            be16(hi)?,
                            false,
                            ip.proto,
                        )?;
                        i += 2;
                        continue;
                    }
                    _ => return None,
                };
                cmp(
                    &mut ip,
                    &mut items,
                    loaded.as_ref()?,
                    mask.as_deref(),
                    data,
                    invert,
                    family,
                )?;
            }
            Expr::Range { op, from, to, .. } => {
                port_cond(
                    &mut items,
                    loaded.as_ref()?,
                    be16(from)?,
                    be16(to)?,
                    *op == 1,
                    ip.proto,
                )?;
            }
            Expr::Counter { .. } => {}
            Expr::Match { name, rev, info } => items.push(Item::Other(Match::Xt {
                name: name.clone(),
                rev: *rev,
                info: info.clone(),
            })),
            Expr::Target { name, rev, info } => {
                target = Target::Xt {
                    name: name.clone(),
                    rev: *rev,
                    info: info.clone(),
                }
            }
            Expr::Immediate {
                dreg: 0,
                data: Data::Verdict(v),
            } => {
                target = match (v.code, &v.chain) {
                    (NF_ACCEPT, _) => Target::Verdict("ACCEPT"),
                    (NF_DROP, _) => Target::Verdict("DROP"),
                    (NFT_RETURN, _) => Target::Verdict("RETURN"),
                    (c, _) if c & 0xff == NF_QUEUE => Target::Verdict("QUEUE"),
                    (NFT_JUMP, Some(c)) => Target::Jump(c.clone()),
                    (NFT_GOTO, Some(c)) => Target::Goto(c.clone()),
                    _ => return None,
                }
            }
            _ => return None,
        }
        i += 1;
    }
    let matches = items
        .into_iter()
        .map(|item| match item {
            Item::Other(m) => Some(m),
            Item::Ports(p) => Some(Match::Text(ports_text(&p, ip.proto)?)),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(IptRule {
        chain: chain.to_string(),
        ip,
        matches,
        target,
    })
}

fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

fn cmp(
    ip: &mut IpPart,
    items: &mut Vec<Item>,
    loaded: &Loaded,
    mask: Option<&[u8]>,
    data: &[u8],
    invert: bool,
    family: Family,
) -> Option<()> {
    let (src_off, dst_off, width) = match family {
        Family::V4 => (12, 16, 4usize),
        Family::V6 => (8, 24, 16usize),
    };
    match loaded {
        Loaded::Meta(16) if mask.is_none() && ip.proto == 0 => {
            ip.proto = u16::from(*data.first()?);
            ip.proto_invert = invert;
        }
        Loaded::Meta(key @ (6 | 7)) if mask.is_none() => {
            let end = data.iter().position(|&c| c == 0);
            let iface = Iface {
                name: super::nl::text(&data[..end.unwrap_or(data.len())]),
                wildcard: end.is_none(),
                invert,
            };
            let slot = if *key == 6 {
                &mut ip.iniface
            } else {
                &mut ip.outiface
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(iface);
        }
        Loaded::Meta(3) => {
            let value = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
            let mask = match mask {
                Some(m) => u32::from_ne_bytes(m.get(..4)?.try_into().ok()?),
                None => u32::MAX,
            };
            let bang = if invert { "! " } else { "" };
            let text = if mask == u32::MAX {
                format!("-m mark {bang}--mark 0x{value:x}")
            } else {
                format!("-m mark {bang}--mark 0x{value:x}/0x{mask:x}")
            };
            items.push(Item::Other(Match::Text(text)));
        }
        Loaded::Payload {
            base: 1,
            offset,
            len,
        } if (*offset == src_off || *offset == dst_off) && (*len as usize) <= width => {
            let mut addr = data.get(..*len as usize)?.to_vec();
            addr.resize(width, 0);
            let mut full_mask = vec![0u8; width];
            match mask {
                Some(m) => {
                    for (slot, b) in full_mask.iter_mut().zip(m) {
                        *slot = *b;
                    }
                }
                None => full_mask[..*len as usize].fill(0xff),
            }
            let addr = match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&addr[..]).ok()?)),
                Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&addr[..]).ok()?)),
            };
            let cidr = Some(Cidr {
                addr,
                mask: full_mask,
                invert,
            });
            let slot = if *offset == src_off {
                &mut ip.src
            } else {
                &mut ip.dst
            };
            if slot.is_some() {
                return None;
            }
            *slot = cidr;
        }
        Loaded::Payload { base: 2, .. } if mask.is_none() => {
            let port = be16(data)?;
            port_cond(items, loaded, port, port, invert, ip.proto)?;
        }
        Loaded::Payload {
            base: 2,
            offset: 13,
            len: 1,
        } if ip.proto == 6 => {
            let flags = Some((*mask?.first()?, *data.first()?, invert));
            match items.last_mut() {
                Some(Item::Ports(p)) if p.flags.is_none() => p.flags = flags,
                _ => items.push(Item::Ports(Ports {
                    flags,
                    ..Ports::default()
                })),
            }
        }
        // `-f`: the fragment offset (the low 13 bits of frag-off) is not zero.
        Loaded::Payload {
            base: 1,
            offset: 6,
            len: 2,
        } if family == Family::V4
            && mask == Some(&[0x1f, 0xff][..])
            && data.iter().all(|&b| b == 0) =>
        {
            ip.fragment = Some(!invert);
        }
        _ => return None,
    }
    Some(())
}

/// A transport port condition, merged into the preceding `-m tcp`/`-m udp` when that one does
/// not have this option yet.
fn port_cond(
    items: &mut Vec<Item>,
    loaded: &Loaded,
    lo: u16,
    hi: u16,
    invert: bool,
    proto: u16,
) -> Option<()> {
    let Loaded::Payload {
        base: 2,
        offset,
        len: 2,
    } = loaded
    else {
        return None;
    };
    if !matches!(proto, 6 | 17) {
        return None;
    }
    let cond = Some((lo, hi, invert));
    if let Some(Item::Ports(p)) = items.last_mut() {
        let slot = if *offset == 0 {
            &mut p.sport
        } else {
            &mut p.dport
        };
        if slot.is_none() {
            *slot = cond;
            return Some(());
        }
    }
    let mut p = Ports::default();
    match offset {
        0 => p.sport = cond,
        2 => p.dport = cond,
        _ => return None,
    }
    items.push(Item::Ports(p));
    Some(())
}

fn ports_text(p: &Ports, proto: u16) -> Option<String> {
    let name = match proto {
        6 => "tcp",
        17 => "udp",
        _ => return None,
    };
    let mut text = format!("-m {name}");
    for (opt, cond) in [("--sport", p.sport), ("--dport", p.dport)] {
        if let Some((lo, hi, invert)) = cond {
            if invert {
                text.push_str(" !");
            }
            if lo == hi {
                text.push_str(&format!(" {opt} {lo}"));
            } else {
                text.push_str(&format!(" {opt} {lo}:{hi}"));
            }
        }
    }
    if let Some((mask, comp, invert)) = p.flags {
        if invert {
            text.push_str(" !");
        }
        text.push_str(" --tcp-flags ");
        xt::tcp_flags(&mut text, mask);
        text.push(' ');
        xt::tcp_flags(&mut text, comp);
    }
    Some(text)
}
