//! A Mermaid flowchart per distinct path of a client connection: client → node → node → pod,
//! each rewrite on the arrow where it happened, the hop that lost the client address in red. A
//! proxied connection is drawn as one chain: its first leg ends at the proxy, which opens the
//! next leg (with the forwarding header it sent on the arrow). A SYN that reached no pod ends in a
//! dead end, one that ended at a node's own socket in a box of its own, one that went on past
//! the last capture point in a box that says so. The pod is green only when the client reached
//! it, at L4 or in a forwarding header. Connections that took the same path with the same
//! rewrites share one drawing.

use crate::analyze::flow::endpoint;
use crate::analyze::model::{
    ClientKind, EndsAt, Flow, LossKind, ProxyLink, Report, TranslationKind, Verdict,
};
use realip_probe::wire::Direction;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::hash::{Hash, Hasher};

/// Paths drawn at most; the rest are counted in a comment.
const MAX_PATHS: usize = 20;

/// One leg as drawn.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
struct Leg {
    /// Per node crossed in a row: the node and its capture points.
    runs: Vec<(String, String)>,
    /// Labels of the arrow leaving each run: rewrites made in that node.
    arrows: Vec<Vec<String>>,
    /// Rewrites made after each run by something not captured (a load balancer, a router).
    unseen: Vec<Vec<String>>,
    /// Where the leg's SYN went: `addr:port` of its last destination.
    to: String,
    ends_at: EndsAt,
    reached: bool,
    /// The node of the last hop.
    last_node: String,
    /// What the pod at the end sees.
    sees: Option<String>,
    /// Index of the run whose outgoing arrow lost the client address, and whether the rewrite
    /// happened inside that node (rather than somewhere unseen after it).
    lost: Option<(usize, bool)>,
    /// The proxy that opened this leg, and the forwarding header it carries.
    proxied_by: Option<String>,
    header: Option<String>,
}

/// A client connection as drawn: its legs and its verdict.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
struct Path {
    entry: std::net::SocketAddr,
    /// What the source at the first capture point is.
    source: ClientKind,
    legs: Vec<Leg>,
    verdict: Verdict,
    /// The verdict in a few words, for the box's title.
    title: String,
}

fn leg_of(flow: &Flow) -> Option<Leg> {
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
    let mut lost = None;
    // The rewrite that lost the client on this leg, when this leg lost it.
    let lost_hop = flow
        .lost
        .as_ref()
        .filter(|l| l.by == LossKind::Snat && l.leg == flow.leg)
        .and_then(|l| l.hop);
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
                format!("SNAT → {} ({})", t.to.ip(), t.to_owner)
            }
        };
        // The rule's owner on an SNAT's arrow, under the rewrite.
        let by = (t.kind == TranslationKind::Snat)
            .then(|| t.attribution.as_ref().and_then(super::attribution::short))
            .flatten()
            .map(|by| format!("by {by}"));
        let labels = if inside {
            &mut arrows[*before]
        } else {
            &mut unseen[*before]
        };
        labels.push(label);
        labels.extend(by);
        if t.kind == TranslationKind::Snat && lost_hop == Some(t.hop) {
            lost = Some((*before, inside));
        }
    }
    let last = flow.hops.last()?;
    Some(Leg {
        runs,
        arrows,
        unseen,
        to: endpoint(last.dst, last.dport),
        ends_at: flow.ends_at,
        reached: flow.reached_pod,
        last_node: last.node.clone(),
        sees: flow.pod_sees.map(|ip| ip.to_string()),
        lost,
        proxied_by: flow.proxied_by.as_ref().map(ProxyLink::describe),
        header: flow
            .l7_client_ip
            .as_ref()
            .map(|l7| format!("{} {}", l7.header, l7.value)),
    })
}

/// The verdict in a few words.
fn title(flow: &Flow) -> String {
    let lost_where = flow.lost.as_ref().map(|l| match l.by {
        LossKind::Snat if l.at.starts_with("between ") => format!("client IP lost {}", l.at),
        LossKind::Snat => format!("client IP lost on {}", l.at),
        LossKind::Proxy => format!("client IP replaced by {}", l.at),
        LossKind::BeforeCapture => format!("client IP lost {}", l.at),
    });
    match flow.verdict {
        Verdict::Kept => "client IP kept".into(),
        Verdict::KeptInHeader => format!(
            "{}; the client in {}",
            lost_where.unwrap_or_else(|| "client IP lost at L4".into()),
            flow.l7_client_ip
                .as_ref()
                .map_or("a header", |l| l.header.as_str())
        ),
        Verdict::Rewritten | Verdict::LostBeforeCapture => {
            lost_where.unwrap_or_else(|| "client IP not kept".into())
        }
        Verdict::Unknown => "not settled by the capture".into(),
        Verdict::Unreached => "did not reach a pod".into(),
        Verdict::AtHost => format!(
            "ended at a local socket on {}",
            flow.last_seen
                .as_ref()
                .map_or("a node", |l| l.node.as_str())
        ),
    }
}

pub fn render_mermaid(report: &Report) -> String {
    let mut diagram = Diagram::default();
    for flow in &report.flows {
        diagram.add(flow);
    }
    diagram.render()
}

/// Several reports as one diagram, each in a subgraph titled by its name.
pub fn render_mermaid_sections(sections: &[(String, &Report)]) -> String {
    let diagrams: Vec<(Option<String>, Diagram)> = sections
        .iter()
        .map(|(title, report)| {
            let mut diagram = Diagram::default();
            for flow in &report.flows {
                diagram.add(flow);
            }
            (Some(title.clone()), diagram)
        })
        .collect();
    let refs: Vec<(Option<String>, &Diagram)> =
        diagrams.iter().map(|(t, d)| (t.clone(), d)).collect();
    render_sections(&refs)
}

/// The distinct paths of the connections added so far, with how many took each: a diagram of a
/// capture of any size is built one flow at a time (the legs of a connection come together).
#[derive(Debug, Default)]
pub struct Diagram {
    /// Paths in the order first seen, up to [`MAX_PATHS`].
    order: Vec<Path>,
    seen: HashMap<Path, (usize, BTreeSet<String>)>,
    /// Paths beyond those drawn, only counted.
    more: HashSet<u64>,
    /// The legs of the connection being added, until its last.
    pending: Vec<Leg>,
    pending_client: Option<String>,
    pending_entry: Option<std::net::SocketAddr>,
    pending_source: ClientKind,
}

impl Diagram {
    pub fn add(&mut self, flow: &Flow) {
        if flow.leg <= 1 {
            self.pending.clear();
            self.pending_client = flow.client.map(|c| c.to_string());
            self.pending_entry = Some(flow.entry);
            self.pending_source = flow.client_kind;
        }
        if let Some(leg) = leg_of(flow) {
            self.pending.push(leg);
        }
        if flow.leg < flow.legs || self.pending.is_empty() {
            return;
        }
        let path = Path {
            entry: self.pending_entry.take().unwrap_or(flow.entry),
            source: self.pending_source,
            legs: std::mem::take(&mut self.pending),
            verdict: flow.verdict,
            title: title(flow),
        };
        let client = self.pending_client.take();
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
            if let Some(client) = client {
                slot.1.insert(client);
            }
        }
    }

    pub fn render(&self) -> String {
        render_sections(&[(None, self)])
    }
}

/// Several diagrams as one flowchart, each titled one in a subgraph of its own (one per lab
/// scenario): what mermaid renders is always a single diagram.
pub fn render_sections(sections: &[(Option<String>, &Diagram)]) -> String {
    let mut out = String::from("flowchart LR\n");
    let mut edges = Edges::default();
    let mut classes = Vec::new();
    for (k, (title, diagram)) in sections.iter().enumerate() {
        let prefix = match title {
            Some(title) => {
                let _ = writeln!(out, "  subgraph s{}[\"{}\"]", k + 1, esc(title));
                out.push_str("  direction TB\n");
                format!("s{}_", k + 1)
            }
            None => String::new(),
        };
        for (n, path) in diagram.order.iter().take(MAX_PATHS).enumerate() {
            let (count, clients) = &diagram.seen[path];
            let id = format!("{prefix}p{}", n + 1);
            draw(
                &mut out,
                &mut edges,
                &mut classes,
                &id,
                path,
                *count,
                clients,
            );
        }
        if !diagram.more.is_empty() {
            let _ = writeln!(out, "  %% {} more paths not drawn", diagram.more.len());
        }
        if title.is_some() {
            out.push_str("  end\n");
        }
    }
    for line in classes {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str("  classDef lost fill:#fdd,stroke:#c00,stroke-width:2px\n");
    out.push_str("  classDef rewritten fill:#fee,stroke:#c00\n");
    out.push_str("  classDef kept fill:#dfd,stroke:#080\n");
    out.push_str("  classDef unsettled fill:#ffd,stroke:#a80,stroke-dasharray:4 3\n");
    out.push_str("  classDef proxy fill:#eef,stroke:#36c\n");
    out.push_str("  classDef host fill:#eef,stroke:#36c\n");
    out.push_str("  classDef unreached fill:#eee,stroke:#666,stroke-dasharray:4 3\n");
    for e in edges.lost {
        let _ = writeln!(out, "  linkStyle {e} stroke:#c00,stroke-width:3px");
    }
    out
}

/// Edge numbering across the whole diagram (linkStyle counts every edge drawn).
#[derive(Debug, Default)]
struct Edges {
    next: usize,
    lost: Vec<usize>,
}

impl Edges {
    fn arrow(
        &mut self,
        out: &mut String,
        from: &str,
        labels: &[String],
        to: &str,
        link: &str,
        lost: bool,
    ) {
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
        if lost {
            self.lost.push(self.next);
        }
        self.next += 1;
    }
}

fn draw(
    out: &mut String,
    edges: &mut Edges,
    classes: &mut Vec<String>,
    id: &str,
    path: &Path,
    count: usize,
    clients: &BTreeSet<String>,
) {
    let plural = if count == 1 { "" } else { "s" };
    let legs = if path.legs.len() > 1 {
        format!(" · {} legs", path.legs.len())
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  subgraph {id}[\"{}\"]",
        esc(&format!(
            "{} · {count} connection{plural}{legs} · {}",
            path.entry, path.title
        ))
    );
    out.push_str("    direction LR\n");
    // Named for what the evidence says the first source is, not assumed to be the client.
    let who = match path.source {
        ClientKind::Client => "client",
        ClientKind::Pod => "pod",
        ClientKind::Node => "node",
        ClientKind::Lb => "load balancer or router",
        ClientKind::Proxy => "proxy",
        ClientKind::Unknown => "source (not settled)",
    };
    let client = match clients.iter().next() {
        Some(only) if clients.len() == 1 => format!("{who}<br/>{}", esc(only)),
        _ => format!("{who}<br/>several addresses"),
    };
    let _ = writeln!(out, "    {id}_c([\"{client}\"])");
    let mut marks: Vec<(String, &str)> = Vec::new();
    // The node an arrow comes from, and the labels it carries into the next leg's first run.
    let mut from = format!("{id}_c");
    let mut into = vec![format!("to {}", path.entry)];
    let last_leg = path.legs.len().saturating_sub(1);
    for (l, leg) in path.legs.iter().enumerate() {
        let lid = format!("{id}_l{l}");
        for (i, (node, points)) in leg.runs.iter().enumerate() {
            let _ = writeln!(out, "    {lid}_n{i}[\"{}<br/>{}\"]", esc(node), esc(points));
        }
        edges.arrow(out, &from, &into, &format!("{lid}_n0"), "-->", false);
        let end = format!("{lid}_end");
        let is_last = l == last_leg;
        let (shape, class) = end_box(leg, is_last, path.verdict);
        let _ = writeln!(out, "    {end}{shape}");
        marks.push((end.clone(), class));
        for (i, labels) in leg.arrows.iter().enumerate() {
            let target = if i + 1 < leg.runs.len() {
                format!("{lid}_n{}", i + 1)
            } else {
                end.clone()
            };
            let lost_here = leg.lost.is_some_and(|(run, _)| run == i);
            let link = if !leg.reached && leg.ends_at != EndsAt::Host && i + 1 == leg.runs.len() {
                "--x"
            } else {
                "-->"
            };
            let source = format!("{lid}_n{i}");
            if leg.unseen[i].is_empty() {
                edges.arrow(out, &source, labels, &target, link, lost_here);
            } else {
                // Something between two capture points rewrote the SYN: drawn as a hop.
                let hop = format!("{lid}_u{i}");
                let _ = writeln!(
                    out,
                    "    {hop}[[\"unseen hop<br/>load balancer or router\"]]"
                );
                let inside = leg.lost.is_some_and(|(_, inside)| inside);
                edges.arrow(out, &source, labels, &hop, "-->", lost_here && inside);
                edges.arrow(
                    out,
                    &hop,
                    &leg.unseen[i],
                    &target,
                    link,
                    lost_here && !inside,
                );
                if lost_here && !inside {
                    marks.push((hop, "lost"));
                }
            }
            if lost_here && leg.lost.is_some_and(|(_, inside)| inside) {
                marks.push((source, "lost"));
            }
        }
        // The proxy at the end of this leg opens the next one.
        from = end;
        into = path
            .legs
            .get(l + 1)
            .map(|next| {
                let mut labels = vec![format!(
                    "new connection{}",
                    next.proxied_by
                        .as_deref()
                        .map_or(String::new(), |p| format!(" from {p}"))
                )];
                labels.extend(next.header.clone());
                labels
            })
            .unwrap_or_default();
    }
    out.push_str("  end\n");
    for (node, class) in marks {
        classes.push(format!("class {node} {class}"));
    }
}

/// The box a leg ends in, and its class: the app pod green only when the client reached it.
fn end_box(leg: &Leg, is_last: bool, verdict: Verdict) -> (String, &'static str) {
    let sees = leg
        .sees
        .as_deref()
        .map_or_else(|| "nothing".to_string(), |s| format!("sees {}", esc(s)));
    let to = esc(&leg.to);
    if !is_last {
        return match leg.ends_at {
            EndsAt::Host => (
                format!(
                    "[/\"proxy on {}<br/>{to}: takes the connection\"/]",
                    esc(&leg.last_node)
                ),
                "proxy",
            ),
            _ => (format!("[/\"proxy {to}<br/>{sees}\"/]"), "proxy"),
        };
    }
    match leg.ends_at {
        EndsAt::Host => (
            format!(
                "[/\"local socket on {}<br/>{to}: a proxy or a hostNetwork process\"/]",
                esc(&leg.last_node)
            ),
            "host",
        ),
        _ if !leg.reached => (
            format!("{{{{\"did not reach a pod<br/>to {to}: dropped or not captured\"}}}}"),
            "unreached",
        ),
        EndsAt::Unseen => (
            format!(
                "([\"pod {to}?<br/>not seen after {}: would see {}\"])",
                esc(&leg.last_node),
                leg.sees.as_deref().map_or("?".to_string(), esc)
            ),
            "unsettled",
        ),
        _ => {
            let class = match verdict {
                Verdict::Kept | Verdict::KeptInHeader => "kept",
                Verdict::Rewritten | Verdict::LostBeforeCapture => "rewritten",
                _ => "unsettled",
            };
            let sees = match (verdict, &leg.header) {
                (Verdict::Kept, _) => "sees the client".to_string(),
                (Verdict::KeptInHeader, Some(header)) => {
                    format!("{sees}<br/>the client in {}", esc(header))
                }
                _ => sees,
            };
            (format!("([\"pod {to}<br/>{sees}\"])"), class)
        }
    }
}

/// Text safe inside a quoted Mermaid label.
fn esc(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}
