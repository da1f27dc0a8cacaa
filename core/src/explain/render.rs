//! What people read: text (styled with anstyle, stripped off-terminal), JSON and Mermaid.

use std::fmt::Write as _;

use super::model::{Explanation, L4Source, L7Source, OriginVerdict};
use crate::output::{wrap, wrap_command, BAD, DIM, GOOD, HEAD, WARN, WIDTH};

fn verdict_style(v: &OriginVerdict) -> anstyle::Style {
    let l7_ok = matches!(
        v.l7_client_ip,
        L7Source::XForwardedFor | L7Source::XRealIp | L7Source::Forwarded | L7Source::ProxyProtocol
    );
    match v.l4_source_seen_by_pod {
        L4Source::Client => GOOD,
        L4Source::Pod if v.origin != super::model::Origin::InternetViaLb => GOOD,
        L4Source::Unknown => WARN,
        _ if l7_ok => WARN,
        _ => BAD,
    }
}

fn path_line(v: &OriginVerdict) -> String {
    let mut line = String::new();
    for (i, hop) in v.path.iter().enumerate() {
        if i > 0 {
            match &hop.rewrite {
                Some(what) => {
                    let _ = write!(line, " {BAD}=[{what}]=>{BAD:#} ");
                }
                None => line.push_str(" -> "),
            }
        }
        line.push_str(&hop.at);
    }
    if let Some(last) = v.path.last() {
        let _ = write!(line, " {DIM}(source: {}){DIM:#}", last.source.as_str());
    }
    line
}

/// One line for a report that measured this way in (lab, trace): what the pod sees, the
/// deciding settings, and the first fix.
pub fn verdict_summary(v: &OriginVerdict) -> String {
    let mut line = format!(
        "{} via {}: pod sees {}, client IP at L7: {}",
        v.origin.as_str(),
        v.via,
        v.l4_source_seen_by_pod.as_str(),
        v.l7_client_ip.as_str()
    );
    let settings: Vec<&str> = v.reasons.iter().map(|r| r.setting.as_str()).collect();
    if !settings.is_empty() {
        let _ = write!(line, "; because {}", settings.join(", "));
    }
    if let Some(fix) = v.fixes.first() {
        let _ = write!(line, "; fix: {}", fix.text);
        if let Some(apply) = &fix.apply {
            let _ = write!(line, " ({apply})");
        }
    }
    line
}

/// `text` wrapped to the report's width, after `first`, continued after `rest`.
fn para(out: &mut String, text: &str, first: &str, rest: &str) {
    for line in wrap(text, WIDTH, first, rest) {
        let _ = writeln!(out, "{line}");
    }
}

/// The readable report, one block per Service.
pub fn render_text(explanations: &[Explanation]) -> String {
    let mut out = String::new();
    for (n, e) in explanations.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{HEAD}svc/{} -n {}{HEAD:#}", e.service, e.namespace);
        for a in &e.assumptions {
            para(&mut out, &format!("{DIM}assumed:{DIM:#} {a}"), "  ", "    ");
        }
        for v in &e.origins {
            let style = verdict_style(v);
            out.push('\n');
            para(
                &mut out,
                &format!(
                    "{HEAD}{}{HEAD:#} {DIM}via {}{DIM:#}: pod sees {style}{}{style:#}, client IP at L7: {style}{}{style:#}",
                    v.origin.as_str(),
                    v.via,
                    v.l4_source_seen_by_pod.as_str(),
                    v.l7_client_ip.as_str()
                ),
                "  ",
                "    ",
            );
            if !v.path.is_empty() {
                para(
                    &mut out,
                    &format!("path: {}", path_line(v)),
                    "    ",
                    "          ",
                );
            }
            for r in &v.reasons {
                let text = format!("why: {} {DIM}[{}]{DIM:#}", r.text, r.setting);
                para(&mut out, &text, "    ", "         ");
            }
            for f in &v.fixes {
                para(
                    &mut out,
                    &format!("{GOOD}fix:{GOOD:#} {}", f.text),
                    "    ",
                    "         ",
                );
                if let Some(apply) = &f.apply {
                    // Broken where the shell still reads one command: it is meant to be copied.
                    for line in wrap_command(apply, WIDTH, "         $ ", "             ") {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
        }
        for c in &e.closed {
            out.push('\n');
            let text = format!(
                "{DIM}{}: no such way in ({}: {}){DIM:#}",
                c.origin.as_str(),
                c.reason.setting,
                c.reason.text
            );
            para(&mut out, &text, "  ", "    ");
        }
    }
    out
}

/// The stable JSON contract: an array with one object per Service.
pub fn render_json(explanations: &[Explanation]) -> String {
    // Serializing these plain structs cannot fail; fall back to an empty array regardless.
    let mut json = serde_json::to_string_pretty(explanations).unwrap_or_else(|_| "[]".into());
    json.push('\n');
    json
}

fn mermaid_label(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('[', "#91;")
        .replace(']', "#93;")
        .replace('|', "#124;")
}

/// A flowchart per Service: one row per way in, thick edges where the source is rewritten.
pub fn render_mermaid(explanations: &[Explanation]) -> String {
    let mut out = String::from("flowchart LR\n");
    for (s, e) in explanations.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph s{s}[\"svc/{} -n {}\"]",
            mermaid_label(&e.service),
            mermaid_label(&e.namespace)
        );
        let _ = writeln!(out, "    direction LR");
        for (o, v) in e.origins.iter().enumerate() {
            let id = |h: usize| format!("s{s}o{o}h{h}");
            for (h, hop) in v.path.iter().enumerate() {
                let label = if h + 1 == v.path.len() {
                    format!(
                        "{}<br/>sees {} · L7 {}",
                        hop.at,
                        v.l4_source_seen_by_pod.as_str(),
                        v.l7_client_ip.as_str()
                    )
                } else if h == 0 {
                    format!("{}: {} ({})", v.origin.as_str(), hop.at, v.via)
                } else {
                    hop.at.clone()
                };
                let _ = writeln!(out, "    {}[\"{}\"]", id(h), mermaid_label(&label));
                if h > 0 {
                    match &hop.rewrite {
                        Some(what) => {
                            let _ = writeln!(
                                out,
                                "    {} ==>|\"{}\"| {}",
                                id(h - 1),
                                mermaid_label(what),
                                id(h)
                            );
                        }
                        None => {
                            let _ = writeln!(out, "    {} --> {}", id(h - 1), id(h));
                        }
                    }
                }
            }
            if let Some(last) = v.path.len().checked_sub(1) {
                let class = if v.l4_source_seen_by_pod == L4Source::Unknown {
                    "unknown"
                } else if v.path.iter().any(|h| h.rewrite.is_some()) {
                    "rewritten"
                } else {
                    "kept"
                };
                let _ = writeln!(out, "    class {} {class}", id(last));
            }
        }
        let _ = writeln!(out, "  end");
    }
    out.push_str("  classDef kept fill:#d4edda,stroke:#2e7d32\n");
    out.push_str("  classDef rewritten fill:#f8d7da,stroke:#c62828\n");
    out.push_str("  classDef unknown fill:#fff3cd,stroke:#f9a825\n");
    out
}
