//! Rules snapshots turned into bounded `ruleset` events. A node may hold 50,000 NAT rules; the
//! event lists in full only the rules that matter — those in chains a NAT hook enters, those
//! that rewrite the source, and at the end those whose counters moved and those that DNAT to an
//! address a captured connection went to — and counts the rest per chain and owner.

use super::{owner, Counters, Rule, Table};
use crate::wire::{ChainEntry, NatKind, OwnerTally, Phase, RuleEntry, RuleTable, Ruleset, Why};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// At most this many rules in full per event (each ≈ 0.3–0.5 KB of JSON).
pub const MAX_RULES: usize = 500;

/// The node's NAT tables at one moment, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub tables: Vec<Table>,
    pub errors: Vec<String>,
}

/// Identifies a rule across two snapshots, hashed: its table and chain with the nftables
/// handle, or for iptables-legacy (no handles) its text and how many identical rules come
/// before it in the chain.
type RuleKey = u64;

fn keys(t: &Table) -> Vec<(RuleKey, &str, usize, &Rule)> {
    let mut out = vec![];
    for c in &t.chains {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, r) in c.rules.iter().enumerate() {
            let nth = seen.entry(r.text.as_str()).or_default();
            let mut h = DefaultHasher::new();
            (t.backend, &t.family, &t.name, &c.name).hash(&mut h);
            match r.handle {
                Some(handle) => handle.hash(&mut h),
                None => (&r.text, *nth).hash(&mut h),
            }
            *nth += 1;
            out.push((h.finish(), c.name.as_str(), i, r));
        }
    }
    out
}

/// What the end snapshot is compared with: each rule's counters at the start, by key. A few
/// bytes per rule, so the probe holds no copy of the rules while it captures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    counters: HashMap<RuleKey, Option<Counters>>,
}

impl Baseline {
    pub fn of(snap: &Snapshot) -> Baseline {
        Baseline {
            counters: snap
                .tables
                .iter()
                .flat_map(|t| keys(t).into_iter().map(|(k, _, _, r)| (k, r.counters)))
                .collect(),
        }
    }
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
    start: &Baseline,
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
    start: Option<&Baseline>,
    dnat_seen: &HashSet<IpAddr>,
    node: &str,
    ts_ns: u64,
) -> Ruleset {
    let empty = HashMap::new();
    let before = start.map_or(&empty, |b| &b.counters);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Chain, Hook};
    use crate::wire::{Backend, NatTarget, Syntax};

    fn rule(text: &str, packets: u64, nat: Option<NatTarget>) -> Rule {
        Rule {
            handle: None,
            syntax: Syntax::Iptables,
            text: text.into(),
            counters: Some(Counters {
                packets,
                bytes: packets * 60,
            }),
            nat,
            jump: None,
            goto: false,
            comment: None,
            ifaces: vec![],
        }
    }

    fn nat(kind: NatKind, addr: Option<&str>) -> Option<NatTarget> {
        Some(NatTarget {
            kind,
            addr_min: addr.map(|a| a.parse().unwrap()),
            addr_max: addr.map(|a| a.parse().unwrap()),
            port_min: None,
            port_max: None,
            flags: vec![],
        })
    }

    /// A nat table: POSTROUTING with one masquerade, and `n` service chains of one DNAT each.
    fn table(n: usize, hits: impl Fn(usize) -> u64) -> Snapshot {
        let mut chains = vec![Chain {
            name: "POSTROUTING".into(),
            hook: Some(Hook {
                hook: "postrouting".into(),
                priority: 100,
                kind: "nat".into(),
                policy: "accept".into(),
            }),
            counters: Some(Counters::default()),
            rules: vec![rule(
                "-A POSTROUTING -j MASQUERADE",
                0,
                nat(NatKind::Masquerade, None),
            )],
        }];
        for i in 0..n {
            let ip = format!("10.244.{}.{}", i / 250, i % 250 + 1);
            chains.push(Chain {
                name: format!("KUBE-SEP-{i}"),
                hook: None,
                counters: None,
                rules: vec![rule(
                    &format!("-A KUBE-SEP-{i} -j DNAT --to-destination {ip}:80"),
                    hits(i),
                    nat(NatKind::Dnat, Some(&ip)),
                )],
            });
        }
        Snapshot {
            tables: vec![Table {
                backend: Backend::IptablesLegacy,
                family: "ip".into(),
                name: "nat".into(),
                chains,
            }],
            errors: vec![],
        }
    }

    #[test]
    fn the_start_lists_hooks_and_source_nat_and_counts_the_rest() {
        let snap = table(10, |_| 0);
        let e = start_event(&snap, "n", 1);
        assert_eq!(e.rules.len(), 1);
        assert_eq!(e.rules[0].why, vec![Why::Hook, Why::SourceNat]);
        assert_eq!((e.summarised, e.left_out), (10, 0));
        assert_eq!(
            e.tables[0].chains.len(),
            1,
            "only the hook's chain is listed"
        );
        assert_eq!(e.tables[0].others[0].chains, 10);
    }

    #[test]
    fn the_end_lists_what_moved_what_is_new_and_dnats_seen() {
        let start = table(10, |_| 0);
        let mut end = table(10, |i| u64::from(i == 3) * 2);
        end.tables[0].chains.push(Chain {
            name: "KUBE-SEP-NEW".into(),
            hook: None,
            counters: None,
            rules: vec![rule("-A KUBE-SEP-NEW -j RETURN", 1, None)],
        });
        let seen = HashSet::from(["10.244.0.8".parse().unwrap()]);
        let e = end_event(&Baseline::of(&start), &end, &seen, "n", 2);
        let by_chain: HashMap<&str, &RuleEntry> =
            e.rules.iter().map(|r| (r.chain.as_str(), r)).collect();
        let moved = by_chain["KUBE-SEP-3"];
        assert_eq!(
            (moved.delta_packets, moved.delta_bytes),
            (Some(2), Some(120))
        );
        assert_eq!(moved.why, vec![Why::Moved]);
        let new = by_chain["KUBE-SEP-NEW"];
        assert!(new.new && new.delta_packets == Some(1), "{new:?}");
        assert_eq!(by_chain["KUBE-SEP-7"].why, vec![Why::DnatSeen]);
        assert_eq!(by_chain["POSTROUTING"].delta_packets, Some(0));
        assert_eq!(e.rules.len(), 4);
        assert_eq!(e.summarised, 12 - 4);
    }

    #[test]
    fn a_node_with_fifty_thousand_rules_stays_bounded() {
        let start = table(50_000, |_| 0);
        let end = table(50_000, |i| (i % 7) as u64);
        let e = end_event(&Baseline::of(&start), &end, &HashSet::new(), "n", 2);
        assert_eq!(e.rules.len(), MAX_RULES);
        let moved = (0..50_000).filter(|i| i % 7 != 0).count();
        assert_eq!(e.left_out as usize, moved + 1 - MAX_RULES);
        assert_eq!(
            e.rules[0].chain, "POSTROUTING",
            "hooks and source NAT come first"
        );
        assert!(
            e.rules[1..].iter().all(|r| r.delta_packets == Some(6)),
            "then the rules that moved most"
        );
        let json = crate::wire::encode_line(&crate::wire::Event::Ruleset(e));
        assert!(json.len() < 300_000, "{} bytes", json.len());
    }
}
