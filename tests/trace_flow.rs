//! `kubectl realip trace` against the in-process fake API server: the objects it creates, the
//! events it streams from two probe pods, the report, and that nothing is left behind — on
//! success, on error and on interruption.

mod support;

use clap::Parser;
use kubectl_realip::cli::{Cli, Command, TraceArgs};
use kubectl_realip::error::Kind;
use kubectl_realip::trace::{self, manifests::Carried, TraceOptions};
use realip_probe::wire::{
    encode_line, Bye, Direction, Event, Hello, IfaceKind, Interface, LinkType, Syn,
};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use support::cluster::{self, Fate};
use support::{FakeApi, LogScript};

const MANAGED: &str = "app.kubernetes.io/managed-by";

fn args(api: &FakeApi, extra: &[&str]) -> TraceArgs {
    let kubeconfig = api.kubeconfig().display().to_string();
    let mut argv = vec![
        "kubectl-realip",
        "trace",
        "svc/web",
        "-n",
        "shop",
        "--kubeconfig",
        &kubeconfig,
        "--max-nodes",
        "1",
    ];
    if !extra.contains(&"--duration") {
        argv.extend_from_slice(&["--duration", "5s"]);
    }
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Trace(args) => args,
        other => panic!("not a trace: {other:?}"),
    }
}

/// A trace with `extra` flags against the fake API, never interrupted.
async fn run(api: &FakeApi, extra: &[&str]) -> kubectl_realip::error::Result<trace::flow::Traced> {
    trace::flow::trace(&args(api, extra), &options(), std::future::pending()).await
}

fn options() -> TraceOptions {
    TraceOptions {
        run_id: "t3st01".into(),
        now_unix: 1_800_000_000,
        ready_timeout: Duration::from_secs(5),
        teardown_wait: Duration::from_secs(3),
        probes: vec![Carried {
            arch: "x86_64".into(),
            kube_arch: "amd64".into(),
            gzip: vec![
                0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        }],
        probe_version: "0.1.0".into(),
        base_image: "busybox:1.37".into(),
        prediction: None,
        predict_live: true,
    }
}

/// Three nodes, a LoadBalancer Service (Cluster policy) whose one pod runs on node-b.
fn cluster(api: &FakeApi) {
    cluster::web_shop(api);
    api.insert(&cluster::node("node-c", "198.51.100.3"));
    api.insert(&cluster::app_pod(
        "shop",
        "web-1",
        "web",
        "node-b",
        "10.244.1.5",
    ));
}

fn iface(index: u32, name: &str, kind: IfaceKind, address: &str) -> Interface {
    Interface {
        index,
        name: name.into(),
        kind,
        link_type: LinkType::Ethernet,
        addresses: if address.is_empty() {
            vec![]
        } else {
            vec![address.into()]
        },
        mtu: 1500,
        mac: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn syn(
    node: &str,
    iface: &str,
    dir: Direction,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    ts: u64,
) -> String {
    encode_line(&Event::Syn(Syn {
        ts_ns: ts,
        node: node.into(),
        iface: iface.into(),
        dir,
        src: src.parse().unwrap(),
        sport,
        dst: dst.parse().unwrap(),
        dport,
        isn: 629_798_247,
        tsval: Some(2_657_712_186),
        ttl: 60,
        ip_id: Some(4242),
    }))
}

fn hello(node: &str, interfaces: Vec<Interface>) -> String {
    encode_line(&Event::Hello(Hello {
        ts_ns: 1,
        node: node.into(),
        probe_version: "0.1.0".into(),
        interfaces,
        filter: "tcp syn".into(),
        l7: false,
    }))
}

fn bye(node: &str) -> String {
    encode_line(&Event::Bye(Bye {
        ts_ns: 9_000_000_000,
        node: node.into(),
        reason: "duration".into(),
        error: None,
    }))
}

/// A client's connection through the LB to node-a, forwarded (DNAT + MASQUERADE) to the pod on
/// node-b: node-a is the SNAT node.
fn snat_via_node_a(hold_open: bool) -> HashMap<String, Fate> {
    let a = vec![
        hello(
            "node-a",
            vec![iface(2, "eth0", IfaceKind::Uplink, "198.51.100.1/24")],
        ),
        syn(
            "node-a",
            "eth0",
            Direction::In,
            "203.0.113.50",
            40000,
            "198.51.100.1",
            31080,
            1_000,
        ),
        syn(
            "node-a",
            "eth0",
            Direction::Out,
            "198.51.100.1",
            52000,
            "10.244.1.5",
            8080,
            2_000,
        ),
        bye("node-a"),
    ];
    let b = vec![
        hello(
            "node-b",
            vec![
                iface(2, "eth0", IfaceKind::Uplink, "198.51.100.2/24"),
                iface(7, "veth1a2b", IfaceKind::Veth, ""),
            ],
        ),
        syn(
            "node-b",
            "eth0",
            Direction::In,
            "198.51.100.1",
            52000,
            "10.244.1.5",
            8080,
            3_000,
        ),
        syn(
            "node-b",
            "veth1a2b",
            Direction::Out,
            "198.51.100.1",
            52000,
            "10.244.1.5",
            8080,
            4_000,
        ),
        bye("node-b"),
    ];
    let script = |lines: Vec<String>| {
        let script = LogScript::lines(lines);
        if hold_open {
            script.hold_open()
        } else {
            script
        }
    };
    HashMap::from([
        ("node-a".to_string(), Fate::Runs(vec![script(a)])),
        ("node-b".to_string(), Fate::Runs(vec![script(b)])),
    ])
}

/// Objects of any run still in the store.
fn leftovers(api: &FakeApi) -> Vec<String> {
    let mut left = Vec::new();
    for resource in ["jobs", "daemonsets", "configmaps", "pods", "namespaces"] {
        for object in api.objects(resource) {
            if object["metadata"]["labels"][MANAGED].is_string() {
                left.push(format!("{resource}/{}", object["metadata"]["name"]));
            }
        }
    }
    left
}

fn created(api: &FakeApi) -> Vec<String> {
    api.seen()
        .iter()
        .filter(|s| s.verb == "create" && !s.dry_run)
        .map(|s| s.resource.clone())
        .collect()
}

fn added(api: &FakeApi, resource: &str) -> Vec<Value> {
    api.history()
        .into_iter()
        .filter(|c| c.kind == "ADDED" && c.key.resource == resource)
        .map(|c| c.object)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_reports_the_snat_node_and_removes_everything() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));

    let traced = run(&api, &[]).await.unwrap();

    // Exactly the objects of a run, owner first.
    assert_eq!(created(&api), ["jobs", "configmaps", "daemonsets"]);
    let job = &added(&api, "jobs")[0];
    assert_eq!(job["metadata"]["name"], "realip-probe-t3st01-expiry");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 0);
    assert!(job["spec"]["activeDeadlineSeconds"].as_u64().unwrap() > 5);
    let ds = &added(&api, "daemonsets")[0];
    assert_eq!(
        ds["metadata"]["ownerReferences"][0]["uid"],
        job["metadata"]["uid"]
    );
    assert_eq!(ds["metadata"]["labels"]["kubectl-realip/run"], "t3st01");
    assert_eq!(ds["metadata"]["labels"][MANAGED], "kubectl-realip");
    assert!(ds["metadata"]["annotations"]["kubectl-realip/expires-at"].is_string());
    let pod_spec = &ds["spec"]["template"]["spec"];
    assert_eq!(pod_spec["hostNetwork"], true);
    assert_eq!(pod_spec["tolerations"][0]["operator"], "Exists");
    assert_eq!(
        cluster::affinity_nodes(ds),
        ["node-a", "node-b"],
        "the endpoint node and one entry node (--max-nodes 1)"
    );
    let probe = &pod_spec["containers"][0]["securityContext"];
    assert_eq!(probe["capabilities"]["add"][0], "NET_RAW");
    assert_eq!(probe["readOnlyRootFilesystem"], true);
    assert_eq!(probe["allowPrivilegeEscalation"], false);
    let map = &added(&api, "configmaps")[0];
    assert_eq!(map["metadata"]["ownerReferences"][0]["kind"], "Job");

    // Events of both probe pods were followed; the report names the SNAT node.
    let logs: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.resource == "pods/log")
        .filter_map(|s| s.name.clone())
        .collect();
    assert!(
        logs.contains(&"realip-probe-t3st01-node-a".to_string()),
        "{logs:?}"
    );
    assert!(
        logs.contains(&"realip-probe-t3st01-node-b".to_string()),
        "{logs:?}"
    );
    let text = kubectl_realip::output::plain(&traced.output);
    assert!(traced.answered);
    assert!(text.contains("SNAT on node-a"), "{text}");
    assert!(text.contains("198.51.100.1  node node-a"), "{text}");
    assert!(
        text.contains("10.244.1.5    pod shop/web-1 on node-b"),
        "{text}"
    );
    assert!(text.contains("node-c: beyond --max-nodes 1"), "{text}");

    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_is_the_analysis_contract_plus_names() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    let traced = run(&api, &["-o", "json"]).await.unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    assert_eq!(json["flows"][0]["isn"], 629_798_247);
    assert_eq!(json["flows"][0]["client_ip_preserved"], false);
    assert_eq!(json["addresses"]["198.51.100.1"], "node node-a");
    assert_eq!(
        json["probed_nodes"],
        serde_json::json!(["node-a", "node-b"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_manifests_and_creates_nothing() {
    let api = FakeApi::start().await;
    cluster(&api);
    let traced = run(&api, &["--dry-run"]).await.unwrap();
    assert!(created(&api).is_empty());
    insta::assert_snapshot!(traced.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_that_cannot_pull_is_reported_and_everything_is_removed() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(
        &api,
        HashMap::from([
            ("node-a".to_string(), Fate::ImagePullBackOff),
            ("node-b".to_string(), Fate::ImagePullBackOff),
        ]),
    );
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Probe);
    assert!(failure.message.contains("ImagePullBackOff"), "{failure}");
    assert!(
        failure.message.contains("no such host"),
        "the pod's Warning event: {failure}"
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failed_probe_leaves_the_other_to_measure() {
    let api = FakeApi::start().await;
    cluster(&api);
    let mut fates = snat_via_node_a(false);
    fates.insert("node-a".into(), Fate::Unschedulable);
    cluster::run_daemonsets(&api, fates);
    let traced = run(&api, &[]).await.unwrap();
    let text = kubectl_realip::output::plain(&traced.output);
    assert!(
        text.contains("node-a: probe failed: Unschedulable"),
        "{text}"
    );
    assert!(leftovers(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_refusal_names_verb_and_resource_and_cleans_up() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.forbid("create", "daemonsets");
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    let hint = failure.hint.clone().unwrap_or_default();
    assert!(
        hint.contains("\"create\" on \"daemonsets.apps\" in namespace shop"),
        "{hint}"
    );
    assert!(hint.contains("docs/rbac.md"), "{hint}");
    // The Job and ConfigMap created before the refusal are gone.
    assert_eq!(created(&api), ["jobs", "configmaps", "daemonsets"]);
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn service_errors_are_clear_and_create_nothing() {
    let api = FakeApi::start().await;
    cluster(&api);
    let missing = trace::flow::trace(
        &{
            let mut a = args(&api, &[]);
            a.target = "svc/nope".into();
            a
        },
        &options(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(missing.kind, Kind::Cluster);
    assert_eq!(missing.message, "Service nope not found in namespace shop");

    let mut headless = cluster::lb_service("shop", "db", "203.0.113.11", 5432, 31432);
    let spec = headless.spec.as_mut().unwrap();
    spec.type_ = Some("ClusterIP".into());
    spec.cluster_ip = Some("None".into());
    api.insert(&headless);
    let mut a = args(&api, &[]);
    a.target = "svc/db".into();
    let failure = trace::flow::trace(&a, &options(), std::future::pending())
        .await
        .unwrap_err();
    assert!(failure.message.contains("headless"), "{failure}");

    api.insert(&cluster::lb_service(
        "shop",
        "empty",
        "203.0.113.12",
        80,
        31081,
    ));
    a.target = "service/empty".into();
    let failure = trace::flow::trace(&a, &options(), std::future::pending())
        .await
        .unwrap_err();
    assert!(failure.message.contains("no ready endpoints"), "{failure}");
    assert!(created(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_security_refusal_is_told_before_anything_is_created() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.update("namespaces", None, "shop", |ns| {
        ns["metadata"]["labels"] =
            serde_json::json!({"pod-security.kubernetes.io/enforce": "baseline"});
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(failure.message.contains("\"baseline\""), "{failure}");
    assert!(failure.hint.unwrap().contains("--probe-namespace"));
    assert!(created(&api).is_empty());

    // The cluster-wide default can refuse too: admission says so on a dry run.
    api.update("namespaces", None, "shop", |ns| {
        ns["metadata"]["labels"] = Value::Null
    });
    api.fault(support::Fault {
        verb: "create".into(),
        resource: "pods".into(),
        name: None,
        code: 403,
        message: Some(
            "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true)"
                .into(),
        ),
        times: None,
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert!(
        failure.message.contains("violates PodSecurity"),
        "{failure}"
    );
    assert!(created(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_probe_namespace_is_created_and_removed() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    run(&api, &["--probe-namespace", "realip-t3st01"])
        .await
        .unwrap();
    let namespace = &added(&api, "namespaces")
        .into_iter()
        .find(|ns| ns["metadata"]["name"] == "realip-t3st01")
        .unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    assert!(api.get("namespaces", None, "realip-t3st01").is_none());
    assert!(
        api.get("namespaces", None, "shop").is_some(),
        "never a namespace it did not create"
    );
    assert!(leftovers(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn interruption_removes_everything() {
    let api = FakeApi::start().await;
    cluster(&api);
    // Probes that keep capturing: only the interruption ends the trace.
    let fates = cluster::never_ending(snat_via_node_a(true));
    cluster::run_daemonsets(&api, fates);
    let watcher = api.clone();
    let interrupt = async move {
        // Interrupt once both probes run and their logs are being followed.
        loop {
            let following = watcher
                .seen()
                .iter()
                .filter(|s| s.resource == "pods/log")
                .count();
            if following >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let failure = trace::flow::trace(&args(&api, &["--duration", "60s"]), &options(), interrupt)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Interrupted);
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_report_names_nodes_and_pods() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    let traced = run(&api, &[]).await.unwrap();
    insta::assert_snapshot!(kubectl_realip::output::plain(&traced.output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prediction_that_disagrees_is_flagged_loudly() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    let mut options = options();
    options.prediction = Some(
        serde_json::from_value(serde_json::json!({
            "service": "web", "namespace": "shop", "assumptions": [],
            "origins": [{
                "origin": "node-port", "via": "node-port",
                "l4_source_seen_by_pod": "client", "l7_client_ip": "none",
                "reasons": [{"setting": "spec.externalTrafficPolicy=Local", "text": "kept"}],
                "fixes": []
            }]
        }))
        .unwrap(),
    );
    let traced = trace::flow::trace(&args(&api, &[]), &options, std::future::pending())
        .await
        .unwrap();
    let text = kubectl_realip::output::plain(&traced.output);
    assert!(
        text.contains("!! MEASURED ≠ PREDICTED for NodePort: the pod saw the node's address, explain predicted the client's address (connection 1)"),
        "{text}"
    );
    assert!(
        text.contains("← measured otherwise: node-port via node-port: pod sees client"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_opens_test_connections_with_a_token_once_probes_listen() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let backend = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = stream.read(&mut buf).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let traced = run(&api, &["--send", "--send-to", &target]).await.unwrap();
    let request = backend.await.unwrap();
    assert!(
        request.contains("X-Realip-Token: realip-t3st01-1"),
        "{request}"
    );
    let text = kubectl_realip::output::plain(&traced.output);
    assert!(
        text.contains(&format!("{target}  HTTP/1.1 200 OK")),
        "{text}"
    );
    // --send makes the probes read forwarding headers (and the token) of first segments.
    let ds = &added(&api, "daemonsets")[0];
    let args = &ds["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array().unwrap().iter().any(|a| a == "--l7"),
        "{args}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_is_a_clear_cluster_error() {
    use std::io::Write;
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut kubeconfig = tempfile::NamedTempFile::new().unwrap();
    write!(
        kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n\
         clusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: u\n  user:\n    token: t\n\
         contexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\n"
    )
    .unwrap();
    let path = kubeconfig.path().display().to_string();
    let args = match Cli::parse_from(["kubectl-realip", "trace", "svc/web", "--kubeconfig", &path])
        .command
    {
        Command::Trace(args) => args,
        other => panic!("{other:?}"),
    };
    let failure = trace::flow::trace(&args, &options(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure.message.starts_with(&format!(
            "cannot reach the Kubernetes API at http://127.0.0.1:{port} (get services web in namespace default)"
        )),
        "{failure}"
    );
    assert!(failure.hint.unwrap().contains("kubectl cluster-info"));
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_and_restarted_log_streams_are_followed_again_without_duplicates() {
    let api = FakeApi::start().await;
    cluster(&api);
    let mut fates = snat_via_node_a(false);
    // node-a's first stream breaks after two lines and a half; the next one (a re-follow of the
    // same container) repeats them before going on to the end.
    if let Some(Fate::Runs(scripts)) = fates.get_mut("node-a") {
        let full = scripts[0].clone();
        let mut broken = LogScript::lines(full.lines.iter().take(2).map(|(_, l)| l.clone()));
        broken
            .lines
            .push((Duration::ZERO, "{\"v\":1,\"type\":\"sy".into()));
        *scripts = vec![broken, full];
    }
    cluster::run_daemonsets(&api, fates);
    let traced = run(&api, &["-o", "json"]).await.unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    assert_eq!(json["flows"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(
        json["flows"][0]["hops"].as_array().unwrap().len(),
        4,
        "{json:#}"
    );
    assert_eq!(
        json["flows"][0]["retries"], 0,
        "repeated lines are not retransmissions"
    );
    let follows = api
        .seen()
        .iter()
        .filter(|s| {
            s.resource == "pods/log" && s.name.as_deref() == Some("realip-probe-t3st01-node-a")
        })
        .count();
    assert_eq!(follows, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn flows_n_stops_the_capture_once_enough_connections_reached_a_pod() {
    let api = FakeApi::start().await;
    cluster(&api);
    // Probes that never end by themselves.
    let fates = cluster::never_ending(snat_via_node_a(true));
    cluster::run_daemonsets(&api, fates);
    let started = std::time::Instant::now();
    let traced = tokio::time::timeout(
        Duration::from_secs(30),
        run(&api, &["--duration", "10m", "--flows", "1"]),
    )
    .await
    .expect("--flows 1 ends the capture long before --duration")
    .unwrap();
    assert!(traced.answered);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_security_refusing_the_daemon_set_pods_is_reported_and_cleaned_up() {
    let api = FakeApi::start().await;
    cluster(&api);
    // Admission lets the dry run through but refuses the DaemonSet controller's pods, which
    // only shows as a FailedCreate event on the DaemonSet.
    api.on_create("daemonsets", |api, ds| {
        let namespace = ds["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = ds["metadata"]["name"].as_str().unwrap_or_default().to_string();
        api.insert(&serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.failed"), "namespace": namespace},
            "involvedObject": {"kind": "DaemonSet", "name": name, "namespace": namespace},
            "type": "Warning", "reason": "FailedCreate",
            "message": format!("Error creating: pods \"{name}-x\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"),
        }));
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure
            .message
            .starts_with("Pod Security refused the probe pods"),
        "{failure}"
    );
    assert!(failure
        .hint
        .unwrap()
        .contains("pod-security.kubernetes.io/enforce=privileged"));
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_syns_stops_the_capture_and_says_so() {
    let api = FakeApi::start().await;
    cluster(&api);
    // Probes that never end by themselves.
    let fates = cluster::never_ending(snat_via_node_a(true));
    cluster::run_daemonsets(&api, fates);
    let traced = tokio::time::timeout(
        Duration::from_secs(30),
        trace::flow::trace(
            &args(
                &api,
                &["--duration", "10m", "--max-syns", "4", "-o", "json"],
            ),
            &options(),
            std::future::pending(),
        ),
    )
    .await
    .expect("--max-syns 4 ends the capture long before --duration")
    .unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    let warnings = json["summary"]["warnings"].to_string();
    assert!(
        warnings.contains("stopped after 4 SYN sightings (--max-syns)"),
        "{json:#}"
    );
    assert_eq!(json["flows"].as_array().map(Vec::len), Some(1), "{json:#}");
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}
