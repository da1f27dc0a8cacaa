//! `kubectl realip cleanup` removes every leftover of every run by label, in every namespace,
//! and deletes only namespaces a run created.

use crate::support;

use clap::Parser;
use kubectl_realip::cli::{CleanupArgs, Cli, Command};
use kubectl_realip::error::Kind;
use serde_json::{json, Value};
use support::cluster;
use support::FakeApi;

fn args(api: &FakeApi, extra: &[&str]) -> CleanupArgs {
    let kubeconfig = api.kubeconfig().display().to_string();
    let mut argv = vec!["kubectl-realip", "cleanup", "--kubeconfig", &kubeconfig];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Cleanup(args) => args,
        other => panic!("not cleanup: {other:?}"),
    }
}

fn labels(run: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "realip-probe",
        "app.kubernetes.io/managed-by": "kubectl-realip",
        "kubectl-realip/run": run,
    })
}

/// What two crashed runs left: one in the Service's namespace, one in a namespace it created.
fn leftovers(api: &FakeApi) {
    api.insert(&cluster::namespace(
        "shop",
        &[("pod-security.kubernetes.io/enforce", "privileged")],
    ));
    api.insert(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "realip-b2", "labels": labels("b2")}}));
    api.insert(&cluster::app_pod(
        "shop",
        "web-1",
        "web",
        "node-a",
        "10.244.1.5",
    ));
    api.insert(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}}));
    for (ns, run) in [("shop", "a1"), ("realip-b2", "b2")] {
        let base = format!("realip-probe-{run}");
        api.insert(&json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": format!("{base}-expiry"), "namespace": ns, "labels": labels(run)}}));
        api.insert(&json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": base, "namespace": ns, "labels": labels(run)}}));
        api.insert(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{base}-bin-amd64-0"), "namespace": ns, "labels": labels(run)}}));
        api.insert(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{base}-node-a"), "namespace": ns, "labels": labels(run)}}));
    }
}

fn managed(api: &FakeApi) -> Vec<String> {
    let mut out = Vec::new();
    for resource in ["jobs", "daemonsets", "configmaps", "pods", "namespaces"] {
        for object in api.objects(resource) {
            if object["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubectl-realip" {
                out.push(format!(
                    "{resource}/{}",
                    object["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn removes_every_run_and_only_namespaces_it_created() {
    let api = FakeApi::start().await;
    leftovers(&api);
    kubectl_realip::cmd::trace::cleanup(&args(&api, &[]))
        .await
        .unwrap();
    assert!(managed(&api).is_empty(), "{:?}", managed(&api));
    assert!(api.get("namespaces", None, "realip-b2").is_none());
    assert!(
        api.get("namespaces", None, "shop").is_some(),
        "a namespace no run created stays"
    );
    assert!(api.get("pods", Some("shop"), "web-1").is_some());
    assert!(api.get("configmaps", Some("shop"), "settings").is_some());
    // Found by label, across namespaces.
    assert!(api.seen().iter().any(|s| s.verb == "list"
        && s.resource == "daemonsets"
        && s.namespace.is_none()
        && s.query.contains("managed-by%3Dkubectl-realip")));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_removes_nothing() {
    let api = FakeApi::start().await;
    leftovers(&api);
    let before = managed(&api);
    kubectl_realip::cmd::trace::cleanup(&args(&api, &["--dry-run"]))
        .await
        .unwrap();
    assert_eq!(managed(&api), before);
    assert!(!api.seen().iter().any(|s| s.verb == "delete"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_deletes_are_reported() {
    let api = FakeApi::start().await;
    leftovers(&api);
    api.forbid("delete", "daemonsets");
    let failure = kubectl_realip::cmd::trace::cleanup(&args(&api, &[]))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure.message.contains("daemonset shop/realip-probe-a1"),
        "{failure}"
    );
    assert!(failure.hint.unwrap().contains("docs/rbac.md"));
}
