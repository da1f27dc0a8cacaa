//! A Mermaid flowchart per distinct path: client → node → node → pod, each rewrite on the arrow
//! where it happened, the hop that lost the client address in red; a SYN that reached no pod
//! ends in a dead end, one that ended at a node's own socket (a proxy, a hostNetwork process) in
//! a box of its own. Connections that took the same path with the same rewrites share one
//! drawing.

use crate::analyze::flow::{losing_snat, new_address};
use crate::analyze::model::{EndsAt, Flow, Report, TranslationKind};
use realip_probe::wire::Direction;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::hash::{Hash, Hasher};

/// Paths drawn at most; the rest are counted in a comment.
const MAX_PATHS: usize = 20;

#[derive(Debug, PartialEq, Eq, Hash, Clone)]
struct Path {
    entry: String,
    /// Per node crossed in a row: the node and its capture points.
    runs: Vec<(String, String)>,
    /// Labels of the arrow leaving each run: rewrites made in that node.
    arrows: Vec<Vec<String>>,
    /// Rewrites made after each run by something not captured (a load balancer, a router).
    unseen: Vec<Vec<String>>,
    pod: String,
    /// False when the SYN reached no pod: the path ends in a dead end after the last run.
    reached: bool,
    /// The node whose own socket accepted the SYN (`ends_at` host): no pod, and no drop.
    host: Option<String>,
    /// What the pod sees when it is not the client.
    pod_sees: Option<String>,
    /// Index of the run whose outgoing arrow lost the client address, and whether the rewrite
    /// happened inside that node (rather than somewhere unseen after it).
    lost: Option<(usize, bool)>,
}

/// The drawing of one flow; `None` for a flow without hops (nothing to draw).
fn path_of(flow: &Flow) -> Option<Path> {
    let mut runs: Vec<(String, String)> = Vec::new();
    let mut run_of = Vec::with_capacity(flow.hops.len());
    for hop in &flow.hops {
        let point = format!(
            "{} {}",
            hop.iface,
            if hop.dir == Direction::In {
                "in"
            } else {
                "out"
            }
        );
        match runs.last_mut() {
            Some((node, points)) if *node == hop.node => {
                points.push_str(" → ");
                points.push_str(&point);
            }
            _ => runs.push((hop.node.clone(), point)),
        }
        run_of.push(runs.len() - 1);
    }
    let mut arrows = vec![Vec::new(); runs.len()];
    let mut unseen = vec![Vec::new(); runs.len()];
    let lost_t = losing_snat(flow);
    let mut lost = None;
    for t in &flow.translations {
        let (Some(before), Some(prev), Some(next)) = (
            t.hop.checked_sub(1).and_then(|h| run_of.get(h)),
            t.hop.checked_sub(1).and_then(|h| flow.hops.get(h)),
            flow.hops.get(t.hop),
        ) else {
            continue;
        };
        let inside = prev.node == next.node;
        let label = match t.kind {
            TranslationKind::Dnat => format!("DNAT → {} ({})", t.to, t.to_owner),
            TranslationKind::Snat => {
                format!("SNAT → {} ({})", new_address(flow, t), t.to_owner)
            }
        };
        if inside {
            arrows[*before].push(label);
        } else {
            unseen[*before].push(label);
        }
        if lost_t.is_some_and(|l| std::ptr::eq(l, t)) {
            lost = Some((*before, inside));
        }
    }
    let last = flow.hops.last()?;
    Some(Path {
        entry: flow.entry.clone(),
        runs,
        arrows,
        unseen,
        pod: crate::analyze::flow::endpoint(last.dst, last.dport),
        reached: flow.reached_pod,
        host: (flow.ends_at == EndsAt::Host).then(|| last.node.clone()),
        pod_sees: (!flow.client_ip_preserved)
            .then(|| flow.pod_sees.map(|ip| ip.to_string()))
            .flatten(),
        lost,
    })
}

pub fn render_mermaid(report: &Report) -> String {
    let mut diagram = Diagram::default();
    for flow in &report.flows {
        diagram.add(flow);
    }
    diagram.render()
}

/// The distinct paths of the flows added so far, with how many took each: a diagram of a
/// capture of any size is built one flow at a time.
#[derive(Debug, Default)]
pub struct Diagram {
    /// Paths in the order first seen, up to [`MAX_PATHS`].
    order: Vec<Path>,
    seen: HashMap<Path, (usize, BTreeSet<String>)>,
    /// Paths beyond those drawn, only counted.
    more: HashSet<u64>,
}

impl Diagram {
    pub fn add(&mut self, flow: &Flow) {
        let Some(path) = path_of(flow) else {
            return;
        };
        let slot = match self.seen.get_mut(&path) {
            Some(slot) => slot,
            None if self.order.len() >= MAX_PATHS => {
                let mut hasher = DefaultHasher::new();
                path.hash(&mut hasher);
                self.more.insert(hasher.finish());
                return;
            }
            None => {
                self.order.push(path.clone());
                self.seen
                    .entry(path)
                    .or_insert_with(|| (0, BTreeSet::new()))
            }
        };
        slot.0 += 1;
        if slot.1.len() <= 3 {
            if let Some(client) = flow.client {
                slot.1.insert(client.to_string());
            }
        }
    }

    pub fn render(&self) -> String {
        let (order, seen) = (&self.order, &self.seen);
        let mut out = String::from("flowchart LR\n");
        let mut edge = 0usize;
        let mut lost_edges = Vec::new();
        let mut lost_nodes: Vec<String> = Vec::new();
        for (n, path) in order.iter().take(MAX_PATHS).enumerate() {
            let (count, clients) = &seen[path];
            let id = format!("p{}", n + 1);
            let verdict = match path.lost {
                _ if path.host.is_some() => format!(
                    "ended at a local socket on {}",
                    path.host.as_deref().unwrap_or_default()
                ),
                _ if !path.reached => "did not reach a pod".to_string(),
                Some((run, true)) => format!("client IP lost on {}", path.runs[run].0),
                Some((run, false)) => match path.runs.get(run + 1) {
                    Some((next, _)) => {
                        format!("client IP lost between {} and {next}", path.runs[run].0)
                    }
                    None => format!("client IP lost after {}", path.runs[run].0),
                },
                None if path.pod_sees.is_none() => "client IP preserved".to_string(),
                None => "client IP not preserved".to_string(),
            };
            let plural = if *count == 1 { "" } else { "s" };
            let _ = writeln!(
                out,
                "  subgraph {id}[\"{}\"]",
                esc(&format!(
                    "{} · {count} connection{plural} · {verdict}",
                    path.entry
                ))
            );
            out.push_str("    direction LR\n");
            let client = if clients.len() == 1 {
                format!(
                    "client<br/>{}",
                    esc(clients.iter().next().map_or("", |c| c))
                )
            } else {
                "clients".to_string()
            };
            let _ = writeln!(out, "    {id}_c([\"{client}\"])");
            for (i, (node, points)) in path.runs.iter().enumerate() {
                let _ = writeln!(out, "    {id}_n{i}[\"{}<br/>{}\"]", esc(node), esc(points));
            }
            let sees = match &path.pod_sees {
                Some(ip) => format!("sees {}", esc(ip)),
                None => "sees the client".to_string(),
            };
            if let Some(node) = &path.host {
                // Accepted by a process of the node: a proxy's next connection is drawn apart.
                let _ = writeln!(
                out,
                "    {id}_pod[/\"local socket on {}<br/>{}: a proxy or a hostNetwork process\"/]",
                esc(node),
                esc(&path.pod)
            );
            } else if path.reached {
                let _ = writeln!(out, "    {id}_pod([\"pod {}<br/>{sees}\"])", esc(&path.pod));
            } else {
                // The SYN was seen last on the last run's capture point, and nowhere after.
                let _ = writeln!(
                out,
                "    {id}_pod{{{{\"did not reach a pod<br/>to {}: dropped or not captured\"}}}}",
                esc(&path.pod)
            );
            }
            let _ = writeln!(out, "    {id}_c -->|\"to {}\"| {id}_n0", esc(&path.entry));
            edge += 1;
            for (i, labels) in path.arrows.iter().enumerate() {
                let target = if i + 1 < path.runs.len() {
                    format!("{id}_n{}", i + 1)
                } else {
                    format!("{id}_pod")
                };
                let lost_here = path.lost.is_some_and(|(run, _)| run == i);
                let from = format!("{id}_n{i}");
                if path.unseen[i].is_empty() {
                    arrow(&mut out, &from, labels, &target, link(path, i));
                } else {
                    // Something between two capture points rewrote the SYN: draw it as a hop.
                    let hop = format!("{id}_u{i}");
                    let _ = writeln!(
                        out,
                        "    {hop}[[\"unseen hop<br/>load balancer or router\"]]"
                    );
                    arrow(&mut out, &from, labels, &hop, "-->");
                    if lost_here && path.lost.is_some_and(|(_, inside)| inside) {
                        lost_edges.push(edge);
                    }
                    edge += 1;
                    arrow(&mut out, &hop, &path.unseen[i], &target, link(path, i));
                    if lost_here && path.lost.is_some_and(|(_, inside)| !inside) {
                        lost_edges.push(edge);
                        lost_nodes.push(hop);
                    }
                    edge += 1;
                    continue;
                }
                if lost_here {
                    lost_edges.push(edge);
                }
                edge += 1;
            }
            out.push_str("  end\n");
            for node in lost_nodes.drain(..) {
                let _ = writeln!(out, "  class {node} lost");
            }
            if let Some((run, inside)) = path.lost {
                if inside {
                    let _ = writeln!(out, "  class {id}_n{run} lost");
                }
            }
            let _ = writeln!(
                out,
                "  class {id}_pod {}",
                if path.host.is_some() {
                    "host"
                } else if !path.reached {
                    "unreached"
                } else if path.pod_sees.is_some() {
                    "rewritten"
                } else {
                    "kept"
                }
            );
        }
        if !self.more.is_empty() {
            let _ = writeln!(out, "  %% {} more paths not drawn", self.more.len());
        }
        out.push_str("  classDef lost fill:#fdd,stroke:#c00,stroke-width:2px\n");
        out.push_str("  classDef rewritten fill:#fee,stroke:#c00\n");
        out.push_str("  classDef kept fill:#dfd,stroke:#080\n");
        out.push_str("  classDef host fill:#eef,stroke:#36c\n");
        out.push_str("  classDef unreached fill:#eee,stroke:#666,stroke-dasharray:4 3\n");
        for e in lost_edges {
            let _ = writeln!(out, "  linkStyle {e} stroke:#c00,stroke-width:3px");
        }
        out
    }
}

/// The link leaving run `i`: into a dead end (`--x`) when it is the last and nothing accepted
/// the SYN.
fn link(path: &Path, i: usize) -> &'static str {
    if !path.reached && path.host.is_none() && i + 1 == path.runs.len() {
        "--x"
    } else {
        "-->"
    }
}

/// `from --> to`, labelled with `labels` one per line when there are any.
fn arrow(out: &mut String, from: &str, labels: &[String], to: &str, link: &str) {
    if labels.is_empty() {
        let _ = writeln!(out, "    {from} {link} {to}");
    } else {
        let label = labels
            .iter()
            .map(|l| esc(l))
            .collect::<Vec<_>>()
            .join("<br/>");
        let _ = writeln!(out, "    {from} {link}|\"{label}\"| {to}");
    }
}

/// Text safe inside a quoted Mermaid label.
fn esc(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}
