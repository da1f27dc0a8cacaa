//! `kubectl realip <TAB>`: completion against the in-process API server, as kubectl asks for
//! it. kubectl runs `kubectl_complete-realip` from PATH with the words after `kubectl realip`;
//! here that is this build's binary, linked under that name (and as `kubectl-realip`), with
//! KUBECONFIG pointing at the test API. Checked once by running the link as kubectl does, and
//! once through the real `kubectl __complete realip …` (kubectl 1.26 or later: without it the
//! test says SKIPPED, and fails under `CI=true`).

use crate::support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{cluster, kernel, FakeApi};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");

/// A PATH directory holding the plugin under both names kubectl looks for.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a scratch directory");
    for name in ["kubectl-realip", "kubectl_complete-realip"] {
        std::os::unix::fs::symlink(PLUGIN, dir.path().join(name)).expect("linking the plugin");
    }
    dir
}

fn path_with(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

/// Two namespaces with their Services, and a kubeconfig of two contexts (the test API's
/// `fake`, whose namespace is `default`, and one more).
async fn cluster_with_services() -> (FakeApi, tempfile::NamedTempFile) {
    let api = FakeApi::start().await;
    api.insert(&cluster::namespace("default", &[]));
    api.insert(&cluster::namespace("shop", &[]));
    for (ns, name) in [("default", "kubernetes"), ("shop", "web"), ("shop", "cart")] {
        api.insert(&json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"port": 80}]}}));
    }
    let other = tempfile::NamedTempFile::new().expect("a kubeconfig");
    std::fs::write(
        other.path(),
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: far\n  cluster:\n    server: https://127.0.0.1:1\n\
         users:\n- name: far\n  user:\n    token: x\n\
         contexts:\n- name: prod\n  context:\n    cluster: far\n    user: far\n",
    )
    .expect("writing a kubeconfig");
    (api, other)
}

/// Candidates and directive of one completion.
fn parse(stdout: &[u8]) -> (Vec<String>, String) {
    let text = String::from_utf8_lossy(stdout);
    let mut values: Vec<String> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    let directive = values.pop().unwrap_or_default();
    (values, directive)
}

/// The checks, whoever asks: `ask(words)` returns what the completion answered.
fn check(ask: impl Fn(&[&str]) -> (Vec<String>, String)) {
    // Services of the context's namespace, then of the one -n names.
    assert_eq!(
        ask(&["trace", ""]),
        (vec!["svc/kubernetes".into()], ":4".into())
    );
    assert_eq!(ask(&["trace", "-n", "shop", ""]).0, ["svc/cart", "svc/web"]);
    assert_eq!(
        ask(&["explain", "--namespace=shop", "svc/w"]).0,
        ["svc/web"]
    );
    // Namespaces and contexts.
    assert_eq!(ask(&["trace", "-n", ""]).0, ["default", "shop"]);
    assert_eq!(ask(&["cleanup", "--context", ""]).0, ["fake", "prod"]);
    // Lab scenarios, and nothing hidden.
    let scenarios = ask(&["lab", "--scenario", "cluster-"]).0;
    assert_eq!(
        scenarios,
        [
            "cluster-same-node",
            "cluster-cross-node",
            "cluster-same-node-nft",
            "cluster-cross-node-nft"
        ]
    );
    let commands = ask(&[""]).0;
    assert!(commands.contains(&"trace".to_string()), "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.starts_with("lab-net")),
        "{commands:?}"
    );
    assert!(!ask(&["lab", "--ns"]).0.iter().any(|f| f == "--ns-prefix"));
}

fn kubeconfig_var(api: &FakeApi, other: &Path) -> String {
    format!("{}:{}", api.kubeconfig().display(), other.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_completion_executable_completes_from_the_cluster() {
    let (api, other) = cluster_with_services().await;
    let dir = plugin_dir();
    let exe = dir.path().join("kubectl_complete-realip");
    let kubeconfig = kubeconfig_var(&api, other.path());
    let ask = move |words: &[&str]| {
        let out = Command::new(&exe)
            .args(words)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("the completion runs");
        assert!(out.status.success(), "{out:?}");
        parse(&out.stdout)
    };
    tokio::task::spawn_blocking(move || check(ask))
        .await
        .expect("the checks ran");
}

/// The installed kubectl, if it knows plugin completion (kubectl 1.26 and later).
fn kubectl() -> Result<PathBuf, String> {
    if !kernel::has_tool("kubectl") {
        return Err("no `kubectl` on PATH".into());
    }
    let out = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output()
        .map_err(|err| format!("kubectl version: {err}"))?;
    let version: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|err| format!("kubectl version printed no JSON: {err}"))?;
    let minor: u32 = version["clientVersion"]["minor"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('+')
        .parse()
        .unwrap_or(0);
    if version["clientVersion"]["major"] != "1" || minor < 26 {
        return Err(format!(
            "kubectl {} cannot complete plugins (1.26 or later can)",
            version["clientVersion"]["gitVersion"]
        ));
    }
    Ok(PathBuf::from("kubectl"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_complete_realip_completes_from_the_cluster() {
    let kubectl = kubectl();
    if !kernel::runnable(
        "kubectl_complete_realip_completes_from_the_cluster",
        kubectl.as_ref().err().cloned(),
    ) {
        return;
    }
    let kubectl = kubectl.expect("checked above");
    let (api, other) = cluster_with_services().await;
    let dir = plugin_dir();
    let path = path_with(dir.path());
    let kubeconfig = kubeconfig_var(&api, other.path());
    let ask = move |words: &[&str]| {
        let out = Command::new(&kubectl)
            .args(["__complete", "realip"])
            .args(words)
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "{out:?}");
        parse(&out.stdout)
    };
    tokio::task::spawn_blocking(move || check(ask))
        .await
        .expect("the checks ran");
}
