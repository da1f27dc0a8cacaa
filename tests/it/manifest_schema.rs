//! Every object trace can create is valid Kubernetes, checked by an independent validator
//! against the API's OpenAPI schema (kubernetes-validate, its bundled schemas, strict: no
//! unknown fields): the `--dry-run` YAML exactly as printed, and what a run sends to the API,
//! for both deliveries (the carried probe in ConfigMaps, and `--image`).

use crate::support;

use clap::Parser;
use kubectl_realip::cli::{Cli, Command as Sub};
use kubectl_realip::trace::{self, manifests::Carried, TraceOptions};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::cluster;
use support::kernel;
use support::FakeApi;

/// The Kubernetes version k8s-openapi is built for, and the newest the validator knows.
const VERSIONS: [Option<&str>; 2] = [Some("1.33.0"), None];

/// `kubernetes-validate`, on PATH or in the venv `.ci/setup` makes, or why it cannot run. Under
/// CI the test fails without it: a skipped check never stands in for a passed one.
fn validator() -> Option<String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/kubernetes-validate");
    for tool in [
        venv.display().to_string(),
        "kubernetes-validate".to_string(),
    ] {
        let found = Command::new(&tool)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if found {
            return Some(tool);
        }
    }
    let why = "kubernetes-validate is not installed (.ci/setup installs it)";
    kernel::cannot_run(&kernel::current_test(), why);
    None
}

/// Validates the `documents` documents of `file` against each of [`VERSIONS`], strictly.
fn assert_valid(tool: &str, file: &Path, documents: usize, what: &str) {
    for version in VERSIONS {
        let mut command = Command::new(tool);
        command.arg("--strict");
        if let Some(version) = version {
            command.args(["-k", version]);
        }
        let out = command
            .arg(file)
            .output()
            .expect("running kubernetes-validate");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{what} (Kubernetes {}): {report}",
            version.unwrap_or("newest")
        );
        // It looked at every document: one "passed" line each.
        assert_eq!(
            report.matches(" passed for resource ").count(),
            documents,
            "{what}: {report}"
        );
    }
}

fn args(api: &FakeApi, extra: &[&str]) -> trace::Request {
    let kubeconfig = api.kubeconfig().display().to_string();
    let mut argv = vec![
        "kubectl-realip",
        "trace",
        "svc/web",
        "-n",
        "shop",
        "--kubeconfig",
        &kubeconfig,
        "--duration",
        "1s",
    ];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Sub::Trace(args) => args.request(),
        other => panic!("not a trace: {other:?}"),
    }
}

fn options() -> TraceOptions {
    TraceOptions {
        run_id: "schema".into(),
        now_unix: 1_800_000_000,
        ready_timeout: Duration::from_secs(5),
        teardown_wait: Duration::from_secs(3),
        probes: vec![
            Carried {
                arch: "x86_64".into(),
                kube_arch: "amd64".into(),
                gzip: vec![
                    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            },
            Carried {
                arch: "aarch64".into(),
                kube_arch: "arm64".into(),
                gzip: vec![
                    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            },
        ],
        probe_version: "0.1.0".into(),
        base_image: "busybox:1.37".into(),
        prediction: None,
        predict_live: false,
    }
}

/// The two deliveries: the carried probe, or a probe image.
const DELIVERIES: [&[&str]; 2] = [&[], &["--image", "registry.example/realip-probe:0.1.0"]];

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_yaml_is_valid_kubernetes_as_printed() {
    let Some(tool) = validator() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    for delivery in DELIVERIES {
        let api = FakeApi::start().await;
        cluster::web_shop(&api);
        let mut extra = vec!["--dry-run"];
        extra.extend_from_slice(delivery);
        let traced = trace::run::trace(&args(&api, &extra), &options(), std::future::pending())
            .await
            .expect("dry run");
        let kinds: Vec<&str> = traced
            .output
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        let expected: &[&str] = if delivery.is_empty() {
            &["Job", "ConfigMap", "ConfigMap", "DaemonSet"]
        } else {
            &["Job", "DaemonSet"]
        };
        assert_eq!(kinds, expected, "{}", traced.output);
        let file = dir.path().join(format!("dry-run-{}.yaml", delivery.len()));
        std::fs::write(&file, &traced.output).expect("writing the dry run");
        assert_valid(
            &tool,
            &file,
            kinds.len(),
            &format!("--dry-run {delivery:?}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_run_creates_is_valid_kubernetes() {
    let Some(tool) = validator() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    for delivery in DELIVERIES {
        let api = FakeApi::start().await;
        cluster::web_shop(&api);
        cluster::quiet_probes(&api);
        // A probe namespace that does not exist yet: trace creates it too.
        let mut extra = vec!["--probe-namespace", "realip-schema"];
        extra.extend_from_slice(delivery);
        // No connection comes: the run ends with "no answer", after creating everything.
        let _ = trace::run::trace(&args(&api, &extra), &options(), std::future::pending()).await;
        let mut created = Vec::new();
        for change in api.history() {
            let plugins = ["namespaces", "jobs", "configmaps", "daemonsets"];
            if change.kind == "ADDED" && plugins.contains(&change.key.resource.as_str()) {
                created.push(change.object);
            }
        }
        let kinds: Vec<&str> = created.iter().filter_map(|o| o["kind"].as_str()).collect();
        let expected: &[&str] = if delivery.is_empty() {
            &["Namespace", "Job", "ConfigMap", "ConfigMap", "DaemonSet"]
        } else {
            &["Namespace", "Job", "DaemonSet"]
        };
        // The fixture's own Namespace "shop" was added first.
        assert_eq!(&kinds[1..], expected, "{created:#?}");
        let documents: Vec<String> = created[1..]
            .iter()
            .map(|object| serde_json::to_string_pretty(object).expect("JSON"))
            .collect();
        let file = dir.path().join(format!("created-{}.yaml", delivery.len()));
        // JSON documents are YAML documents.
        std::fs::write(&file, documents.join("\n---\n")).expect("writing the objects");
        assert_valid(
            &tool,
            &file,
            documents.len(),
            &format!("a run with {delivery:?}"),
        );
    }
}
