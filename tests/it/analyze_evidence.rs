//! The rule behind each rewrite, from real `--evidence` captures of the lab
//! (`tests/fixtures/analyze/evidence`, written by `kubectl realip lab --scenario NAME --save`):
//! what the text, the JSON and the diagram say of it, and what is said when the evidence is
//! missing, cut short or does not settle it (those made from the real captures by taking away
//! what a probe without NET_ADMIN, or one stopped early, would not have written).

use kubectl_realip::analyze::model::{
    AttributionBasis, AttributionStatus, Report, TranslationKind,
};
use kubectl_realip::analyze::{analyze_events, render_json, render_mermaid, render_text, Analyzer};
use kubectl_realip::output::plain;
use realip_probe::wire::{decode_line, Event, Owner, Phase};
use std::path::Path;
use std::time::Duration;

fn events(fixture: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze/evidence")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| decode_line(l).unwrap())
        .collect()
}

/// Snapshots live with the fixtures they come from.
macro_rules! golden {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../fixtures/analyze/snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

/// Every rewrite of the report, with the owner and chain of the rule it names; and the text
/// fits 80 columns.
fn named(report: &Report) -> Vec<(String, TranslationKind, Owner, String)> {
    let text = plain(&render_text(report));
    assert!(
        text.lines().all(|l| l.chars().count() <= 80),
        "over 80 columns:\n{text}"
    );
    report
        .flows
        .iter()
        .flat_map(|f| &f.translations)
        .map(|t| {
            let a = t.attribution.as_ref().expect("an attribution");
            assert_eq!(a.status, AttributionStatus::Rule, "{t:#?}");
            let rule = a.rule.as_ref().expect("a rule");
            assert_eq!(a.owner, Some(rule.owner));
            let entry = a.conntrack.as_ref().expect("its conntrack entry");
            assert!(
                match t.kind {
                    TranslationKind::Snat => entry.src_nat,
                    TranslationKind::Dnat => entry.dst_nat,
                },
                "{entry:?}"
            );
            (t.node.clone(), t.kind, rule.owner, rule.chain.clone())
        })
        .collect()
}

#[test]
fn kube_proxy_iptables_names_the_listener_the_endpoint_chain_and_the_masquerade() {
    let report = analyze_events(events("cluster-cross-node.jsonl"));
    let named = named(&report);
    assert_eq!(named.len(), 3, "{named:?}");
    assert_eq!(
        named[0],
        (
            "clb".into(),
            TranslationKind::Dnat,
            Owner::User,
            "PREROUTING".into()
        )
    );
    assert!(named[1].3.starts_with("KUBE-SEP-"), "{named:?}");
    assert_eq!(
        named[2],
        (
            "node-a".into(),
            TranslationKind::Snat,
            Owner::KubeProxy,
            "KUBE-POSTROUTING".into()
        )
    );
    let snat = &report.flows[0].translations[2];
    let a = snat.attribution.as_ref().unwrap();
    assert_eq!(a.basis, Some(AttributionBasis::Counter));
    let route = a.route.as_ref().expect("the route");
    assert_eq!(route.masquerade_source, Some(snat.to.ip()));
    golden!(
        "evidence_cluster_cross_node_text",
        plain(&render_text(&report))
    );
    golden!("evidence_cluster_cross_node_json", render_json(&report));
    golden!(
        "evidence_cluster_cross_node_mermaid",
        render_mermaid(&report)
    );
}

#[test]
fn kube_proxy_nftables_rules_keep_no_counter_and_are_named_as_the_only_fit() {
    let report = analyze_events(events("cluster-cross-node-nft.jsonl"));
    let named = named(&report);
    let on_node: Vec<_> = named.iter().filter(|n| n.0 == "node-a").collect();
    assert_eq!(on_node.len(), 2, "{named:?}");
    assert!(on_node[0].3.starts_with("endpoint-"), "{named:?}");
    assert_eq!(on_node[1].3, "masquerading");
    for t in report.flows[0]
        .translations
        .iter()
        .filter(|t| t.node == "node-a")
    {
        let a = t.attribution.as_ref().unwrap();
        assert_eq!(a.basis, Some(AttributionBasis::OnlyFit), "{a:#?}");
        assert_eq!(a.rule.as_ref().unwrap().table, "kube-proxy");
    }
    golden!("evidence_nftables_text", plain(&render_text(&report)));
}

#[test]
fn calicos_masquerade_ahead_of_kube_proxys_is_told_by_its_counter() {
    let report = analyze_events(events("calico-nat-outgoing.jsonl"));
    let named = named(&report);
    assert!(
        named.contains(&(
            "node-b".into(),
            TranslationKind::Snat,
            Owner::Calico,
            "cali-nat-outgoing".into()
        )),
        "{named:?}"
    );
    golden!("evidence_calico_text", plain(&render_text(&report)));
    golden!("evidence_calico_mermaid", render_mermaid(&report));
}

#[test]
fn masquerade_on_a_second_nic_shows_the_route_that_chose_it() {
    let report = analyze_events(events("multi-nic.jsonl"));
    named(&report);
    let snat = report.flows[0]
        .translations
        .iter()
        .find(|t| t.kind == TranslationKind::Snat)
        .unwrap();
    let route = snat.attribution.as_ref().unwrap().route.as_ref().unwrap();
    assert_eq!(route.oif.as_deref(), Some("eth1"));
    assert_eq!(route.masquerade_source, Some(snat.to.ip()));
    let text = plain(&render_text(&report));
    assert!(
        text.contains("MASQUERADE takes 198.19.254.11, the address of eth1"),
        "{text}"
    );
}

/// What a probe without CAP_NET_ADMIN writes on `node`: the status saying so, and nothing else
/// of its evidence.
fn without_net_admin(events: Vec<Event>, node: &str) -> Vec<Event> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Evidence(mut s) if s.node == node => {
                s.available = false;
                s.reason = Some(
                    "CAP_NET_ADMIN is missing: reading netfilter rules and conntrack entries \
                     needs it (the capture itself goes on with CAP_NET_RAW)"
                        .into(),
                );
                s.sources.clear();
                s.conntrack_lookups = 0;
                s.conntrack_found = 0;
                Some(Event::Evidence(s))
            }
            Event::Ruleset(r) if r.node == node => None,
            Event::Conntrack(c) if c.node == node => None,
            Event::Route(r) if r.node == node => None,
            other => Some(other),
        })
        .collect()
}

#[test]
fn a_node_without_net_admin_says_no_evidence_and_why() {
    let report = analyze_events(without_net_admin(
        events("cluster-cross-node.jsonl"),
        "node-a",
    ));
    let on_a: Vec<_> = report.flows[0]
        .translations
        .iter()
        .filter(|t| t.node == "node-a")
        .collect();
    assert_eq!(on_a.len(), 2);
    for t in on_a {
        let a = t.attribution.as_ref().unwrap();
        assert_eq!(a.status, AttributionStatus::NoEvidence);
        assert!(
            a.reason.contains("CAP_NET_ADMIN is missing"),
            "{}",
            a.reason
        );
    }
    // The load balancer's probe read its evidence: its rewrite is still named.
    assert_eq!(
        report.flows[0].translations[0]
            .attribution
            .as_ref()
            .unwrap()
            .status,
        AttributionStatus::Rule
    );
    let node_a = report
        .summary
        .evidence
        .iter()
        .find(|n| n.node == "node-a")
        .unwrap();
    assert!(!node_a.available);
    golden!(
        "evidence_without_net_admin_text",
        plain(&render_text(&report))
    );
}

#[test]
fn without_any_evidence_nothing_changes() {
    let plain_events: Vec<Event> = events("cluster-cross-node.jsonl")
        .into_iter()
        .filter(|e| {
            !matches!(
                e,
                Event::Evidence(_) | Event::Ruleset(_) | Event::Conntrack(_) | Event::Route(_)
            )
        })
        .collect();
    let report = analyze_events(plain_events);
    assert!(report
        .flows
        .iter()
        .flat_map(|f| &f.translations)
        .all(|t| t.attribution.is_none()));
    assert!(report.summary.evidence.is_empty());
    let json = render_json(&report);
    assert!(!json.contains("attribution"), "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(value["summary"].get("evidence").is_none(), "{json}");
}

#[test]
fn two_masquerades_that_both_moved_are_not_settled() {
    // Another connection went through kube-proxy's masquerade on node-b during the capture.
    let evs: Vec<Event> = events("calico-nat-outgoing.jsonl")
        .into_iter()
        .map(|e| match e {
            Event::Ruleset(mut r) if r.node == "node-b" && r.phase == Phase::End => {
                for rule in &mut r.rules {
                    if rule.chain == "KUBE-POSTROUTING" && rule.nat.is_some() {
                        rule.delta_packets = Some(1);
                        rule.packets = rule.packets.map(|p| p + 1);
                    }
                }
                Event::Ruleset(r)
            }
            other => other,
        })
        .collect();
    let report = analyze_events(evs);
    let snat = report.flows[0]
        .translations
        .iter()
        .find(|t| t.kind == TranslationKind::Snat)
        .unwrap();
    let a = snat.attribution.as_ref().unwrap();
    assert_eq!(a.status, AttributionStatus::Ambiguous);
    let owners: Vec<Owner> = a.candidates.iter().map(|r| r.owner).collect();
    assert_eq!(owners, [Owner::KubeProxy, Owner::Calico]);
    assert!(a.rule.is_none() && a.owner.is_none());
    golden!("evidence_ambiguous_text", plain(&render_text(&report)));
}

#[test]
fn a_probe_stopped_before_its_end_snapshot_names_what_the_start_shows() {
    let evs: Vec<Event> = events("cluster-cross-node.jsonl")
        .into_iter()
        .filter(|e| {
            !matches!(e, Event::Ruleset(r) if r.node == "node-a" && r.phase == Phase::End)
                && !matches!(e, Event::Evidence(s) if s.node == "node-a" && s.last)
        })
        .collect();
    let report = analyze_events(evs);
    let on_a: Vec<_> = report.flows[0]
        .translations
        .iter()
        .filter(|t| t.node == "node-a")
        .collect();
    // The DNAT rule of the endpoint chain is listed only at the end.
    let dnat = on_a[0].attribution.as_ref().unwrap();
    assert_eq!(dnat.status, AttributionStatus::NoRule);
    assert!(
        dnat.reason.contains("end snapshot did not come"),
        "{}",
        dnat.reason
    );
    // The masquerade is listed from the start: the only one that fits, its counter unknown.
    let snat = on_a[1].attribution.as_ref().unwrap();
    assert_eq!(snat.status, AttributionStatus::Rule);
    assert_eq!(snat.basis, Some(AttributionBasis::OnlyFit));
    assert!(
        snat.reason.contains("end snapshot did not come"),
        "{}",
        snat.reason
    );
    assert!(
        report
            .summary
            .warnings
            .iter()
            .any(|w| w.starts_with("node-a: the probe's end snapshot")),
        "{:?}",
        report.summary.warnings
    );
}

/// A rewrite between two capture points that neither node's conntrack shows is not put on a
/// node's rules, however well one fits.
#[test]
fn a_rewrite_between_nodes_that_no_conntrack_shows_names_no_rule() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze/hand/unseen-rewrite.jsonl");
    let mut evs: Vec<Event> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| decode_line(l).unwrap())
        .collect();
    // Both machines read their evidence; node-a holds a masquerade that moved.
    let masquerade = events("cluster-cross-node.jsonl")
        .into_iter()
        .find_map(|e| match e {
            Event::Ruleset(mut r) if r.node == "node-a" && r.phase == Phase::End => {
                r.rules
                    .retain(|rule| rule.chain == "KUBE-POSTROUTING" && rule.nat.is_some());
                Some(r)
            }
            _ => None,
        })
        .unwrap();
    for node in ["client", "node-a"] {
        let mut ruleset = masquerade.clone();
        ruleset.node = node.into();
        evs.push(Event::Ruleset(ruleset));
        evs.extend(
            events("cluster-cross-node.jsonl")
                .into_iter()
                .filter_map(|e| match e {
                    Event::Evidence(mut s) if s.node == "node-a" => {
                        s.node = node.into();
                        Some(Event::Evidence(s))
                    }
                    _ => None,
                }),
        );
    }
    let report = analyze_events(evs);
    let between = report.flows[0]
        .translations
        .iter()
        .find(|t| t.node.starts_with("between "))
        .expect("a rewrite between client and node-a");
    let a = between.attribution.as_ref().unwrap();
    assert_eq!(a.status, AttributionStatus::NoEvidence, "{a:#?}");
    assert!(
        a.reason.contains("neither node's conntrack shows it"),
        "{}",
        a.reason
    );
}

/// `analyze` reads a capture as a stream: a connection rewritten on a node whose probe reads
/// evidence waits for that probe's end snapshot, and then names its rule by its counter.
#[test]
fn a_windowed_analysis_waits_for_the_end_snapshot() {
    let mut analyzer = Analyzer::windowed(Duration::from_secs(1));
    let evs = events("cluster-cross-node.jsonl");
    let end_of_node_a = evs
        .iter()
        .position(|e| matches!(e, Event::Ruleset(r) if r.node == "node-a" && r.phase == Phase::End))
        .unwrap();
    let mut flows = Vec::new();
    for (i, event) in evs.into_iter().enumerate() {
        analyzer.push(event);
        while let Some(flow) = analyzer.next_flow() {
            assert!(i >= end_of_node_a, "reported before node-a's end snapshot");
            flows.push(flow);
        }
    }
    analyzer.close();
    flows.extend(std::iter::from_fn(|| analyzer.next_flow()));
    let whole = analyze_events(events("cluster-cross-node.jsonl"));
    assert_eq!(flows, whole.flows);
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use realip_probe::wire::{
        Backend, Conntrack, CtTuple, NatKind, NatTarget, OwnerBasis, RuleEntry, Ruleset, Syntax,
    };
    use std::net::{IpAddr, Ipv4Addr};

    /// An address near the fixture's (node-a, the pod, the client) or anywhere.
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11))),
            Just(IpAddr::V4(Ipv4Addr::new(198, 18, 2, 10))),
            Just(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(o.into())),
        ]
    }

    fn rule() -> impl Strategy<Value = RuleEntry> {
        (
            prop_oneof![
                Just(NatKind::Snat),
                Just(NatKind::Dnat),
                Just(NatKind::Masquerade),
                Just(NatKind::Redirect)
            ],
            proptest::option::of(addr()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u64..3),
            any::<bool>(),
            prop_oneof![Just("ip"), Just("ip6"), Just("inet")],
            0u32..4,
        )
            .prop_map(
                |(kind, a, port, delta, counts, family, position)| RuleEntry {
                    backend: Backend::IptablesNft,
                    family: family.into(),
                    table: "nat".into(),
                    chain: format!("CHAIN-{position}"),
                    position,
                    handle: Some(u64::from(position)),
                    syntax: Syntax::Iptables,
                    text: "-A CHAIN".into(),
                    owner: Owner::User,
                    owner_from: OwnerBasis::None,
                    packets: counts.then_some(5),
                    bytes: counts.then_some(300),
                    delta_packets: delta.filter(|_| counts),
                    delta_bytes: delta.filter(|_| counts).map(|d| d * 60),
                    new: false,
                    nat: Some(NatTarget {
                        kind,
                        addr_min: a,
                        addr_max: a,
                        port_min: port,
                        port_max: port,
                        flags: vec![],
                    }),
                    jump: None,
                    goto: false,
                    why: vec![],
                },
            )
    }

    fn tuple() -> impl Strategy<Value = CtTuple> {
        (addr(), any::<u16>(), addr(), any::<u16>()).prop_map(|(src, sport, dst, dport)| CtTuple {
            src,
            sport,
            dst,
            dport,
            proto: 6,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever rules and conntrack entries node-a's probe reports, every rewrite gets an
        /// attribution that holds together, and nothing panics.
        #[test]
        fn attributions_hold_together_on_any_evidence(
            start in proptest::collection::vec(rule(), 0..6),
            end in proptest::option::of(proptest::collection::vec(rule(), 0..8)),
            entries in proptest::collection::vec((tuple(), tuple(), any::<bool>(), any::<bool>()), 0..3),
        ) {
            let mut evs: Vec<Event> = events("cluster-cross-node.jsonl")
                .into_iter()
                .filter(|e| !matches!(e, Event::Ruleset(r) if r.node == "node-a"))
                .filter(|e| !matches!(e, Event::Conntrack(c) if c.node == "node-a"))
                .collect();
            let isn = evs.iter().find_map(|e| match e {
                Event::Syn(s) => Some(s.isn),
                _ => None,
            }).unwrap();
            let ruleset = |phase, rules| Event::Ruleset(Ruleset {
                ts_ns: 1,
                node: "node-a".into(),
                phase,
                tables: vec![],
                rules,
                summarised: 0,
                left_out: 0,
                errors: vec![],
            });
            evs.push(ruleset(Phase::Start, start));
            if let Some(end) = end {
                evs.push(ruleset(Phase::End, end));
            }
            for (orig, reply, src_nat, dst_nat) in entries {
                evs.push(Event::Conntrack(Conntrack {
                    ts_ns: 1,
                    node: "node-a".into(),
                    isn,
                    iface: "eth0".into(),
                    dir: realip_probe::wire::Direction::In,
                    orig,
                    reply,
                    status: vec![],
                    status_bits: 0,
                    mark: 0,
                    zone: 0,
                    src_nat,
                    dst_nat,
                    id: None,
                    tcp_state: None,
                }));
            }
            let report = analyze_events(evs);
            for t in report.flows.iter().flat_map(|f| &f.translations) {
                let a = t.attribution.as_ref().expect("an attribution");
                match a.status {
                    AttributionStatus::Rule => {
                        let rule = a.rule.as_ref().expect("the rule");
                        prop_assert_eq!(a.owner, Some(rule.owner));
                        let kind = rule.nat.as_ref().unwrap().kind;
                        let fits_kind = match t.kind {
                            TranslationKind::Snat => {
                                matches!(kind, NatKind::Snat | NatKind::Masquerade)
                            }
                            TranslationKind::Dnat => {
                                matches!(kind, NatKind::Dnat | NatKind::Redirect)
                            }
                        };
                        prop_assert!(fits_kind, "{:?} made by {:?}", t.kind, kind);
                        if a.basis == Some(AttributionBasis::Counter) {
                            prop_assert!(rule.delta_packets.unwrap_or(0) > 0);
                        }
                    }
                    AttributionStatus::Ambiguous => {
                        prop_assert!(a.candidates.len() >= 2 && a.rule.is_none());
                    }
                    AttributionStatus::NoRule | AttributionStatus::NoEvidence => {
                        prop_assert!(a.rule.is_none());
                    }
                }
                if let Some(entry) = &a.conntrack {
                    // Only an entry whose tuples show this very rewrite is given.
                    let (before, after) = match t.kind {
                        TranslationKind::Snat => (
                            std::net::SocketAddr::new(entry.orig.src, entry.orig.sport),
                            std::net::SocketAddr::new(entry.reply.dst, entry.reply.dport),
                        ),
                        TranslationKind::Dnat => (
                            std::net::SocketAddr::new(entry.orig.dst, entry.orig.dport),
                            std::net::SocketAddr::new(entry.reply.src, entry.reply.sport),
                        ),
                    };
                    prop_assert_eq!((before, after), (t.from, t.to));
                }
            }
            render_text(&report);
            render_json(&report);
            render_mermaid(&report);
        }
    }
}
