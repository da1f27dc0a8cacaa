//! Progress is for people: on a terminal the real binary shows each step and the per-node
//! lines on stderr; piped, stderr carries no progress at all.

use crate::support;

use std::process::Command;
use support::cluster;
use support::FakeApi;

async fn fake_cluster() -> FakeApi {
    let api = FakeApi::start().await;
    cluster::web_shop(&api);
    cluster::quiet_probes(&api);
    api
}

fn trace_argv(api: &FakeApi) -> Vec<String> {
    [
        env!("CARGO_BIN_EXE_kubectl-realip"),
        "trace",
        "svc/web",
        "-n",
        "shop",
        "--duration",
        "2s",
        // Independent of whether this build embeds a probe.
        "--image",
        "registry.example/realip-probe:test",
        "--kubeconfig",
    ]
    .into_iter()
    .map(String::from)
    .chain([api.kubeconfig().display().to_string()])
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_shows_on_a_terminal_and_never_in_a_pipe() {
    let api = fake_cluster().await;
    let argv = trace_argv(&api);
    let piped = tokio::task::spawn_blocking({
        let argv = argv.clone();
        move || {
            Command::new(&argv[0])
                .args(&argv[1..])
                .env_remove("KUBECONFIG")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("capturing"),
        "progress in a pipe: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe: {stderr:?}"
    );

    // util-linux `script` runs the command on a pseudo-terminal.
    if Command::new("script").arg("--version").output().is_err() {
        panic!("this test needs `script` (apt-get install util-linux) to make a terminal");
    }
    let api = fake_cluster().await;
    let command = trace_argv(&api)
        .iter()
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let tty = tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("TERM", "xterm-256color")
            .env_remove("KUBECONFIG")
            .env_remove("NO_COLOR")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(screen.contains("capturing for 2s"), "{screen}");
    assert!(screen.contains("node-b"), "a line per node: {screen}");
    assert_eq!(
        tty.status.code(),
        piped.status.code(),
        "the same run, the same exit: {screen}"
    );
}
