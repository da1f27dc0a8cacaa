//! Rules snapshots turned into bounded `ruleset` events. A node may hold 50,000 NAT rules; the
//! event lists in full only the rules that matter — those in chains a NAT hook enters, those
//! that rewrite the source, and at the end those whose counters moved and those that DNAT to an
//! address a captured connection went to — and counts the rest per chain and owner.

use super::{owner, Counters, Rule, Table};
use crate::wire::{
    Backend, ChainEntry, NatKind, OwnerTally, Phase, RuleEntry, RuleTable, Ruleset, Why,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// At most this many rules in full per event (each ≈ 0.3–0.5 KB of JSON).
pub const MAX_RULES: usize = 500;

/// The node's NAT tables at one moment, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub tables: Vec<Table>,
    pub errors: Vec<String>,
}

/// Identifies a rule across two snapshots: the nftables handle, or for iptables-legacy (no
/// handles) its text and how many identical rules come before it in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RuleKey {
    backend: Backend,
    family: String,
    table: String,
    chain: String,
    handle: Option<u64>,
    text: String,
    nth: usize,
}

fn keys(t: &Table) -> Vec<(RuleKey, &str, usize, &Rule)> {
    let mut out = vec![];
    for c in &t.chains {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, r) in c.rules.iter().enumerate() {
            let nth = seen.entry(r.text.as_str()).or_default();
            let key = RuleKey {
                backend: t.backend,
                family: t.family.clone(),
                table: t.name.clone(),
                chain: c.name.clone(),
                handle: r.handle,
                text: if r.handle.is_some() {
                    String::new()
                } else {
                    r.text.clone()
                },
                nth: if r.handle.is_some() { 0 } else { *nth },
            };
            *nth += 1;
            out.push((key, c.name.as_str(), i, r));
        }
    }
    out
}

/// A rule chosen for the event, with what it is chosen for.
struct Pick<'a> {
    table: &'a Table,
    chain: &'a str,
    position: usize,
    rule: &'a Rule,
    why: Vec<Why>,
    delta: Option<Counters>,
    new: bool,
}

/// The event at the start of the capture.
pub fn start_event(snap: &Snapshot, node: &str, ts_ns: u64) -> Ruleset {
    event(snap, None, &HashSet::new(), node, ts_ns)
}

/// The event at the end: counters compared with `start`, DNAT rules to `dnat_seen` listed.
pub fn end_event(
    start: &Snapshot,
    end: &Snapshot,
    dnat_seen: &HashSet<IpAddr>,
    node: &str,
    ts_ns: u64,
) -> Ruleset {
    event(end, Some(start), dnat_seen, node, ts_ns)
}

fn in_range(nat: &crate::wire::NatTarget, addr: &IpAddr) -> bool {
    match (nat.addr_min, nat.addr_max) {
        (Some(lo), Some(hi)) => match (lo, hi, addr) {
            (IpAddr::V4(lo), IpAddr::V4(hi), IpAddr::V4(a)) => (lo..=hi).contains(a),
            (IpAddr::V6(lo), IpAddr::V6(hi), IpAddr::V6(a)) => (lo..=hi).contains(a),
            _ => false,
        },
        _ => false,
    }
}

fn event(
    snap: &Snapshot,
    start: Option<&Snapshot>,
    dnat_seen: &HashSet<IpAddr>,
    node: &str,
    ts_ns: u64,
) -> Ruleset {
    let before: HashMap<RuleKey, Option<Counters>> = start
        .map(|s| {
            s.tables
                .iter()
                .flat_map(|t| keys(t).into_iter().map(|(k, _, _, r)| (k, r.counters)))
                .collect()
        })
        .unwrap_or_default();
    let mut picks: Vec<Pick<'_>> = vec![];
    let mut total = 0u64;
    for t in &snap.tables {
        let nat_hook: HashSet<&str> = t
            .chains
            .iter()
            .filter(|c| c.hook.as_ref().is_some_and(|h| h.kind == "nat"))
            .map(|c| c.name.as_str())
            .collect();
        for (key, chain, i, r) in keys(t) {
            total += 1;
            let mut why = vec![];
            if nat_hook.contains(chain) {
                why.push(Why::Hook);
            }
            if r.nat
                .as_ref()
                .is_some_and(|n| matches!(n.kind, NatKind::Snat | NatKind::Masquerade))
            {
                why.push(Why::SourceNat);
            }
            let (mut delta, mut new) = (None, false);
            if start.is_some() {
                match (before.get(&key), r.counters) {
                    (Some(Some(b)), Some(now)) => {
                        delta = Some(Counters {
                            packets: now.packets.saturating_sub(b.packets),
                            bytes: now.bytes.saturating_sub(b.bytes),
                        })
                    }
                    (None, Some(now)) => {
                        delta = Some(now);
                        new = true;
                    }
                    (None, None) => new = true,
                    _ => {}
                }
                if delta.is_some_and(|d| d.packets > 0) {
                    why.push(Why::Moved);
                }
                if r.nat.as_ref().is_some_and(|n| {
                    n.kind == NatKind::Dnat && dnat_seen.iter().any(|a| in_range(n, a))
                }) {
                    why.push(Why::DnatSeen);
                }
            }
            if !why.is_empty() {
                picks.push(Pick {
                    table: t,
                    chain,
                    position: i + 1,
                    rule: r,
                    why,
                    delta,
                    new,
                });
            }
        }
    }
    // Over the bound: hooks and source NAT first, then the rules that moved most.
    let rank = |p: &Pick<'_>| -> (u8, std::cmp::Reverse<u64>) {
        let first = if p.why.contains(&Why::Hook) || p.why.contains(&Why::SourceNat) {
            0
        } else if p.why.contains(&Why::DnatSeen) {
            1
        } else {
            2
        };
        (first, std::cmp::Reverse(p.delta.map_or(0, |d| d.packets)))
    };
    let left_out = picks.len().saturating_sub(MAX_RULES) as u64;
    if left_out > 0 {
        picks.sort_by_key(rank);
        picks.truncate(MAX_RULES);
    }
    // Back in table and chain order.
    let table_index = |t: &Table| {
        snap.tables
            .iter()
            .position(|x| std::ptr::eq(x, t))
            .unwrap_or(0)
    };
    picks.sort_by_key(|p| {
        (
            table_index(p.table),
            chain_index(p.table, p.chain),
            p.position,
        )
    });

    let rules: Vec<RuleEntry> = picks.iter().map(entry).collect();
    let tables = snap
        .tables
        .iter()
        .map(|t| {
            let listed: HashSet<&str> = picks
                .iter()
                .filter(|p| std::ptr::eq(p.table, t))
                .map(|p| p.chain)
                .collect();
            let mut others: BTreeMap<crate::wire::Owner, (u64, u64)> = BTreeMap::new();
            let mut chains = vec![];
            for c in &t.chains {
                if c.hook.is_some() || listed.contains(c.name.as_str()) {
                    chains.push(ChainEntry {
                        name: c.name.clone(),
                        owner: owner::of_chain(&t.name, &c.name),
                        hook: c.hook.as_ref().map(|h| h.hook.clone()),
                        priority: c.hook.as_ref().map(|h| h.priority),
                        kind: c.hook.as_ref().map(|h| h.kind.clone()),
                        policy: c.hook.as_ref().map(|h| h.policy.clone()),
                        rules: c.rules.len() as u32,
                        packets: c.counters.map(|c| c.packets),
                        bytes: c.counters.map(|c| c.bytes),
                    });
                } else {
                    let slot = others.entry(owner::of_chain(&t.name, &c.name)).or_default();
                    slot.0 += 1;
                    slot.1 += c.rules.len() as u64;
                }
            }
            RuleTable {
                backend: t.backend,
                family: t.family.clone(),
                name: t.name.clone(),
                chains,
                others: others
                    .into_iter()
                    .map(|(owner, (chains, rules))| OwnerTally {
                        owner,
                        chains,
                        rules,
                    })
                    .collect(),
            }
        })
        .collect();
    Ruleset {
        ts_ns,
        node: node.to_string(),
        phase: if start.is_some() {
            Phase::End
        } else {
            Phase::Start
        },
        tables,
        summarised: total - rules.len() as u64 - left_out,
        rules,
        left_out,
        errors: snap.errors.clone(),
    }
}

fn chain_index(t: &Table, chain: &str) -> usize {
    t.chains.iter().position(|c| c.name == chain).unwrap_or(0)
}

fn entry(p: &Pick<'_>) -> RuleEntry {
    let r = p.rule;
    let (owner, owner_from) = owner::guess(&owner::Clues {
        table: &p.table.name,
        chain: p.chain,
        jump: r.jump.as_deref(),
        comment: r.comment.as_deref(),
        ifaces: &r.ifaces,
    });
    RuleEntry {
        backend: p.table.backend,
        family: p.table.family.clone(),
        table: p.table.name.clone(),
        chain: p.chain.to_string(),
        position: p.position as u32,
        handle: r.handle,
        syntax: r.syntax,
        text: r.text.clone(),
        owner,
        owner_from,
        packets: r.counters.map(|c| c.packets),
        bytes: r.counters.map(|c| c.bytes),
        delta_packets: p.delta.map(|d| d.packets),
        delta_bytes: p.delta.map(|d| d.bytes),
        new: p.new,
        nat: r.nat.clone(),
        jump: r.jump.clone(),
        goto: r.goto,
        why: p.why.clone(),
    }
}
