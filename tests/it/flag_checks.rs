//! Flags that cannot work are refused with exit 2 before anything is asked of the cluster:
//! an empty capture, zero connections, an entry point without a port, and an entry node that is
//! none of the cluster's nodes (checked once the node list is read, before any answer).

use crate::support;

use std::io::Write;
use std::process::{Command, Output};
use support::cluster;
use support::FakeApi;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .output()
            .expect("running kubectl-realip")
    })
    .await
    .expect("the command ran")
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_trace_flags_are_refused_before_any_request() {
    let api = FakeApi::start().await;
    cluster::web_shop(&api);
    let kubeconfig = api.kubeconfig().display().to_string();
    for (flags, says) in [
        (&["--duration", "0"][..], "--duration"),
        (&["--duration", "200ms"][..], "at least 1s"),
        (&["--flows", "0"][..], "--flows"),
        (&["--send", "--send-to", "203.0.113.10"][..], "has no port"),
        (
            &["--send", "--send-to", "lb.example.com"][..],
            "has no port",
        ),
        (&["--send", "--send-to", "2001:db8::1"][..], "[ADDR]:PORT"),
        (&["--send", "--send-to", "203.0.113.10:0"][..], "port 0"),
    ] {
        let mut argv = words(&[
            "trace",
            "svc/web",
            "-n",
            "shop",
            "--kubeconfig",
            &kubeconfig,
        ]);
        argv.extend(words(flags));
        let out = run(argv).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    assert!(
        api.seen().is_empty(),
        "the cluster was asked: {:?}",
        api.seen()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_entry_node_names_the_nodes_that_exist() {
    let api = FakeApi::start().await;
    cluster::web_shop(&api);
    let kubeconfig = api.kubeconfig().display().to_string();
    let live = |node: &str| {
        words(&[
            "explain",
            "svc/web",
            "-n",
            "shop",
            "--kubeconfig",
            &kubeconfig,
            "--entry-node",
            node,
        ])
    };
    let out = run(live("node-z")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--entry-node \"node-z\" matches no node; the nodes are node-a, node-b"),
        "{stderr}"
    );
    assert!(api
        .seen()
        .iter()
        .all(|s| matches!(s.verb.as_str(), "get" | "list")));
    let out = run(live("node-b")).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Offline: the nodes the manifests name (Node objects, pods' nodeName).
    let mut file = tempfile::NamedTempFile::new().expect("manifest");
    file.write_all(
        b"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: lab}\n\
          spec: {type: NodePort, selector: {app: web}, ports: [{port: 80}]}\n---\n\
          apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: lab, labels: {app: web}}\n\
          spec: {nodeName: node-b, containers: [{name: web}]}\n---\n\
          apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n",
    )
    .expect("write");
    let path = file.path().display().to_string();
    let offline = |node: &str| words(&["explain", "-f", &path, "--entry-node", node]);
    let out = run(offline("node-c")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the nodes are node-a, node-b"), "{stderr}");
    let out = run(offline("node-a")).await;
    assert_eq!(out.status.code(), Some(0));
}
