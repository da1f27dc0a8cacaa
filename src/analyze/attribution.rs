//! Which rule made a rewrite, measured on the node: of the NAT rules its probe read, those whose
//! target fits the new address; of those, the one whose counter moved during the capture (or,
//! among rules that keep no counter, the only one that fits). The connection's conntrack entry
//! shows the rewrite itself, and for an SNAT the route toward the destination shows why
//! MASQUERADE took the address it did. Pure: the evidence is given.

use super::evidence::{rewrite_nodes, Evidence, NodeState};
use super::model::{
    Attribution, AttributionBasis, AttributionStatus, Flow, Translation, TranslationKind,
};
use realip_probe::wire::{Conntrack, NatKind, NatTarget, RuleEntry};
use std::net::{IpAddr, SocketAddr};

/// Sets the attribution of every rewrite of `flow`, when any probe read evidence.
pub fn attribute_flow(evidence: &Evidence, flow: &mut Flow) {
    if !evidence.any() {
        return;
    }
    let attributions: Vec<Attribution> = flow
        .translations
        .iter()
        .map(|t| attribute(evidence, flow, t))
        .collect();
    for (t, a) in flow.translations.iter_mut().zip(attributions) {
        t.attribution = Some(a);
    }
}

/// The attribution of one rewrite of `flow`.
pub fn attribute(evidence: &Evidence, flow: &Flow, t: &Translation) -> Attribution {
    let nodes = rewrite_nodes(flow, t.hop);
    let read: Vec<(&str, &NodeState)> = nodes
        .iter()
        .filter_map(|n| evidence.node(n).map(|s| (*n, s)))
        .filter(|(_, s)| s.available())
        .collect();
    if read.is_empty() {
        return no_evidence(evidence, &nodes);
    }
    // Between two nodes, the one whose conntrack shows the rewrite made it; when neither's
    // does, something between them did, whatever rules either node has.
    let shown = read
        .iter()
        .find_map(|(n, s)| conntrack_of(s, flow.isn, t).map(|e| (*n, *s, Some(e))));
    let (node, state, entry) = match (shown, nodes.as_slice()) {
        (Some(shown), _) => shown,
        (None, [a, b]) => return unseen_between(a, b),
        (None, _) => (read[0].0, read[0].1, None),
    };
    let mut attribution = Attribution {
        status: AttributionStatus::NoRule,
        reason: String::new(),
        rule: None,
        owner: None,
        basis: None,
        candidates: Vec::new(),
        conntrack: entry.cloned(),
        route: None,
    };
    if t.kind == TranslationKind::Snat {
        attribution.route = entry
            .and_then(|e| state.routes.get(&e.reply.src))
            .or_else(|| {
                flow.hops
                    .get(t.hop)
                    .and_then(|hop| state.routes.get(&hop.dst))
            })
            .cloned();
    }
    let fits: Vec<&RuleEntry> = state.nat_rules.iter().filter(|r| fits(r, t)).collect();
    // A rule that counts and did not move during the capture made no rewrite in it.
    let possible: Vec<&RuleEntry> = fits
        .iter()
        .copied()
        .filter(|r| !counted_still(r, state.end.is_some()))
        .collect();
    let moved: Vec<&RuleEntry> = possible.iter().copied().filter(|r| moved(r)).collect();
    let uncounted = possible.len() - moved.len();
    let what = match t.kind {
        TranslationKind::Snat => "source",
        TranslationKind::Dnat => "destination",
    };
    match (moved.as_slice(), uncounted) {
        ([rule], 0) => {
            attribution.status = AttributionStatus::Rule;
            attribution.basis = Some(AttributionBasis::Counter);
            attribution.reason = format!(
                "of the {} rules on {node} whose target fits, only this one's counter moved \
                 during the capture (+{})",
                fits.len(),
                packets(rule.delta_packets.unwrap_or(0))
            );
            attribution.owner = Some(rule.owner);
            attribution.rule = Some((*rule).clone());
        }
        ([], 1) => {
            let rule = possible[0];
            attribution.status = AttributionStatus::Rule;
            attribution.basis = Some(AttributionBasis::OnlyFit);
            let why = if rule.packets.is_none() {
                "it keeps no counter"
            } else {
                "the end snapshot did not come, so how far its counter moved is not known"
            };
            attribution.reason = format!(
                "the only rule on {node} that rewrites the {what} to this address{}; {why}",
                if fits.len() > 1 {
                    " and did not stay still"
                } else {
                    ""
                }
            );
            attribution.owner = Some(rule.owner);
            attribution.rule = Some(rule.clone());
        }
        ([], 0) => {
            attribution.reason = none_fits(node, state, &fits, what);
        }
        _ => {
            attribution.status = AttributionStatus::Ambiguous;
            let mut how = Vec::new();
            if !moved.is_empty() {
                how.push(format!("{} moved during the capture", moved.len()));
            }
            if uncounted > 0 {
                how.push(format!(
                    "{uncounted} {} no counter",
                    if uncounted == 1 { "keeps" } else { "keep" }
                ));
            }
            attribution.reason = format!(
                "{} rules on {node} fit and may have made it ({}): the counters do not tell \
                 which took this connection",
                possible.len(),
                how.join(", ")
            );
            attribution.candidates = possible.into_iter().cloned().collect();
        }
    }
    attribution
}

fn no_evidence(evidence: &Evidence, nodes: &[&str]) -> Attribution {
    let reason = match nodes {
        [node] => match evidence.node(node).and_then(|s| s.status.as_ref()) {
            Some(status) => format!(
                "{node} gave no evidence: {}",
                status
                    .reason
                    .as_deref()
                    .unwrap_or("its probe could not read it")
            ),
            None => format!("{node}'s probe did not read evidence (it ran without --evidence)"),
        },
        [a, b] => format!(
            "made between {a} and {b}, where neither probe read evidence of it (a load \
             balancer or router between them?)"
        ),
        _ => "no probe read evidence where it was made".into(),
    };
    Attribution {
        status: AttributionStatus::NoEvidence,
        reason,
        rule: None,
        owner: None,
        basis: None,
        candidates: Vec::new(),
        conntrack: None,
        route: None,
    }
}

/// A rewrite between two nodes that neither node's conntrack shows.
fn unseen_between(a: &str, b: &str) -> Attribution {
    Attribution {
        status: AttributionStatus::NoEvidence,
        reason: format!(
            "made between {a} and {b}: neither node's conntrack shows it (a load balancer or \
             router between them, where no probe ran?)"
        ),
        rule: None,
        owner: None,
        basis: None,
        candidates: Vec::new(),
        conntrack: None,
        route: None,
    }
}

/// Why no rule is named when none fits.
fn none_fits(node: &str, state: &NodeState, fits: &[&RuleEntry], what: &str) -> String {
    let unlisted = state
        .end
        .as_ref()
        .or(state.start.as_ref())
        .map_or(0, |r| r.summarised + r.left_out);
    if !fits.is_empty() {
        return format!(
            "the {} rules on {node} that rewrite the {what} to this address did not move during \
             the capture",
            fits.len()
        );
    }
    let mut reason = format!("no rule read on {node} rewrites the {what} to this address");
    if state.end.is_none() {
        reason.push_str(
            " (the end snapshot did not come: the rules that moved, DNAT rules among them, are \
             listed only there)",
        );
    } else if unlisted > 0 {
        reason.push_str(&format!(" ({unlisted} rules were only counted)"));
    }
    reason
}

fn packets(n: u64) -> String {
    if n == 1 {
        "1 packet".into()
    } else {
        format!("{n} packets")
    }
}

/// A rule with a counter that did not move over the capture (the end snapshot says so).
fn counted_still(rule: &RuleEntry, have_end: bool) -> bool {
    have_end && rule.delta_packets == Some(0) && !rule.new
}

fn moved(rule: &RuleEntry) -> bool {
    rule.delta_packets.is_some_and(|d| d > 0)
}

/// Whether `rule` could have made `t`: its NAT kind rewrites that side, its family is the
/// address's, and its target (when it names one) holds the new address and port.
fn fits(rule: &RuleEntry, t: &Translation) -> bool {
    let Some(nat) = &rule.nat else {
        return false;
    };
    let family = match t.to.ip() {
        IpAddr::V4(_) => ["ip", "inet"],
        IpAddr::V6(_) => ["ip6", "inet"],
    };
    if !family.contains(&rule.family.as_str()) {
        return false;
    }
    match (t.kind, nat.kind) {
        (TranslationKind::Snat, NatKind::Masquerade) => port_fits(nat, t.to),
        (TranslationKind::Snat, NatKind::Snat) | (TranslationKind::Dnat, NatKind::Dnat) => {
            addr_fits(nat, t.to.ip()) && port_fits(nat, t.to)
        }
        // REDIRECT rewrites the destination to the node's own address.
        (TranslationKind::Dnat, NatKind::Redirect) => port_fits(nat, t.to),
        _ => false,
    }
}

fn addr_fits(nat: &NatTarget, ip: IpAddr) -> bool {
    match (nat.addr_min, nat.addr_max) {
        (Some(lo), Some(hi)) => match (lo, hi, ip) {
            (IpAddr::V4(lo), IpAddr::V4(hi), IpAddr::V4(a)) => (lo..=hi).contains(&a),
            (IpAddr::V6(lo), IpAddr::V6(hi), IpAddr::V6(a)) => (lo..=hi).contains(&a),
            _ => false,
        },
        (Some(one), None) | (None, Some(one)) => one == ip,
        // A target given by a map or a register the reader could not resolve.
        (None, None) => true,
    }
}

fn port_fits(nat: &NatTarget, to: SocketAddr) -> bool {
    match (nat.port_min, nat.port_max) {
        (Some(lo), Some(hi)) => (lo..=hi).contains(&to.port()),
        (Some(one), None) | (None, Some(one)) => one == to.port(),
        (None, None) => true,
    }
}

/// The conntrack entry of connection `isn` on the node whose tuples show `t`: the original
/// direction before it, the reply direction (reversed) after it.
fn conntrack_of<'a>(state: &'a NodeState, isn: u32, t: &Translation) -> Option<&'a Conntrack> {
    state.conntrack.get(&isn)?.iter().find(|e| match t.kind {
        TranslationKind::Snat => {
            SocketAddr::new(e.orig.src, e.orig.sport) == t.from
                && SocketAddr::new(e.reply.dst, e.reply.dport) == t.to
        }
        TranslationKind::Dnat => {
            SocketAddr::new(e.orig.dst, e.orig.dport) == t.from
                && SocketAddr::new(e.reply.src, e.reply.sport) == t.to
        }
    })
}
