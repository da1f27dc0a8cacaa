//! Ground truth against measurement, for one connection: what the pod's own accept() and the
//! echo's headers say, what the analysis of the probes' sightings says, and what the scenario
//! claims. `matches` holds only when all three agree.

use super::installed::{self, Installed};
use super::net::GetOutcome;
use super::partial::{PartialCheck, Truth, Variant};
use super::scenario::{Connection, Expect, Scenario};
use super::topology::{ECHO_PORT, SECOND_NIC};
use super::view::owner_of;
use crate::analyze::model::{
    AttributionStatus, EndsAt, Flow, LossKind, Report, Translation, TranslationKind, Verdict,
};
use crate::analyze::render::attribution::{owner_words, rule_place, short};
use realip_probe::wire::NatKind;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// The echo's answer (`realip-probe echo`), the fields the lab reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EchoAnswer {
    pub remote_addr: String,
    pub remote_port: u16,
    #[serde(default)]
    pub x_forwarded_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub from: String,
    pub to: String,
    pub via: String,
    /// The scenario's claim, in words.
    pub expected: String,
    /// Ground truth: the address the pod's accept() returned (None: no answer).
    pub pod_saw: Option<IpAddr>,
    /// Ground truth: the X-Forwarded-For the pod received.
    pub pod_saw_x_forwarded_for: Option<String>,
    /// Measured by the probes: the source at the flow's last hop.
    pub measured_pod_sees: Option<IpAddr>,
    /// Measured by the probes: the client address read from the first data segment.
    pub measured_l7_client_ip: Option<String>,
    /// Measured for an unanswered connection: where its SYN was last seen.
    pub last_seen: Option<String>,
    /// Every rewrite of the source on the way, in path order.
    pub rewritten_at: Vec<String>,
    pub matches: bool,
    /// Why it does not match.
    pub problems: Vec<String>,
    /// The ISN of the flow that reached the pod (or was dropped).
    pub isn: Option<u32>,
    /// The analysis's verdict on the client connection (its last leg).
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// The same connection judged on partial captures of the same run.
    #[serde(default)]
    pub partial: Vec<PartialCheck>,
    /// Each rewrite on the way: the rule the analysis names behind it, against the rule the
    /// lab installed for it.
    #[serde(default)]
    pub rules: Vec<RuleCheck>,
}

/// One rewrite of a connection: the rule the lab installed that made it, and what the analysis
/// names from the node's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCheck {
    pub node: String,
    pub kind: TranslationKind,
    /// The rule the lab's model says made it: its owner and chain.
    pub expected: String,
    /// The rule the analysis names: owner, place and text.
    pub named: Option<String>,
    /// The connection's conntrack entry on that node shows the rewrite.
    pub conntrack: bool,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// The leftmost address of an X-Forwarded-For value (the original client).
fn leftmost(xff: &str) -> Option<IpAddr> {
    xff.split(',').next()?.trim().parse().ok()
}

/// Where the analysis last saw a flow's SYN: `node-b eth0 (in)`.
fn last_seen_text(flow: &Flow) -> Option<String> {
    let at = flow.last_seen.as_ref()?;
    let dir = match at.dir {
        realip_probe::wire::Direction::In => "in",
        realip_probe::wire::Direction::Out => "out",
    };
    Some(format!("{} {} ({dir})", at.node, at.iface))
}

/// The flow that carried the pod's accepted connection: it reached a pod, at the pod's echo
/// port with the source port the pod saw.
fn answered_flow(report: &Report, pod_ip: IpAddr, remote_port: u16) -> Option<(usize, &Flow)> {
    report.flows.iter().enumerate().find(|(_, flow)| {
        flow.reached_pod
            && flow.hops.last().is_some_and(|hop| {
                hop.dst == pod_ip && hop.dport == ECHO_PORT && hop.sport == remote_port
            })
    })
}

/// The flow of an unanswered connection: it entered where the client connected, from the client.
fn dropped_flow<'a>(report: &'a Report, conn: &Connection) -> Option<(usize, &'a Flow)> {
    let from = IpAddr::V4(conn.from.ip());
    report
        .flows
        .iter()
        .enumerate()
        .find(|(_, flow)| flow.entry == SocketAddr::V4(conn.to) && flow.client == Some(from))
}

/// Indices of the legs of the client connection that the flow at `index` belongs to, in order.
fn legs(report: &Report, index: usize) -> Vec<usize> {
    let number = report.flows[index].connection;
    if number == 0 {
        return vec![index];
    }
    (0..report.flows.len())
        .filter(|&i| report.flows[i].connection == number)
        .collect()
}

/// Every place the source was rewritten on the way to the flow at `index`, in path order, in
/// words: through the proxies whose legs the analysis joined to it.
pub fn rewrites(report: &Report, index: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in legs(report, index) {
        let flow = &report.flows[i];
        let Some(client) = flow.client else { continue };
        let before = flow
            .lost
            .as_ref()
            .is_some_and(|l| l.by == LossKind::BeforeCapture && l.leg == flow.leg);
        if flow.leg <= 1 && before {
            out.push(format!(
                "before the first probed hop (source already {client})"
            ));
        } else if flow.leg > 1 {
            let owner = owner_of(client).unwrap_or_else(|| client.to_string());
            out.push(format!("{owner}: L7 proxy, new connection from {client}"));
        }
        for translation in &flow.translations {
            if translation.kind == TranslationKind::Snat {
                let by = translation
                    .attribution
                    .as_ref()
                    .and_then(short)
                    .map(|by| format!(" by {by}"))
                    .unwrap_or_default();
                out.push(format!(
                    "{}: SNAT {} → {} ({}){by}",
                    translation.node,
                    translation.from.ip(),
                    translation.to.ip(),
                    translation.to_owner
                ));
            }
        }
    }
    out
}

/// What the pod at the end of each leg saw: the echo's accept() for the last leg, the proxy's
/// peer (the X-Forwarded-For entry it added) for the leg before it.
fn truth(report: &Report, index: usize, origin: IpAddr, answer: &EchoAnswer) -> Truth {
    let legs = legs(report, index);
    let mut truth = Truth {
        origin,
        legs: Vec::new(),
    };
    let saw = answer.remote_addr.parse().ok();
    if let Some((&last, rest)) = legs.split_last() {
        truth.legs.push((report.flows[last].isn, saw));
        if let (Some(&before), Some(peer)) = (
            rest.last(),
            answer.x_forwarded_for.as_deref().and_then(rightmost),
        ) {
            truth.legs.insert(0, (report.flows[before].isn, Some(peer)));
        }
    }
    truth
}

/// The right-most address of an X-Forwarded-For value: the peer of the proxy that sent it.
fn rightmost(xff: &str) -> Option<IpAddr> {
    xff.rsplit(',').next()?.trim().parse().ok()
}

/// What a report was made from.
#[derive(Debug, Clone, Copy)]
pub enum Evidence<'a> {
    /// Every machine on the path probed (the lab): the verdict must be settled, and right.
    /// `partials` are partial captures of the same run, judged as [`Evidence::Partial`].
    Complete(&'a [(Variant, Report)]),
    /// Some machines not probed (`trace` probes the Service's nodes): the verdict may stay
    /// open, never be wrong.
    Partial,
}

/// Whether the analysis's verdict on the client connection agrees with what the pod saw.
fn verdict_problems(
    flow: &Flow,
    origin: IpAddr,
    saw: Option<IpAddr>,
    xff: Option<IpAddr>,
    complete: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let kept = saw == Some(origin);
    match flow.client_ip_preserved {
        Some(claim) if claim != kept => problems.push(format!(
            "the analysis says the client was {}, the pod's accept() says {}",
            if claim { "kept" } else { "lost" },
            show(saw)
        )),
        None if complete => problems.push(format!(
            "the full capture left the verdict unsettled: {}",
            flow.reason
        )),
        _ => {}
    }
    let header_kept = xff == Some(origin);
    if let Some(claim) = flow.l7_client_preserved {
        if claim != header_kept {
            problems.push(format!(
                "the analysis says the forwarding header {} the client; the pod got {}",
                if claim { "names" } else { "does not name" },
                show(xff)
            ));
        }
    }
    problems
}

/// Judges one connection on `report`, and on each partial capture of a complete one.
pub fn check(
    conn: &Connection,
    outcome: &GetOutcome,
    report: &Report,
    evidence: Evidence<'_>,
) -> Check {
    let (partials, complete) = match evidence {
        Evidence::Complete(partials) => (partials, true),
        Evidence::Partial => (&[][..], false),
    };
    let mut check = Check {
        from: conn.from.to_string(),
        to: conn.to.to_string(),
        via: conn.via.to_string(),
        expected: expected_text(&conn.expect),
        pod_saw: None,
        pod_saw_x_forwarded_for: None,
        measured_pod_sees: None,
        measured_l7_client_ip: None,
        last_seen: None,
        rewritten_at: Vec::new(),
        matches: false,
        problems: Vec::new(),
        isn: None,
        verdict: None,
        partial: Vec::new(),
        rules: Vec::new(),
    };
    let origin = IpAddr::V4(conn.from.ip());
    match conn.expect {
        Expect::Answered { by, l4, xff } => {
            let answer = outcome
                .reply
                .clone()
                .and_then(|reply| serde_json::from_value::<EchoAnswer>(reply).ok());
            let Some(answer) = answer else {
                check.problems.push(match &outcome.error {
                    Some(error) => format!("no answer from the echo: {error}"),
                    None => "the reply was not the echo's JSON".into(),
                });
                return check;
            };
            check.pod_saw = answer.remote_addr.parse().ok();
            check.pod_saw_x_forwarded_for = answer.x_forwarded_for.clone();
            let flow = answered_flow(report, IpAddr::V4(by.ip()), answer.remote_port);
            if let Some((index, flow)) = flow {
                check.isn = Some(flow.isn);
                check.verdict = Some(flow.verdict);
                check.measured_pod_sees = flow.pod_sees;
                check.measured_l7_client_ip = flow.l7_client_ip.as_ref().map(|l7| l7.value.clone());
                check.rewritten_at = rewrites(report, index);
                let xff = answer.x_forwarded_for.as_deref().and_then(leftmost);
                check.problems.extend(verdict_problems(
                    flow,
                    origin,
                    answer.remote_addr.parse().ok(),
                    xff,
                    complete,
                ));
                for (variant, partial) in partials {
                    check.partial.push(super::partial::check(
                        *variant,
                        partial,
                        &truth(report, index, origin, &answer),
                    ));
                }
            } else {
                check.problems.push(format!(
                    "the probes saw no SYN reaching pod {by} from port {}",
                    answer.remote_port
                ));
            }
            if check.pod_saw != Some(IpAddr::V4(l4.ip())) {
                check.problems.push(format!(
                    "the pod saw {}, the scenario expects {l4}",
                    answer.remote_addr
                ));
            }
            if check.measured_pod_sees.is_some() && check.measured_pod_sees != check.pod_saw {
                check.problems.push(format!(
                    "measured {}, the pod's accept() says {}",
                    show(check.measured_pod_sees),
                    answer.remote_addr
                ));
            }
            let echo_client = answer.x_forwarded_for.as_deref().and_then(leftmost);
            let measured_client = check.measured_l7_client_ip.as_deref().and_then(leftmost);
            let expected_client = xff.map(|who| IpAddr::V4(who.ip()));
            if echo_client != expected_client {
                check.problems.push(format!(
                    "X-Forwarded-For at the pod is {}, the scenario expects {}",
                    answer.x_forwarded_for.as_deref().unwrap_or("absent"),
                    xff.map_or_else(|| "none".to_string(), |who| who.to_string())
                ));
            }
            if measured_client != echo_client {
                check.problems.push(format!(
                    "the probes read {} as the L7 client, the pod got X-Forwarded-For {}",
                    check.measured_l7_client_ip.as_deref().unwrap_or("nothing"),
                    answer.x_forwarded_for.as_deref().unwrap_or("absent"),
                ));
            }
        }
        Expect::Dropped { at } => {
            if outcome.reply.is_some() {
                check.problems.push("the connection was answered".into());
            } else if !outcome.timed_out {
                check.problems.push(format!(
                    "the connection was refused or reset, not dropped: {}",
                    outcome.error.as_deref().unwrap_or("no error")
                ));
            }
            match dropped_flow(report, conn) {
                Some((index, flow)) => {
                    check.isn = Some(flow.isn);
                    check.verdict = Some(flow.verdict);
                    check.last_seen = last_seen_text(flow);
                    check.rewritten_at = rewrites(report, index);
                    let truth = Truth {
                        origin,
                        legs: vec![(flow.isn, None)],
                    };
                    for (variant, partial) in partials {
                        check
                            .partial
                            .push(super::partial::check(*variant, partial, &truth));
                    }
                    let last_node = flow.last_seen.as_ref().map(|at| at.node.as_str());
                    if last_node != Some(at.name()) {
                        check.problems.push(format!(
                            "its SYN was last seen on {}, the scenario expects {at}",
                            last_node.unwrap_or("no node")
                        ));
                    }
                    if flow.reached_pod {
                        check.problems.push("its SYN reached a pod".into());
                    }
                    if flow.ends_at == EndsAt::Host {
                        check
                            .problems
                            .push("its SYN was taken as accepted by a local socket".into());
                    }
                }
                None => check.problems.push(format!(
                    "the probes saw no SYN to {} from {}",
                    conn.to, conn.from
                )),
            }
        }
    }
    for partial in &check.partial {
        if let Some(problem) = &partial.problem {
            check
                .problems
                .push(format!("{}: {problem}", partial.variant.words()));
        }
    }
    check.matches = check.problems.is_empty();
    check
}

/// Checks that every rewrite of the connection `check` judged names, from the nodes' evidence,
/// the very rule the lab installed for it, printed as the kernel's own tools print it, with the
/// conntrack entry that shows the rewrite and, for a MASQUERADE, the route that chose its
/// address.
pub fn check_rules(check: &mut Check, scenario: &Scenario, report: &Report, installed: &Installed) {
    let Some(index) = check
        .isn
        .and_then(|isn| report.flows.iter().position(|f| f.isn == isn))
    else {
        return;
    };
    for i in legs(report, index) {
        let flow = &report.flows[i];
        for t in &flow.translations {
            let rule = rule_check(scenario, t, installed);
            let kind = kind_word(t.kind);
            for problem in &rule.problems {
                check
                    .problems
                    .push(format!("{} {kind}: {problem}", rule.node));
            }
            check.rules.push(rule);
        }
    }
    check.matches = check.problems.is_empty();
}

fn kind_word(kind: TranslationKind) -> &'static str {
    match kind {
        TranslationKind::Snat => "SNAT",
        TranslationKind::Dnat => "DNAT",
    }
}

fn rule_check(scenario: &Scenario, t: &Translation, installed: &Installed) -> RuleCheck {
    let expected = installed::expected(scenario, installed, &t.node, t);
    let mut rule = RuleCheck {
        node: t.node.clone(),
        kind: t.kind,
        expected: expected
            .as_ref()
            .map_or_else(|| "no rule of the lab's".into(), ToString::to_string),
        named: None,
        conntrack: false,
        ok: false,
        problems: Vec::new(),
    };
    let Some(expected) = expected else {
        rule.problems.push(format!(
            "the lab installed no rule that makes a rewrite on {}",
            t.node
        ));
        return rule;
    };
    let Some(a) = &t.attribution else {
        rule.problems
            .push("no rule named: the probes read no evidence".into());
        return rule;
    };
    rule.conntrack = a.conntrack.as_ref().is_some_and(|e| match t.kind {
        TranslationKind::Snat => e.src_nat,
        TranslationKind::Dnat => e.dst_nat,
    });
    if !rule.conntrack {
        rule.problems
            .push("no conntrack entry shows the rewrite".into());
    }
    let named = a
        .rule
        .as_ref()
        .filter(|_| a.status == AttributionStatus::Rule);
    let Some(named) = named else {
        rule.problems.push(format!("no rule named: {}", a.reason));
        return rule;
    };
    rule.named = Some(format!(
        "{}: {}: {}",
        owner_words(named.owner),
        rule_place(named),
        named.text
    ));
    if named.owner != expected.owner || named.chain != expected.chain {
        rule.problems.push(format!(
            "names {} ({}), the lab installed it as {expected}",
            short(a).unwrap_or_default(),
            rule_place(named)
        ));
    }
    if let Err(differs) = installed.holds(&t.node, named) {
        rule.problems.push(differs);
    }
    let masquerade = named
        .nat
        .as_ref()
        .is_some_and(|n| n.kind == NatKind::Masquerade);
    if t.kind == TranslationKind::Snat && masquerade {
        match &a.route {
            Some(route) if route.masquerade_source == Some(t.to.ip()) => {
                let second = scenario
                    .dataplane
                    .second_nic
                    .is_some_and(|n| n.name() == t.node);
                if second && route.oif.as_deref() != Some(SECOND_NIC) {
                    rule.problems.push(format!(
                        "the route leaves by {}, the lab routes through {SECOND_NIC}",
                        route.oif.as_deref().unwrap_or("no interface")
                    ));
                }
            }
            Some(route) => rule.problems.push(format!(
                "the route says MASQUERADE takes {}, the rewrite shows {}",
                route
                    .masquerade_source
                    .map_or_else(|| "no address".into(), |ip| ip.to_string()),
                t.to.ip()
            )),
            None => rule
                .problems
                .push("no route shows why MASQUERADE took its address".into()),
        }
    }
    rule.ok = rule.problems.is_empty();
    rule
}

fn show(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "nothing".into(), |ip| ip.to_string())
}

pub fn expected_text(expect: &Expect) -> String {
    match expect {
        Expect::Answered { by, l4, xff: None } => format!("pod {by} sees {l4}"),
        Expect::Answered {
            by,
            l4,
            xff: Some(xff),
        } => format!("pod {by} sees {l4}, X-Forwarded-For {xff}"),
        Expect::Dropped { at } => format!("dropped at {at}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::model::{
        ClientKind, Hop, L7ClientIp, LastSeen, Loss, Summary, Translation,
    };
    use crate::lab::scenario::{self, Who};
    use crate::lab::topology::{Node, CLB_VPC_IP, CLIENT_IP};
    use realip_probe::wire::Direction;

    fn hop(node: &str, iface: &str, dir: Direction, src: &str, dst: &str) -> Hop {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        Hop {
            node: node.into(),
            iface: iface.into(),
            dir,
            src: src.ip(),
            sport: src.port(),
            dst: dst.ip(),
            dport: dst.port(),
            ts_ns: 0,
            dir_inferred: false,
            ttl: 64,
        }
    }

    /// A flow as the analysis writes it for one leg: kept when the source never changes, else
    /// lost at the SNAT given (at hop 1).
    fn flow(
        isn: u32,
        hops: Vec<Hop>,
        snat: Option<(&str, &str, &str, &str)>,
        l7: Option<&str>,
    ) -> Flow {
        let first = hops[0].clone();
        let last = hops[hops.len() - 1].clone();
        let translations: Vec<Translation> = snat
            .map(|(node, from, to, owner)| Translation {
                kind: TranslationKind::Snat,
                node: node.into(),
                from: from.parse().unwrap(),
                to: to.parse().unwrap(),
                to_owner: owner.into(),
                hop: 1,
                attribution: None,
            })
            .into_iter()
            .collect();
        let lost = translations.first().map(|t| Loss {
            by: LossKind::Snat,
            leg: 1,
            hop: Some(1),
            at: t.node.clone(),
            to: t.to.ip(),
            to_owner: t.to_owner.clone(),
        });
        let kept = first.src == last.src;
        Flow {
            isn,
            translations,
            pod_sees: Some(last.src),
            client_ip_preserved: Some(kept),
            l7_client_ip: l7.map(|value| L7ClientIp {
                header: "x-forwarded-for".into(),
                value: value.into(),
            }),
            client: Some(first.src),
            entry: SocketAddr::new(first.dst, first.dport),
            lost_at: None,
            retries: 0,
            reached_pod: true,
            last_seen: Some(LastSeen {
                node: last.node.clone(),
                iface: last.iface.clone(),
                dir: last.dir,
            }),
            ends_at: EndsAt::Pod,
            first_seen: None,
            client_kind: ClientKind::Client,
            client_established: true,
            evidence: Vec::new(),
            verdict: if kept {
                Verdict::Kept
            } else {
                Verdict::Rewritten
            },
            reason: String::new(),
            lost,
            l7_client_preserved: None,
            connection: usize::try_from(isn).unwrap(),
            leg: 1,
            legs: 1,
            proxied_by: None,
            hops,
        }
    }

    /// What the analysis says of a SYN that no pod received.
    fn unreached(mut flow: Flow) -> Flow {
        flow.reached_pod = false;
        flow.ends_at = EndsAt::Unknown;
        flow.pod_sees = None;
        flow.client_ip_preserved = None;
        flow.verdict = Verdict::Unreached;
        flow
    }

    fn report(flows: Vec<Flow>) -> Report {
        Report::new(flows, Summary::default())
    }

    fn outcome(remote: &str, port: u16, xff: Option<&str>) -> GetOutcome {
        GetOutcome {
            local: None,
            status: Some(200),
            reply: Some(serde_json::json!({
                "remote_addr": remote, "remote_port": port, "x_forwarded_for": xff,
            })),
            ..GetOutcome::default()
        }
    }

    fn connection(name: &str, index: usize) -> Connection {
        scenario::select(name).unwrap()[0].connections[index].clone()
    }

    #[test]
    fn same_node_cluster_matches_when_all_agree() {
        let flows = vec![flow(
            7,
            vec![
                hop(
                    "clb",
                    "inet0",
                    Direction::In,
                    "192.0.2.10:40000",
                    "203.0.113.100:80",
                ),
                hop(
                    "node-a",
                    "eth0",
                    Direction::In,
                    "192.0.2.10:40000",
                    "198.51.100.11:31080",
                ),
                hop(
                    "node-a",
                    "veth-app-a",
                    Direction::Out,
                    "198.18.1.1:5555",
                    "198.18.1.10:8080",
                ),
            ],
            Some((
                "node-a",
                "192.0.2.10:40000",
                "198.18.1.1:5555",
                "cbr0 of node-a",
            )),
            None,
        )];
        let conn = connection("cluster-same-node", 0);
        let check = check(
            &conn,
            &outcome("198.18.1.1", 5555, None),
            &report(flows),
            Evidence::Complete(&[]),
        );
        assert!(check.matches, "{:?}", check.problems);
        assert_eq!(
            check.rewritten_at,
            vec!["node-a: SNAT 192.0.2.10 → 198.18.1.1 (cbr0 of node-a)"]
        );
        assert_eq!(check.isn, Some(7));
    }

    #[test]
    fn disagreement_with_the_expectation_is_a_mismatch() {
        let flows = vec![flow(
            7,
            vec![hop(
                "node-a",
                "veth-app-a",
                Direction::Out,
                "192.0.2.10:40000",
                "198.18.1.10:8080",
            )],
            None,
            None,
        )];
        let conn = connection("cluster-same-node", 0);
        let check = check(
            &conn,
            &outcome("192.0.2.10", 40000, None),
            &report(flows),
            Evidence::Complete(&[]),
        );
        assert!(!check.matches);
        assert!(
            check.problems[0].contains("expects cbr0 of node-a"),
            "{:?}",
            check.problems
        );
    }

    #[test]
    fn measurement_must_find_the_flow() {
        let conn = connection("direct", 0);
        let check = check(
            &conn,
            &outcome("192.0.2.10", 40000, None),
            &report(vec![]),
            Evidence::Complete(&[]),
        );
        assert!(!check.matches);
        assert!(
            check.problems[0].contains("saw no SYN"),
            "{:?}",
            check.problems
        );
    }

    #[test]
    fn l7_chain_names_the_proxy_then_the_snat() {
        let client = flow(
            1,
            vec![hop(
                "clb",
                "inet0",
                Direction::In,
                "192.0.2.10:40000",
                "203.0.113.100:80",
            )],
            None,
            None,
        );
        let proxied = flow(
            2,
            vec![
                hop(
                    "clb",
                    "eth0",
                    Direction::Out,
                    "198.51.100.1:50000",
                    "198.51.100.11:31080",
                ),
                hop(
                    "node-a",
                    "eth0",
                    Direction::In,
                    "198.51.100.1:50000",
                    "198.51.100.11:31080",
                ),
                hop(
                    "node-b",
                    "veth-app-b",
                    Direction::Out,
                    "198.51.100.11:6000",
                    "198.18.2.10:8080",
                ),
            ],
            Some((
                "node-a",
                "198.51.100.1:50000",
                "198.51.100.11:6000",
                "node-a",
            )),
            Some("192.0.2.10"),
        );
        // The analysis joined the two legs into one client connection; the app reads the
        // client in the header.
        let mut client = client;
        client.legs = 2;
        client.ends_at = EndsAt::Host;
        client.verdict = Verdict::AtHost;
        client.client_ip_preserved = None;
        let mut proxied = proxied;
        proxied.connection = client.connection;
        proxied.leg = 2;
        proxied.legs = 2;
        proxied.client_kind = ClientKind::Proxy;
        proxied.client_established = false;
        proxied.verdict = Verdict::KeptInHeader;
        proxied.client_ip_preserved = Some(false);
        proxied.l7_client_preserved = Some(true);
        let conn = connection("l7-ingress", 0);
        let check = check(
            &conn,
            &outcome("198.51.100.11", 6000, Some("192.0.2.10")),
            &report(vec![client, proxied]),
            Evidence::Complete(&[]),
        );
        assert!(check.matches, "{:?}", check.problems);
        assert_eq!(
            check.rewritten_at,
            vec![
                format!("clb: L7 proxy, new connection from {CLB_VPC_IP}"),
                "node-a: SNAT 198.51.100.1 → 198.51.100.11 (node-a)".to_string()
            ]
        );
        assert_eq!(Who::Client.ip(), CLIENT_IP);
    }

    #[test]
    fn hairpin_is_one_flow_with_its_snat() {
        let mut hairpin = flow(
            5,
            vec![
                hop(
                    "node-a",
                    "veth-app-a",
                    Direction::In,
                    "198.18.1.10:42916",
                    "198.19.0.10:80",
                ),
                hop(
                    "node-a",
                    "cbr0",
                    Direction::Out,
                    "198.18.1.10:42916",
                    "198.18.1.10:8080",
                ),
                hop(
                    "node-a",
                    "veth-app-a",
                    Direction::Out,
                    "198.18.1.1:30564",
                    "198.18.1.10:8080",
                ),
            ],
            Some((
                "node-a",
                "198.18.1.10:42916",
                "198.18.1.1:30564",
                "cbr0 of node-a",
            )),
            None,
        );
        hairpin.translations[0].hop = 2;
        let conn = connection("hairpin", 0);
        hairpin.lost.as_mut().unwrap().hop = Some(2);
        let check = check(
            &conn,
            &outcome("198.18.1.1", 30564, None),
            &report(vec![hairpin]),
            Evidence::Complete(&[]),
        );
        assert!(check.matches, "{:?}", check.problems);
        assert_eq!(
            check.rewritten_at,
            vec!["node-a: SNAT 198.18.1.10 → 198.18.1.1 (cbr0 of node-a)"]
        );
    }

    #[test]
    fn a_flow_that_reached_no_pod_does_not_answer_for_the_pod() {
        let dropped = unreached(flow(
            5,
            vec![hop(
                "node-a",
                "eth0",
                Direction::In,
                "192.0.2.10:40000",
                "198.18.1.10:8080",
            )],
            None,
            None,
        ));
        let conn = connection("direct", 0);
        let check = check(
            &conn,
            &outcome("192.0.2.10", 40000, None),
            &report(vec![dropped]),
            Evidence::Complete(&[]),
        );
        assert!(!check.matches);
        assert!(
            check.problems[0].contains("saw no SYN reaching pod"),
            "{:?}",
            check.problems
        );
    }

    #[test]
    fn dropped_connection_is_located() {
        let flows = vec![unreached(flow(
            9,
            vec![
                hop(
                    "clb",
                    "inet0",
                    Direction::In,
                    "192.0.2.10:40001",
                    "203.0.113.100:81",
                ),
                hop(
                    "node-b",
                    "eth0",
                    Direction::In,
                    "192.0.2.10:40001",
                    "198.51.100.12:31080",
                ),
            ],
            None,
            None,
        ))];
        let conn = connection("local", 1);
        let failed = GetOutcome {
            error: Some("timed out".into()),
            timed_out: true,
            ..GetOutcome::default()
        };
        // Taken by the analysis as accepted on node-b (no retransmission seen): not the drop
        // the scenario claims.
        let mut accepted = flows.clone();
        accepted[0].ends_at = EndsAt::Host;
        let taken = check(&conn, &failed, &report(accepted), Evidence::Complete(&[]));
        assert!(!taken.matches);
        assert!(
            taken.problems.iter().any(|p| p.contains("local socket")),
            "{:?}",
            taken.problems
        );
        let check = check(&conn, &failed, &report(flows), Evidence::Complete(&[]));
        assert!(check.matches, "{:?}", check.problems);
        assert_eq!(check.last_seen.as_deref(), Some("node-b eth0 (in)"));
        assert_eq!(conn.expect, Expect::Dropped { at: Node::B });
        let refused = GetOutcome {
            error: Some("refused".into()),
            ..GetOutcome::default()
        };
        let flows = vec![flow(
            9,
            vec![hop(
                "node-b",
                "eth0",
                Direction::In,
                "192.0.2.10:40001",
                "198.51.100.12:31080",
            )],
            None,
            None,
        )];
        let mut flows = flows;
        flows[0].entry = "203.0.113.100:81".parse().unwrap();
        // The analysis says this one reached a pod: not a drop either.
        let refused = super::check(&conn, &refused, &report(flows), Evidence::Complete(&[]));
        assert!(!refused.matches);
        assert!(
            refused
                .problems
                .iter()
                .any(|p| p == "its SYN reached a pod"),
            "{:?}",
            refused.problems
        );
    }
}
