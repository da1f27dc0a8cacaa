//! The JSON contract, written whole or one flow at a time: the bytes are the same.

use crate::analyze::model::{Flow, Report, Summary, SCHEMA};
use serde::Serialize;

/// The whole report, pretty-printed, with a trailing newline.
pub fn render_json(report: &Report) -> String {
    let mut out = String::new();
    for (n, flow) in report.flows.iter().enumerate() {
        flow_json(&mut out, n == 0, flow);
    }
    end_json(&mut out, !report.flows.is_empty(), &report.summary);
    out
}

/// One element of `flows`; the first also opens the report.
pub(super) fn flow_json(out: &mut String, first: bool, flow: &Flow) {
    if first {
        open(out);
        out.push_str("  \"flows\": [\n");
    } else {
        out.push_str(",\n");
    }
    indented(out, &pretty(flow), "    ", true);
}

/// Closes `flows` (opening the report if no flow was written) and adds the summary.
pub(super) fn end_json(out: &mut String, any_flow: bool, summary: &Summary) {
    if any_flow {
        out.push_str("\n  ],\n");
    } else {
        open(out);
        out.push_str("  \"flows\": [],\n");
    }
    out.push_str("  \"summary\": ");
    indented(out, &pretty(summary), "  ", false);
    out.push_str("\n}\n");
}

/// The report's opening, with its schema version.
fn open(out: &mut String) {
    out.push_str("{\n  \"schema\": ");
    out.push_str(&SCHEMA.to_string());
    out.push_str(",\n");
}

/// Plain data with string keys: serialization cannot fail.
fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `text` with `indent` before each line (but the first unless `first`): nested where
/// serde_json would have put it. JSON strings never hold a raw newline.
fn indented(out: &mut String, text: &str, indent: &str, first: bool) {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if i > 0 || first {
            out.push_str(indent);
        }
        out.push_str(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            drops: 3,
            warnings: vec!["a \"quoted\"\nwarning".into()],
            ..Summary::default()
        }
    }

    #[test]
    fn an_empty_report_is_what_serde_json_writes() {
        let report = Report::new(Vec::new(), summary());
        let whole = serde_json::to_string_pretty(&report).unwrap() + "\n";
        assert_eq!(render_json(&report), whole);
    }
}
