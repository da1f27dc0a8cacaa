//! The analyze command on bad input: clear messages naming file and line, documented exit codes.

use std::path::Path;
use std::process::Command;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze")
        .join(name)
        .display()
        .to_string()
}

fn analyze(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .arg("analyze")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn good_input_exits_zero() {
    let (code, out, err) = analyze(&["-o", "json", &fixture("hand/two-nodes.jsonl")]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["flows"][0]["pod_sees"], "192.0.2.10");
}

#[test]
fn malformed_line_is_named_and_the_rest_analyzed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(fixture("hand/two-nodes.jsonl")).unwrap();
    text.insert_str(
        text.find('\n').unwrap() + 1,
        "{\"v\":1,\"type\":\"syn\",\"oops\n",
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = analyze(&["-o", "json", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.jsonl:2: skipped"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["connections"], 2);
}

#[test]
fn newer_schema_stops_that_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.jsonl");
    std::fs::write(&path, "{\"v\":9,\"type\":\"syn\"}\n").unwrap();
    let (code, out, err) = analyze(&[path.to_str().unwrap(), &fixture("hand/two-nodes.jsonl")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("new.jsonl:1: schema version 9"), "{err}");
    assert!(out.contains("Summary: 2 connection(s)"), "{out}");
}

#[test]
fn missing_file_is_a_usage_error_naming_it() {
    let (code, _, err) = analyze(&["/nonexistent/x.pcap", &fixture("hand/two-nodes.jsonl")]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.pcap: cannot open"), "{err}");
}

#[test]
fn binary_garbage_is_not_a_known_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.bin");
    std::fs::write(
        &path,
        [0xffu8, 0xfe, 0x00, 0x01, 0x80, 0x81, 0x0a].repeat(50),
    )
    .unwrap();
    let (code, _, err) = analyze(&[path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("neither probe JSONL nor a pcap/pcapng capture"),
        "{err}"
    );
}

#[test]
fn truncated_capture_names_the_byte_offset_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("netns/node-a.pcapng")).unwrap();
    let path = dir.path().join("node-a.pcapng");
    std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
    let (code, out, err) = analyze(&["-o", "json", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("node-a.pcapng: byte "), "{err}");
    assert!(err.contains("ends inside"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["summary"]["connections"].as_u64().unwrap() >= 2, "{out}");
}

#[test]
fn unknown_link_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.pcap");
    let mut header = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&147u32.to_le_bytes()); // LINKTYPE_USER0
    std::fs::write(&path, header).unwrap();
    let (code, _, err) = analyze(&[path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("odd.pcap: link type 147"), "{err}");
}

#[test]
fn jsonl_on_stdin() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .args(["analyze", "-o", "json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = std::fs::read(fixture("hand/two-nodes.jsonl")).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["connections"], 2);
}

/// The probe's JSONL and a pcap of the same node name the same packets: hops are not doubled.
#[test]
fn probe_and_pcap_of_the_same_node_do_not_double_hops() {
    let (code, out, err) = analyze(&[
        "-o",
        "json",
        &fixture("netns/node-a.jsonl"),
        &fixture("netns/node-b.jsonl"),
        &fixture("netns/node-b.pcapng"),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for flow in v["flows"].as_array().unwrap() {
        assert_eq!(flow["hops"].as_array().unwrap().len(), 5, "{flow}");
    }
}

/// `-o json` builds each flow as it writes it; the bytes must be those of the whole report.
#[test]
fn streamed_json_is_the_report_byte_for_byte() {
    use kubectl_realip::analyze::{read_file, render_json, Analyzer};
    use kubectl_realip::cmd::analyze::LocalFiles;
    let inputs: &[&[&str]] = &[
        &["hand/two-nodes.jsonl"],
        &["hand/unseen-rewrite.jsonl"],
        &["lab/hairpin.jsonl"],
        &["lab/local.jsonl"],
        &["lab/in-cluster-to-lb.jsonl"],
        &["lab/l7-ingress.jsonl"],
        &["netns/node-a.jsonl", "netns/node-b.jsonl"],
        &["netns/node-a.pcapng", "netns/node-b.pcapng"],
        &["netns/node-a.pcapng", "netns/cooked/node-b.pcap"],
        &[
            "netns/node-a.jsonl",
            "netns/node-b.jsonl",
            "netns/cooked/node-b.pcap",
        ],
        &["lan/node-a.pcap", "lan/node-b.pcap"],
        &["lan/probe/node-a.jsonl", "lan/dumpcap/node-b.pcapng"],
        &[
            "overlay/hello/node-a.jsonl",
            "overlay/node-a.pcap",
            "overlay/node-b.jsonl",
        ],
    ];
    // A truncated capture too: its warning is part of the summary.
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("netns/node-a.pcapng")).unwrap();
    let truncated = dir.path().join("node-a.pcapng");
    std::fs::write(&truncated, &whole[..whole.len() - 7]).unwrap();
    let truncated = truncated.display().to_string();
    let cases = inputs
        .iter()
        .map(|files| (files.iter().map(|f| fixture(f)).collect::<Vec<_>>(), 0))
        .chain([(vec![truncated, fixture("netns/node-b.jsonl")], 1)]);
    for (paths, exit) in cases {
        let mut analyzer = Analyzer::new();
        for path in &paths {
            for problem in read_file(Path::new(path), &LocalFiles, &mut analyzer) {
                analyzer.warn(problem.to_string());
            }
        }
        let expected = render_json(&analyzer.finish());
        let mut args = vec!["-o", "json"];
        args.extend(paths.iter().map(String::as_str));
        let (code, out, err) = analyze(&args);
        assert_eq!(code, exit, "{paths:?}: {err}");
        assert!(
            expected.contains("\"hops\""),
            "{paths:?}: no flow in {expected}"
        );
        assert_eq!(out, expected, "{paths:?}");
    }
}

/// Two nodes' streams one after the other in one file, the first 100 s later by its clock and
/// going on 100 s more: a window that covers those 200 s still joins them; a shorter one says
/// the input is out of order (exit 1) instead of splitting connections silently.
#[test]
fn streams_one_after_another_need_a_window_that_covers_them() {
    let node_a = std::fs::read_to_string(fixture("netns/node-a.jsonl")).unwrap();
    let mut shifted = String::new();
    for line in node_a.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = v["ts_ns"].as_u64().unwrap();
        v["ts_ns"] = (ts + 100_000_000_000).into();
        shifted += &(v.to_string() + "\n");
        if v["type"] == "syn" && !shifted.contains("\"isn\":1,") {
            // One more connection, 100 s after the rest.
            v["ts_ns"] = (ts + 200_000_000_000).into();
            v["isn"] = 1.into();
            v["sport"] = 1.into();
            shifted += &(v.to_string() + "\n");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.jsonl");
    let node_b = std::fs::read_to_string(fixture("netns/node-b.jsonl")).unwrap();
    std::fs::write(&path, shifted + &node_b).unwrap();
    let path = path.to_str().unwrap();
    let count = |out: &str| {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["summary"]["connections"].as_u64().unwrap()
    };
    let (code, joined, err) = analyze(&["-o", "json", "--window", "5m", path]);
    assert_eq!((code, count(&joined)), (0, 4), "{err}");
    let (code, split, err) = analyze(&["-o", "json", "--window", "10s", path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("SYN(s) came after connections of their time had been reported"),
        "{err}"
    );
    assert!(
        err.contains("a --window (now 10s) longer than the capture"),
        "{err}"
    );
    assert!(count(&split) > 4, "split connections: {split}");
    let (code, _, err) = analyze(&["--window", "0s", path]);
    assert_eq!(code, 2);
    assert!(err.contains("--window 0ns is too short"), "{err}");
}

/// Text and Mermaid stream the same way JSON does: what the library renders from the whole
/// report is what the command writes.
#[test]
fn streamed_text_and_mermaid_are_the_report() {
    use kubectl_realip::analyze::{read_file, render_mermaid, render_text, Analyzer};
    use kubectl_realip::cmd::analyze::LocalFiles;
    use kubectl_realip::output::plain;
    let paths = [fixture("netns/node-a.jsonl"), fixture("netns/node-b.jsonl")];
    let mut analyzer = Analyzer::new();
    for path in &paths {
        assert!(read_file(Path::new(path), &LocalFiles, &mut analyzer).is_empty());
    }
    let report = analyzer.finish();
    let (code, text, err) = analyze(&[&paths[0], &paths[1]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(text, plain(&render_text(&report)));
    let (code, mermaid, err) = analyze(&["-o", "mermaid", &paths[0], &paths[1]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mermaid, render_mermaid(&report));
}

/// On a terminal a quick analysis leaves only its report: no progress flashes by.
#[test]
fn a_quick_run_on_a_terminal_shows_no_progress() {
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "this test needs `script` (apt-get install util-linux) to make a terminal"
    );
    let command = format!(
        "'{}' analyze -o mermaid '{}' '{}'",
        env!("CARGO_BIN_EXE_kubectl-realip"),
        fixture("netns/node-a.pcapng"),
        fixture("netns/node-b.pcapng")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("flowchart LR"), "{screen}");
    assert!(!screen.contains("analyzing"), "{screen}");
}

#[test]
fn a_short_binary_file_is_not_a_known_format_either() {
    let dir = tempfile::tempdir().unwrap();
    // Too few newlines to tell by three unreadable lines: a tiny gzip, a binary blob.
    for (name, bytes) in [
        (
            "tiny.gz",
            &b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\x00\x00"[..],
        ),
        ("blob.bin", &b"\xff\xfe\x00binary\n\x80\x81"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, _, err) = analyze(&[path.to_str().unwrap()]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(
            err.contains(&format!(
                "{name}: neither probe JSONL nor a pcap/pcapng capture"
            )),
            "{err}"
        );
    }
    // Probe lines after an unreadable first one: a damaged JSONL file, read in part.
    let good = std::fs::read(fixture("hand/two-nodes.jsonl")).unwrap();
    let path = dir.path().join("damaged.jsonl");
    std::fs::write(&path, [&b"\xff\xfe\n"[..], &good].concat()).unwrap();
    let (code, _, err) = analyze(&[path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("damaged.jsonl:1: skipped: not UTF-8 text"),
        "{err}"
    );
}
