//! The capture: every ready probe's log followed until the run is over, then drained up to the
//! stop moment (and, with `--evidence`, to each probe's end snapshot).

use super::ready::ReadyProbe;
use crate::cli::TraceArgs;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::trace::collect::Collector;
use crate::trace::manifests::{RunPlan, PROBE_CONTAINER};
use crate::trace::progress::Progress;
use crate::trace::send::{self, Sent};
use crate::trace::topology::Topology;
use futures::{AsyncBufReadExt, StreamExt};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a capture brought back.
pub(super) struct Captured {
    pub events: Vec<realip_probe::wire::Event>,
    pub warnings: Vec<String>,
    pub sent: Vec<Sent>,
    /// The nodes whose probe ran: every other planned node is in the report's skipped nodes.
    pub probed: Vec<String>,
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
    args: &TraceArgs,
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
    let mut lines = Progress::node_lines(progress);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut sending: Option<tokio::task::JoinHandle<Vec<Sent>>> = None;
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
        if args.send && sending.is_none() {
            let listening = collector.nodes().values().all(|n| n.said_hello);
            if listening || reached || started.elapsed() > Duration::from_secs(5) {
                let run_id = plan.run_id.clone();
                let targets = send_targets.clone();
                sending = Some(tokio::spawn(async move {
                    send::send_all(&run_id, &targets, Duration::from_secs(5)).await
                }));
            }
        }
        // Done once the test connections are: their sightings belong to the capture.
        if reached && sending.as_ref().is_none_or(|h| h.is_finished()) {
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
        if collector.push_line(&pod, &node, &line) {
            if let Some(count) = collector.nodes().get(&node) {
                lines.set(&node, &format!("capturing: {} SYNs", count.syns));
            }
        }
        if collector.all_done() {
            break false;
        }
        if args.flows.is_some_and(|n| collector.complete_flows() >= n) {
            reached = true;
        }
        if collector.syns() >= args.max_syns {
            collector.warn_once(format!(
                "the capture stopped after {} SYN sightings (--max-syns): the report covers the \
                 first connections; narrow it with --flows or raise --max-syns",
                args.max_syns
            ));
            break false;
        }
    };
    if drain {
        progress.step("collecting what the probes saw up to now");
        drain_streams(&mut collector, &mut rx).await;
    }
    if plan.evidence {
        progress.step("stopping the probes: each reads its node's NAT rules once more");
        end_probes(cluster, plan, &mut collector, &mut rx).await;
    }
    for follower in followers {
        follower.abort();
    }
    let sent = match sending {
        Some(handle) => handle.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let (events, warnings) = collector.finish();
    Ok(Captured {
        events,
        warnings,
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
    collector: &mut Collector,
    rx: &mut mpsc::Receiver<(String, String, String)>,
) {
    if let Err(err) = cluster
        .namespaced::<k8s_openapi::api::apps::v1::DaemonSet>(&plan.namespace)
        .delete(&plan.daemon_set_name())
        .await
    {
        collector.warn_once(format!(
            "the probes could not be stopped for their end snapshot ({err}): the rules' \
             counters over the capture are not known"
        ));
        return;
    }
    let wait = Duration::from_secs(crate::trace::manifests::probe_grace_secs(plan)) + DRAIN_WAIT;
    let deadline = tokio::time::Instant::now() + wait;
    while !collector.all_done() {
        tokio::select! {
            line = rx.recv() => match line {
                Some((pod, node, line)) => {
                    collector.push_line(&pod, &node, &line);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    if !collector.all_done() {
        let ended: Vec<&str> = collector
            .nodes()
            .iter()
            .filter(|(_, n)| !n.said_bye)
            .map(|(node, _)| node.as_str())
            .collect();
        collector.warn_once(format!(
            "the probe on {} did not end within {}s of being stopped: its end snapshot of the \
             rules is missing",
            ended.join(", "),
            wait.as_secs()
        ));
    }
}

/// Takes every stream up to the stop moment: each probe's heartbeat (or its end) must come
/// past it, so that a connection's hops on a node whose log lags are not missed.
async fn drain_streams(
    collector: &mut Collector,
    rx: &mut mpsc::Receiver<(String, String, String)>,
) {
    collector.stop();
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while !collector.lagging().is_empty() {
        tokio::select! {
            line = rx.recv() => match line {
                Some((pod, node, line)) => {
                    collector.push_line(&pod, &node, &line);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                let lagging = collector.lagging().join(", ");
                collector.warn_once(format!(
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
