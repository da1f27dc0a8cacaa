//! `kubectl realip trace` against the in-process fake API server: the objects it creates, the
//! events it streams from two probe pods, the report, and that nothing is left behind — on
//! success, on error and on interruption.

use crate::support;

use clap::Parser;
use kubectl_realip::cli::{Cli, Command};
use kubectl_realip::error::Kind;
use kubectl_realip::trace::{self, manifests::Carried, TraceOptions};
use realip_probe::wire::{
    encode_line, Bye, Direction, Event, Hello, IfaceKind, Interface, LinkType, Syn,
};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use support::cluster::{self, Fate};
use support::{FakeApi, LogScript, PodSecurity};

const MANAGED: &str = "app.kubernetes.io/managed-by";

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
        "--max-nodes",
        "1",
    ];
    if !extra.contains(&"--duration") {
        argv.extend_from_slice(&["--duration", "5s"]);
    }
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Trace(args) => args.request(),
        other => panic!("not a trace: {other:?}"),
    }
}

/// A trace with `extra` flags against the fake API, never interrupted.
async fn run(api: &FakeApi, extra: &[&str]) -> kubectl_realip::error::Result<trace::run::Traced> {
    trace::run::trace(&args(api, extra), &options(), std::future::pending()).await
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

/// What was stored: creates that are neither dry runs nor access reviews.
fn created(api: &FakeApi) -> Vec<String> {
    api.seen()
        .iter()
        .filter(|s| s.verb == "create" && !s.dry_run && s.resource != "selfsubjectaccessreviews")
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
    assert!(
        failure.message.contains("ErrImagePull") || failure.message.contains("ImagePullBackOff"),
        "{failure}"
    );
    assert!(failure.message.contains("--ready-timeout"), "{failure}");
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
    assert!(
        failure.message.starts_with(
            "the run could not finish: not allowed to\n  create daemonsets.apps in namespace shop (the probe)\n"
        ),
        "{failure}"
    );
    let hint = failure.hint.clone().unwrap_or_default();
    assert!(
        hint.contains("`kubectl auth can-i create daemonsets.apps -n shop`"),
        "{hint}"
    );
    assert!(hint.contains("docs/rbac.md"), "{hint}");
    // Asked before anything was stored: nothing to remove.
    assert!(created(&api).is_empty(), "{:?}", created(&api));
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn service_errors_are_clear_and_create_nothing() {
    let api = FakeApi::start().await;
    cluster(&api);
    let missing = trace::run::trace(
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
    let failure = trace::run::trace(&a, &options(), std::future::pending())
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
    let failure = trace::run::trace(&a, &options(), std::future::pending())
        .await
        .unwrap_err();
    assert!(failure.message.contains("no ready endpoints"), "{failure}");
    assert!(created(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_security_refusal_is_told_before_anything_is_created() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.pod_security(PodSecurity {
        default_level: "privileged".into(),
        exempt_namespaces: vec![],
    });
    api.update("namespaces", None, "shop", |ns| {
        ns["metadata"]["labels"] =
            serde_json::json!({"pod-security.kubernetes.io/enforce": "baseline"});
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure.message.starts_with(
            "namespace shop refuses the probe (its label pod-security.kubernetes.io/enforce=baseline): \
             pods \"realip-probe-t3st01-admission-check\" is forbidden: violates PodSecurity \"baseline:latest\": \
             host namespaces (hostNetwork=true), non-default capabilities"
        ),
        "{failure}"
    );
    assert!(
        failure.message.ends_with("; nothing was created"),
        "{failure}"
    );
    assert!(failure.hint.unwrap().contains("--probe-namespace"));
    assert!(created(&api).is_empty());

    // The cluster-wide default can refuse too, where no label shows it.
    api.update("namespaces", None, "shop", |ns| {
        ns["metadata"]["labels"] = Value::Null
    });
    api.pod_security(PodSecurity {
        default_level: "restricted".into(),
        exempt_namespaces: vec![],
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert!(
        failure.message.contains(
            "(no pod-security.kubernetes.io/enforce label: the cluster's default level): "
        ) && failure
            .message
            .contains("violates PodSecurity \"restricted:latest\""),
        "{failure}"
    );
    assert!(created(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_exempted_by_the_cluster_is_trusted_over_its_label() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // Labelled baseline, but the AdmissionConfiguration exempts it: admission admits the probe.
    api.update("namespaces", None, "shop", |ns| {
        ns["metadata"]["labels"] =
            serde_json::json!({"pod-security.kubernetes.io/enforce": "baseline"});
    });
    api.pod_security(PodSecurity {
        default_level: "restricted".into(),
        exempt_namespaces: vec!["shop".into()],
    });
    let traced = run(&api, &[]).await.unwrap();
    assert!(traced.answered);
    assert_eq!(created(&api), ["jobs", "configmaps", "daemonsets"]);
    assert!(
        api.seen().iter().any(|s| s.dry_run && s.resource == "pods"),
        "admission was asked, not the label"
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
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
    // Its own namespace too: admission was asked about the probe pod before the first object.
    let dry_runs: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.dry_run && s.namespace.as_deref() == Some("realip-t3st01"))
        .map(|s| s.resource.clone())
        .collect();
    assert_eq!(dry_runs, ["pods", "jobs", "configmaps", "daemonsets"]);
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
    let failure = trace::run::trace(&args(&api, &["--duration", "60s"]), &options(), interrupt)
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
    let traced = trace::run::trace(&args(&api, &[]), &options, std::future::pending())
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

/// An `--evidence` line of `node`.
fn evidence_line(kind: &str, node: &str, ts: u64, body: Value) -> String {
    let mut line = serde_json::json!({"v": 1, "type": kind, "ts_ns": ts, "node": node});
    if let (Some(line), Some(body)) = (line.as_object_mut(), body.as_object()) {
        line.extend(body.clone());
    }
    line.to_string()
}

/// A NAT rule of node-a's iptables-nft `nat` table, with its counter's move over the capture.
fn nat_rule(chain: &str, position: u32, owner: &str, text: &str, nat: Value, delta: u64) -> Value {
    serde_json::json!({
        "backend": "iptables-nft", "family": "ip", "table": "nat", "chain": chain,
        "position": position, "handle": 10 + position, "syntax": "iptables", "text": text,
        "owner": owner, "owner_from": "chain", "packets": 5 + delta, "bytes": 300 + 60 * delta,
        "delta_packets": delta, "delta_bytes": 60 * delta, "nat": nat,
        "why": if delta > 0 { serde_json::json!(["moved"]) } else { serde_json::json!(["source-nat"]) },
    })
}

/// What node-a's probe reads with `--evidence` of the connection of [`snat_via_node_a`]: kube-
/// proxy's endpoint DNAT and masquerade and Calico's natOutgoing masquerade, of which the
/// masquerade of `by` ("kube-proxy" or "calico") moved; the conntrack entry; the route.
fn node_a_evidence(by: &str) -> Vec<String> {
    let masquerade = serde_json::json!({"kind": "masquerade", "flags": ["fully-random"]});
    let rules = serde_json::json!([
        nat_rule(
            "KUBE-SEP-WEB1",
            2,
            "kube-proxy",
            "-A KUBE-SEP-WEB1 -p tcp -m comment --comment \"shop/web:http\" -m tcp -j DNAT --to-destination 10.244.1.5:8080",
            serde_json::json!({"kind": "dnat", "addr_min": "10.244.1.5", "addr_max": "10.244.1.5", "port_min": 8080, "port_max": 8080}),
            1,
        ),
        nat_rule(
            "KUBE-POSTROUTING",
            3,
            "kube-proxy",
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
            masquerade.clone(),
            u64::from(by == "kube-proxy"),
        ),
        nat_rule(
            "cali-nat-outgoing",
            1,
            "calico",
            "-A cali-nat-outgoing -m comment --comment \"cali:flqWnvo8yq4ULQLa\" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully",
            masquerade,
            u64::from(by == "calico"),
        ),
    ]);
    let status = |last: bool| {
        serde_json::json!({
            "available": true, "sources": [{"name": "nftables", "state": "read"}], "last": last,
            "conntrack_lookups": 1, "conntrack_found": 1, "routes": 1,
        })
    };
    vec![
        evidence_line("evidence", "node-a", 1_500, status(false)),
        evidence_line(
            "conntrack",
            "node-a",
            2_500,
            serde_json::json!({
                "isn": 629_798_247u32, "iface": "eth0", "dir": "in",
                "orig": {"src": "203.0.113.50", "sport": 40000, "dst": "198.51.100.1", "dport": 31080, "proto": 6},
                "reply": {"src": "10.244.1.5", "sport": 8080, "dst": "198.51.100.1", "dport": 52000, "proto": 6},
                "status": ["confirmed", "src-nat", "dst-nat"], "status_bits": 56, "mark": 0,
                "zone": 0, "src_nat": true, "dst_nat": true, "tcp_state": "ESTABLISHED",
            }),
        ),
        evidence_line(
            "route",
            "node-a",
            2_600,
            serde_json::json!({
                "dst": "10.244.1.5", "snat_to": "198.51.100.1", "oif": "eth0", "oif_index": 2,
                "gateway": "198.51.100.2", "prefsrc": "198.51.100.1",
                "masquerade_source": "198.51.100.1", "table": 254, "kind": "unicast",
                "oif_addresses": ["198.51.100.1/24"],
            }),
        ),
        evidence_line(
            "ruleset",
            "node-a",
            8_000,
            serde_json::json!({"phase": "end", "tables": [], "rules": rules, "summarised": 40}),
        ),
        evidence_line("evidence", "node-a", 8_500, status(true)),
    ]
}

/// [`snat_via_node_a`] with node-a's evidence before its bye.
fn with_evidence(by: &str) -> HashMap<String, Fate> {
    let mut fates = snat_via_node_a(false);
    if let Some(Fate::Runs(scripts)) = fates.get_mut("node-a") {
        let lines = &mut scripts[0].lines;
        let bye = lines.pop().unwrap();
        lines.extend(
            node_a_evidence(by)
                .into_iter()
                .map(|line| (Duration::ZERO, line)),
        );
        lines.push(bye);
    }
    fates
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_adds_net_admin_and_names_the_rule_behind_each_rewrite() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, with_evidence("kube-proxy"));
    let traced = run(&api, &["--evidence"]).await.unwrap();
    let ds = &added(&api, "daemonsets")[0];
    let probe = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        probe["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_RAW", "NET_ADMIN"])
    );
    assert!(
        probe["args"]
            .as_array()
            .unwrap()
            .contains(&"--evidence".into()),
        "{probe}"
    );
    // A stopped probe reads the rules once more before it ends.
    assert_eq!(
        ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        20
    );
    let text = kubectl_realip::output::plain(&traced.output);
    for expected in [
        "rule (kube-proxy): iptables-nft nat KUBE-SEP-WEB1 #2, +1 packet during",
        "rule (kube-proxy): iptables-nft nat KUBE-POSTROUTING #3, +1 packet",
        "conntrack: 203.0.113.50:40000 → 198.51.100.1:31080, reply",
        "route: to 10.244.1.5 via 198.51.100.2 dev eth0 src 198.51.100.1:",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    assert!(!text.contains("MEASURED CAUSE"), "{text}");
    // The connections' part of the report fits 80 columns.
    assert!(
        text.lines()
            .skip(1)
            .take_while(|l| *l != "Addresses")
            .all(|l| l.chars().count() <= 80),
        "{text}"
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));

    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, with_evidence("kube-proxy"));
    let json: Value = serde_json::from_str(
        &run(&api, &["--evidence", "-o", "json"])
            .await
            .unwrap()
            .output,
    )
    .unwrap();
    let snat = &json["flows"][0]["translations"][1];
    assert_eq!(snat["kind"], "snat");
    assert_eq!(snat["attribution"]["status"], "rule", "{snat:#}");
    assert_eq!(snat["attribution"]["owner"], "kube-proxy");
    assert_eq!(snat["attribution"]["basis"], "counter");
    assert_eq!(snat["attribution"]["rule"]["chain"], "KUBE-POSTROUTING");
    assert_eq!(snat["attribution"]["rule"]["delta_packets"], 1);
    assert_eq!(snat["attribution"]["conntrack"]["src_nat"], true);
    assert_eq!(
        snat["attribution"]["route"]["masquerade_source"],
        "198.51.100.1"
    );
    assert_eq!(json["summary"]["evidence"][0]["node"], "node-a");
    assert_eq!(
        json["cause_disagreements"],
        Value::Null,
        "none, and not written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_evidence_the_probe_gets_no_net_admin_and_rewrites_name_no_rule() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    let json: Value =
        serde_json::from_str(&run(&api, &["-o", "json"]).await.unwrap().output).unwrap();
    let ds = &added(&api, "daemonsets")[0];
    let probe = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        probe["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_RAW"])
    );
    assert!(!probe["args"]
        .as_array()
        .unwrap()
        .contains(&"--evidence".into()));
    assert_eq!(
        ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        5
    );
    assert!(json["flows"][0]["translations"][1]["attribution"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_of_another_component_than_explain_predicted_is_flagged() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, with_evidence("calico"));
    let mut options = options();
    options.prediction = Some(
        serde_json::from_value(serde_json::json!({
            "service": "web", "namespace": "shop", "assumptions": [],
            "origins": [{
                "origin": "node-port", "via": "node-port",
                "l4_source_seen_by_pod": "node", "l7_client_ip": "none",
                "reasons": [{"setting": "spec.externalTrafficPolicy=Cluster", "text": "masquerade"}],
                "fixes": [],
                "path": [
                    {"at": "client", "source": "client"},
                    {"at": "node:31080", "source": "client"},
                    {"at": "pod", "source": "node", "rewrite": "SNAT by kube-proxy (MASQUERADE)",
                     "by": "kube-proxy"}
                ]
            }]
        }))
        .unwrap(),
    );
    let traced = trace::run::trace(
        &args(&api, &["--evidence"]),
        &options,
        std::future::pending(),
    )
    .await
    .unwrap();
    let text = kubectl_realip::output::plain(&traced.output);
    let joined = text.replace("\n   ", " ");
    assert!(
        joined.contains(
            "!! MEASURED CAUSE ≠ PREDICTED for NodePort: Calico's rule (iptables-nft nat \
             cali-nat-outgoing #1 on node-a) rewrote the source; explain predicted SNAT by \
             kube-proxy (MASQUERADE) (connection 1)"
        ),
        "{text}"
    );
    // The address agrees (a node's): only the cause is flagged.
    assert!(!text.contains("!! MEASURED ≠ PREDICTED"), "{text}");
    assert!(
        text.contains("← measured otherwise: node-port via node-port: pod sees node"),
        "{text}"
    );

    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, with_evidence("calico"));
    let traced = trace::run::trace(
        &args(&api, &["--evidence", "-o", "json"]),
        &options,
        std::future::pending(),
    )
    .await
    .unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    let flagged = &json["cause_disagreements"][0];
    assert_eq!(flagged["origin"], "node-port");
    assert_eq!(flagged["predicted"], "SNAT by kube-proxy (MASQUERADE)");
    assert_eq!(flagged["predicted_owner"], "kube-proxy");
    assert_eq!(flagged["measured_owner"], "calico");
    assert_eq!(flagged["connections"], serde_json::json!([1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_where_pod_security_forbids_the_probe_names_net_admin() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.pod_security(PodSecurity {
        default_level: "privileged".into(),
        exempt_namespaces: vec![],
    });
    api.update("namespaces", None, "shop", |ns| {
        ns["metadata"]["labels"] =
            serde_json::json!({"pod-security.kubernetes.io/enforce": "baseline"});
    });
    let failure = run(&api, &["--evidence"]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure.message.contains(
            "non-default capabilities (container \"probe\" must not include \"NET_RAW\", \
             \"NET_ADMIN\" in securityContext.capabilities.add)"
        ),
        "{failure}"
    );
    assert!(
        failure.message.ends_with("; nothing was created"),
        "{failure}"
    );
    assert!(created(&api).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_refusing_only_net_admin_is_named_and_tracing_without_evidence_works() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    api.refuse_capabilities(&["NET_ADMIN"], "validate.kyverno.svc-fail");
    let failure = run(&api, &["--evidence"]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure.message.starts_with(
            "namespace shop admits the probe, but not with the NET_ADMIN capability --evidence \
             adds: "
        ) && failure.message.contains("adding NET_ADMIN is not allowed"),
        "{failure}"
    );
    assert!(
        failure.message.ends_with("; nothing was created"),
        "{failure}"
    );
    let hint = failure.hint.unwrap_or_default();
    assert!(hint.starts_with("trace without --evidence"), "{hint}");
    assert!(created(&api).is_empty(), "{:?}", created(&api));
    // The same trace without --evidence runs.
    let traced = run(&api, &[]).await.unwrap();
    assert!(traced.answered);
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_with_evidence_shows_net_admin() {
    let api = FakeApi::start().await;
    cluster(&api);
    let traced = run(&api, &["--dry-run", "--evidence"]).await.unwrap();
    assert!(created(&api).is_empty());
    assert!(traced.output.contains("- NET_ADMIN"), "{}", traced.output);
    assert!(traced.output.contains("- --evidence"), "{}", traced.output);
    insta::assert_snapshot!(traced.output);
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
        Command::Trace(args) => args.request(),
        other => panic!("{other:?}"),
    };
    let failure = trace::run::trace(&args, &options(), std::future::pending())
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
        trace::run::trace(
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

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_refused_by_a_rate_limit_is_retried_until_the_probe_runs() {
    let api = FakeApi::start().await;
    cluster(&api);
    let mut fates = snat_via_node_a(false);
    // node-a's first two pulls hit the registry's rate limit (429): ErrImagePull, BackOff.
    if let Some(Fate::Runs(scripts)) = fates.remove("node-a") {
        fates.insert(
            "node-a".into(),
            Fate::PullRetried {
                failures: 2,
                then: scripts,
            },
        );
    }
    cluster::run_daemonsets(&api, fates);
    let traced = run(&api, &["-o", "json"]).await.unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    assert_eq!(
        json["probed_nodes"],
        serde_json::json!(["node-a", "node-b"]),
        "{json:#}"
    );
    assert_eq!(json["skipped_nodes"].get("node-a"), None, "{json:#}");
    assert_eq!(json["flows"][0]["hops"].as_array().unwrap().len(), 4);
    // The probe pod really went through the failed pulls before running.
    let pulls = api
        .history()
        .into_iter()
        .filter(|c| c.key.resource == "pods" && c.key.name.ends_with("node-a"))
        .filter(|c| {
            c.object["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "ErrImagePull"
        })
        .count();
    assert_eq!(pulls, 2);
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_probe_never_starts_is_named_in_the_report() {
    let api = FakeApi::start().await;
    cluster(&api);
    let mut fates = snat_via_node_a(false);
    fates.insert("node-a".into(), Fate::ImagePullBackOff);
    cluster::run_daemonsets(&api, fates);
    let started = std::time::Instant::now();
    let traced = run(&api, &["-o", "json"]).await.unwrap();
    assert!(
        started.elapsed() >= options().ready_timeout,
        "a pull failure is retried until --ready-timeout"
    );
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    assert_eq!(json["probed_nodes"], serde_json::json!(["node-b"]));
    let reason = json["skipped_nodes"]["node-a"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("probe not running after 5s (--ready-timeout): probe: "),
        "{json:#}"
    );
    assert!(reason.contains("no such host"), "{reason}");

    let api = FakeApi::start().await;
    cluster(&api);
    let mut fates = snat_via_node_a(false);
    fates.insert("node-a".into(), Fate::ImagePullBackOff);
    cluster::run_daemonsets(&api, fates);
    let text = kubectl_realip::output::plain(&run(&api, &[]).await.unwrap().output);
    assert!(
        text.starts_with(
            "Trace of shop/web (LoadBalancer, externalTrafficPolicy Cluster) on node-b\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Not probed\n  node-a: probe not running after 5s (--ready-timeout): probe:"),
        "{text}"
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_in_a_row_in_their_own_probe_namespace() {
    let api = FakeApi::start().await;
    cluster(&api);
    // The namespace controller takes a while to empty and remove a deleted namespace.
    api.namespaces_finalize_in(Duration::from_millis(1500));
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    for _ in 0..2 {
        let traced = run(&api, &["--probe-namespace", "realip"]).await.unwrap();
        assert!(traced.answered);
        // The run waited until its namespace was gone: the next one can create it again.
        assert!(api.get("namespaces", None, "realip").is_none());
    }
    let created = added(&api, "namespaces")
        .iter()
        .filter(|ns| ns["metadata"]["name"] == "realip")
        .count();
    assert_eq!(created, 2);
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_namespace_still_terminating_is_waited_for_then_created_anew() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // An earlier run's namespace, deleted but not gone yet.
    api.insert(&cluster::namespace(
        "realip",
        &[(MANAGED, "kubectl-realip")],
    ));
    api.terminate_namespace("realip", Duration::from_millis(1500));
    let traced = run(&api, &["--probe-namespace", "realip"]).await.unwrap();
    assert!(traced.answered);
    // Created anew once the old one was gone, and the run's objects in it.
    let namespaces = added(&api, "namespaces");
    let ours = namespaces
        .iter()
        .rfind(|ns| ns["metadata"]["name"] == "realip")
        .unwrap();
    assert_eq!(ours["metadata"]["labels"]["kubectl-realip/run"], "t3st01");
    assert!(api.history().iter().any(|c| c.kind == "ADDED"
        && c.key.resource == "jobs"
        && c.key.namespace.as_deref() == Some("realip")));
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_that_stays_terminating_is_not_taken_for_an_rbac_problem() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    api.insert(&cluster::namespace("realip", &[]));
    api.terminate_namespace("realip", Duration::from_secs(600));
    let failure = run(&api, &["--probe-namespace", "realip"])
        .await
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure
            .message
            .contains("namespace realip is being deleted (Terminating)"),
        "{failure}"
    );
    let hint = failure.hint.unwrap_or_default();
    assert!(
        hint.contains("kubectl wait --for=delete namespace/realip"),
        "{hint}"
    );
    assert!(!hint.contains("RBAC verb"), "{hint}");
    assert!(created(&api).is_empty(), "{:?}", created(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_deleted_under_the_run_is_told_by_its_403_status() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // The namespace looked fine, then its deletion began: the API refuses new content with
    // the namespace lifecycle's 403 (a Status whose cause is NamespaceTerminating).
    api.fault(support::Fault {
        verb: "create".into(),
        resource: "jobs".into(),
        name: None,
        code: 403,
        message: Some(
            "jobs.batch \"realip-probe-t3st01-expiry\" is forbidden: unable to create new content in namespace shop because it is being terminated"
                .into(),
        ),
        times: None,
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    let hint = failure.hint.unwrap_or_default();
    assert!(
        hint.starts_with("namespace shop is being deleted, not an RBAC problem"),
        "{hint}"
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_verb_is_found_before_anything_is_created() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // Creating is allowed, removing and reading the logs is not: the run could not finish.
    api.forbid("delete", "daemonsets");
    api.forbid("get", "pods/log");
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert_eq!(
        failure.message,
        "the run could not finish: not allowed to\n  \
         delete daemonsets.apps in namespace shop (the probe)\n  \
         get pods/log in namespace shop (the probes' event streams)\n\
         nothing was created"
    );
    let reviews = api
        .seen()
        .iter()
        .filter(|s| s.resource == "selfsubjectaccessreviews")
        .count();
    assert_eq!(reviews, 13, "one review per call the run makes");
    assert!(created(&api).is_empty(), "{:?}", created(&api));
    assert!(
        !api.seen().iter().any(|s| s.dry_run),
        "not even a dry run when a permission is missing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_admission_refuses_is_found_by_a_dry_run_before_anything_is_created() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // A policy engine's webhook refuses the DaemonSet (RBAC allows it).
    api.fault(support::Fault {
        verb: "create".into(),
        resource: "daemonsets".into(),
        name: None,
        code: 403,
        message: Some(
            "admission webhook \"validate.kyverno.svc-fail\" denied the request: policy DaemonSet/shop/realip-probe-t3st01 for resource violation: disallow-host-namespaces"
                .into(),
        ),
        times: None,
    });
    let failure = run(&api, &[]).await.unwrap_err();
    assert_eq!(failure.kind, Kind::Cluster);
    assert!(
        failure.message.ends_with("; nothing was created"),
        "{failure}"
    );
    let hint = failure.hint.unwrap_or_default();
    assert!(
        hint.starts_with("the admission webhook \"validate.kyverno.svc-fail\" denied it, not RBAC"),
        "{hint}"
    );
    let dry_runs: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.dry_run)
        .map(|s| s.resource.clone())
        .collect();
    assert_eq!(dry_runs, ["pods", "jobs", "configmaps", "daemonsets"]);
    // The 1.4 MB of ConfigMaps and the expiry Job were never stored.
    assert!(created(&api).is_empty(), "{:?}", created(&api));
}

/// A probe's stats: its heartbeat, carrying its clock.
fn heartbeat(node: &str, ts: u64) -> String {
    encode_line(&Event::Stats(realip_probe::wire::Stats {
        ts_ns: ts,
        node: node.into(),
        interfaces: vec![],
        last: false,
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn flows_1_waits_for_a_slow_second_node_before_analysing() {
    let api = FakeApi::start().await;
    cluster(&api);
    // node-a's stream shows the connection reaching the pod's address at once; node-b's log
    // lags 1.5 s behind with the same connection's last two hops. Both keep capturing.
    let mut fates = cluster::never_ending(snat_via_node_a(true));
    for (node, lag) in [
        ("node-a", Duration::ZERO),
        ("node-b", Duration::from_millis(1500)),
    ] {
        if let Some(Fate::Runs(scripts)) = fates.get_mut(node) {
            let script = &mut scripts[0];
            script.lines[1].0 = lag;
            script
                .lines
                .push((Duration::ZERO, heartbeat(node, 2_000_000_000)));
        }
    }
    cluster::run_daemonsets(&api, fates);
    let started = std::time::Instant::now();
    let traced = run(&api, &["--duration", "10m", "--flows", "1", "-o", "json"])
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    let flow = &json["flows"][0];
    let nodes: Vec<&str> = flow["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node-a", "node-a", "node-b", "node-b"], "{json:#}");
    assert_eq!(flow["pod_sees"], "198.51.100.1");
    assert_eq!(flow["reached_pod"], true);
    assert_eq!(
        json["summary"]["warnings"],
        serde_json::json!([]),
        "{json:#}"
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_past_their_deadline_stay_quietly_and_expire_soon_after() {
    let api = FakeApi::start().await;
    cluster(&api);
    // Probes whose capture reached its deadline: they said bye and stay, idle, until deleted.
    cluster::run_daemonsets(&api, snat_via_node_a(true));
    let started = std::time::Instant::now();
    let traced = run(&api, &["--duration", "10m"]).await.unwrap();
    assert!(traced.answered);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "every probe said bye: nothing to wait for"
    );
    // The cluster's expiry follows the probes' deadline closely.
    let job = &added(&api, "jobs")[0];
    let ds = &added(&api, "daemonsets")[0];
    let args: Vec<&str> = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let until: i64 = args[args.iter().position(|a| *a == "--until").unwrap() + 1]
        .parse()
        .unwrap();
    let capture_secs = until - options().now_unix;
    let expiry = job["spec"]["activeDeadlineSeconds"].as_i64().unwrap();
    assert_eq!(
        expiry - capture_secs,
        30,
        "expiry 30 s after the capture's end"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["sleep", expiry.to_string()])
    );
    assert!(leftovers(&api).is_empty(), "{:?}", leftovers(&api));
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_test_connections_say_what_became_of_them() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // Refused: nothing listens there.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    // Reset: accepted, then closed with a RST.
    let resetting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset = resetting.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = resetting.accept().await {
            let _ = stream.set_zero_linger();
        }
    });
    // Timeout: a full accept queue drops the SYN.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let timeout = full.local_addr().unwrap().to_string();
    let mut queued = Vec::new();
    for _ in 0..2 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(&timeout),
        )
        .await
        {
            queued.push(stream);
        }
    }
    let extra = [
        "--send",
        "--send-to",
        &refused,
        "--send-to",
        &reset,
        "--send-to",
        &timeout,
        "-o",
        "json",
    ];
    let traced = run(&api, &extra).await.unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    let sent = json["sent"].as_array().unwrap();
    let results: Vec<&str> = sent.iter().map(|s| s["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["refused", "reset", "timeout"], "{json:#}");
    assert!(sent[0]["outcome"]
        .as_str()
        .unwrap()
        .starts_with("refused: "));
    assert_eq!(sent[2]["outcome"], "no answer within 5s");
    for s in sent {
        assert!(
            s["local"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{s}"
        );
        // These probes never saw them: no connection, and never a verdict on the client.
        assert!(s.get("connection").is_none(), "{s}");
        assert!(s.get("pod_sees").is_none(), "{s}");
        assert!(s.get("client_ip_preserved").is_none(), "{s}");
    }

    let api2 = FakeApi::start().await;
    cluster(&api2);
    cluster::run_daemonsets(&api2, snat_via_node_a(false));
    let traced = run(&api2, &["--send", "--send-to", &refused])
        .await
        .unwrap();
    let text = kubectl_realip::output::plain(&traced.output);
    assert!(
        text.contains(&format!(
            "Test connections (--send)\n  {refused}  refused: "
        )) && text.contains("    its SYN was not seen by any probe\n"),
        "{text}"
    );
    drop(full);
}

/// The connection of [`snat_via_node_a`], and two more entering at node-b, where the pod runs:
/// masqueraded to its bridge (10.244.1.1).
fn entering_at_both_nodes() -> HashMap<String, Fate> {
    let mut fates = snat_via_node_a(false);
    if let Some(Fate::Runs(scripts)) = fates.get_mut("node-b") {
        let lines = &mut scripts[0].lines;
        let bye = lines.pop().unwrap();
        for (n, sport) in [(1u32, 40001u16), (2, 40002)] {
            for (iface, src, dst, dport, ts) in [
                ("eth0", "203.0.113.50", "198.51.100.2", 31080, 5_000),
                ("veth1a2b", "10.244.1.1", "10.244.1.5", 8080, 6_000),
            ] {
                let line = syn("node-b", iface, Direction::In, src, sport, dst, dport, ts)
                    .replace("629798247", &(700_000_000 + n).to_string());
                lines.push((Duration::ZERO, line));
            }
        }
        lines.push(bye);
    }
    fates
}

#[tokio::test(flavor = "multi_thread")]
async fn each_measurement_is_set_beside_the_prediction_for_its_own_path() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, entering_at_both_nodes());
    let traced = run(&api, &["-o", "json"]).await.unwrap();
    let json: Value = serde_json::from_str(&traced.output).unwrap();
    assert_eq!(json["flows"].as_array().unwrap().len(), 3, "{json:#}");
    let by_node = &json["predictions_by_entry_node"];
    let node_port = |node: &str| {
        by_node[node]["origins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["origin"] == "node-port")
            .map(|v| v["l4_source_seen_by_pod"].clone())
            .unwrap()
    };
    assert_eq!(node_port("node-a"), "node", "{by_node:#}");
    assert_eq!(node_port("node-b"), "bridge", "{by_node:#}");
    // The general prediction is the one of the node most entered at (node-b: the bridge); the
    // connection that entered at node-a is compared with node-a's (node), and agrees.
    assert_eq!(json["prediction"], by_node["node-b"]);
    assert_eq!(json["disagreements"], serde_json::json!([]), "{json:#}");

    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, entering_at_both_nodes());
    let text = kubectl_realip::output::plain(&run(&api, &[]).await.unwrap().output);
    assert!(!text.contains("MEASURED ≠ PREDICTED"), "{text}");
    assert!(
        text.contains(
            "  for connections entering at node-a:\n    internet-via-lb via lb: pod sees node"
        ) && text.contains("\n    node-port via node-port: pod sees node"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_watch_of_the_probe_pods_is_retried_after_a_backoff() {
    let api = FakeApi::start().await;
    cluster(&api);
    cluster::run_daemonsets(&api, snat_via_node_a(false));
    // The first watch of the probe pods fails: the watcher waits its backoff, then lists and
    // watches again, and the run goes on.
    api.fault(support::Fault {
        verb: "watch".into(),
        resource: "pods".into(),
        name: None,
        code: 500,
        message: Some("etcd leader changed".into()),
        times: Some(1),
    });
    let traced = run(&api, &[]).await.unwrap();
    assert!(traced.answered, "{}", traced.output);
    // Watched again from where the failed watch began: nothing was missed, nothing listed again.
    let watches: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.verb == "watch" && s.resource == "pods")
        .map(|s| s.query.clone())
        .collect();
    assert_eq!(watches.len(), 2, "{watches:?}");
    assert_eq!(watches[0], watches[1]);
}
