//! The text report: per connection a hop list marking each rewrite, then a summary per way in.

use super::{paint, place};
use crate::analyze::flow::{endpoint, losing_snat};
use crate::analyze::model::{EndsAt, Flow, Report, Summary, TranslationKind};
use crate::output::{BAD, DIM, GOOD, HEAD, WARN};
use realip_probe::wire::Direction;
use std::fmt::Write;

/// The readable report. Styles are ANSI; print through [`crate::output::emit`], which strips
/// them when stdout is not a terminal or NO_COLOR is set.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for (n, flow) in report.flows.iter().enumerate() {
        flow_text(&mut out, n + 1, flow);
    }
    summary_text(&mut out, &report.summary);
    out
}

/// Connection `n` of the report, followed by a blank line.
pub(super) fn flow_text(out: &mut String, n: usize, flow: &Flow) {
    flow_body(out, n, flow);
    out.push('\n');
}

fn flow_body(out: &mut String, n: usize, flow: &Flow) {
    let Some(first) = flow.hops.first() else {
        let _ = writeln!(
            out,
            "{} no hop recorded",
            paint(HEAD, &format!("Connection {n}"))
        );
        return;
    };
    let retries = match flow.retries {
        0 => String::new(),
        1 => " · 1 retry".to_string(),
        r => format!(" · {r} retries"),
    };
    let _ = writeln!(
        out,
        "{} {} → {}{}",
        paint(HEAD, &format!("Connection {n}")),
        endpoint(first.src, first.sport),
        flow.entry,
        paint(DIM, &format!(" · isn {}{retries}", flow.isn)),
    );
    let rows: Vec<[String; 5]> = flow
        .hops
        .iter()
        .map(|h| {
            [
                h.node.clone(),
                h.iface.clone(),
                match (h.dir, h.dir_inferred) {
                    (Direction::In, false) => "in".into(),
                    (Direction::Out, false) => "out".into(),
                    (Direction::In, true) => "in*".into(),
                    (Direction::Out, true) => "out*".into(),
                },
                endpoint(h.src, h.sport),
                endpoint(h.dst, h.dport),
            ]
        })
        .collect();
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (wn, wi, wd, ws) = (width(0), width(1), width(2), width(3));
    let lost = losing_snat(flow);
    for (i, (hop, row)) in flow.hops.iter().zip(&rows).enumerate() {
        let rewrites: Vec<_> = flow.translations.iter().filter(|t| t.hop == i).collect();
        let src_changed = rewrites.iter().any(|t| t.kind == TranslationKind::Snat);
        let dst_changed = rewrites.iter().any(|t| t.kind == TranslationKind::Dnat);
        let src = format!("{:ws$}", row[3]);
        let src = if src_changed { paint(BAD, &src) } else { src };
        let dst = if dst_changed {
            paint(WARN, &row[4])
        } else {
            row[4].clone()
        };
        let _ = writeln!(
            out,
            "  {:>2}  {:wn$}  {:wi$}  {:wd$}  {src} → {dst}",
            i + 1,
            hop.node,
            hop.iface,
            row[2],
        );
        for t in rewrites {
            let kind = match t.kind {
                TranslationKind::Snat => "SNAT",
                TranslationKind::Dnat => "DNAT",
            };
            let line = format!(
                "← {kind} {}: {} → {} ({})",
                place(&t.node),
                t.from,
                t.to,
                t.to_owner
            );
            let is_lost = lost.is_some_and(|l| std::ptr::eq(l, t));
            let line = if is_lost {
                format!(
                    "{}  {}",
                    paint(BAD, &line),
                    paint(BAD, "client IP lost here")
                )
            } else if t.kind == TranslationKind::Snat {
                paint(WARN, &line)
            } else {
                paint(DIM, &line)
            };
            let _ = writeln!(out, "        {line}");
        }
    }
    if flow.hops.iter().any(|h| h.dir_inferred) {
        let _ = writeln!(
            out,
            "  {}",
            paint(DIM, "* direction inferred: the capture did not record it")
        );
    }
    let sees = flow
        .pod_sees
        .map_or_else(|| "nothing".to_string(), |ip| ip.to_string());
    let client = flow
        .client
        .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    if flow.ends_at == EndsAt::Host {
        let node = flow
            .last_seen
            .as_ref()
            .map_or("a node", |at| at.node.as_str());
        let _ = writeln!(
            out,
            "  {} (a proxy or a hostNetwork process: the next hop, if any, is a new connection)",
            paint(HEAD, &format!("ended at a local socket on {node}")),
        );
    } else if !flow.reached_pod {
        let last = flow.last_seen.as_ref().map_or_else(
            || "nowhere".to_string(),
            |at| format!("on {} {}", at.node, at.iface),
        );
        let _ = writeln!(
            out,
            "  {} (dropped or not captured)",
            paint(WARN, &format!("did not reach a pod: last seen {last}")),
        );
    } else if flow.client_ip_preserved {
        let _ = writeln!(
            out,
            "  {} — the client address, preserved",
            paint(GOOD, &format!("pod sees {sees}")),
        );
    } else {
        let place = match (flow.lost_at, lost) {
            (Some(at), Some(t)) => format!(" at hop {} (SNAT {})", at + 1, place(&t.node)),
            (Some(at), None) => format!(" at hop {}", at + 1),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} — client {client} lost{place}",
            paint(BAD, &format!("pod sees {sees}")),
        );
    }
    if let Some(l7) = &flow.l7_client_ip {
        let _ = writeln!(out, "  L7 client IP: {} ({})", l7.value, l7.header);
    }
}

pub(super) fn summary_text(out: &mut String, summary: &Summary) {
    let mut unreached = String::new();
    if summary.unreached > 0 {
        let _ = write!(unreached, ", {} did not reach a pod", summary.unreached);
    }
    if summary.at_host > 0 {
        let _ = write!(unreached, ", {} ended at a local socket", summary.at_host);
    }
    let _ = writeln!(
        out,
        "{} {} connection(s): {} kept the client IP, {} rewritten{unreached}",
        paint(HEAD, "Summary:"),
        summary.connections,
        summary.preserved,
        summary.rewritten
    );
    if !summary.entries.is_empty() {
        let header = ["entry", "conns", "kept", "rewritten", "where"];
        let rows: Vec<[String; 5]> = summary
            .entries
            .iter()
            .map(|e| {
                let places = e
                    .rewritten_at
                    .iter()
                    .map(|r| {
                        format!(
                            "SNAT {} → {} ({}) ×{}",
                            place(&r.node),
                            r.to,
                            r.to_owner,
                            r.count
                        )
                    })
                    // Neither kept nor rewritten: said in the same column.
                    .chain((e.unreached > 0).then(|| format!("no pod reached ×{}", e.unreached)))
                    .chain((e.at_host > 0).then(|| format!("local socket ×{}", e.at_host)))
                    .collect::<Vec<_>>()
                    .join("; ");
                [
                    e.entry.clone(),
                    e.connections.to_string(),
                    e.preserved.to_string(),
                    e.rewritten.to_string(),
                    if places.is_empty() {
                        "-".into()
                    } else {
                        places
                    },
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..4)
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: [&str; 5]| {
            format!(
                "  {:w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            )
        };
        let _ = writeln!(out, "{}", paint(DIM, line(header).trim_end()));
        for r in &rows {
            let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
    }
    if summary.drops > 0 {
        let _ = writeln!(
            out,
            "{}",
            paint(
                WARN,
                &format!(
                    "The kernel dropped {} packet(s) during capture: some SYNs may be missing.",
                    summary.drops
                )
            )
        );
    }
    for w in &summary.warnings {
        let _ = writeln!(out, "{} {w}", paint(WARN, "warning:"));
    }
}
