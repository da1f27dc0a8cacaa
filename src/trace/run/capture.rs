//! The capture: every ready probe's log followed until the run is over, then drained up to the
//! stop moment (and, with `--evidence`, to each probe's end snapshot). Its events go through
//! the windowed analyzer as they come: a capture holds the sightings of one window
//! ([`crate::analyze::WINDOW`]) and the connections found, not every event.

use super::ready::ReadyProbe;
use crate::analyze::model::{Flow, Report};
use crate::analyze::Analyzer;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::trace::collect::Collector;
use crate::trace::manifests::{RunPlan, PROBE_CONTAINER};
use crate::trace::progress::Progress;
use crate::trace::send::{self, Sent};
use crate::trace::topology::Topology;
use crate::trace::Request;
use futures::{AsyncBufReadExt, StreamExt};
use realip_probe::wire::Event;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a capture brought back.
pub(super) struct Captured {
    pub report: Report,
    /// The `l7` events that carry a test connection's token (`--send`).
    pub tokens: Vec<Event>,
    pub sent: Vec<Sent>,
    /// The nodes whose probe ran: every other planned node is in the report's skipped nodes.
    pub probed: Vec<String>,
}

/// The probes' lines in, connections out: the collector decodes, deduplicates and counts the
/// lines, and each event it takes goes through the analyzer at once.
struct Intake {
    collector: Collector,
    analyzer: Analyzer,
    /// The connections the analyzer completed so far, in output order.
    flows: Vec<Flow>,
    /// `l7` events carrying a test connection's token, to tie it to where it was seen.
    tokens: Vec<Event>,
    /// No connection is taken while test connections are being sent: the addresses they left
    /// from make their source the client, and must be known before they are judged.
    hold: bool,
}

impl Intake {
    /// Takes one log line of `pod`; whether it brought an event.
    fn line(&mut self, pod: &str, node: &str, line: &str) -> bool {
        let Some(event) = self.collector.push_line(pod, node, line) else {
            return false;
        };
        if matches!(&event, Event::L7(l7) if l7.realip_token.is_some()) {
            self.tokens.push(event.clone());
        }
        self.analyzer.push(event);
        self.take();
        true
    }

    /// Moves the connections the analyzer has completed into [`Intake::flows`].
    fn take(&mut self) {
        if self.hold {
            return;
        }
        while let Some(flow) = self.analyzer.next_flow() {
            self.flows.push(flow);
        }
    }

    /// The test connections are done: their addresses are the client's.
    fn sent(&mut self, sent: &[Sent]) {
        self.analyzer.add_senders(send::senders(sent));
        self.hold = false;
        self.take();
    }

    /// The report of everything taken, with the problems the collector met.
    fn finish(self) -> (Report, Vec<Event>) {
        let mut analyzer = self.analyzer;
        for warning in self.collector.finish() {
            analyzer.warn(warning);
        }
        (analyzer.finish_after(self.flows), self.tokens)
    }
}

/// How long the streams may take to come past the stop moment before the capture ends without
/// them (a node's log lagging more than this is said in the report).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Follows every ready probe's log until the duration is over, `--flows N` connections reached
/// a backend (and the test connections of `--send` are done), or every probe ended its capture;
/// then drains every stream up to the stop moment.
pub(super) async fn capture(
    cluster: &Cluster,
    plan: &RunPlan,
    args: &Request,
    topology: &Topology,
    ready: &[ReadyProbe],
    progress: &Progress,
) -> Result<Captured> {
    let backends: Vec<IpAddr> = topology
        .addresses()
        .filter_map(|(address, _)| address.parse().ok())
        .collect();
    let mut collector = Collector::new(backends);
    collector.expect_version(crate::embedded::PROBE_VERSION);
    let mut analyzer = Analyzer::windowed(crate::analyze::WINDOW);
    analyzer.set_view(topology.cluster_view());
    let (tx, mut rx) = mpsc::channel::<(String, String, String)>(1024);
    let mut followers = Vec::new();
    for probe in ready {
        collector.expect(&probe.node);
        followers.push(tokio::spawn(follow(
            cluster.clone(),
            plan.namespace.clone(),
            probe.clone(),
            tx.clone(),
        )));
    }
    drop(tx);
    let mut intake = Intake {
        collector,
        analyzer,
        flows: Vec::new(),
        tokens: Vec::new(),
        hold: args.send,
    };
    let mut lines = Progress::node_lines(progress);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut sending: Option<tokio::task::JoinHandle<Vec<Sent>>> = None;
    let mut sent: Option<Vec<Sent>> = None;
    let send_targets = if args.send {
        send::entry_points(topology, &plan.nodes, &args.send_to)
    } else {
        Vec::new()
    };
    // Reached: the duration is over or --flows connections reached a backend.
    let mut reached = false;
    progress.step(format!("capturing for {}s", args.duration.as_secs()));
    let drain = loop {
        // Test connections go out once every probe listens (or after 5 s at most, or now).
        if args.send && sending.is_none() && sent.is_none() {
            let listening = intake.collector.nodes().values().all(|n| n.said_hello);
            if listening || reached || started.elapsed() > Duration::from_secs(5) {
                let run_id = plan.run_id.clone();
                let targets = send_targets.clone();
                sending = Some(tokio::spawn(async move {
                    send::send_all(&run_id, &targets, Duration::from_secs(5)).await
                }));
            }
        }
        if let Some(handle) = sending.take_if(|h| h.is_finished()) {
            let done = handle.await.unwrap_or_default();
            intake.sent(&done);
            sent = Some(done);
        }
        // Done once the test connections are: their sightings belong to the capture.
        if reached && sending.is_none() {
            break true;
        }
        let line = tokio::select! {
            line = rx.recv() => line,
            () = tokio::time::sleep_until(deadline), if !reached => {
                reached = true;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        let Some((pod, node, line)) = line else {
            break false;
        };
        if intake.line(&pod, &node, &line) {
            if let Some(count) = intake.collector.nodes().get(&node) {
                lines.set(&node, &format!("capturing: {} SYNs", count.syns));
            }
        }
        if intake.collector.all_done() {
            break false;
        }
        if args
            .flows
            .is_some_and(|n| intake.collector.complete_flows() >= n)
        {
            reached = true;
        }
        if intake.collector.syns() >= args.max_syns {
            intake.collector.warn_once(format!(
                "the capture stopped after {} SYN sightings (--max-syns): the report covers the \
                 first connections; narrow it with --flows or raise --max-syns",
                args.max_syns
            ));
            break false;
        }
    };
    if drain {
        progress.step("collecting what the probes saw up to now");
        drain_streams(&mut intake, &mut rx).await;
    }
    if plan.evidence {
        progress.step("stopping the probes: each reads its node's NAT rules once more");
        end_probes(cluster, plan, &mut intake, &mut rx).await;
    }
    for follower in followers {
        follower.abort();
    }
    let sent = match sending {
        Some(handle) => {
            let done = handle.await.unwrap_or_default();
            intake.sent(&done);
            done
        }
        None => sent.unwrap_or_default(),
    };
    let (report, tokens) = intake.finish();
    Ok(Captured {
        report,
        tokens,
        sent,
        probed: ready.iter().map(|p| p.node.clone()).collect(),
    })
}

/// With `--evidence`, stops the probes (their DaemonSet is deleted: its pods are stopped) and
/// takes their streams to the end: a stopped probe writes its end snapshot of the rules, whose
/// counters over the capture name the rule behind each rewrite, then says bye.
async fn end_probes(
    cluster: &Cluster,
    plan: &RunPlan,
    intake: &mut Intake,
    rx: &mut mpsc::Receiver<(String, String, String)>,
) {
    if let Err(err) = cluster
        .namespaced::<k8s_openapi::api::apps::v1::DaemonSet>(&plan.namespace)
        .delete(&plan.daemon_set_name())
        .await
    {
        intake.collector.warn_once(format!(
            "the probes could not be stopped for their end snapshot ({err}): the rules' \
             counters over the capture are not known"
        ));
        return;
    }
    let wait = Duration::from_secs(crate::trace::manifests::probe_grace_secs(plan)) + DRAIN_WAIT;
    let deadline = tokio::time::Instant::now() + wait;
    while !intake.collector.all_done() {
        tokio::select! {
            line = rx.recv() => match line {
                Some((pod, node, line)) => {
                    intake.line(&pod, &node, &line);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    if !intake.collector.all_done() {
        let ended: Vec<&str> = intake
            .collector
            .nodes()
            .iter()
            .filter(|(_, n)| !n.said_bye)
            .map(|(node, _)| node.as_str())
            .collect();
        intake.collector.warn_once(format!(
            "the probe on {} did not end within {}s of being stopped: its end snapshot of the \
             rules is missing",
            ended.join(", "),
            wait.as_secs()
        ));
    }
}

/// Takes every stream up to the stop moment: each probe's heartbeat (or its end) must come
/// past it, so that a connection's hops on a node whose log lags are not missed.
async fn drain_streams(intake: &mut Intake, rx: &mut mpsc::Receiver<(String, String, String)>) {
    intake.collector.stop();
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while !intake.collector.lagging().is_empty() {
        tokio::select! {
            line = rx.recv() => match line {
                Some((pod, node, line)) => {
                    intake.line(&pod, &node, &line);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                let lagging = intake.collector.lagging().join(", ");
                intake.collector.warn_once(format!(
                    "the probe stream of {lagging} had not come up to the end of the capture \
                     {}s later: its last sightings may be missing",
                    DRAIN_WAIT.as_secs()
                ));
                break;
            }
        }
    }
}

/// Follows one probe's log; a broken stream or a restarted container is followed again
/// (the collector drops the lines seen before).
async fn follow(
    cluster: Cluster,
    namespace: String,
    probe: ReadyProbe,
    tx: mpsc::Sender<(String, String, String)>,
) {
    let mut failures = 0u32;
    loop {
        match cluster
            .follow_log(&namespace, &probe.pod, PROBE_CONTAINER)
            .await
        {
            Ok(stream) => {
                let mut lines = stream.lines();
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(line) => {
                            let said_bye = line.contains("\"type\":\"bye\"");
                            if tx
                                .send((probe.pod.clone(), probe.node.clone(), line))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            if said_bye {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(err) => {
                failures += 1;
                tracing::info!("following the probe log on {}: {err}", probe.node);
                if err.is_not_found() || failures > 20 {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_probe::wire::{encode_line, Direction, Hello, Syn};

    const MINUTE: u64 = 60_000_000_000;

    /// Connection `isn` at `ts_ns`, sighted on node-a's uplink and on its bridge.
    fn hops(isn: u32, ts_ns: u64) -> Vec<Event> {
        let syn = |iface: &str, dst: &str, ts_ns| {
            Event::Syn(Syn {
                ts_ns,
                node: "node-a".into(),
                iface: iface.into(),
                dir: Direction::In,
                src: "203.0.113.50".parse().unwrap(),
                sport: 40000 + (isn % 1000) as u16,
                dst: dst.parse().unwrap(),
                dport: 8080,
                isn,
                tsval: None,
                ttl: 60,
                ip_id: None,
            })
        };
        vec![
            syn("eth0", "192.0.2.10", ts_ns),
            syn("cbr0", "10.244.1.5", ts_ns + 1_000),
        ]
    }

    /// Streaming through the window takes connections during the capture, and the report is the
    /// one the whole capture analysed at once gives.
    #[test]
    fn a_long_capture_streams_and_reports_what_holding_everything_reports() {
        let hello = Event::Hello(Hello {
            ts_ns: 0,
            node: "node-a".into(),
            probe_version: "0.1.0".into(),
            interfaces: vec![],
            filter: String::new(),
            l7: false,
        });
        let events: Vec<Event> = std::iter::once(hello)
            .chain((0..12u32).flat_map(|i| hops(1000 + i, u64::from(i) * MINUTE)))
            .collect();
        let mut analyzer = Analyzer::windowed(crate::analyze::WINDOW);
        analyzer.set_view(Default::default());
        let mut intake = Intake {
            collector: Collector::new(["10.244.1.5".parse().unwrap()]),
            analyzer,
            flows: Vec::new(),
            tokens: Vec::new(),
            hold: false,
        };
        for event in &events {
            assert!(intake.line("probe-a", "node-a", &encode_line(event)));
        }
        // Eleven minutes in, the connections of the first minutes are complete and taken.
        let taken = intake.flows.len();
        assert!(taken > 0, "nothing was taken during the capture");
        let (streamed, _) = intake.finish();
        assert!(taken < streamed.flows.len());
        let mut whole = Analyzer::new();
        whole.set_view(Default::default());
        for event in events {
            whole.push(event);
        }
        let whole = whole.finish();
        assert_eq!(
            crate::analyze::render_json(&streamed),
            crate::analyze::render_json(&whole)
        );
    }

    /// While test connections are being sent, nothing is judged: their sources are the client.
    #[test]
    fn connections_wait_for_the_addresses_test_connections_left_from() {
        let mut intake = Intake {
            collector: Collector::new([]),
            analyzer: Analyzer::windowed(crate::analyze::WINDOW),
            flows: Vec::new(),
            tokens: Vec::new(),
            hold: true,
        };
        for event in (0..6u32).flat_map(|i| hops(i, u64::from(i) * MINUTE)) {
            intake.line("probe-a", "node-a", &encode_line(&event));
        }
        assert!(intake.flows.is_empty());
        intake.sent(&[]);
        assert!(!intake.flows.is_empty());
    }
}
