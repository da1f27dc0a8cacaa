//! The text report: per connection a hop list marking each rewrite, then a summary per way in.

use super::{paint, place};
use crate::analyze::flow::{endpoint, losing_snat};
use crate::analyze::model::{Flow, LossKind, Report, Summary, TranslationKind, Verdict};
use crate::output::{wrap, BAD, DIM, GOOD, HEAD, WARN, WIDTH};
use anstyle::Style;
use realip_probe::wire::Direction;
use std::fmt::Write;

/// The readable report. Styles are ANSI; print through [`crate::output::emit`], which strips
/// them when stdout is not a terminal or NO_COLOR is set.
pub fn render_text(report: &Report) -> String {
    render_text_at(report, WIDTH)
}

/// The readable report laid out for `width` columns (less than [`WIDTH`] when it is shown
/// indented inside another report).
pub fn render_text_at(report: &Report, width: usize) -> String {
    let mut out = String::new();
    for (n, flow) in report.flows.iter().enumerate() {
        flow_text(&mut out, n + 1, flow, width);
    }
    summary_text(&mut out, &report.summary, width);
    out
}

/// Connection `n` of the report, followed by a blank line.
pub(super) fn flow_text(out: &mut String, n: usize, flow: &Flow, width: usize) {
    flow_body(out, n, flow, width);
    out.push('\n');
}

fn flow_body(out: &mut String, n: usize, flow: &Flow, width: usize) {
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
    let number = if flow.connection > 0 {
        flow.connection
    } else {
        n
    };
    if flow.leg <= 1 {
        let legs = if flow.legs > 1 {
            format!(" · leg 1 of {}", flow.legs)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{} {} → {}{}",
            paint(HEAD, &format!("Connection {number}")),
            endpoint(first.src, first.sport),
            endpoint(flow.entry.ip(), flow.entry.port()),
            paint(DIM, &format!("{legs} · isn {}{retries}", flow.isn)),
        );
    } else {
        let _ = writeln!(
            out,
            "  {} {} → {}{}",
            paint(HEAD, &format!("↳ leg {} of {}", flow.leg, flow.legs)),
            endpoint(first.src, first.sport),
            endpoint(flow.entry.ip(), flow.entry.port()),
            paint(DIM, &format!(" · isn {}{retries}", flow.isn)),
        );
        if let Some(link) = &flow.proxied_by {
            for fact in &link.evidence {
                prose(out, DIM, &format!("joined: {fact}"), "    ", width);
            }
        }
    }
    hops_text(out, flow, width);
    if flow.hops.iter().any(|h| h.dir_inferred) {
        let _ = writeln!(
            out,
            "  {}",
            paint(DIM, "* direction inferred: the capture did not record it")
        );
    }
    verdict_text(out, flow, width);
}

/// The hop list, numbered as `hops` is indexed in JSON, each rewrite under the hop it made.
fn hops_text(out: &mut String, flow: &Flow, width: usize) {
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
    let column = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (wn, wi, wd, ws) = (column(0), column(1), column(2), column(3));
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
            i, hop.node, hop.iface, row[2],
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
            let is_lost = lost.is_some_and(|l| std::ptr::eq(l, t)) && flow.client_established;
            let style = if is_lost {
                BAD
            } else if t.kind == TranslationKind::Snat {
                WARN
            } else {
                DIM
            };
            let line = if is_lost {
                format!("{line}  client IP lost here")
            } else {
                line
            };
            prose(out, style, &line, "        ", width);
            if let Some(attribution) = &t.attribution {
                for line in super::attribution::lines(attribution, t.kind) {
                    match line.strip_prefix("  ") {
                        Some(text) => prose(out, DIM, text, "            ", width),
                        None => prose(out, DIM, &line, "          ", width),
                    }
                }
            }
        }
    }
}

/// What the pod at the end of this leg sees, and what that means for the client; what the
/// source at the first capture point is, and why.
fn verdict_text(out: &mut String, flow: &Flow, width: usize) {
    let sees = flow
        .pod_sees
        .map_or_else(|| "nothing".to_string(), |ip| ip.to_string());
    let (style, lead) = match flow.verdict {
        Verdict::Kept => (GOOD, Some(format!("pod sees {sees}"))),
        Verdict::KeptInHeader => (WARN, Some(format!("pod sees {sees}"))),
        Verdict::Rewritten | Verdict::LostBeforeCapture => (BAD, Some(format!("pod sees {sees}"))),
        Verdict::Unknown if flow.pod_sees.is_some() => (WARN, Some(format!("pod sees {sees}?"))),
        Verdict::Unknown | Verdict::Unreached => (WARN, None),
        Verdict::AtHost => (HEAD, None),
    };
    let text = match &lead {
        Some(lead) => format!("{lead} — {}", flow.reason),
        None => flow.reason.clone(),
    };
    let lines = wrap(&text, width, "  ", "    ");
    for (i, line) in lines.iter().enumerate() {
        match (&lead, i) {
            // The lead alone in colour, the sentence plain: the eye finds the address.
            (Some(lead), 0) => {
                let rest = line.trim_start().strip_prefix(lead.as_str()).unwrap_or("");
                let _ = writeln!(out, "  {}{rest}", paint(style, lead));
            }
            (None, _) => {
                let _ = writeln!(out, "{}", paint(style, line));
            }
            _ => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    if let Some(l7) = &flow.l7_client_ip {
        let judged = match flow.l7_client_preserved {
            Some(true) => " — the client",
            Some(false) => " — not the client",
            None => "",
        };
        prose(
            out,
            Style::new(),
            &format!("L7 client IP: {} ({}){judged}", l7.value, l7.header),
            "  ",
            width,
        );
    }
    if flow.leg <= 1 && !flow.evidence.is_empty() {
        prose(
            out,
            DIM,
            &format!("source: {}", flow.evidence.join("; ")),
            "  ",
            width,
        );
    }
}

/// A sentence wrapped to the width, indented by `indent` (and two more after its first line).
fn prose(out: &mut String, style: Style, text: &str, indent: &str, width: usize) {
    let rest = format!("{indent}  ");
    for line in wrap(text, width, indent, &rest) {
        let _ = writeln!(out, "{}", paint(style, &line));
    }
}

pub(super) fn summary_text(out: &mut String, summary: &Summary, width: usize) {
    let mut counts = vec![
        format!("{} kept the client IP", summary.preserved),
        format!("{} rewritten", summary.rewritten),
    ];
    let others = [
        (summary.kept_in_header, "kept it only in a header"),
        (
            summary.lost_before_capture,
            "lost it before the first capture point",
        ),
        (summary.unknown, "not settled by the capture"),
        (summary.unreached, "did not reach a pod"),
        (summary.at_host, "ended at a local socket"),
    ];
    counts.extend(
        others
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}")),
    );
    let legs = if summary.legs > summary.connections {
        format!(" ({} TCP legs through proxies)", summary.legs)
    } else {
        String::new()
    };
    let line = format!(
        "{} connection(s){legs}: {}",
        summary.connections,
        counts.join(", ")
    );
    let mut lines = wrap(&line, width, "Summary: ", "  ").into_iter();
    if let Some(first) = lines.next() {
        let rest = first.strip_prefix("Summary:").unwrap_or(&first);
        let _ = writeln!(out, "{}{rest}", paint(HEAD, "Summary:"));
    }
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    if !summary.entries.is_empty() {
        let header = ["entry", "conns", "kept", "header", "lost", "other"];
        let rows: Vec<[String; 6]> = summary
            .entries
            .iter()
            .map(|e| {
                let lost = e.rewritten + e.lost_before_capture;
                let other = e.unknown + e.unreached + e.at_host;
                [
                    e.entry.to_string(),
                    e.connections.to_string(),
                    e.preserved.to_string(),
                    e.kept_in_header.to_string(),
                    lost.to_string(),
                    other.to_string(),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..6)
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: [&str; 6]| {
            format!(
                "  {:w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:>w5$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
                w5 = widths[5],
            )
        };
        let _ = writeln!(out, "{}", paint(DIM, line(header).trim_end()));
        for (e, r) in summary.entries.iter().zip(&rows) {
            let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
            let places = e
                .rewritten_at
                .iter()
                .map(|r| match r.by {
                    LossKind::Snat => format!(
                        "SNAT {} → {} ({}) ×{}",
                        place(&r.node),
                        r.to,
                        r.to_owner,
                        r.count
                    ),
                    LossKind::Proxy => format!("replaced by {} ×{}", r.node, r.count),
                    LossKind::BeforeCapture => {
                        format!("lost {} → {} ({}) ×{}", r.node, r.to, r.to_owner, r.count)
                    }
                })
                .chain((e.unknown > 0).then(|| format!("not settled ×{}", e.unknown)))
                .chain((e.unreached > 0).then(|| format!("no pod reached ×{}", e.unreached)))
                .chain((e.at_host > 0).then(|| format!("local socket ×{}", e.at_host)));
            for text in places {
                for l in wrap(&text, width, "      ", "        ") {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
    }
    if !summary.evidence.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            paint(HEAD, "Evidence (each node's netfilter state):")
        );
    }
    for node in &summary.evidence {
        let rules = match node.rules_total {
            0 => "no NAT rule".to_string(),
            total => format!("{} of {total} NAT rules listed", node.rules_listed),
        };
        let text = if node.available {
            format!(
                "{}: {rules}, {}; conntrack entries found for {} of {} connections",
                node.node,
                if node.counted {
                    "counters over the capture"
                } else {
                    "no end snapshot"
                },
                node.conntrack_found,
                node.conntrack_lookups
            )
        } else {
            format!(
                "{}: not available: {}",
                node.node,
                node.reason
                    .as_deref()
                    .unwrap_or("the probe could not read it")
            )
        };
        for line in wrap(&text, width, "  ", "    ") {
            let _ = writeln!(out, "{line}");
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
