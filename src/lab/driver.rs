//! Runs scenarios on a built lab: rules in, proxies up, probes on, connections made, probes off,
//! analysis, verdicts.

use super::capture::Capture;
use super::clb;
use super::dataplane::{self, ProxyMode};
use super::installed::Installed;
use super::kube_proxy::{self, Service};
use super::kube_proxy_nft;
use super::net::GetOutcome;
use super::netns::Added;
use super::netns::{check_interrupt, run, Lab, LabError, LabResult, Proc};
use super::partial::Variant;
use super::scenario::{Expect, From, Scenario};
use super::topology;
use super::topology::{Host, Node, Pod, ECHO_PORT};
use super::verdict::{self, Check};
use super::view::cluster_view;
use crate::analyze::{self, model::Report};
use std::path::PathBuf;
use std::time::Duration;

/// The binaries the lab runs inside its namespaces.
#[derive(Debug, Clone)]
pub struct Tools {
    pub probe: PathBuf,
    /// This plugin (for `lab-net`).
    pub me: PathBuf,
}

#[derive(Debug)]
pub struct ScenarioRun {
    pub scenario: Scenario,
    pub checks: Vec<Check>,
    pub report: Report,
    /// Everything the probes wrote during the scenario.
    pub events: Vec<realip_probe::wire::Event>,
}

impl ScenarioRun {
    pub fn matches(&self) -> bool {
        self.checks.iter().all(|check| check.matches)
    }
}

/// How long a connection that must be answered may take, and one that must be dropped.
const ANSWER_TIMEOUT_MS: u64 = 3000;
const DROP_TIMEOUT_MS: u64 = 1200;

/// Starts the echo in every app pod and waits until each answers.
pub fn start_backends(lab: &mut Lab, tools: &Tools) -> LabResult<()> {
    let echo_pods: Vec<Pod> = Pod::ALL.into_iter().filter(|pod| pod.runs_echo()).collect();
    for pod in &echo_pods {
        let args = vec![
            "echo".to_string(),
            "--listen".into(),
            format!("0.0.0.0:{ECHO_PORT}"),
        ];
        let proc = Proc::spawn(
            &lab.ns(Host::Pod(*pod)),
            &tools.probe.to_string_lossy(),
            &args,
            &format!("realip-probe echo in pod {pod}"),
            true,
        )?;
        lab.start(proc);
    }
    for pod in echo_pods {
        let outcome = get(
            lab,
            tools,
            Host::Pod(pod),
            &format!("127.0.0.1:{ECHO_PORT}"),
            1000,
            5000,
        )?;
        if let Some(error) = outcome.error {
            return Err(LabError::NotReady {
                what: format!("realip-probe echo in pod {pod}"),
                detail: error,
            });
        }
    }
    Ok(())
}

/// `lab-net get` from inside `host`.
fn get(
    lab: &Lab,
    tools: &Tools,
    host: Host,
    to: &str,
    timeout_ms: u64,
    wait_ms: u64,
) -> LabResult<GetOutcome> {
    let argv: Vec<String> = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        lab.ns(host),
        tools.me.to_string_lossy().into_owned(),
        "lab-net".into(),
        "get".into(),
        "--to".into(),
        to.into(),
        "--timeout-ms".into(),
        timeout_ms.to_string(),
        "--wait-ms".into(),
        wait_ms.to_string(),
    ];
    let stdout = run(&argv, None)?;
    serde_json::from_str(stdout.trim()).map_err(|err| LabError::Command {
        cmd: argv.join(" "),
        detail: format!("unreadable output {stdout:?}: {err}"),
    })
}

/// The namespace a connection of a scenario is opened from.
pub fn host_of(from: From) -> Host {
    match from {
        From::Client => Host::Client,
        From::NodeHost(node) => Host::Node(node),
        From::Pod(pod) => Host::Pod(pod),
    }
}

/// One step of programming a node for a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStep {
    /// `iptables-restore`: replaces the tables it names, or with `add` (`--noflush`) adds to
    /// them.
    Iptables {
        what: &'static str,
        rules: String,
        add: bool,
    },
    /// `nft -f -`.
    Nft { what: &'static str, script: String },
    /// `ipset ARGS…`, one command each.
    Ipset {
        what: &'static str,
        commands: Vec<Vec<String>>,
    },
    /// `ip route replace …`: which way the other node's pods are reached.
    Route { argv: Vec<String> },
}

impl NodeStep {
    pub fn what(&self) -> &'static str {
        match self {
            NodeStep::Iptables { what, .. }
            | NodeStep::Nft { what, .. }
            | NodeStep::Ipset { what, .. } => what,
            NodeStep::Route { .. } => "route to the other node's pods",
        }
    }

    /// What the step loads or runs, as text.
    pub fn text(&self) -> String {
        match self {
            NodeStep::Iptables { rules, add, .. } => {
                let tool = if *add {
                    "# iptables-restore --noflush\n"
                } else {
                    ""
                };
                format!("{tool}{rules}")
            }
            NodeStep::Nft { script, .. } => script.clone(),
            NodeStep::Ipset { commands, .. } => commands
                .iter()
                .map(|args| format!("ipset {}\n", args.join(" ")))
                .collect(),
            NodeStep::Route { argv } => format!("ip {}\n", argv.join(" ")),
        }
    }
}

/// How `node` is programmed for `scenario`: kube-proxy's rules in its mode, a CNI's masquerade,
/// the route to the other node's pods.
pub fn node_setup(scenario: &Scenario, services: &[Service], node: Node) -> Vec<NodeStep> {
    let dataplane = scenario.dataplane;
    let mut steps = Vec::new();
    match dataplane.proxy {
        ProxyMode::Iptables => steps.push(NodeStep::Iptables {
            what: "kube-proxy, iptables mode",
            rules: kube_proxy::node_rules(services, node),
            add: false,
        }),
        ProxyMode::Nftables => {
            steps.push(NodeStep::Iptables {
                what: "kube-proxy's nftables mode leaves iptables empty",
                rules: dataplane::empty_iptables(),
                add: false,
            });
            steps.push(NodeStep::Nft {
                what: "kube-proxy, nftables mode",
                script: kube_proxy_nft::node_rules(services, node),
            });
        }
    }
    if dataplane.cni_masquerade == Some(node) {
        steps.push(NodeStep::Ipset {
            what: "Calico's IP pool sets",
            commands: dataplane::calico_ipsets(node),
        });
        steps.push(NodeStep::Iptables {
            what: "Calico natOutgoing, ahead of kube-proxy",
            rules: dataplane::calico_rules(),
            add: true,
        });
    }
    steps.push(NodeStep::Route {
        argv: topology::route_to_other_pods(node, dataplane.second_nic),
    });
    steps
}

/// Programs the scenario's rules on the load balancer and on both nodes, removing what an
/// earlier scenario added that its tables' replacement does not (an nftables table, ipsets).
pub fn apply_rules(lab: &mut Lab, scenario: &Scenario, services: &[Service]) -> LabResult<()> {
    lab.restore(Host::Clb, &clb::rules(&scenario.listeners))?;
    for node in Node::ALL {
        let host = Host::Node(node);
        let steps = node_setup(scenario, services, node);
        let mut added = Vec::new();
        for step in &steps {
            match step {
                NodeStep::Iptables { rules, add, .. } => lab.restore_with(host, rules, *add)?,
                NodeStep::Nft { script, .. } => {
                    lab.nft(host, script)?;
                    added.push(Added::NftTable(NFT_TABLE.into()));
                }
                NodeStep::Ipset { commands, .. } => {
                    for args in commands {
                        lab.run_in(host, "ipset", args)?;
                        if args.first().is_some_and(|a| a == "create") {
                            added.extend(args.get(1).map(|set| Added::Ipset(set.clone())));
                        }
                    }
                }
                NodeStep::Route { argv } => lab.run_in(host, "ip", argv)?,
            }
        }
        // The tables are replaced: what the earlier scenario added and this one did not is
        // unreferenced now, and goes.
        for gone in lab.take_added(host) {
            if added.contains(&gone) {
                continue;
            }
            match &gone {
                Added::NftTable(table) => lab.nft(host, &format!("delete table {table}\n"))?,
                Added::Ipset(set) => lab.run_in(host, "ipset", &["destroy".into(), set.clone()])?,
            }
        }
        lab.note_added(host, added);
    }
    Ok(())
}

/// The nftables table kube-proxy's nftables mode writes.
const NFT_TABLE: &str = "ip kube-proxy";

/// Starts the scenario's L7 proxies (the load balancer's, an ingress controller) and waits
/// until each listens.
pub fn start_proxies(lab: &Lab, tools: &Tools, scenario: &Scenario) -> LabResult<Vec<Proc>> {
    let mut procs = Vec::new();
    for proxy in &scenario.proxies {
        let host = proxy.pod.map_or(Host::Clb, Host::Pod);
        let xff = proxy.xff.name();
        let args: Vec<String> = vec![
            "lab-net".into(),
            "proxy".into(),
            "--listen".into(),
            proxy.listen.to_string(),
            "--to".into(),
            proxy.to.to_string(),
            "--xff".into(),
            xff.into(),
        ];
        let what = format!("the L7 proxy in {}", host.role());
        let mut proc = Proc::spawn(
            &lab.ns(host),
            &tools.me.to_string_lossy(),
            &args,
            &what,
            false,
        )?;
        let line = proc.first_line(Duration::from_secs(5))?;
        if line != super::net::READY {
            return Err(LabError::NotReady {
                what,
                detail: format!("it said {line:?}"),
            });
        }
        procs.push(proc);
    }
    Ok(procs)
}

/// Runs one scenario. With `keep_up`, its proxies stay up with the lab.
pub fn run_scenario(
    lab: &mut Lab,
    tools: &Tools,
    scenario: &Scenario,
    keep_up: bool,
) -> LabResult<ScenarioRun> {
    check_interrupt()?;
    let services = scenario.services()?;
    apply_rules(lab, scenario, &services)?;
    let proxies = start_proxies(lab, tools, scenario)?;
    let capture = Capture::start(lab, &tools.probe, scenario)?;
    let mut outcomes = Vec::new();
    for conn in &scenario.connections {
        check_interrupt()?;
        let timeout = match conn.expect {
            Expect::Dropped { .. } => DROP_TIMEOUT_MS,
            Expect::Answered { .. } => ANSWER_TIMEOUT_MS,
        };
        outcomes.push(get(
            lab,
            tools,
            host_of(conn.from),
            &conn.to.to_string(),
            timeout,
            0,
        )?);
    }
    // Let the last frames reach the probes' rings before stopping them.
    std::thread::sleep(Duration::from_millis(100));
    let captured = capture.stop();
    check_interrupt()?;
    let installed = Installed::read(lab, scenario)?;
    for proxy in proxies {
        if keep_up {
            lab.start(proxy);
        }
    }
    let view = cluster_view(&services);
    let analyze = |events: &[realip_probe::wire::Event], warnings: &[String]| {
        let mut analyzer = analyze::Analyzer::new();
        analyzer.set_view(view.clone());
        for warning in warnings {
            analyzer.warn(warning.clone());
        }
        for event in events {
            analyzer.push(event.clone());
        }
        analyzer.finish()
    };
    let report = analyze(&captured.events, &captured.warnings);
    let partials: Vec<(Variant, Report)> = Variant::ALL
        .into_iter()
        .filter_map(|variant| {
            let events = variant.events(&captured.events, "clb")?;
            Some((variant, analyze(&events, &[])))
        })
        .collect();
    let checks = scenario
        .connections
        .iter()
        .zip(&outcomes)
        .map(|(conn, outcome)| {
            let mut check = verdict::check(
                conn,
                outcome,
                &report,
                verdict::Evidence::Complete(&partials),
            );
            verdict::check_rules(&mut check, scenario, &report, &installed);
            check
        })
        .collect();
    Ok(ScenarioRun {
        scenario: scenario.clone(),
        checks,
        report,
        events: captured.events,
    })
}
