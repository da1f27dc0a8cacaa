//! Every diagram the plugin draws renders: each `-o mermaid` output goes through the real
//! mermaid-cli (`mmdc`) in a real headless browser (Debian's chromium).
//!
//! The diagrams: `lab -o mermaid` — every scenario in one flowchart, and each scenario alone —
//! from the lab's saved captures (tests/fixtures/analyze/lab, analysed as the lab analyses them),
//! and from the lab itself when it can run here (root); `explain -f … -o mermaid` of every
//! manifest in tests/explain_corpus and src/lab/manifests; `analyze -o mermaid` of every capture
//! in tests/fixtures/analyze (trace draws its report with the same renderer as analyze).
//!
//! They are rendered in one batch (one browser); a batch that fails is split in halves until
//! every diagram that does not render is named, with mermaid's reason.
//!
//! mermaid-cli is the one of .ci/mermaid, which .ci/setup installs into target/mermaid-cli
//! (`REALIP_MMDC` names another); the browser is /usr/bin/chromium (.ci/mermaid/puppeteer.json).
//! Without them the test says SKIPPED, and fails under `CI=true`.

use crate::support::kernel;

use kubectl_realip::analyze::Analyzer;
use kubectl_realip::lab::driver::ScenarioRun;
use kubectl_realip::lab::{render, scenario, view};
use realip_probe::wire::decode_line;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");
/// The live lab's namespaces, apart from every other test's.
const LAB_PREFIX: &str = "riplm-";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One diagram and where it came from.
struct Diagram {
    name: String,
    text: String,
}

/// The mermaid-cli to use, or what is missing.
fn mmdc() -> Result<PathBuf, String> {
    let path = std::env::var_os("REALIP_MMDC")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/mermaid-cli/node_modules/.bin/mmdc"));
    if !path.is_file() {
        return Err(format!(
            "no mermaid-cli at {} (.ci/setup installs it; or set REALIP_MMDC)",
            path.display()
        ));
    }
    let config = puppeteer_config();
    let chromium = std::fs::read_to_string(&config)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["executablePath"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("{} names no executablePath", config.display()))?;
    if !chromium.is_file() {
        return Err(format!(
            "no browser at {} (apt-get install chromium)",
            chromium.display()
        ));
    }
    Ok(path)
}

fn puppeteer_config() -> PathBuf {
    repo().join(".ci/mermaid/puppeteer.json")
}

/// Runs the plugin and returns its stdout; exit 0, or 1 (a partial answer still draws).
fn plugin(args: &[&str]) -> String {
    let out = Command::new(PLUGIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the plugin runs");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "kubectl-realip {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

/// What `lab -o mermaid` draws, from the saved captures: each scenario's events analysed with
/// the lab's view of its cluster, as the lab does, then drawn by the lab's own renderer.
fn lab_from_saved_captures() -> Vec<Diagram> {
    let dir = repo().join("tests/fixtures/analyze/lab");
    let mut runs = Vec::new();
    for scenario in scenario::all() {
        let path = dir.join(format!("{}.jsonl", scenario.name));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut analyzer = Analyzer::new();
        analyzer.set_view(view::cluster_view(
            &scenario.services().expect("the scenario's Services"),
        ));
        let events: Vec<_> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| decode_line(line).expect("a saved probe event"))
            .collect();
        for event in &events {
            analyzer.push(event.clone());
        }
        runs.push(ScenarioRun {
            report: analyzer.finish(),
            scenario,
            checks: Vec::new(),
            events,
        });
    }
    assert!(
        runs.len() >= 11,
        "every scenario has a saved capture in {}",
        dir.display()
    );
    let mut diagrams: Vec<Diagram> = runs
        .iter()
        .map(|run| Diagram {
            name: format!("lab --scenario {} (saved capture)", run.scenario.name),
            text: render::mermaid(std::slice::from_ref(run)),
        })
        .collect();
    diagrams.push(Diagram {
        name: "lab --scenario all (saved captures)".into(),
        text: render::mermaid(&runs),
    });
    diagrams
}

/// `lab --scenario all -o mermaid` on this kernel, when the lab can run here.
fn lab_live() -> Vec<Diagram> {
    let missing = kernel::missing_root_or(&["ip", "iptables-restore", "sysctl"])
        .or_else(|| kernel::missing_netns(LAB_PREFIX));
    if !kernel::runnable("every_mermaid_diagram_renders (the live lab)", missing) {
        return Vec::new();
    }
    let text = plugin(&[
        "lab",
        "--ns-prefix",
        LAB_PREFIX,
        "--scenario",
        "all",
        "-o",
        "mermaid",
    ]);
    vec![Diagram {
        name: "lab --scenario all (live)".into(),
        text,
    }]
}

fn explain_manifests() -> Vec<Diagram> {
    let mut diagrams = Vec::new();
    for dir in ["tests/explain_corpus", "src/lab/manifests"] {
        for path in files(&repo().join(dir), "yaml") {
            let file = path.to_str().expect("a UTF-8 path");
            diagrams.push(Diagram {
                name: format!("explain -f {dir}/{}", name_of(&path)),
                text: plugin(&["explain", "-f", file, "-o", "mermaid"]),
            });
        }
    }
    diagrams
}

/// Every capture set of tests/fixtures/analyze, as a user would pass it.
fn analyze_captures() -> Vec<Diagram> {
    let base = repo().join("tests/fixtures/analyze");
    let mut sets: Vec<Vec<PathBuf>> = Vec::new();
    for dir in ["hand", "lab"] {
        sets.extend(files(&base.join(dir), "jsonl").into_iter().map(|f| vec![f]));
    }
    let at = |names: &[&str]| names.iter().map(|n| base.join(n)).collect::<Vec<_>>();
    sets.push(at(&["netns/node-a.jsonl", "netns/node-b.jsonl"]));
    sets.push(at(&["netns/node-a.pcapng", "netns/node-b.pcapng"]));
    sets.push(at(&["netns/cooked/node-b.pcap"]));
    sets.push(at(&["lan/node-a.pcap", "lan/node-b.pcap"]));
    sets.push(at(&["overlay/node-a.pcap", "overlay/node-b.jsonl"]));
    sets.into_iter()
        .map(|set| {
            let names: Vec<String> = set
                .iter()
                .map(|p| p.strip_prefix(&base).unwrap_or(p).display().to_string())
                .collect();
            let mut args = vec!["analyze", "-o", "mermaid"];
            args.extend(set.iter().map(|p| p.to_str().expect("a UTF-8 path")));
            Diagram {
                name: format!("analyze {}", names.join(" ")),
                text: plugin(&args),
            }
        })
        .collect()
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Renders `diagrams` all in one browser (mmdc's Markdown mode, one image per diagram), and
/// returns those that do not render, with mermaid's reason. A batch stops at its first bad
/// diagram and writes nothing, so a failed batch is split in halves until each bad one is alone.
fn failures<'a>(mmdc: &Path, dir: &Path, diagrams: &[&'a Diagram]) -> Vec<(&'a Diagram, String)> {
    let batch = tempfile::tempdir_in(dir).expect("a scratch directory");
    let mut markdown = String::new();
    for diagram in diagrams {
        markdown.push_str("```mermaid\n");
        markdown.push_str(diagram.text.trim_end());
        markdown.push_str("\n```\n\n");
    }
    let input = batch.path().join("all.md");
    std::fs::write(&input, markdown).expect("writing the batch");
    match run_mmdc(mmdc, &input, &batch.path().join("out.md")) {
        Ok(()) => diagrams
            .iter()
            .enumerate()
            .filter_map(|(i, diagram)| {
                let svg = batch.path().join(format!("out-{}.svg", i + 1));
                bad_image(&svg).map(|why| (*diagram, why))
            })
            .collect(),
        Err(why) if diagrams.len() == 1 => vec![(diagrams[0], why)],
        Err(_) => {
            let (left, right) = diagrams.split_at(diagrams.len() / 2);
            let mut found = failures(mmdc, dir, left);
            found.extend(failures(mmdc, dir, right));
            found
        }
    }
}

fn run_mmdc(mmdc: &Path, input: &Path, output: &Path) -> Result<(), String> {
    // One page per core: mmdc's default is half of them.
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = Command::new(mmdc)
        .arg("--puppeteerConfigFile")
        .arg(puppeteer_config())
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--quiet")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .output()
        .map_err(|err| format!("cannot run {}: {err}", mmdc.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        // The first lines say what mermaid refused; the rest is a browser stack trace.
        let said = String::from_utf8_lossy(&out.stderr);
        Err(said.lines().take(6).collect::<Vec<_>>().join("\n"))
    }
}

/// Why an image is not a drawing: missing, empty, or mermaid's own error picture.
fn bad_image(svg: &Path) -> Option<String> {
    let Ok(text) = std::fs::read_to_string(svg) else {
        return Some("no image was written".into());
    };
    if !text.contains("<svg") {
        return Some("the image is not SVG".into());
    }
    if text.contains("Syntax error in text") {
        return Some("mermaid drew its syntax-error picture".into());
    }
    None
}

#[test]
fn every_mermaid_diagram_renders() {
    let test = "every_mermaid_diagram_renders";
    let mmdc = mmdc();
    if !kernel::runnable(test, mmdc.as_ref().err().cloned()) {
        return;
    }
    let mmdc = mmdc.expect("checked above");
    let mut diagrams = lab_from_saved_captures();
    diagrams.extend(lab_live());
    diagrams.extend(explain_manifests());
    diagrams.extend(analyze_captures());
    for diagram in &diagrams {
        assert!(
            diagram.text.starts_with("flowchart "),
            "{}: not a flowchart:\n{}",
            diagram.name,
            diagram.text
        );
    }

    let dir = tempfile::tempdir().expect("a scratch directory");
    let started = Instant::now();
    let all: Vec<&Diagram> = diagrams.iter().collect();
    let failed: Vec<String> = failures(&mmdc, dir.path(), &all)
        .into_iter()
        .map(|(diagram, why)| format!("{}: {why}\n--- diagram ---\n{}", diagram.name, diagram.text))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} diagrams do not render:\n\n{}",
        failed.len(),
        diagrams.len(),
        failed.join("\n\n")
    );
    eprintln!(
        "{} diagrams rendered in {:.1}s",
        diagrams.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The check itself: among diagrams that render, the one that does not is named, with why.
#[test]
fn a_diagram_that_does_not_render_is_named() {
    let mmdc = mmdc();
    if !kernel::runnable(
        "a_diagram_that_does_not_render_is_named",
        mmdc.as_ref().err().cloned(),
    ) {
        return;
    }
    let mmdc = mmdc.expect("checked above");
    let diagram = |name: &str, text: &str| Diagram {
        name: name.into(),
        text: text.into(),
    };
    let diagrams = [
        diagram("good", "flowchart LR\n  a[\"a\"] --> b[\"b\"]\n"),
        diagram("unclosed", "flowchart LR\n  a --> b(\n"),
        diagram("also good", "flowchart LR\n  c --> d\n"),
    ];
    let dir = tempfile::tempdir().expect("a scratch directory");
    let all: Vec<&Diagram> = diagrams.iter().collect();
    let found = failures(&mmdc, dir.path(), &all);
    let named: Vec<&str> = found.iter().map(|(d, _)| d.name.as_str()).collect();
    assert_eq!(named, ["unclosed"]);
    assert!(found[0].1.contains("Parse error"), "{}", found[0].1);
}
