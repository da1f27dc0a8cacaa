//! The trace report: analyze's report with names on addresses (node, pod, load balancer), the
//! nodes not probed, and explain's prediction beside it, loudly flagged where they disagree.

use super::topology::Topology;
use crate::analyze::model::{AttributionStatus, ClientKind, Flow, Report, TranslationKind};
use crate::analyze::render::attribution::{owner_words, rule_place};
use crate::analyze::{Owners, Role};
use crate::explain::model::{Explanation, L4Source, Origin, OriginVerdict};
use crate::output::{BAD, DIM, HEAD, WARN};
use anstyle::Style;
use realip_probe::wire::Owner as RuleOwner;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

/// Who owns an address: analyze's resolver, fed the cluster view trace read (the nodes, the
/// Service's pods, its load balancer and cluster addresses), in the report's words.
#[derive(Debug, Default)]
pub struct AddressBook {
    owners: Owners,
    /// `namespace/name` of the Service traced.
    service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Owner {
    Node { name: String },
    Pod { name: String, node: Option<String> },
    LoadBalancer { service: String },
    ClusterIp { service: String },
}

impl Owner {
    fn describe(&self) -> String {
        match self {
            Owner::Node { name } => format!("node {name}"),
            Owner::Pod {
                name,
                node: Some(node),
            } => format!("pod {name} on {node}"),
            Owner::Pod { name, node: None } => format!("pod {name}"),
            Owner::LoadBalancer { service } => format!("load balancer of {service}"),
            Owner::ClusterIp { service } => format!("ClusterIP of {service}"),
        }
    }
}

impl AddressBook {
    pub fn from_topology(topology: &Topology) -> Self {
        let mut owners = Owners::default();
        owners.set_view(topology.cluster_view());
        AddressBook {
            owners,
            service: topology.service.qualified(),
        }
    }

    /// The owner the cluster's objects name; a pod only when it is one of the Service's.
    pub fn owner(&self, ip: &IpAddr) -> Option<Owner> {
        match self.owners.role(*ip)? {
            Role::Node { node, .. } => Some(Owner::Node { name: node }),
            Role::Pod {
                name: Some(name),
                node,
            } => Some(Owner::Pod { name, node }),
            Role::LoadBalancer => Some(Owner::LoadBalancer {
                service: self.service.clone(),
            }),
            Role::ClusterIp => Some(Owner::ClusterIp {
                service: self.service.clone(),
            }),
            Role::Pod { name: None, .. } | Role::Sender => None,
        }
    }

    /// The names of the addresses a report mentions.
    pub fn mentioned(&self, report: &Report) -> BTreeMap<IpAddr, String> {
        let mut out = BTreeMap::new();
        for flow in &report.flows {
            for hop in &flow.hops {
                for ip in [hop.src, hop.dst] {
                    if let Some(owner) = self.owner(&ip) {
                        out.insert(ip, owner.describe());
                    }
                }
            }
        }
        out
    }
}

/// Where a measured connection came in, in explain's terms: the way in and its entry (`via`).
/// A pod or a node reaching the load balancer's address is caught by the node's service proxy
/// on its way out (explain's `lb-address`), not a connection from the internet.
fn origin_of(
    flow: &Flow,
    topology: &Topology,
    book: &AddressBook,
) -> Option<(Origin, &'static str)> {
    let (ip, port) = (flow.entry.ip(), flow.entry.port());
    match book.owner(&ip) {
        Some(Owner::LoadBalancer { .. }) => Some(match flow.client_kind {
            ClientKind::Pod => (Origin::InClusterPod, "lb-address"),
            ClientKind::Node => (Origin::Node, "lb-address"),
            _ => (Origin::InternetViaLb, "lb"),
        }),
        Some(Owner::ClusterIp { .. }) => Some((Origin::InClusterPod, "cluster-ip")),
        Some(Owner::Node { .. })
            if topology
                .service
                .ports
                .iter()
                .any(|p| p.node_port == Some(port)) =>
        {
            Some((Origin::NodePort, "node-port"))
        }
        _ => None,
    }
}

/// What the pod saw, in explain's terms.
fn measured_source(flow: &Flow, book: &AddressBook) -> L4Source {
    if flow.client_ip_preserved == Some(true) {
        return L4Source::Client;
    }
    if flow.client_kind == ClientKind::Proxy && flow.pod_sees == flow.client {
        return L4Source::Proxy;
    }
    let Some(seen) = flow.pod_sees else {
        return L4Source::Unknown;
    };
    match book.owner(&seen) {
        Some(Owner::Node { .. }) => L4Source::Node,
        Some(Owner::Pod { .. }) => L4Source::Pod,
        Some(Owner::LoadBalancer { .. }) => L4Source::Lb,
        _ if flow
            .translations
            .iter()
            .any(|t| t.to.ip() == seen && t.to_owner.to_ascii_lowercase().contains("bridge")) =>
        {
            L4Source::Bridge
        }
        _ => L4Source::Unknown,
    }
}

/// Measured and predicted disagree for a way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub origin: Origin,
    pub measured: L4Source,
    pub predicted: L4Source,
    /// The connections (1-based, as in the text report) that show it.
    pub connections: Vec<usize>,
}

/// The prediction for the path a connection took: explain's for the node it entered at (the
/// node decides between the node's and the bridge's address), else the general one.
pub fn prediction_for<'a>(
    flow: &Flow,
    prediction: &'a Explanation,
    by_entry_node: &'a BTreeMap<String, Explanation>,
) -> &'a Explanation {
    flow.hops
        .first()
        .and_then(|hop| by_entry_node.get(&hop.node))
        .unwrap_or(prediction)
}

/// explain's verdict for the way `flow` came in, predicted for its entry node: the one of its
/// entry (`via`), else the plain way in of its origin (not an Ingress in front of it).
fn verdict_for<'a>(
    flow: &Flow,
    prediction: &'a Explanation,
    by_entry_node: &'a BTreeMap<String, Explanation>,
    topology: &Topology,
    book: &AddressBook,
) -> Option<(Origin, &'a OriginVerdict)> {
    let (origin, via) = origin_of(flow, topology, book)?;
    let prediction = prediction_for(flow, prediction, by_entry_node);
    let of_origin = || prediction.origins.iter().filter(|v| v.origin == origin);
    let verdict = of_origin().find(|v| v.via == via).or_else(|| {
        of_origin()
            .min_by_key(|v| !matches!(v.via.as_str(), "lb" | "node-port" | "cluster-ip" | ""))
    })?;
    Some((origin, verdict))
}

pub fn disagreements(
    report: &Report,
    prediction: &Explanation,
    by_entry_node: &BTreeMap<String, Explanation>,
    topology: &Topology,
    book: &AddressBook,
) -> Vec<Disagreement> {
    let mut found: BTreeMap<(String, String, String), Disagreement> = BTreeMap::new();
    for (n, flow) in report.flows.iter().enumerate() {
        let Some((origin, verdict)) = verdict_for(flow, prediction, by_entry_node, topology, book)
        else {
            continue;
        };
        let measured = measured_source(flow, book);
        if measured == L4Source::Unknown || measured == verdict.l4_source_seen_by_pod {
            continue;
        }
        let key = (
            format!("{origin:?}"),
            format!("{measured:?}"),
            format!("{:?}", verdict.l4_source_seen_by_pod),
        );
        found
            .entry(key)
            .or_insert_with(|| Disagreement {
                origin,
                measured,
                predicted: verdict.l4_source_seen_by_pod,
                connections: Vec::new(),
            })
            .connections
            .push(n + 1);
    }
    found.into_values().collect()
}

/// The rewrite of the source explain predicts on a way in: none, or its label on the predicted
/// path ("SNAT by kube-proxy (MASQUERADE)") with the component whose rule it names.
fn predicted_snat(verdict: &OriginVerdict) -> Option<(String, Option<RuleOwner>)> {
    let hop = verdict
        .path
        .iter()
        .find(|hop| hop.rewrite.as_deref().is_some_and(|r| r.contains("SNAT")))?;
    Some((hop.rewrite.clone().unwrap_or_default(), hop.by))
}

/// The cause the node shows and the cause explain predicts disagree for a way in: explain
/// predicted no SNAT, or another component's; the node's counters and conntrack name the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CauseDisagreement {
    pub origin: Origin,
    /// explain's rewrite on the predicted path; `null` when it predicted no SNAT.
    pub predicted: Option<String>,
    /// The component explain's rewrite names, when it names one.
    pub predicted_owner: Option<RuleOwner>,
    /// The owner of the rule that rewrote the source.
    pub measured_owner: RuleOwner,
    /// That rule: where it sits, on which node.
    pub measured_rule: String,
    /// The connections (1-based, as in the text report) that show it.
    pub connections: Vec<usize>,
}

pub fn cause_disagreements(
    report: &Report,
    prediction: &Explanation,
    by_entry_node: &BTreeMap<String, Explanation>,
    topology: &Topology,
    book: &AddressBook,
) -> Vec<CauseDisagreement> {
    let mut found: BTreeMap<(String, String), CauseDisagreement> = BTreeMap::new();
    for (n, flow) in report.flows.iter().enumerate() {
        let Some((origin, verdict)) = verdict_for(flow, prediction, by_entry_node, topology, book)
        else {
            continue;
        };
        let predicted = predicted_snat(verdict);
        let measured = flow
            .translations
            .iter()
            .filter(|t| t.kind == TranslationKind::Snat)
            .filter_map(|t| {
                let a = t.attribution.as_ref()?;
                let rule = a
                    .rule
                    .as_ref()
                    .filter(|_| a.status == AttributionStatus::Rule)?;
                Some((rule, t))
            });
        for (rule, t) in measured {
            let agrees = match &predicted {
                Some((_, Some(owner))) => *owner == rule.owner,
                // A rewrite explain does not name the maker of: nothing to hold it to.
                Some((_, None)) => true,
                None => false,
            };
            if agrees {
                continue;
            }
            let measured_rule = format!("{} on {}", rule_place(rule), t.node);
            let key = (format!("{origin:?}"), measured_rule.clone());
            found
                .entry(key)
                .or_insert_with(|| CauseDisagreement {
                    origin,
                    predicted: predicted.as_ref().map(|(label, _)| label.clone()),
                    predicted_owner: predicted.as_ref().and_then(|(_, owner)| *owner),
                    measured_owner: rule.owner,
                    measured_rule,
                    connections: Vec::new(),
                })
                .connections
                .push(n + 1);
        }
    }
    found.into_values().collect()
}

/// Everything the trace reports.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    #[serde(flatten)]
    pub report: Report,
    /// Names of the addresses in `flows`.
    pub addresses: BTreeMap<IpAddr, String>,
    pub probed_nodes: Vec<String>,
    pub skipped_nodes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Explanation>,
    /// explain's prediction for each node connections entered at, when they entered at several:
    /// each connection is compared with the one of its own path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub predictions_by_entry_node: BTreeMap<String, Explanation>,
    pub disagreements: Vec<Disagreement>,
    /// Where the rule the nodes show behind an SNAT is not the component explain predicted
    /// (`--evidence`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cause_disagreements: Vec<CauseDisagreement>,
    /// Test connections opened by `--send`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<super::send::Sent>,
}

impl TraceReport {
    pub fn new(
        report: Report,
        topology: &Topology,
        probed_nodes: Vec<String>,
        skipped_nodes: BTreeMap<String, String>,
        prediction: Option<Explanation>,
        predictions_by_entry_node: BTreeMap<String, Explanation>,
        sent: Vec<super::send::Sent>,
    ) -> Self {
        let book = AddressBook::from_topology(topology);
        let disagreements = prediction
            .as_ref()
            .map(|p| disagreements(&report, p, &predictions_by_entry_node, topology, &book))
            .unwrap_or_default();
        let cause_disagreements = prediction
            .as_ref()
            .map(|p| cause_disagreements(&report, p, &predictions_by_entry_node, topology, &book))
            .unwrap_or_default();
        TraceReport {
            addresses: book.mentioned(&report),
            report,
            probed_nodes,
            skipped_nodes,
            prediction,
            predictions_by_entry_node,
            disagreements,
            cause_disagreements,
            sent,
        }
    }

    /// The JSON contract of analyze, plus additive trace fields.
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).unwrap_or_default();
        out.push('\n');
        out
    }

    pub fn to_text(&self, topology: &Topology) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {}/{} ({}, externalTrafficPolicy {}) on {}",
            paint(HEAD, "Trace of"),
            topology.namespace(),
            topology.name(),
            topology.service.type_.as_str(),
            topology.service.external_traffic_policy.as_str(),
            self.probed_nodes.join(", "),
        );
        for disagreement in &self.disagreements {
            let _ = writeln!(
                out,
                "{}",
                paint(
                    BAD,
                    &format!(
                        "!! MEASURED ≠ PREDICTED for {}: the pod saw the {} address, explain predicted the {} address (connection{} {})",
                        origin_name(disagreement.origin),
                        source_name(disagreement.measured),
                        source_name(disagreement.predicted),
                        if disagreement.connections.len() == 1 { "" } else { "s" },
                        disagreement
                            .connections
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                )
            );
        }
        for d in &self.cause_disagreements {
            let predicted = match &d.predicted {
                Some(label) => format!("explain predicted {label}"),
                None => "explain predicted no SNAT".to_string(),
            };
            let text = format!(
                "!! MEASURED CAUSE ≠ PREDICTED for {}: {}'s rule ({}) rewrote the source; \
                 {predicted} (connection{} {})",
                origin_name(d.origin),
                owner_words(d.measured_owner),
                d.measured_rule,
                if d.connections.len() == 1 { "" } else { "s" },
                d.connections
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            for line in crate::output::wrap(&text, crate::output::WIDTH, "", "   ") {
                let _ = writeln!(out, "{}", paint(BAD, &line));
            }
        }
        out.push('\n');
        out.push_str(&crate::analyze::render_text(&self.report));
        if !self.addresses.is_empty() {
            let _ = writeln!(out, "\n{}", paint(HEAD, "Addresses"));
            let width = self
                .addresses
                .keys()
                .map(|ip| ip.to_string().len())
                .max()
                .unwrap_or(0);
            for (ip, name) in &self.addresses {
                let _ = writeln!(out, "  {:width$}  {name}", ip.to_string());
            }
        }
        if !self.sent.is_empty() {
            let _ = writeln!(out, "\n{}", paint(HEAD, "Test connections (--send)"));
            for sent in &self.sent {
                sent_text(&mut out, sent);
            }
        }
        if !self.skipped_nodes.is_empty() {
            let _ = writeln!(out, "\n{}", paint(HEAD, "Not probed"));
            for (node, reason) in &self.skipped_nodes {
                let _ = writeln!(out, "  {node}: {}", paint(DIM, reason));
            }
        }
        if let Some(prediction) = &self.prediction {
            let _ = writeln!(
                out,
                "\n{}",
                paint(HEAD, "Predicted from configuration (explain)")
            );
            for verdict in &prediction.origins {
                let disagrees = self.disagreements.iter().any(|d| {
                    d.origin == verdict.origin && d.predicted == verdict.l4_source_seen_by_pod
                }) || self
                    .cause_disagreements
                    .iter()
                    .any(|d| d.origin == verdict.origin);
                let line = crate::explain::verdict_summary(verdict);
                if disagrees {
                    let _ = writeln!(out, "  {} {line}", paint(WARN, "← measured otherwise:"));
                } else {
                    let _ = writeln!(out, "  {line}");
                }
            }
            entry_predictions_text(&mut out, prediction, &self.predictions_by_entry_node);
        }
        out
    }
}

/// Where the prediction differs for connections entering at another node: those lines only.
fn entry_predictions_text(
    out: &mut String,
    prediction: &Explanation,
    by_entry_node: &BTreeMap<String, Explanation>,
) {
    for (node, other) in by_entry_node {
        let differing: Vec<String> = other
            .origins
            .iter()
            .filter(|verdict| !prediction.origins.contains(verdict))
            .map(crate::explain::verdict_summary)
            .collect();
        if differing.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  for connections entering at {node}:");
        for line in differing {
            let _ = writeln!(out, "    {line}");
        }
    }
}

/// One test connection: what became of it, and where the probes saw its SYN last. A client
/// verdict only for one that reached a pod.
fn sent_text(out: &mut String, sent: &super::send::Sent) {
    let _ = writeln!(out, "  {}  {}", sent.target, paint(DIM, &sent.outcome));
    match &sent.path {
        Some(path) => {
            let last = path.last_seen.as_ref().map(|at| {
                let dir = match at.dir {
                    realip_probe::wire::Direction::In => "in",
                    realip_probe::wire::Direction::Out => "out",
                };
                format!("{} {} ({dir})", at.node, at.iface)
            });
            let line = match (path.pod_sees, last) {
                (Some(seen), _) => format!("connection {}: the pod sees {seen}", path.connection),
                (None, _) if path.reached_pod => {
                    format!("connection {}: it reached a pod", path.connection)
                }
                (None, Some(last)) => format!(
                    "connection {}: its SYN was last seen on {last}, it reached no pod",
                    path.connection
                ),
                (None, None) => format!("connection {}: it reached no pod", path.connection),
            };
            let _ = writeln!(out, "    {line}");
        }
        None => {
            let _ = writeln!(out, "    its SYN was not seen by any probe");
        }
    }
    for place in &sent.seen_at {
        let _ = writeln!(out, "    token {} seen on {place}", sent.token);
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::InternetViaLb => "internet via the load balancer",
        Origin::NodePort => "NodePort",
        Origin::InClusterPod => "in-cluster pod",
        Origin::Node => "node",
    }
}

fn source_name(source: L4Source) -> &'static str {
    match source {
        L4Source::Client => "client's",
        L4Source::Node => "node's",
        L4Source::Bridge => "bridge's",
        L4Source::Lb => "load balancer's",
        L4Source::Proxy => "proxy's",
        L4Source::Pod => "pod's",
        L4Source::Unknown => "unknown",
    }
}

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}
