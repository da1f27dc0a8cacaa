//! The captures users actually bring, made from a scenario's full capture: without the load
//! balancer's probe (a cloud load balancer cannot be probed), and the nodes' uplinks only, with
//! no `hello` (what `tcpdump -i eth0 -w` on each machine gives). Each is analyzed again; its
//! verdicts may say less than the full capture's, never something the pods' accept() contradicts.

use crate::analyze::model::{Flow, Report, Verdict};
use realip_probe::wire::{Event, IfaceKind};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;

/// A partial capture set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Every probe but the load balancer's.
    NoLb,
    /// Only the uplink interfaces of every probed machine, and no `hello`.
    Uplinks,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::NoLb, Variant::Uplinks];

    pub fn name(self) -> &'static str {
        match self {
            Variant::NoLb => "no-lb",
            Variant::Uplinks => "uplinks",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Variant::NoLb => "without the LB's probe",
            Variant::Uplinks => "uplinks only, no hello",
        }
    }

    /// The events of the full capture this variant keeps; `None` when it would be the full
    /// capture again (no probe ran on the load balancer).
    pub fn events(self, events: &[Event], lb: &str) -> Option<Vec<Event>> {
        match self {
            Variant::NoLb => {
                let kept: Vec<Event> = events
                    .iter()
                    .filter(|e| e.node() != Some(lb))
                    .cloned()
                    .collect();
                (kept.len() < events.len()).then_some(kept)
            }
            Variant::Uplinks => {
                let uplinks: HashSet<(String, String)> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Hello(h) => Some(h),
                        _ => None,
                    })
                    .flat_map(|h| {
                        h.interfaces
                            .iter()
                            .filter(|i| i.kind == IfaceKind::Uplink)
                            .map(|i| (h.node.clone(), i.name.clone()))
                    })
                    .collect();
                let on_uplink = |node: &str, iface: &str| {
                    uplinks.contains(&(node.to_string(), iface.to_string()))
                };
                Some(
                    events
                        .iter()
                        .filter(|e| match e {
                            Event::Syn(s) => on_uplink(&s.node, &s.iface),
                            Event::L7(l) => on_uplink(&l.node, &l.iface),
                            _ => false,
                        })
                        .cloned()
                        .collect(),
                )
            }
        }
    }
}

/// One connection judged on a partial capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialCheck {
    pub variant: Variant,
    /// The verdict of the latest leg of the connection this capture still holds; `None` when
    /// it holds none (nothing claimed).
    pub verdict: Option<Verdict>,
    pub client_ip_preserved: Option<bool>,
    pub ok: bool,
    pub problem: Option<String>,
}

/// What the pod at the end of each leg of a connection saw, by the leg's ISN: the truth a
/// partial verdict is held to.
#[derive(Debug, Clone)]
pub struct Truth {
    pub origin: IpAddr,
    /// (ISN of the leg, what its pod's accept() returned; `None`: no pod accepted it).
    pub legs: Vec<(u32, Option<IpAddr>)>,
}

/// Judges the partial report's verdict on the connection `truth` describes: a claim of `true`
/// must be what the leg's pod saw from the origin, a claim of `false` must not.
pub fn check(variant: Variant, report: &Report, truth: &Truth) -> PartialCheck {
    let found = truth
        .legs
        .iter()
        .rev()
        .find_map(|(isn, saw)| flow_of(report, *isn).map(|flow| (flow, *saw)));
    let Some((flow, saw)) = found else {
        return PartialCheck {
            variant,
            verdict: None,
            client_ip_preserved: None,
            ok: true,
            problem: None,
        };
    };
    let saw_text = saw.map_or_else(
        || "nothing (no pod accepted it)".into(),
        |ip| ip.to_string(),
    );
    let problem = match flow.client_ip_preserved {
        Some(true) if saw != Some(truth.origin) => Some(format!(
            "claims the client {} was kept; the pod saw {saw_text}",
            truth.origin
        )),
        Some(false) if saw.is_none_or(|ip| ip == truth.origin) => Some(format!(
            "claims the client was lost; the pod saw {saw_text}"
        )),
        _ => None,
    };
    PartialCheck {
        variant,
        verdict: Some(flow.verdict),
        client_ip_preserved: flow.client_ip_preserved,
        ok: problem.is_none(),
        problem,
    }
}

fn flow_of(report: &Report, isn: u32) -> Option<&Flow> {
    report.flows.iter().find(|f| f.isn == isn)
}
