//! What a person sees when the cluster cannot be used: an unreachable, silent or blackholed API
//! server, or a kubeconfig that cannot be used. The real binary, its stderr and its exit code:
//! one error message naming the server, no log noise, no colour off a terminal, and bounded time.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");

/// A kubeconfig whose only context points at `server`.
fn kubeconfig(server: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("kubeconfig file");
    write!(
        file,
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n\
         clusters:\n- name: lab\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: tester\n  user:\n    token: t\n\
         contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: tester\n    namespace: shop\n"
    )
    .expect("writing kubeconfig");
    file
}

/// Runs the plugin with `args`, stderr piped (not a terminal), and times it.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("running kubectl-realip");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A local port nothing listens on: connecting is refused at once.
fn refusing_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// The commands that talk to the cluster, against the kubeconfig at `path`.
fn cluster_commands(path: &str, extra: &[&'static str]) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = [
        vec![
            "trace",
            "svc/web",
            "--image",
            "registry.example/realip-probe:test",
        ],
        vec!["cleanup"],
        vec!["explain", "svc/web"],
    ]
    .into_iter()
    .map(|words| words.into_iter().map(String::from).collect())
    .collect();
    for command in &mut commands {
        command.extend(["--kubeconfig".to_string(), path.to_string()]);
        command.extend(extra.iter().map(|s| s.to_string()));
    }
    commands
}

fn strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

#[test]
fn an_api_error_is_said_once_without_log_noise_or_colour() {
    let server = format!("https://{}", refusing_port());
    let config = kubeconfig(&server);
    let path = config.path().display().to_string();
    for command in cluster_commands(&path, &[]) {
        for term in ["dumb", "xterm-256color"] {
            let (output, took) = run(&strs(&command), &[("TERM", term)]);
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(3), "{command:?}: {text}");
            assert!(!text.contains('\u{1b}'), "colour in a pipe: {text:?}");
            assert!(
                !text.contains("ERROR"),
                "a log line besides the error: {text}"
            );
            assert_eq!(
                text.lines().filter(|l| l.starts_with("error: ")).count(),
                1,
                "{text}"
            );
            assert!(
                text.starts_with(&format!(
                    "error: cannot reach the Kubernetes API at {server} ("
                )),
                "{text}"
            );
            assert!(text.contains("Connection refused"), "{text}");
            assert!(took < Duration::from_secs(5), "a refusal took {took:?}");
        }
    }
}

#[test]
fn verbose_opens_the_logs_still_without_colour_in_a_pipe() {
    let config = kubeconfig(&format!("https://{}", refusing_port()));
    let path = config.path().display().to_string();
    let (output, _) = run(&["cleanup", "--kubeconfig", &path, "-v"], &[]);
    let text = stderr(&output);
    assert!(
        text.contains("ERROR"),
        "-v shows the HTTP layer's log: {text}"
    );
    assert!(!text.contains('\u{1b}'), "colour in a pipe: {text:?}");
    let (output, _) = run(
        &["cleanup", "--kubeconfig", &path],
        &[("RUST_LOG", "debug")],
    );
    assert!(
        stderr(&output).contains("requesting"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn logs_are_coloured_on_a_terminal_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("this test needs `script` (apt-get install util-linux) to make a terminal");
    }
    let config = kubeconfig(&format!("https://{}", refusing_port()));
    let line = format!(
        "'{BIN}' cleanup -v --kubeconfig '{}'",
        config.path().display()
    );
    let screen = |no_color: Option<&str>| {
        let mut command = Command::new("script");
        command
            .args(["-qec", &line, "/dev/null"])
            .env("TERM", "xterm-256color")
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        String::from_utf8_lossy(&command.output().expect("script").stdout).into_owned()
    };
    let coloured = screen(None);
    assert!(coloured.contains("ERROR"), "{coloured}");
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = screen(Some("1"));
    assert!(plain.contains("ERROR"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR ignored: {plain:?}");
}

/// How a silent server fails each command: within the bound, exit 3, naming the server.
fn assert_given_up(server: &str, says: &str, bound: Duration) {
    let config = kubeconfig(server);
    let path = config.path().display().to_string();
    for command in cluster_commands(&path, &["--request-timeout", "2s"]) {
        let (output, took) = run(&strs(&command), &[]);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{command:?}: {text}");
        assert!(text.contains(says), "{command:?}: {text}");
        assert!(
            text.contains(server),
            "the message names the server: {text}"
        );
        assert!(text.contains("--request-timeout"), "{text}");
        assert!(
            took >= Duration::from_millis(1900) && took < bound,
            "{command:?} took {took:?}"
        );
    }
}

#[test]
fn request_timeout_bounds_connecting_to_a_server_that_never_answers() {
    // The kernel completes the handshake, nobody accepts or speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = format!("https://{}", silent.local_addr().expect("address"));
    assert_given_up(
        &server,
        &format!("no connection to the Kubernetes API at {server} within 2s"),
        Duration::from_secs(8),
    );
}

#[test]
fn request_timeout_bounds_waiting_for_an_answer() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = format!("http://{}", silent.local_addr().expect("address"));
    assert_given_up(
        &server,
        &format!("the Kubernetes API at {server} did not answer within 2s"),
        Duration::from_secs(8),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_bounds_connecting_to_an_unreachable_server() {
    // A full accept queue makes the kernel drop further SYNs: an unreachable server, locally.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("address");
    let mut queued = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(err)) => panic!("filling the accept queue: {err}"),
            Err(_) => break, // this SYN was dropped: the queue is full
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let server = format!("https://{addr}");
    tokio::task::spawn_blocking(move || {
        assert_given_up(
            &server,
            &format!("no connection to the Kubernetes API at {server} within 2s"),
            Duration::from_secs(8),
        )
    })
    .await
    .expect("the checks ran");
    drop((listener, queued));
}

#[test]
fn an_unusable_kubeconfig_or_context_is_bad_input() {
    let good = kubeconfig("https://127.0.0.1:1");
    let good_path = good.path().display().to_string();
    let mut broken = tempfile::NamedTempFile::new().expect("file");
    broken.write_all(b"clusters: [\n").expect("write");
    let broken_path = broken.path().display().to_string();
    let cases: [(String, &[&str], String); 3] = [
        (
            "/nonexistent/kubeconfig".to_string(),
            &[],
            "kubeconfig: /nonexistent/kubeconfig: cannot read it".to_string(),
        ),
        (
            broken_path.clone(),
            &[],
            format!("kubeconfig: {broken_path}: not a kubeconfig"),
        ),
        (
            good_path,
            &["--context", "nope"],
            "no context \"nope\"".to_string(),
        ),
    ];
    for (path, extra, says) in cases {
        for command in cluster_commands(&path, extra) {
            let (output, took) = run(&strs(&command), &[]);
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{command:?}: {text}");
            assert!(text.starts_with("error: "), "{text}");
            assert!(text.contains(&says), "{command:?}: {text}");
            assert!(text.contains("kubectl config get-contexts"), "{text}");
            assert!(took < Duration::from_secs(5), "{command:?} took {took:?}");
        }
    }
}
