//! What the lab prints: each scenario's report, the closing table, the JSON list, the diagrams.

use super::driver::ScenarioRun;
use super::topology::owner_of;
use super::verdict::Check;
use crate::analyze::{self, model::Flow};
use crate::output::{BAD, DIM, GOOD, HEAD};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::IpAddr;

/// An address with its owner: `198.18.1.1 (cbr0 of node-a)`.
fn named(ip: IpAddr) -> String {
    match owner_of(ip) {
        Some(owner) => format!("{ip} ({owner})"),
        None => ip.to_string(),
    }
}

fn named_xff(xff: &str) -> String {
    match xff.split(',').next().and_then(|ip| ip.trim().parse().ok()) {
        Some(ip) if !xff.contains(',') => named(ip),
        _ => xff.to_string(),
    }
}

/// What the pod saw, in words (the table's column).
pub fn pod_saw_text(check: &Check) -> String {
    match (check.pod_saw, &check.pod_saw_x_forwarded_for) {
        (None, _) if check.last_seen.is_some() || check.expected.starts_with("dropped") => {
            format!(
                "nothing: dropped after {}",
                check.last_seen.as_deref().unwrap_or("the first hop")
            )
        }
        (None, _) => "no answer".into(),
        (Some(ip), None) => named(ip),
        (Some(ip), Some(xff)) => format!("{}, X-Forwarded-For {}", named(ip), named_xff(xff)),
    }
}

pub fn rewritten_text(check: &Check) -> String {
    if check.rewritten_at.is_empty() {
        "nowhere".into()
    } else {
        check.rewritten_at.join("; ")
    }
}

fn mark(ok: bool) -> String {
    if ok {
        format!("{GOOD}✓ true{GOOD:#}")
    } else {
        format!("{BAD}✗ false{BAD:#}")
    }
}

fn tick(ok: bool) -> String {
    if ok {
        format!("{GOOD}✓{GOOD:#}")
    } else {
        format!("{BAD}✗{BAD:#}")
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("{by}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One scenario's report. `cause` is the explanation (explain's text, or the scenario's line).
pub fn scenario_text(run: &ScenarioRun, cause: &str) -> String {
    let s = &run.scenario;
    let mut out = String::new();
    let _ = writeln!(out, "{HEAD}━━ {} ━━ {}{HEAD:#}", s.name, s.title);
    let _ = writeln!(out, "{DIM}models: {}{DIM:#}", s.models);
    for check in &run.checks {
        let _ = writeln!(out);
        let _ = writeln!(out, "  {} → {} ({})", check.from, check.to, check.via);
        let _ = writeln!(out, "    expected        {}", check.expected);
        let _ = writeln!(
            out,
            "    pod saw         {}   {DIM}(its own accept() and headers){DIM:#}",
            pod_saw_text(check)
        );
        let measured = match (check.measured_pod_sees, &check.last_seen) {
            (Some(ip), _) => {
                let mut text = named(ip);
                if let Some(l7) = &check.measured_l7_client_ip {
                    let _ = write!(text, ", L7 client {}", named_xff(l7));
                }
                text
            }
            (None, Some(last)) => format!("SYN last seen at {last}"),
            (None, None) => "no flow".into(),
        };
        let isn = check
            .isn
            .map(|isn| format!(" isn {isn}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    probes measured {measured}   {DIM}(SYN sightings{isn}){DIM:#}"
        );
        let _ = writeln!(out, "    rewritten at    {}", rewritten_text(check));
        if let Some(verdict) = check.verdict {
            let _ = writeln!(out, "    verdict         {}", verdict.words());
        }
        if !check.partial.is_empty() {
            let parts: Vec<String> = check
                .partial
                .iter()
                .map(|p| {
                    let said = p.verdict.map_or("not seen", |v| v.words());
                    format!("{}: {said} {}", p.variant.words(), tick(p.ok))
                })
                .collect();
            let _ = writeln!(out, "    partial capture {}", parts.join(" · "));
        }
        let _ = writeln!(out, "    matches         {}", mark(check.matches));
        for problem in &check.problems {
            let _ = writeln!(out, "      {BAD}{problem}{BAD:#}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", indent(&analyze::render_text(&run.report), "  "));
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", indent(cause, "  "));
    out
}

/// The closing table: scenario | what the pod saw | where the source was rewritten | matches.
pub fn table(runs: &[ScenarioRun]) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for run in runs {
        for (i, check) in run.checks.iter().enumerate() {
            let name = if i == 0 {
                run.scenario.name.to_string()
            } else {
                String::new()
            };
            let saw = if run.checks.len() > 1 {
                format!("[{}] {}", check.from, pod_saw_text(check))
            } else {
                pod_saw_text(check)
            };
            rows.push([name, saw, rewritten_text(check), check.matches.to_string()]);
        }
    }
    let header = [
        "SCENARIO",
        "WHAT THE POD SAW",
        "WHERE THE SOURCE WAS REWRITTEN",
        "MATCHES",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let pad = |text: &str, width: usize| {
        let len = text.chars().count();
        format!("{text}{}", " ".repeat(width.saturating_sub(len)))
    };
    let mut out = String::new();
    let line: Vec<String> = header.iter().zip(widths).map(|(h, w)| pad(h, w)).collect();
    let _ = writeln!(out, "{HEAD}{}{HEAD:#}", line.join("  ").trim_end());
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 3 {
                    mark(cell == "true")
                } else {
                    pad(cell, w)
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let passed = runs.iter().filter(|run| run.matches()).count();
    let _ = writeln!(
        out,
        "\n{passed} of {} scenarios match their ground truth",
        runs.len()
    );
    out
}

/// One entry of `lab -o json`.
#[derive(Debug, Serialize)]
pub struct ScenarioJson<'a> {
    pub scenario: &'a str,
    pub title: &'a str,
    /// What the first connection's pod accept()ed from (None: not answered).
    pub pod_saw: Option<IpAddr>,
    pub pod_saw_x_forwarded_for: Option<&'a str>,
    pub measured_pod_sees: Option<IpAddr>,
    pub measured_l7_client_ip: Option<&'a str>,
    pub rewritten_at: String,
    /// Every connection of the scenario matches.
    pub matches: bool,
    /// Why, and what to change (explain's text when it covers the scenario).
    pub cause: String,
    pub connections: &'a [Check],
    /// The scenario's flows, in the analysis contract.
    pub flows: &'a [Flow],
}

pub fn json(runs: &[ScenarioRun], causes: &[String]) -> String {
    let entries: Vec<ScenarioJson> = runs
        .iter()
        .zip(causes)
        .map(|(run, cause)| {
            let first = run.checks.first();
            ScenarioJson {
                scenario: run.scenario.name,
                title: run.scenario.title,
                pod_saw: first.and_then(|c| c.pod_saw),
                pod_saw_x_forwarded_for: first.and_then(|c| c.pod_saw_x_forwarded_for.as_deref()),
                measured_pod_sees: first.and_then(|c| c.measured_pod_sees),
                measured_l7_client_ip: first.and_then(|c| c.measured_l7_client_ip.as_deref()),
                rewritten_at: first.map(rewritten_text).unwrap_or_default(),
                matches: run.matches(),
                cause: crate::output::plain(cause),
                connections: &run.checks,
                flows: &run.report.flows,
            }
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&entries).unwrap_or_default();
    out.push('\n');
    out
}

/// The diagrams: one raw diagram for one scenario, Markdown sections for several.
pub fn mermaid(runs: &[ScenarioRun]) -> String {
    if let [run] = runs {
        return analyze::render_mermaid(&run.report);
    }
    let mut out = String::new();
    for run in runs {
        let _ = writeln!(out, "### {}\n\n{}\n", run.scenario.name, run.scenario.title);
        let _ = writeln!(
            out,
            "```mermaid\n{}```\n",
            ensure_newline(&analyze::render_mermaid(&run.report))
        );
    }
    out
}

fn ensure_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::model::{Report, Summary};
    use crate::lab::scenario;

    fn check(matches: bool) -> Check {
        Check {
            from: "client".into(),
            to: "203.0.113.100:80".into(),
            via: "the load balancer's VIP".into(),
            expected: "pod app-a sees cbr0 of node-a (198.18.1.1)".into(),
            pod_saw: Some("198.18.1.1".parse().unwrap()),
            pod_saw_x_forwarded_for: None,
            measured_pod_sees: Some("198.18.1.1".parse().unwrap()),
            measured_l7_client_ip: None,
            last_seen: None,
            rewritten_at: vec!["node-a: SNAT 192.0.2.10 → 198.18.1.1 (cbr0 of node-a)".into()],
            matches,
            problems: vec![],
            isn: Some(1),
            verdict: None,
            partial: vec![],
        }
    }

    fn run(name: &str, checks: Vec<Check>) -> ScenarioRun {
        ScenarioRun {
            scenario: scenario::select(name).unwrap().remove(0),
            checks,
            report: Report::new(vec![], Summary::default()),
            events: vec![],
        }
    }

    #[test]
    fn table_snapshot() {
        let mut dropped = check(true);
        dropped.pod_saw = None;
        dropped.measured_pod_sees = None;
        dropped.expected = "dropped at node-b".into();
        dropped.last_seen = Some("node-b eth0 (in)".into());
        dropped.rewritten_at.clear();
        let runs = vec![
            run("cluster-same-node", vec![check(true)]),
            run("local", vec![check(false), dropped]),
        ];
        insta::assert_snapshot!(crate::output::plain(&table(&runs)));
    }

    #[test]
    fn json_has_the_contract_fields() {
        let runs = vec![run("cluster-same-node", vec![check(true)])];
        let value: serde_json::Value = serde_json::from_str(&json(&runs, &["why".into()])).unwrap();
        let entry = &value[0];
        for field in [
            "scenario",
            "pod_saw",
            "measured_pod_sees",
            "rewritten_at",
            "matches",
            "flows",
        ] {
            assert!(entry.get(field).is_some(), "{field} missing");
        }
        assert_eq!(entry["pod_saw"], "198.18.1.1");
        assert_eq!(entry["matches"], true);
    }
}
