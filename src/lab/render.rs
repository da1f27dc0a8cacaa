//! What the lab prints: each scenario's report, the closing table, the JSON list, the diagrams.

use super::driver::ScenarioRun;
use super::verdict::Check;
use super::view::owner_of;
use crate::analyze::{self, model::Flow};
use crate::output::{wrap, BAD, DIM, GOOD, HEAD, WIDTH};
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
    para(
        &mut out,
        &format!("{HEAD}━━ {} ━━ {}{HEAD:#}", s.name, s.title),
        "",
        "   ",
    );
    para(
        &mut out,
        &format!("{DIM}models: {}{DIM:#}", s.models),
        "",
        "  ",
    );
    for check in &run.checks {
        let _ = writeln!(out);
        para(
            &mut out,
            &format!("{} → {} ({})", check.from, check.to, check.via),
            "  ",
            "    ",
        );
        let row = |out: &mut String, label: &str, text: &str| {
            let first = format!("    {label:<16}");
            para(out, text, &first, &" ".repeat(20));
        };
        row(&mut out, "expected", &check.expected);
        row(
            &mut out,
            "pod saw",
            &format!(
                "{}   {DIM}(its own accept() and headers){DIM:#}",
                pod_saw_text(check)
            ),
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
        row(
            &mut out,
            "probes measured",
            &format!("{measured}   {DIM}(SYN sightings{isn}){DIM:#}"),
        );
        row(&mut out, "rewritten at", &rewritten_text(check));
        if let Some(verdict) = check.verdict {
            row(&mut out, "verdict", verdict.words());
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
            row(&mut out, "partial capture", &parts.join(" · "));
        }
        if !check.rules.is_empty() {
            let rules: Vec<String> = check
                .rules
                .iter()
                .map(|r| {
                    let kind = match r.kind {
                        crate::analyze::model::TranslationKind::Snat => "SNAT",
                        crate::analyze::model::TranslationKind::Dnat => "DNAT",
                    };
                    format!("{} {kind}: {} {}", r.node, r.expected, tick(r.ok))
                })
                .collect();
            row(&mut out, "rules", &rules.join(" · "));
        }
        row(&mut out, "matches", &mark(check.matches));
        for problem in &check.problems {
            para(
                &mut out,
                &format!("{BAD}{problem}{BAD:#}"),
                "      ",
                "        ",
            );
        }
    }
    let _ = writeln!(out);
    let report = analyze::render_text_at(&run.report, WIDTH - 2);
    let _ = writeln!(out, "{}", indent(&report, "  "));
    let _ = writeln!(out);
    // explain's own layout, already fitted to the width.
    out.push_str(cause);
    out
}

/// `text` wrapped to the report's width after `first`, continued after `rest`.
fn para(out: &mut String, text: &str, first: &str, rest: &str) {
    for line in wrap(text, WIDTH, first, rest) {
        let _ = writeln!(out, "{line}");
    }
}

/// The closing table: per connection, scenario | what the pod saw | where the source was
/// rewritten | matches. Side by side when it fits in `width` columns, one block per connection
/// otherwise.
pub fn table(runs: &[ScenarioRun], width: usize) -> String {
    struct Row {
        scenario: String,
        who: Option<String>,
        saw: String,
        rewritten: String,
        matches: bool,
    }
    let mut rows: Vec<Row> = Vec::new();
    for run in runs {
        for (i, check) in run.checks.iter().enumerate() {
            rows.push(Row {
                scenario: if i == 0 {
                    run.scenario.name.to_string()
                } else {
                    String::new()
                },
                // Several connections in a scenario: who opened each, and where to.
                who: (run.checks.len() > 1).then(|| format!("[{} → {}]", check.from, check.to)),
                saw: pod_saw_text(check),
                rewritten: rewritten_text(check),
                matches: check.matches,
            });
        }
    }
    let header = [
        "SCENARIO",
        "WHAT THE POD SAW",
        "WHERE THE SOURCE WAS REWRITTEN",
        "MATCHES",
    ];
    let saw = |row: &Row| match &row.who {
        Some(who) => format!("{who} {}", row.saw),
        None => row.saw.clone(),
    };
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        let cells = [
            row.scenario.clone(),
            saw(row),
            row.rewritten.clone(),
            "✗ false".into(),
        ];
        for (w, cell) in widths.iter_mut().zip(&cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    let mut out = String::new();
    if total <= width {
        let pad = |text: &str, width: usize| {
            let len = text.chars().count();
            format!("{text}{}", " ".repeat(width.saturating_sub(len)))
        };
        let line: Vec<String> = header.iter().zip(widths).map(|(h, w)| pad(h, w)).collect();
        let _ = writeln!(out, "{HEAD}{}{HEAD:#}", line.join("  ").trim_end());
        for row in &rows {
            let cells = [
                pad(&row.scenario, widths[0]),
                pad(&saw(row), widths[1]),
                pad(&row.rewritten, widths[2]),
                mark(row.matches),
            ];
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    } else {
        for row in &rows {
            if !row.scenario.is_empty() {
                let _ = writeln!(out, "{HEAD}{}{HEAD:#}", row.scenario);
            }
            let indent = if let Some(who) = &row.who {
                let _ = writeln!(out, "  {who}");
                "    "
            } else {
                "  "
            };
            let rest = format!("{indent}{}", " ".repeat(11));
            for line in wrap(&row.saw, width, &format!("{indent}pod saw    "), &rest) {
                let _ = writeln!(out, "{line}");
            }
            for line in wrap(
                &row.rewritten,
                width,
                &format!("{indent}rewritten  "),
                &rest,
            ) {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out, "{indent}matches    {}", mark(row.matches));
        }
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

/// The diagrams as one Mermaid flowchart: a single scenario's paths, or one titled subgraph per
/// scenario.
pub fn mermaid(runs: &[ScenarioRun]) -> String {
    if let [run] = runs {
        return analyze::render_mermaid(&run.report);
    }
    let sections: Vec<(String, &crate::analyze::model::Report)> = runs
        .iter()
        .map(|run| {
            (
                format!("{}: {}", run.scenario.name, run.scenario.title),
                &run.report,
            )
        })
        .collect();
    analyze::render_mermaid_sections(&sections)
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
            rules: vec![],
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
        insta::assert_snapshot!(crate::output::plain(&table(&runs, 400)));
        let narrow = crate::output::plain(&table(&runs, 80));
        assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
        insta::assert_snapshot!("table_stacked", narrow);
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
