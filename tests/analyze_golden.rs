//! Golden tests of what analyze prints, from committed fixtures.

use kubectl_realip::analyze::{analyze_events, render_json, render_mermaid, render_text};
use kubectl_realip::output::plain;
use realip_probe::wire::{decode_line, Event};
use std::path::Path;

fn events(fixture: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| decode_line(l).unwrap())
        .collect()
}

/// Snapshots live with the fixtures they come from.
macro_rules! golden {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "fixtures/analyze/snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[test]
fn two_nodes_text() {
    let report = analyze_events(events("hand/two-nodes.jsonl"));
    golden!("two_nodes_text", plain(&render_text(&report)));
}

#[test]
fn two_nodes_json() {
    let report = analyze_events(events("hand/two-nodes.jsonl"));
    let json = render_json(&report);
    assert!(json.ends_with("}\n"));
    golden!("two_nodes_json", json);
}

#[test]
fn two_nodes_mermaid() {
    let report = analyze_events(events("hand/two-nodes.jsonl"));
    golden!("two_nodes_mermaid", render_mermaid(&report));
}

#[test]
fn event_order_does_not_matter() {
    let mut evs = events("hand/two-nodes.jsonl");
    let forward = analyze_events(evs.clone());
    evs.reverse();
    assert_eq!(analyze_events(evs), forward);
}

/// The real capture of tests/fixtures/analyze/netns (probe JSONL of two nodes).
#[test]
fn netns_capture_text_json_mermaid() {
    let mut evs = events("netns/node-a.jsonl");
    evs.extend(events("netns/node-b.jsonl"));
    let report = analyze_events(evs);
    golden!("netns_text", plain(&render_text(&report)));
    golden!("netns_json", render_json(&report));
    golden!("netns_mermaid", render_mermaid(&report));
}

/// The same traffic from dumpcap's pcapng files: no hello, directions and owners inferred.
#[test]
fn netns_pcapng_text() {
    let mut analyzer = kubectl_realip::analyze::Analyzer::new();
    for file in ["netns/node-a.pcapng", "netns/node-b.pcapng"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/analyze")
            .join(file);
        let problems = kubectl_realip::analyze::read_file(&path, &mut analyzer);
        assert!(problems.is_empty(), "{problems:?}");
    }
    golden!("netns_pcapng_text", plain(&render_text(&analyzer.finish())));
}

/// Renderers take any report (trace and lab build their own): odd ones must not panic.
#[test]
fn renderers_survive_odd_reports() {
    let mut report = analyze_events(events("hand/two-nodes.jsonl"));
    report.flows[0].translations[0].hop = 99;
    report.flows[1].hops.clear();
    report.flows[1].lost_at = Some(7);
    for text in [
        render_text(&report),
        render_mermaid(&report),
        render_json(&report),
    ] {
        assert!(!text.is_empty());
    }
}

/// A rewrite between two capture points (a load balancer's SNAT) drawn as an unseen hop.
#[test]
fn unseen_rewrite_text_and_mermaid() {
    let report = analyze_events(events("hand/unseen-rewrite.jsonl"));
    assert_eq!(report.flows.len(), 1);
    assert_eq!(report.flows[0].hops.len(), 3);
    golden!("unseen_rewrite_text", plain(&render_text(&report)));
    golden!("unseen_rewrite_mermaid", render_mermaid(&report));
}
