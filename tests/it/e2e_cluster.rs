//! End to end on a real cluster (kind or k3d): deploys a backend behind a NodePort Service
//! (externalTrafficPolicy Cluster), runs `kubectl realip trace --send`, and checks the report
//! and that nothing is left behind. See docs/e2e.md.
//!
//! Runs only when REALIP_E2E_CONTEXT names a kubeconfig context AND with `--ignored`, so no
//! stray `cargo test` touches someone's cluster.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BACKEND_IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

use crate::support::kernel;

/// The context to test against; an opt-in, so its absence is said but never a failure.
fn context() -> Option<String> {
    match std::env::var("REALIP_E2E_CONTEXT") {
        Ok(context) if !context.is_empty() => Some(context),
        _ => {
            kernel::skipped(
                &kernel::current_test(),
                "set REALIP_E2E_CONTEXT to a kubeconfig context (see docs/e2e.md)",
            );
            None
        }
    }
}

fn kubectl(context: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .arg("--context")
        .arg(context)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing to kubectl");
    }
    let output = child.wait_with_output().expect("kubectl ran");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn manifests(namespace: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
  labels:
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {BACKEND_IMAGE}
        args: ["netexec", "--http-port=8080"]
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  type: NodePort
  externalTrafficPolicy: Cluster
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    )
}

/// Deletes the test namespace even when an assertion fails.
struct Namespace<'a> {
    context: &'a str,
    name: String,
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args([
                "--context",
                self.context,
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
            ])
            .status();
    }
}

#[test]
#[ignore = "needs a real cluster: REALIP_E2E_CONTEXT=kind-realip cargo test --test it e2e_cluster:: -- --ignored"]
fn trace_on_a_real_cluster_finds_the_snat_and_leaves_nothing() {
    let Some(context) = context() else {
        return;
    };
    let namespace = Namespace {
        context: &context,
        name: format!("realip-e2e-{}", std::process::id()),
    };
    kubectl(
        &context,
        &["apply", "-f", "-"],
        Some(&manifests(&namespace.name)),
    );
    kubectl(
        &context,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            &namespace.name,
            "--timeout=180s",
        ],
        None,
    );

    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .args([
            "trace",
            "svc/web",
            "-n",
            &namespace.name,
            "--context",
            &context,
        ])
        .args([
            "--send",
            "--duration",
            "20s",
            "--ready-timeout",
            "3m",
            "-o",
            "json",
        ])
        .output()
        .expect("kubectl-realip ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "trace failed ({:?}) after {:?}: {stderr}",
        output.status.code(),
        started.elapsed()
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("the JSON report");
    let flows = report["flows"].as_array().expect("flows");
    assert!(
        !flows.is_empty(),
        "no connection traced: {report:#}\n{stderr}"
    );
    let sent = report["sent"]
        .as_array()
        .expect("--send reports its test connections");
    assert!(
        sent.iter().any(|s| s["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("HTTP/1.1 200"))),
        "no test connection was answered: {sent:#?}"
    );
    // A NodePort with externalTrafficPolicy Cluster: at least the connections entering at a node
    // without the pod are SNATed, and the report names where.
    let rewritten = flows
        .iter()
        .filter(|f| f["client_ip_preserved"] == false)
        .count();
    assert!(
        rewritten > 0,
        "expected SNAT on a Cluster-policy NodePort: {report:#}"
    );
    assert!(flows
        .iter()
        .flat_map(|f| f["translations"].as_array().into_iter().flatten())
        .any(|t| t["kind"] == "snat" && t["node"].is_string()));

    // Nothing of the run is left in the cluster.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = kubectl(
            &context,
            &[
                "get",
                "jobs,daemonsets,configmaps,pods",
                "-A",
                "-l",
                "app.kubernetes.io/managed-by=kubectl-realip",
                "-o",
                "name",
            ],
            None,
        );
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after the trace:\n{left}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}
