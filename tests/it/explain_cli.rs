//! The `explain` command as users run it: files, stdin, output formats, exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/explain_corpus")
        .join(format!("{name}.yaml"))
}

fn realip(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn json_from_several_files() {
    let svc = case("tke-scenario4-vpccni-l7-ingress");
    let out = realip(
        &[
            "explain",
            "-f",
            svc.to_str().unwrap(),
            "-f",
            case("k8s-local-lb").to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let services: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["real-ip-service", "web"]);
    let l7 = &json[0]["origins"][0];
    assert_eq!(l7["origin"], "internet-via-lb");
    assert_eq!(l7["l7_client_ip"], "x-forwarded-for");
}

#[test]
fn text_and_mermaid_from_stdin() {
    let yaml = std::fs::read_to_string(case("practice-gr-local-lb")).unwrap();
    let out = realip(&["explain", "-f", "-"], Some(&yaml));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("svc/nginx -n service"), "{text}");
    assert!(
        text.contains("internet-via-lb via lb: pod sees client"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour off a terminal");

    let out = realip(&["explain", "-f", "-", "-o", "mermaid"], Some(&yaml));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("flowchart LR"));
}

#[test]
fn unreadable_input_is_a_usage_error() {
    let out = realip(&["explain", "-f", "/nonexistent/app.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/app.yaml"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let out = realip(&["explain", "-f", "-"], Some("kind: Service\nspec: [\n"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin: YAML document 1"), "{err}");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .args(["explain", "-f", case("k8s-cluster-lb").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
