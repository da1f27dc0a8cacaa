//! One iptables rule as `iptables-save` prints it (`-A CHAIN -s … -d … -i … -o … -p … -m … -j …`),
//! whichever transport it came from: iptables-legacy entries and iptables-nft rules are both read
//! into an [`IptRule`] and rendered here.

use super::xt::{self, Family};
use std::fmt::Write;
use std::net::IpAddr;

/// An address with its mask, as in `-s 10.0.0.0/8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    /// Mask bytes (4 or 16), network order.
    pub mask: Vec<u8>,
    pub invert: bool,
}

/// An interface match: the name and whether it ends in `+` (a prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub wildcard: bool,
    pub invert: bool,
}

/// The fixed part of a rule that `iptables-save` prints first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpPart {
    pub src: Option<Cidr>,
    pub dst: Option<Cidr>,
    pub iniface: Option<Iface>,
    pub outiface: Option<Iface>,
    /// Protocol number, 0 for any.
    pub proto: u16,
    pub proto_invert: bool,
    /// `-f` (IPv4 only): `Some(invert)`.
    pub fragment: Option<bool>,
}

/// A `-m` match: an xt extension's bytes, or options iptables-nft wrote as native expressions
/// (`-m tcp --dport 53`, `-m mark --mark 0x4000/0x4000`) already in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Xt {
        name: String,
        rev: u8,
        info: Vec<u8>,
    },
    Text(String),
}

/// What the rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No `-j`: the rule only counts.
    None,
    /// ACCEPT, DROP, RETURN, QUEUE.
    Verdict(&'static str),
    Jump(String),
    Goto(String),
    Xt {
        name: String,
        rev: u8,
        info: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptRule {
    pub chain: String,
    pub ip: IpPart,
    pub matches: Vec<Match>,
    pub target: Target,
}

/// iptables' names for protocol numbers (`xtables_chain_protos`); others print as numbers.
pub fn proto_name(proto: u16) -> Option<&'static str> {
    Some(match proto {
        6 => "tcp",
        132 => "sctp",
        17 => "udp",
        136 => "udplite",
        1 => "icmp",
        58 => "ipv6-icmp",
        50 => "esp",
        51 => "ah",
        135 => "mh",
        _ => return None,
    })
}

impl IptRule {
    /// `-A CHAIN …` as `iptables-save` prints it (without the `[packets:bytes]` prefix).
    pub fn render(&self, family: Family, cx: &xt::Context) -> String {
        let mut out = format!("-A {}", self.chain);
        for (letter, cidr) in [('s', &self.ip.src), ('d', &self.ip.dst)] {
            if let Some(c) = cidr {
                let suffix = xt::mask_suffix(
                    &c.mask,
                    family,
                    if family == Family::V4 { "/32" } else { "/128" },
                );
                let bang = if c.invert { " !" } else { "" };
                let _ = write!(out, "{bang} -{letter} {}{suffix}", c.addr);
            }
        }
        for (letter, iface) in [('i', &self.ip.iniface), ('o', &self.ip.outiface)] {
            if let Some(i) = iface {
                let bang = if i.invert { " !" } else { "" };
                let plus = if i.wildcard { "+" } else { "" };
                let _ = write!(out, "{bang} -{letter} {}{plus}", i.name);
            }
        }
        if self.ip.proto != 0 {
            let bang = if self.ip.proto_invert { " !" } else { "" };
            match proto_name(self.ip.proto) {
                Some(name) => {
                    let _ = write!(out, "{bang} -p {name}");
                }
                None => {
                    let _ = write!(out, "{bang} -p {}", self.ip.proto);
                }
            }
        }
        if let Some(invert) = self.ip.fragment {
            out.push_str(if invert { " ! -f" } else { " -f" });
        }
        for m in &self.matches {
            match m {
                Match::Xt { name, rev, info } => {
                    xt::render_match(&mut out, name, *rev, info, family, cx)
                }
                Match::Text(text) => {
                    out.push(' ');
                    out.push_str(text);
                }
            }
        }
        match &self.target {
            Target::None => {}
            Target::Verdict(v) => {
                let _ = write!(out, " -j {v}");
            }
            Target::Jump(chain) => {
                let _ = write!(out, " -j {chain}");
            }
            Target::Goto(chain) => {
                let _ = write!(out, " -g {chain}");
            }
            Target::Xt { name, rev, info } => xt::render_target(&mut out, name, *rev, info, family),
        }
        out
    }

    /// The comment of `-m comment`, when the rule has one.
    pub fn comment(&self) -> Option<String> {
        self.matches.iter().find_map(|m| match m {
            Match::Xt { name, info, .. } if name == "comment" => {
                let end = info.iter().position(|&c| c == 0).unwrap_or(info.len());
                Some(super::nl::text(&info[..end]))
            }
            _ => None,
        })
    }

    /// Interface names the rule matches on (`-i`/`-o`), for telling who wrote it.
    pub fn ifaces(&self) -> Vec<String> {
        [&self.ip.iniface, &self.ip.outiface]
            .into_iter()
            .flatten()
            .map(|i| i.name.clone())
            .collect()
    }
}
