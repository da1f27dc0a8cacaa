//! Ground truth against measurement, for one connection: what the pod's own accept() and the
//! echo's headers say, what the analysis of the probes' sightings says, and what the scenario
//! claims. `matches` holds only when all three agree.

use super::net::GetOutcome;
use super::scenario::{Connection, Expect};
use super::topology::{host_of, owner_of, ECHO_PORT};
use crate::analyze::model::{EndsAt, Flow, Report, TranslationKind};
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
        .find(|(_, flow)| flow.entry == conn.to.to_string() && flow.client == Some(from))
}

/// Walks back from `last` through the proxies that opened it, to the flow the origin opened.
fn chain(report: &Report, last: usize, origin: IpAddr) -> Vec<usize> {
    let mut chain = vec![last];
    while chain.len() < 4 {
        let head = &report.flows[chain[0]];
        let Some(src) = head.client else { break };
        if src == origin {
            break;
        }
        let proxy = host_of(src);
        let ends_at_proxy = |flow: &Flow| {
            proxy.is_some()
                && flow
                    .hops
                    .last()
                    .is_some_and(|hop| host_of(hop.dst) == proxy)
        };
        let candidates: Vec<usize> = (0..report.flows.len())
            .filter(|i| !chain.contains(i) && ends_at_proxy(&report.flows[*i]))
            .collect();
        let pick = candidates
            .iter()
            .copied()
            .find(|i| report.flows[*i].client == Some(origin))
            .or_else(|| candidates.first().copied());
        match pick {
            Some(i) => chain.insert(0, i),
            None => break,
        }
    }
    chain
}

fn ip_of(addr: &str) -> String {
    addr.parse::<SocketAddr>()
        .map(|sa| sa.ip().to_string())
        .unwrap_or_else(|_| addr.to_string())
}

/// Every place the source was rewritten, in path order, in words.
pub fn rewrites(report: &Report, last: usize, origin: IpAddr) -> Vec<String> {
    let mut out = Vec::new();
    for (position, &index) in chain(report, last, origin).iter().enumerate() {
        let flow = &report.flows[index];
        if let Some(client) = flow.client {
            let first = position == 0;
            if first && client != origin {
                out.push(format!(
                    "before the first probed hop (source already {client})"
                ));
            } else if !first {
                let owner = owner_of(client).unwrap_or_else(|| client.to_string());
                out.push(format!("{owner}: L7 proxy, new connection from {client}"));
            }
        }
        for translation in &flow.translations {
            if translation.kind == TranslationKind::Snat {
                out.push(format!(
                    "{}: SNAT {} → {} ({})",
                    translation.node,
                    ip_of(&translation.from),
                    ip_of(&translation.to),
                    translation.to_owner
                ));
            }
        }
    }
    out
}

/// Judges one connection.
pub fn check(conn: &Connection, outcome: &GetOutcome, report: &Report) -> Check {
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
                check.measured_pod_sees = flow.pod_sees;
                check.measured_l7_client_ip = flow.l7_client_ip.as_ref().map(|l7| l7.value.clone());
                check.rewritten_at = rewrites(report, index, origin);
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
                    check.last_seen = last_seen_text(flow);
                    check.rewritten_at = rewrites(report, index, origin);
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
    check.matches = check.problems.is_empty();
    check
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
    use crate::analyze::model::{Hop, L7ClientIp, LastSeen, Summary, Translation};
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
        }
    }

    fn flow(
        isn: u32,
        hops: Vec<Hop>,
        snat: Option<(&str, &str, &str, &str)>,
        l7: Option<&str>,
    ) -> Flow {
        let first = hops[0].clone();
        let last = hops[hops.len() - 1].clone();
        Flow {
            isn,
            translations: snat
                .map(|(node, from, to, owner)| Translation {
                    kind: TranslationKind::Snat,
                    node: node.into(),
                    from: from.into(),
                    to: to.into(),
                    to_owner: owner.into(),
                    hop: 1,
                })
                .into_iter()
                .collect(),
            pod_sees: Some(last.src),
            client_ip_preserved: first.src == last.src,
            l7_client_ip: l7.map(|value| L7ClientIp {
                header: "x-forwarded-for".into(),
                value: value.into(),
            }),
            client: Some(first.src),
            entry: format!("{}:{}", first.dst, first.dport),
            lost_at: None,
            retries: 0,
            reached_pod: true,
            last_seen: Some(LastSeen {
                node: last.node.clone(),
                iface: last.iface.clone(),
                dir: last.dir,
            }),
            ends_at: EndsAt::Pod,
            hops,
        }
    }

    /// What the analysis says of a SYN that no pod received.
    fn unreached(mut flow: Flow) -> Flow {
        flow.reached_pod = false;
        flow.ends_at = EndsAt::Unknown;
        flow.pod_sees = None;
        flow.client_ip_preserved = false;
        flow
    }

    fn report(flows: Vec<Flow>) -> Report {
        Report {
            flows,
            summary: Summary::default(),
        }
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
        let check = check(&conn, &outcome("198.18.1.1", 5555, None), &report(flows));
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
        let check = check(&conn, &outcome("192.0.2.10", 40000, None), &report(flows));
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
        let check = check(&conn, &outcome("192.0.2.10", 40000, None), &report(vec![]));
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
        let conn = connection("l7-ingress", 0);
        let check = check(
            &conn,
            &outcome("198.51.100.11", 6000, Some("192.0.2.10")),
            &report(vec![client, proxied]),
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
        let check = check(
            &conn,
            &outcome("198.18.1.1", 30564, None),
            &report(vec![hairpin]),
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
        let taken = check(&conn, &failed, &report(accepted));
        assert!(!taken.matches);
        assert!(
            taken.problems.iter().any(|p| p.contains("local socket")),
            "{:?}",
            taken.problems
        );
        let check = check(&conn, &failed, &report(flows));
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
        flows[0].entry = "203.0.113.100:81".into();
        // The analysis says this one reached a pod: not a drop either.
        let refused = super::check(&conn, &refused, &report(flows));
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
