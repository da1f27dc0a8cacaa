//! Runs every case of tests/explain_corpus: manifests with the expected verdict per way in.
//!
//! A case is one YAML file whose leading comment block says what to expect:
//!
//! ```text
//! # source: seeds/tke-real-ip-five-scenarios.zh.md, scenario 1
//! # service: clb-direct-pod                     (optional: default the first Service)
//! # expect internet-via-lb: client none [service.cloud.tencent.com/direct-access]
//! # expect in-cluster-pod@lb-address: node none
//! # closed: node-port
//! ```
//!
//! `expect ORIGIN[@VIA]: L4 L7 [SETTING]`: without @VIA the first verdict of that origin is
//! checked; SETTING (optional) must appear in the setting of one of its reasons.

use kubectl_realip::explain::explain_manifests;
use kubectl_realip::explain::model::{Explanation, OriginVerdict};
use std::path::{Path, PathBuf};

struct Expect {
    origin: String,
    via: Option<String>,
    l4: String,
    l7: String,
    setting: Option<String>,
}

struct Case {
    name: String,
    source: Option<String>,
    service: Option<String>,
    expects: Vec<Expect>,
    closed: Vec<String>,
}

fn parse_case(name: &str, text: &str) -> Result<Case, String> {
    let mut case = Case {
        name: name.to_string(),
        source: None,
        service: None,
        expects: Vec::new(),
        closed: Vec::new(),
    };
    for line in text.lines() {
        let Some(comment) = line.strip_prefix('#') else {
            if line.trim().is_empty() || line.starts_with("---") {
                continue;
            }
            break; // the header ends at the first manifest line
        };
        let comment = comment.trim();
        if let Some(source) = comment.strip_prefix("source:") {
            case.source = Some(source.trim().to_string());
        } else if let Some(service) = comment.strip_prefix("service:") {
            case.service = Some(service.trim().to_string());
        } else if let Some(closed) = comment.strip_prefix("closed:") {
            case.closed
                .extend(closed.split(',').map(|c| c.trim().to_string()));
        } else if let Some(expect) = comment.strip_prefix("expect ") {
            let (key, rest) = expect
                .split_once(':')
                .ok_or_else(|| format!("bad expect line: {line}"))?;
            let (origin, via) = match key.split_once('@') {
                Some((o, v)) => (o.trim().to_string(), Some(v.trim().to_string())),
                None => (key.trim().to_string(), None),
            };
            let (values, setting) = match rest.split_once('[') {
                Some((values, setting)) => (
                    values,
                    Some(setting.trim_end().trim_end_matches(']').to_string()),
                ),
                None => (rest, None),
            };
            let mut words = values.split_whitespace();
            let (Some(l4), Some(l7)) = (words.next(), words.next()) else {
                return Err(format!("expect needs L4 and L7: {line}"));
            };
            case.expects.push(Expect {
                origin,
                via,
                l4: l4.to_string(),
                l7: l7.to_string(),
                setting,
            });
        }
    }
    if case.source.is_none() {
        return Err("no `# source:` line".into());
    }
    if case.expects.is_empty() && case.closed.is_empty() {
        return Err("no `# expect` or `# closed` line".into());
    }
    Ok(case)
}

fn find<'a>(explanation: &'a Explanation, expect: &Expect) -> Option<&'a OriginVerdict> {
    explanation.origins.iter().find(|v| {
        v.origin.as_str() == expect.origin && expect.via.as_deref().is_none_or(|via| v.via == via)
    })
}

fn check(case: &Case, explanations: &[Explanation]) -> Vec<String> {
    let mut problems = Vec::new();
    let explanation = match &case.service {
        Some(name) => explanations.iter().find(|e| &e.service == name),
        None => explanations.first(),
    };
    let Some(explanation) = explanation else {
        return vec![format!("service {:?} not explained", case.service)];
    };
    for expect in &case.expects {
        let key = match &expect.via {
            Some(via) => format!("{}@{via}", expect.origin),
            None => expect.origin.clone(),
        };
        let Some(verdict) = find(explanation, expect) else {
            problems.push(format!("{key}: no such verdict"));
            continue;
        };
        let got = (
            verdict.l4_source_seen_by_pod.as_str(),
            verdict.l7_client_ip.as_str(),
        );
        if got != (expect.l4.as_str(), expect.l7.as_str()) {
            problems.push(format!(
                "{key}: expected {} {}, got {} {} (reasons: {})",
                expect.l4,
                expect.l7,
                got.0,
                got.1,
                verdict
                    .reasons
                    .iter()
                    .map(|r| format!("{} => {}", r.setting, r.text))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        if let Some(setting) = &expect.setting {
            if !verdict
                .reasons
                .iter()
                .any(|r| r.setting.contains(setting.as_str()))
            {
                problems.push(format!(
                    "{key}: no reason names {setting:?} (settings: {:?})",
                    verdict
                        .reasons
                        .iter()
                        .map(|r| r.setting.as_str())
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    for closed in &case.closed {
        if !explanation
            .closed
            .iter()
            .any(|c| c.origin.as_str() == closed)
        {
            problems.push(format!("{closed}: expected no such way in"));
        }
    }
    problems
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/explain_corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/explain_corpus exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_case_passes() {
    let files = corpus();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let case = match parse_case(&name, &text) {
            Ok(case) => case,
            Err(err) => {
                failures.push(format!("{name}: {err}"));
                continue;
            }
        };
        match explain_manifests(&text) {
            Ok(explanations) => {
                for problem in check(&case, &explanations) {
                    failures.push(format!(
                        "{} ({}): {problem}",
                        case.name,
                        case.source.as_deref().unwrap_or("")
                    ));
                }
            }
            Err(err) => failures.push(format!("{name}: {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        files.len() >= 40,
        "the corpus needs at least 40 cases, has {}",
        files.len()
    );
}

#[test]
fn every_seed_is_covered() {
    let sources: Vec<String> = corpus()
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("# source:").map(str::to_string))
        })
        .collect();
    for seed in [
        "tke-real-ip-five-scenarios.zh.md",
        "tke-real-ip-guide.en.md",
        "tke-l7-ingress-playbook.zh.md",
        "tke-get-client-ip-practice.zh.md",
        "k8s-network-snat-client-ip.zh.md",
    ] {
        assert!(
            sources.iter().any(|s| s.contains(seed)),
            "no corpus case cites {seed}"
        );
    }
}
