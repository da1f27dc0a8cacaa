//! Runs scenarios on a built lab: rules in, proxies up, probes on, connections made, probes off,
//! analysis, verdicts.

use super::capture::Capture;
use super::clb;
use super::kube_proxy::{self, Service};
use super::net::GetOutcome;
use super::netns::{check_interrupt, run, Lab, LabError, LabResult, Proc};
use super::partial::Variant;
use super::scenario::{Expect, From, Scenario};
use super::topology::cluster_view;
use super::topology::{Host, Node, Pod, ECHO_PORT};
use super::verdict::{self, Check};
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

/// Programs the scenario's rules on the load balancer and on both nodes.
pub fn apply_rules(lab: &Lab, scenario: &Scenario, services: &[Service]) -> LabResult<()> {
    lab.restore(Host::Clb, &clb::rules(&scenario.listeners))?;
    for node in Node::ALL {
        lab.restore(Host::Node(node), &kube_proxy::node_rules(services, node))?;
    }
    Ok(())
}

/// Starts the scenario's L7 proxies (the load balancer's, an ingress controller) and waits
/// until each listens.
pub fn start_proxies(lab: &Lab, tools: &Tools, scenario: &Scenario) -> LabResult<Vec<Proc>> {
    let mut procs = Vec::new();
    for proxy in &scenario.proxies {
        let host = proxy.pod.map_or(Host::Clb, Host::Pod);
        let xff = match proxy.xff {
            crate::cli::XffMode::Append => "append",
            crate::cli::XffMode::Replace => "replace",
        };
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
            verdict::check(
                conn,
                outcome,
                &report,
                verdict::Evidence::Complete(&partials),
            )
        })
        .collect();
    Ok(ScenarioRun {
        scenario: scenario.clone(),
        checks,
        report,
        events: captured.events,
    })
}
