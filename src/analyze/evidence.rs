//! The nodes' netfilter evidence (`realip-probe capture --evidence`), held while the connections
//! it explains are analyzed: each node's status, its NAT rules at the start and the end of the
//! capture, its conntrack entries by ISN and its routes by destination. [`super::attribution`]
//! reads it to name the rule behind each rewrite.

use super::model::{Flow, NodeEvidence};
use realip_probe::wire::{Backend, Conntrack, EvidenceStatus, Phase, Route, RuleEntry, Ruleset};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// Conntrack entries held per node at most. Each connection's entries go once it is reported;
/// entries of connections never reported (their SYN not captured, a window shorter than the
/// lookup delay) stay until this bound, and later ones are dropped.
const MAX_CONNTRACK: usize = 1 << 18;

/// What one node's probe sent.
#[derive(Debug, Default)]
pub struct NodeState {
    /// The latest status: the first one after `hello`, then the one with the totals at the end.
    pub status: Option<EvidenceStatus>,
    pub start: Option<Ruleset>,
    pub end: Option<Ruleset>,
    /// The NAT rules listed (with a NAT target): the end snapshot's, with their counters'
    /// deltas, then those only the start listed. Merged once, when a snapshot comes.
    pub nat_rules: Vec<RuleEntry>,
    /// By the ISN of the connection whose SYN found them.
    pub conntrack: HashMap<u32, Vec<Conntrack>>,
    /// By the destination they were looked up for.
    pub routes: HashMap<IpAddr, Route>,
    held: usize,
    dropped: u64,
}

impl NodeState {
    /// Whether the probe could read the node's netfilter state.
    pub fn available(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.available)
    }

    /// The probe reads evidence and has not yet written its end: the counters of its rules over
    /// the capture are still to come.
    fn under_way(&self) -> bool {
        self.available() && self.end.is_none() && !self.status.as_ref().is_some_and(|s| s.last)
    }
}

/// Every node's evidence.
#[derive(Debug, Default)]
pub struct Evidence {
    nodes: BTreeMap<String, NodeState>,
}

impl Evidence {
    /// Whether any probe sent evidence: without any, rewrites carry no attribution at all.
    pub fn any(&self) -> bool {
        !self.nodes.is_empty()
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.get(name)
    }

    fn slot(&mut self, node: &str) -> &mut NodeState {
        self.nodes.entry(node.to_string()).or_default()
    }

    pub fn status(&mut self, status: EvidenceStatus) {
        let slot = self.slot(&status.node);
        // The last status carries the totals; a first one coming after it changes nothing.
        if !slot.status.as_ref().is_some_and(|s| s.last) {
            slot.status = Some(status);
        }
    }

    pub fn ruleset(&mut self, ruleset: Ruleset) {
        let slot = self.slot(&ruleset.node);
        match ruleset.phase {
            Phase::Start => slot.start = Some(ruleset),
            Phase::End => slot.end = Some(ruleset),
        }
        slot.nat_rules = merged(slot.start.as_ref(), slot.end.as_ref());
    }

    /// Keeps a conntrack entry; `false` when the node's bound was reached and it was dropped.
    pub fn conntrack(&mut self, entry: Conntrack) -> bool {
        let slot = self.slot(&entry.node);
        if slot.held >= MAX_CONNTRACK {
            slot.dropped += 1;
            return false;
        }
        slot.held += 1;
        slot.conntrack.entry(entry.isn).or_default().push(entry);
        true
    }

    pub fn route(&mut self, route: Route) {
        let slot = self.slot(&route.node);
        slot.routes.insert(route.dst, route);
    }

    /// Whether `flow` should wait before it is reported: a node where one of its rewrites was
    /// made reads evidence whose end (the rules' counters over the capture) has not come yet.
    pub fn waits_for(&self, flow: &Flow) -> bool {
        flow.translations.iter().any(|t| {
            rewrite_nodes(flow, t.hop)
                .iter()
                .any(|node| self.nodes.get(*node).is_some_and(NodeState::under_way))
        })
    }

    /// Forgets the conntrack entries of a connection once it has been reported.
    pub fn done(&mut self, flow: &Flow) {
        for hop in &flow.hops {
            if let Some(slot) = self.nodes.get_mut(&hop.node) {
                if let Some(gone) = slot.conntrack.remove(&flow.isn) {
                    slot.held = slot.held.saturating_sub(gone.len());
                }
            }
        }
    }

    /// Per node, what its probe could read; and warnings for what could not be used.
    pub fn summary(&self) -> (Vec<NodeEvidence>, Vec<String>) {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for (node, state) in &self.nodes {
            let Some(status) = &state.status else {
                continue;
            };
            let (listed, total) = state
                .end
                .as_ref()
                .or(state.start.as_ref())
                .map_or((0, 0), |r| {
                    let listed = r.rules.len() as u64;
                    (listed, listed + r.summarised + r.left_out)
                });
            if status.available && state.end.is_none() {
                warnings.push(format!(
                    "{node}: the probe's end snapshot of its NAT rules did not come (stopped \
                     before it wrote it?): rule counters over the capture are not known"
                ));
            }
            if state.dropped > 0 {
                warnings.push(format!(
                    "{node}: {} conntrack entries over the bound of {MAX_CONNTRACK} were not kept",
                    state.dropped
                ));
            }
            out.push(NodeEvidence {
                node: node.clone(),
                available: status.available,
                reason: status.reason.clone(),
                rules_listed: listed,
                rules_total: total,
                counted: state.end.is_some(),
                conntrack_found: status.conntrack_found,
                conntrack_lookups: status.conntrack_lookups,
            });
        }
        (out, warnings)
    }
}

/// Identifies a rule across the two snapshots: its place, and its nftables handle (or, for
/// iptables-legacy, which has none, its text).
type RuleKey<'a> = (
    Backend,
    &'a str,
    &'a str,
    &'a str,
    u32,
    Option<u64>,
    &'a str,
);

fn key(rule: &RuleEntry) -> RuleKey<'_> {
    let text = if rule.handle.is_some() {
        ""
    } else {
        &rule.text
    };
    (
        rule.backend,
        &rule.family,
        &rule.table,
        &rule.chain,
        if rule.handle.is_some() {
            0
        } else {
            rule.position
        },
        rule.handle,
        text,
    )
}

/// The NAT rules of the end snapshot, then those of the start it does not list.
fn merged(start: Option<&Ruleset>, end: Option<&Ruleset>) -> Vec<RuleEntry> {
    let nat = |r: &&RuleEntry| r.nat.is_some();
    let mut out: Vec<RuleEntry> = end
        .iter()
        .flat_map(|r| &r.rules)
        .filter(nat)
        .cloned()
        .collect();
    let listed: HashSet<RuleKey<'_>> = end.iter().flat_map(|r| &r.rules).map(key).collect();
    let only_start: Vec<RuleEntry> = start
        .iter()
        .flat_map(|r| &r.rules)
        .filter(nat)
        .filter(|r| !listed.contains(&key(r)))
        .cloned()
        .collect();
    out.extend(only_start);
    out
}

/// The nodes a rewrite between hop `hop - 1` and hop `hop` may have been made on: the node of
/// both when they are one; otherwise the node the SYN left, then the one it reached.
pub fn rewrite_nodes(flow: &Flow, hop: usize) -> Vec<&str> {
    let before = hop.checked_sub(1).and_then(|h| flow.hops.get(h));
    let after = flow.hops.get(hop);
    match (before, after) {
        (Some(a), Some(b)) if a.node == b.node => vec![a.node.as_str()],
        (Some(a), Some(b)) => vec![a.node.as_str(), b.node.as_str()],
        (Some(a), None) => vec![a.node.as_str()],
        (None, Some(b)) => vec![b.node.as_str()],
        (None, None) => vec![],
    }
}
