//! The real binary, interrupted by SIGINT, SIGTERM or SIGHUP mid-capture, removes every object
//! it created before it exits 130.

use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};
use support::cluster;
use support::FakeApi;

async fn interrupted_run_cleans_up(signal: &str) {
    let api = FakeApi::start().await;
    cluster::web_shop(&api);
    cluster::quiet_probes(&api);

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .args([
            "trace",
            "svc/web",
            "-n",
            "shop",
            "--duration",
            "120s",
            "--kubeconfig",
        ])
        .arg(api.kubeconfig())
        // The test's image flag keeps the run independent of whether this build embeds a probe.
        .args(["--image", "registry.example/realip-probe:test"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut child = child;
    let pid = child.id().unwrap().to_string();

    // Wait until both probes' logs are followed: the run is mid-capture.
    let started = Instant::now();
    while api
        .seen()
        .iter()
        .filter(|s| s.resource == "pods/log")
        .count()
        < 2
    {
        let exited = child.try_wait().unwrap();
        if exited.is_some() || started.elapsed() > Duration::from_secs(30) {
            let _ = child.start_kill();
            let output = child.wait_with_output().await.unwrap();
            panic!(
                "the probes never ran ({:?}): {}\nrequests: {:?}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                api.seen()
                    .iter()
                    .map(|s| format!("{} {}", s.verb, s.resource))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!api.objects("daemonsets").is_empty());

    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after the signal")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    for resource in ["jobs", "daemonsets", "configmaps", "pods"] {
        assert!(
            api.objects(resource).is_empty(),
            "{resource} left after {signal}: {:?}",
            api.objects(resource)
        );
    }
    assert!(
        api.seen()
            .iter()
            .any(|s| s.verb == "delete" && s.resource == "jobs"),
        "the expiry Job was deleted explicitly"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_cleans_up() {
    interrupted_run_cleans_up("INT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cleans_up() {
    interrupted_run_cleans_up("TERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_cleans_up() {
    interrupted_run_cleans_up("HUP").await;
}
