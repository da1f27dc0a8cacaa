//! The real probe on the load balancer and on every node, for the span of one scenario, with
//! `--evidence`: each names the NAT rules, conntrack entries and routes behind its rewrites.

use super::netns::{Lab, LabError, LabResult, Proc};
use super::scenario::Scenario;
use super::topology::{Host, Node};
use realip_probe::wire::{decode_line, Event};
use std::path::Path;
use std::time::Duration;

/// Where probes run, with the node name they report: every node, and the load balancer unless
/// the scenario stands for one that cannot be probed.
pub fn probed(scenario: &Scenario) -> Vec<(Host, &'static str)> {
    let mut hosts = Vec::new();
    if scenario.probe_lb {
        hosts.push((Host::Clb, "clb"));
    }
    hosts.extend(Node::ALL.map(|node| (Host::Node(node), node.name())));
    hosts
}

#[derive(Debug)]
pub struct Capture {
    probes: Vec<Proc>,
}

/// What the probes wrote, and anything that went wrong with them.
#[derive(Debug, Default)]
pub struct Captured {
    pub events: Vec<Event>,
    pub warnings: Vec<String>,
}

impl Capture {
    /// Starts `realip-probe capture` in each probed namespace and waits for each `hello`.
    pub fn start(lab: &Lab, probe: &Path, scenario: &Scenario) -> LabResult<Capture> {
        let mut probes = Vec::new();
        for (host, node) in probed(scenario) {
            let args: Vec<String> = ["capture", "--node", node, "--l7", "--evidence"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let what = format!("realip-probe capture on {node}");
            let proc = Proc::spawn(&lab.ns(host), &probe.to_string_lossy(), &args, &what, false)?;
            probes.push(proc);
        }
        let mut capture = Capture { probes };
        for proc in &mut capture.probes {
            let first = proc.first_line(Duration::from_secs(10))?;
            match decode_line(&first) {
                Ok(Event::Hello(_)) => {}
                _ => {
                    return Err(LabError::NotReady {
                        what: proc.what.clone(),
                        detail: format!("its first line is not hello: {first}"),
                    })
                }
            }
        }
        Ok(capture)
    }

    /// SIGTERM to every probe, then all their events.
    pub fn stop(self) -> Captured {
        let mut captured = Captured::default();
        for proc in self.probes {
            let what = proc.what.clone();
            // Includes the hello line: the analysis reads interface owners from it.
            let (lines, stderr) = proc.terminate(Duration::from_secs(3));
            for line in lines {
                match decode_line(&line) {
                    Ok(event) => captured.events.push(event),
                    Err(err) => captured.warnings.push(format!("{what}: {err}")),
                }
            }
            let stderr = stderr.trim();
            if !stderr.is_empty() {
                tracing::debug!("{what}: {stderr}");
            }
        }
        captured
    }
}
