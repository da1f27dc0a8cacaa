//! Attributions in words, shared by the text report, the diagram and trace's comparison with
//! explain: who owns a rule, where it sits, what its counter did, what conntrack and the route
//! say.

use crate::analyze::model::{Attribution, AttributionStatus, TranslationKind};
use realip_probe::wire::{Backend, Conntrack, CtTuple, NatKind, Owner, Route, RuleEntry};

/// The owner as its users name it.
pub fn owner_words(owner: Owner) -> &'static str {
    match owner {
        Owner::KubeProxy => "kube-proxy",
        Owner::Calico => "Calico",
        Owner::Cilium => "Cilium",
        Owner::Flannel => "flannel",
        Owner::IpMasqAgent => "ip-masq-agent",
        Owner::AwsVpcCni => "AWS VPC CNI",
        Owner::Docker => "Docker",
        Owner::User => "a user's own",
    }
}

/// Where a rule sits: `iptables-nft nat KUBE-POSTROUTING #3`, `nftables ip kube-proxy
/// masquerading #3 (handle 9)`.
pub fn rule_place(rule: &RuleEntry) -> String {
    let handle = rule
        .handle
        .filter(|_| rule.backend == Backend::Nftables)
        .map(|h| format!(" (handle {h})"))
        .unwrap_or_default();
    match rule.backend {
        Backend::Nftables => format!(
            "nftables {} {} {} #{}{handle}",
            rule.family, rule.table, rule.chain, rule.position
        ),
        Backend::IptablesNft | Backend::IptablesLegacy => {
            let tool = match (rule.backend, rule.family.as_str()) {
                (Backend::IptablesNft, "ip6") => "ip6tables-nft",
                (Backend::IptablesNft, _) => "iptables-nft",
                (_, "ip6") => "ip6tables-legacy",
                _ => "iptables-legacy",
            };
            format!("{tool} {} {} #{}", rule.table, rule.chain, rule.position)
        }
    }
}

/// What the rule's counter did over the capture.
pub fn counter_words(rule: &RuleEntry) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    match (rule.delta_packets, rule.packets) {
        (_, None) => "no counter".into(),
        (Some(d), _) if rule.new => format!("added during the capture, {d} packet{}", plural(d)),
        (Some(d), _) => format!("+{d} packet{} during the capture", plural(d)),
        (None, Some(p)) => format!("{p} packet{} at the start", plural(p)),
    }
}

/// The rewrite's cause in a few words: `kube-proxy (KUBE-POSTROUTING #3)`.
pub fn short(attribution: &Attribution) -> Option<String> {
    let rule = attribution.rule.as_ref()?;
    Some(format!(
        "{} ({} #{})",
        owner_words(rule.owner),
        rule.chain,
        rule.position
    ))
}

fn tuple(t: &CtTuple) -> String {
    format!(
        "{} → {}",
        crate::analyze::flow::endpoint(t.src, t.sport),
        crate::analyze::flow::endpoint(t.dst, t.dport)
    )
}

/// The conntrack entry in one sentence.
pub fn conntrack_words(entry: &Conntrack) -> String {
    let mut facts: Vec<String> = entry
        .status
        .iter()
        .filter(|s| matches!(s.as_str(), "src-nat" | "dst-nat"))
        .cloned()
        .collect();
    facts.extend(entry.tcp_state.clone());
    if entry.mark != 0 {
        facts.push(format!("mark {:#x}", entry.mark));
    }
    if entry.zone != 0 {
        facts.push(format!("zone {}", entry.zone));
    }
    format!(
        "{}, reply {} ({})",
        tuple(&entry.orig),
        tuple(&entry.reply),
        facts.join(", ")
    )
}

/// The route toward the connection's destination, and what MASQUERADE takes there.
pub fn route_words(route: &Route, masquerade: bool) -> String {
    let mut text = format!("to {}", route.dst);
    if let Some(gw) = route.gateway {
        text.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = &route.oif {
        text.push_str(&format!(" dev {oif}"));
    }
    if let Some(src) = route.prefsrc {
        text.push_str(&format!(" src {src}"));
    }
    match route.masquerade_source {
        Some(chosen) if masquerade => {
            let on = route.oif.as_deref().unwrap_or("that interface");
            text.push_str(&format!(": MASQUERADE takes {chosen}, the address of {on}"));
        }
        _ => {}
    }
    text
}

/// A rule in two lines: its owner, place and counter; then its text, indented (`  `).
fn rule_lines(out: &mut Vec<String>, lead: &str, rule: &RuleEntry) {
    out.push(format!(
        "{lead} ({}): {}, {}",
        owner_words(rule.owner),
        rule_place(rule),
        counter_words(rule)
    ));
    out.push(format!("  {}", rule.text));
}

/// The lines the text report prints under a rewrite, each to be wrapped with a hanging indent;
/// a rule's text starts with two spaces, to be indented under its rule.
pub fn lines(attribution: &Attribution, kind: TranslationKind) -> Vec<String> {
    let mut out = Vec::new();
    match attribution.status {
        AttributionStatus::Rule => {
            if let Some(rule) = &attribution.rule {
                rule_lines(&mut out, "rule", rule);
            }
        }
        AttributionStatus::Ambiguous => {
            out.push(format!("rule not settled: {}", attribution.reason));
            for rule in &attribution.candidates {
                rule_lines(&mut out, "could be", rule);
            }
        }
        AttributionStatus::NoRule | AttributionStatus::NoEvidence => {
            out.push(format!("rule: {}", attribution.reason));
        }
    }
    if let Some(entry) = &attribution.conntrack {
        out.push(format!("conntrack: {}", conntrack_words(entry)));
    }
    if kind == TranslationKind::Snat {
        if let Some(route) = &attribution.route {
            // The rule named, or every rule that could have been, is a MASQUERADE.
            let is_masquerade = |r: &RuleEntry| {
                r.nat
                    .as_ref()
                    .is_some_and(|n| n.kind == NatKind::Masquerade)
            };
            let masquerade = match &attribution.rule {
                Some(rule) => is_masquerade(rule),
                None => {
                    !attribution.candidates.is_empty()
                        && attribution.candidates.iter().all(is_masquerade)
                }
            };
            out.push(format!("route: {}", route_words(route, masquerade)));
        }
    }
    out
}
