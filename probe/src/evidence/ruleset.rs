//! The node's NAT tables from what the readers fetched: nf_tables dumps (native tables and
//! iptables-nft's) and iptables-legacy blobs, each rule rendered in the syntax its users read,
//! with its counters, NAT target, jump and comment.

use super::nft::{self, Data, Expr, NftChain, NftElem, NftRule, NftSet, NftSetElems, NftTable};
use super::{hook_name, legacy, nft_ipt, nft_text, nl, xt, Chain, Counters, Hook, Rule, Table};
use crate::wire::{Backend, NatKind, NatTarget, Syntax};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Everything an nf_tables dump returned.
#[derive(Debug, Clone, Default)]
pub struct NftDump {
    pub tables: Vec<NftTable>,
    pub chains: Vec<NftChain>,
    pub rules: Vec<NftRule>,
    pub sets: Vec<NftSet>,
    pub elems: Vec<NftSetElems>,
}

impl NftDump {
    /// Sorts reply messages (header included, as the socket returns them) by kind.
    pub fn add_messages<'a>(&mut self, messages: impl IntoIterator<Item = &'a [u8]>) {
        for buf in messages {
            for m in nl::messages(buf) {
                if let Some(t) = nft::parse_table(&m) {
                    self.tables.push(t);
                } else if let Some(c) = nft::parse_chain(&m) {
                    self.chains.push(c);
                } else if let Some(r) = nft::parse_rule(&m) {
                    self.rules.push(r);
                } else if let Some(s) = nft::parse_set(&m) {
                    self.sets.push(s);
                } else if let Some(e) = nft::parse_set_elems(&m) {
                    self.elems.push(e);
                }
            }
        }
    }

    /// Tables that hold a NAT base chain: the only ones a NAT path goes through.
    pub fn nat_tables(&self) -> Vec<&NftTable> {
        self.tables
            .iter()
            .filter(|t| {
                self.chains.iter().any(|c| {
                    c.family == t.family
                        && c.table == t.name
                        && c.hook.is_some()
                        && c.kind.as_deref() == Some("nat")
                })
            })
            .collect()
    }

    /// Anonymous sets of the NAT tables, whose elements a rule prints inline.
    pub fn anonymous_sets(&self) -> Vec<&NftSet> {
        let nat = self.nat_tables();
        self.sets
            .iter()
            .filter(|s| s.anonymous())
            .filter(|s| {
                nat.iter()
                    .any(|t| t.family == s.family && t.name == s.table)
            })
            .collect()
    }
}

const IPTABLES_TABLES: [&str; 5] = ["nat", "filter", "mangle", "raw", "security"];
const IPTABLES_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// iptables-nft's tables: an iptables table name (`nat`, …) in the ip or ip6 family whose base
/// chains all carry iptables' built-in names. Known from the table and its chains alone, before
/// any rule is read.
fn is_iptables_nft(t: &NftTable, chains: &[NftChain]) -> bool {
    matches!(t.family, 2 | 10)
        && IPTABLES_TABLES.contains(&t.name.as_str())
        && chains
            .iter()
            .filter(|c| c.hook.is_some())
            .all(|c| IPTABLES_CHAINS.contains(&c.name.as_str()))
}

/// One NAT table ready to render its rules chain by chain: its front-end, chains, sets (with
/// the elements of anonymous ones) and interface names. The reader fetches a chain's rules,
/// renders them, and lets them go before the next chain.
#[derive(Debug, Clone)]
pub struct NatTablePlan {
    table: NftTable,
    backend: Backend,
    chains: Vec<NftChain>,
    cx: nft_text::Context,
}

impl NatTablePlan {
    pub fn chains(&self) -> &[NftChain] {
        &self.chains
    }

    /// One chain with its rules rendered.
    pub fn chain(&self, c: &NftChain, rules: &[NftRule], xcx: &xt::Context) -> Chain {
        let family = if self.table.family == 10 {
            xt::Family::V6
        } else {
            xt::Family::V4
        };
        Chain {
            name: c.name.clone(),
            hook: c.hook.as_ref().map(|h| Hook {
                hook: hook_name(h.num),
                priority: h.priority,
                kind: c.kind.clone().unwrap_or_default(),
                policy: match c.policy {
                    Some(0) => "drop".into(),
                    _ => "accept".into(),
                },
            }),
            counters: c
                .counters
                .map(|(packets, bytes)| Counters { packets, bytes }),
            rules: rules
                .iter()
                .map(|r| nft_rule(r, &c.name, self.backend, family, &self.cx, xcx))
                .collect(),
        }
    }

    pub fn into_table(self, chains: Vec<Chain>) -> Table {
        Table {
            backend: self.backend,
            family: nft::family_name(self.table.family),
            name: self.table.name,
            chains,
        }
    }
}

/// The NAT tables of a dump of tables, chains and sets (rules not needed yet).
pub fn nat_plans(dump: &NftDump, ifnames: &HashMap<u32, String>) -> Vec<NatTablePlan> {
    let mut elems_of: HashMap<(u8, &str, &str), Vec<NftElem>> = HashMap::new();
    for e in &dump.elems {
        elems_of
            .entry((e.family, e.table.as_str(), e.set.as_str()))
            .or_default()
            .extend(e.elems.iter().cloned());
    }
    dump.nat_tables()
        .into_iter()
        .map(|t| {
            let chains: Vec<NftChain> = dump
                .chains
                .iter()
                .filter(|c| c.family == t.family && c.table == t.name)
                .cloned()
                .collect();
            let mut sets = nft_text::Sets::default();
            for s in dump
                .sets
                .iter()
                .filter(|s| s.family == t.family && s.table == t.name)
            {
                let elems = elems_of
                    .remove(&(s.family, s.table.as_str(), s.name.as_str()))
                    .unwrap_or_default();
                sets.sets.insert(s.name.clone(), (s.clone(), elems));
            }
            NatTablePlan {
                backend: if is_iptables_nft(t, &chains) {
                    Backend::IptablesNft
                } else {
                    Backend::Nftables
                },
                table: t.clone(),
                chains,
                cx: nft_text::Context {
                    family: t.family,
                    sets,
                    ifnames: ifnames.clone(),
                },
            }
        })
        .collect()
}

/// The NAT tables of a whole nf_tables dump, every rule rendered.
pub fn nft_tables(dump: &NftDump, ifnames: &HashMap<u32, String>, xcx: &xt::Context) -> Vec<Table> {
    // Grouped once: a node may have tens of thousands of rules and chains.
    let mut rules_of: HashMap<(u8, &str, &str), Vec<NftRule>> = HashMap::new();
    for r in &dump.rules {
        rules_of
            .entry((r.family, r.table.as_str(), r.chain.as_str()))
            .or_default()
            .push(r.clone());
    }
    nat_plans(dump, ifnames)
        .into_iter()
        .map(|plan| {
            let chains = plan
                .chains()
                .iter()
                .map(|c| {
                    let rules = rules_of
                        .get(&(c.family, c.table.as_str(), c.name.as_str()))
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    plan.chain(c, rules, xcx)
                })
                .collect();
            plan.into_table(chains)
        })
        .collect()
}

/// The ipsets rules refer to by index when their names were not known at rendering: printed
/// `[ipset #N]`, named afterwards by [`name_ipsets`].
pub fn unnamed_ipsets(tables: &[Table]) -> Vec<u16> {
    let mut out: Vec<u16> = tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .flat_map(|r| {
            r.text
                .match_indices(xt::IPSET_PLACEHOLDER)
                .map(move |(at, _)| &r.text[at..])
        })
        .filter_map(|rest| {
            let digits = rest.strip_prefix(xt::IPSET_PLACEHOLDER)?;
            digits.split(']').next()?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Writes the ipsets' names where their indexes stand.
pub fn name_ipsets(tables: &mut [Table], names: &HashMap<u16, String>) {
    for r in tables
        .iter_mut()
        .flat_map(|t| &mut t.chains)
        .flat_map(|c| &mut c.rules)
    {
        if r.text.contains(xt::IPSET_PLACEHOLDER) {
            for (index, name) in names {
                r.text = r
                    .text
                    .replace(&format!("{}{index}]", xt::IPSET_PLACEHOLDER), name);
            }
        }
    }
}

/// One nf_tables rule: in iptables syntax when iptables-nft wrote it and every expression
/// translates, in nft syntax otherwise.
fn nft_rule(
    r: &NftRule,
    chain: &str,
    backend: Backend,
    family: xt::Family,
    cx: &nft_text::Context,
    xcx: &xt::Context,
) -> Rule {
    let counters = r.exprs.iter().find_map(|e| match e {
        Expr::Counter { packets, bytes } => Some(Counters {
            packets: *packets,
            bytes: *bytes,
        }),
        _ => None,
    });
    if backend == Backend::IptablesNft {
        if let Some(ipt) = nft_ipt::to_ipt(chain, &r.exprs, family) {
            return legacy::from_ipt(&ipt, family, counters, Some(r.handle), xcx);
        }
    }
    let (jump, goto) = r
        .exprs
        .iter()
        .find_map(|e| match e {
            Expr::Immediate {
                dreg: 0,
                data: Data::Verdict(v),
            } => match v.code {
                nft::NFT_JUMP => Some((v.chain.clone(), false)),
                nft::NFT_GOTO => Some((v.chain.clone(), true)),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or((None, false));
    Rule {
        handle: Some(r.handle),
        syntax: Syntax::Nft,
        text: nft_text::render(&r.exprs, r.comment.as_deref(), cx),
        counters,
        nat: nft_nat(&r.exprs, family),
        jump,
        goto,
        comment: r.comment.clone(),
        ifaces: nft_ifaces(&r.exprs),
    }
}

/// The NAT target of a native rule: the nat/masq/redir expression with the addresses and
/// ports its registers were loaded with; or an x_tables NAT target.
pub fn nft_nat(exprs: &[Expr], family: xt::Family) -> Option<NatTarget> {
    let mut regs: HashMap<u32, Vec<u8>> = HashMap::new();
    let port = |regs: &HashMap<u32, Vec<u8>>, r: Option<u32>| -> Option<u16> {
        let b = regs.get(&r?)?;
        Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
    };
    let flags = |f: u32| -> Vec<String> {
        let r = xt::NatRange {
            flags: f,
            min_addr: None,
            max_addr: None,
            min_port: 0,
            max_port: 0,
        };
        r.flag_names().into_iter().map(String::from).collect()
    };
    for e in exprs {
        match e {
            Expr::Immediate {
                dreg,
                data: Data::Value(v),
            } => {
                regs.insert(*dreg, v.clone());
            }
            Expr::Nat {
                dnat,
                family: f,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
                flags: fl,
            } => {
                let addr = |r: Option<u32>| -> Option<IpAddr> {
                    let b = regs.get(&r?)?;
                    if *f == 10 {
                        Some(IpAddr::V6(Ipv6Addr::from(
                            <[u8; 16]>::try_from(b.get(..16)?).ok()?,
                        )))
                    } else {
                        Some(IpAddr::V4(Ipv4Addr::from(
                            <[u8; 4]>::try_from(b.get(..4)?).ok()?,
                        )))
                    }
                };
                let min = addr(*addr_min);
                return Some(NatTarget {
                    kind: if *dnat { NatKind::Dnat } else { NatKind::Snat },
                    addr_min: min,
                    addr_max: addr(*addr_max).or(min),
                    port_min: port(&regs, *proto_min),
                    port_max: port(&regs, *proto_max).or(port(&regs, *proto_min)),
                    flags: flags(*fl),
                });
            }
            Expr::Masq {
                flags: fl,
                proto_min,
                proto_max,
            }
            | Expr::Redir {
                flags: fl,
                proto_min,
                proto_max,
            } => {
                return Some(NatTarget {
                    kind: if matches!(e, Expr::Masq { .. }) {
                        NatKind::Masquerade
                    } else {
                        NatKind::Redirect
                    },
                    addr_min: None,
                    addr_max: None,
                    port_min: port(&regs, *proto_min),
                    port_max: port(&regs, *proto_max).or(port(&regs, *proto_min)),
                    flags: flags(*fl),
                });
            }
            Expr::Target { name, rev, info } => {
                return legacy::nat_target(name, *rev, info, family)
            }
            _ => {}
        }
    }
    None
}

/// Interface names a native rule compares `iifname`/`oifname` with.
fn nft_ifaces(exprs: &[Expr]) -> Vec<String> {
    let mut out = vec![];
    let mut name_loaded = false;
    for e in exprs {
        match e {
            Expr::Meta {
                key: 6 | 7,
                dreg: Some(_),
                ..
            } => name_loaded = true,
            Expr::Cmp { data, .. } if name_loaded => {
                out.push(nl::text(data));
                name_loaded = false;
            }
            _ => name_loaded = false,
        }
    }
    out
}

/// An iptables-legacy NAT table.
pub fn legacy_table(v6: bool, info: &legacy::Info, entries: &[u8], xcx: &xt::Context) -> Table {
    Table {
        backend: Backend::IptablesLegacy,
        family: if v6 { "ip6" } else { "ip" }.into(),
        name: "nat".into(),
        chains: legacy::parse_table(info, entries, v6, xcx),
    }
}
