//! `explain -f` on input the API server would refuse or that is no manifest at all: every
//! problem names the file, the document and its line (the field too, in the API server's
//! words), exit 2; and no input makes it slow or large (bench/explain/gen.py's inputs).

use crate::support::kernel;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 31080}
";

const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n";

fn explain(files: &[&Path]) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = Command::new(BIN);
    command.arg("explain");
    for file in files {
        command.arg("-f").arg(file);
    }
    let out = command
        .env("NO_COLOR", "1")
        .output()
        .expect("running explain");
    (out, started.elapsed())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a manifest");
    path
}

/// The one error line of a failed explain, after asserting it failed with exit 2.
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "a report despite the error");
    stderr
}

#[test]
fn values_the_api_server_refuses_are_invalid_with_file_document_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, to, says) in [
        (
            "externalTrafficPolicy: Cluster",
            "externalTrafficPolicy: Sometimes",
            r#"spec.externalTrafficPolicy: Unsupported value: "Sometimes": supported values: "Cluster", "Local""#,
        ),
        (
            "externalTrafficPolicy: Cluster",
            "externalTrafficPolicy: local",
            r#"spec.externalTrafficPolicy: Unsupported value: "local""#,
        ),
        (
            "nodePort: 31080",
            "nodePort: -1",
            "spec.ports[0].nodePort: Invalid value: -1: must be between 1 and 65535, inclusive",
        ),
        (
            "type: LoadBalancer",
            "type: Banana",
            r#"spec.type: Unsupported value: "Banana": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
        ),
        (
            "port: 80",
            "port: 0",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            "targetPort: 8080",
            "targetPort: Web_Port",
            r#"spec.ports[0].targetPort: Invalid value: "Web_Port": must contain only"#,
        ),
        (
            "type: LoadBalancer",
            "type: ClusterIP",
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ),
    ] {
        let text = format!("{CONFIG_MAP}---\n{}", SERVICE.replace(from, to));
        let file = write(dir.path(), "svc.yaml", &text);
        let (out, _) = explain(&[&file]);
        let stderr = refused(&out);
        let expected = format!(
            "error: {}: YAML document 2 (line 4): Service \"web\" is invalid: {says}",
            file.display()
        );
        assert!(
            stderr.starts_with(&expected),
            "{to}:\n{stderr}\nwanted {expected}"
        );
    }
    // A value of the wrong type names its line and column.
    let file = write(
        dir.path(),
        "svc.yaml",
        &SERVICE.replace(
            "  ports:\n  - {name: http, port: 80, targetPort: 8080, nodePort: 31080}",
            "  ports: oops",
        ),
    );
    let stderr = refused(&explain(&[&file]).0);
    assert!(
        stderr.contains("YAML document 1 (line 1): Service \"web\" is invalid: "),
        "{stderr}"
    );
    assert!(stderr.contains("(line 10, column 10)"), "{stderr}");
}

#[test]
fn a_broken_document_is_named_and_not_blamed_on_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Documents 1 and 3 are fine; 2 is broken in three ways.
    for (broken, says) in [
        ("foo: [unclosed\n", "YAML document 2 (line 12): "),
        (
            "just some text\n",
            "YAML document 2 (line 12): not a Kubernetes object: a string",
        ),
        (
            "- a\n- b\n",
            "YAML document 2 (line 12): not a Kubernetes object: a sequence",
        ),
        (
            "metadata: {name: x}\n",
            "YAML document 2 (line 12): not a Kubernetes object: it has no kind",
        ),
    ] {
        let text = format!("{SERVICE}---\n{broken}---\n{CONFIG_MAP}");
        let file = write(dir.path(), "three.yaml", &text);
        let stderr = refused(&explain(&[&file]).0);
        assert!(
            stderr.starts_with(&format!("error: {}: {says}", file.display())),
            "{broken:?}: {stderr}"
        );
    }
    let text = format!("{SERVICE}---\nfoo: [unclosed\n---\n{CONFIG_MAP}");
    let stderr = refused(&explain(&[&write(dir.path(), "three.yaml", &text)]).0);
    assert!(
        stderr.contains("unclosed bracket '[' (line 13, column 6)"),
        "{stderr}"
    );
}

#[test]
fn list_items_are_objects_and_named_by_their_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    // As kubectl writes it: `items` before `kind`.
    let list = |second_type: &str| {
        format!(
            "apiVersion: v1\nitems:\n\
             - {{apiVersion: v1, kind: Service, metadata: {{name: a}}, spec: {{type: NodePort}}}}\n\
             - {{apiVersion: v1, kind: Service, metadata: {{name: b}}, spec: {{type: {second_type}}}}}\n\
             kind: List\nmetadata: {{resourceVersion: \"\"}}\n"
        )
    };
    let file = write(dir.path(), "list.yaml", &list("LoadBalancer"));
    let (out, _) = explain(&[&file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heads: Vec<&str> = stdout.lines().filter(|l| l.starts_with("svc/")).collect();
    assert_eq!(heads, ["svc/a -n default", "svc/b -n default"], "{stdout}");
    let stderr = refused(&explain(&[&write(dir.path(), "list.yaml", &list("Banana"))]).0);
    assert!(
        stderr.contains(
            "YAML document 1 (line 1), List item 2: Service \"b\" is invalid: spec.type: Unsupported value: \"Banana\""
        ),
        "{stderr}"
    );
    // A field named `items` in an object that is no List holds no objects.
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n\
                  items: [{apiVersion: v1, kind: Service, metadata: {name: x}, spec: {type: Banana}}]\n";
    let text = format!("{widget}---\n{SERVICE}");
    let (out, _) = explain(&[&write(dir.path(), "widget.yaml", &text)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_empty_file_or_one_of_unknown_kinds_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = write(dir.path(), "empty.yaml", "");
    let comments = write(dir.path(), "comments.yaml", "# nothing yet\n---\n");
    let crd = write(
        dir.path(),
        "crd.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let stderr = refused(&explain(&[&empty]).0);
    assert!(
        stderr.starts_with(&format!(
            "error: no Service in {} (empty, or only comments)",
            empty.display()
        )),
        "{stderr}"
    );
    let stderr = refused(&explain(&[&comments, &crd]).0);
    assert!(
        stderr.contains(&format!(
            "{} (empty, or only comments), nor in {} (1 ConfigMap; only kinds explain does not read: Widget)",
            comments.display(),
            crd.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "bom.yaml", &format!("\u{feff}{SERVICE}"));
    let (out, _) = explain(&[&file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
}

/// bench/explain/gen.py's inputs in `dir`.
fn bench_inputs(dir: &Path) -> Option<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/explain/gen.py");
    match Command::new("python3").arg(&script).arg(dir).status() {
        Ok(status) if status.success() => Some(()),
        Ok(status) => panic!("{} failed: {status}", script.display()),
        Err(err) => {
            let why = format!("python3 runs bench/explain/gen.py: {err}");
            kernel::cannot_run(&kernel::current_test(), &why);
            None
        }
    }
}

/// Runs explain on `file` under python3, which reports the child's peak RSS (KiB) on stdout
/// (the report itself is dropped).
fn explain_peak_kib(file: &Path) -> (Output, u64) {
    let measure = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], capture_output=True)\n\
        sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
        sys.stderr.buffer.write(r.stderr)\n\
        sys.exit(r.returncode)\n";
    let out = Command::new("python3")
        .args(["-c", measure, BIN, "explain", "-o", "json", "-f"])
        .arg(file)
        .output()
        .expect("python3");
    let peak = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX);
    (out, peak)
}

#[test]
fn large_and_deep_inputs_stay_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    if bench_inputs(dir.path()).is_none() {
        return;
    }
    // 500 KB of one nested flow mapping: refused at once, with the reason.
    let (out, took) = explain(&[&dir.path().join("nested.yaml")]);
    let stderr = refused(&out);
    assert!(
        stderr.contains(
            "YAML document 2 (line 12): nested more than 100 levels deep (line 13, column"
        ),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // One object of 8 MB of one-letter values: refused at the bound, before it costs much.
    let (out, peak) = explain_peak_kib(&dir.path().join("scalars.yaml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("YAML document 2 (line 12): an object of more than 250000 values"),
        "{stderr}"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");

    // 8 MB of pods in one List, read item by item: a few times the input at most, binary
    // included (the whole-tree parser took 26 times, docs/performance.md).
    let big = dir.path().join("big.yaml");
    let size_kib = std::fs::metadata(&big).expect("big.yaml").len() / 1024;
    let (out, peak) = explain_peak_kib(&big);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        peak < 8 * size_kib,
        "peak RSS {peak} KiB for {size_kib} KiB of input"
    );
}
