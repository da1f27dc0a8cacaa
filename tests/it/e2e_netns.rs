//! `kubectl realip trace` end to end with the real probe and the real kernel: the lab's
//! topology (client, load balancer, two nodes with kube-proxy-shaped rules, pods) in network
//! namespaces, the in-process API server as the control plane, and a kubelet that runs each
//! probe pod the trace's DaemonSet puts on a node — the probe this plugin carries, unpacked from
//! the run's ConfigMaps by the init container's own command — inside that node's namespace.
//! The plugin runs in the client's namespace, as a user outside the cluster would.
//!
//! Each scenario's connections are made while the trace captures, and the trace's report must
//! give the verdicts `kubectl realip lab` gives (the lab's own judge: what each pod's accept()
//! returned, what the scenario claims); with `--evidence`, each rewrite must also name the rule
//! the lab installed for it (the lab's judge again). Namespaces are `ript-*`; needs root,
//! iproute2, iptables, nft, ipset and bash, and a build that carries the probe.

use crate::support;

use kubectl_realip::analyze::model::Report;
use kubectl_realip::lab::driver::{self, Tools};
use kubectl_realip::lab::installed::Installed;
use kubectl_realip::lab::kube_proxy::Service as LabService;
use kubectl_realip::lab::net::GetOutcome;
use kubectl_realip::lab::netns::{Lab, Proc};
use kubectl_realip::lab::scenario::{self, Expect, Scenario};
use kubectl_realip::lab::topology::{Host, Names, Node, Pod, VIP};
use kubectl_realip::lab::verdict;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::netns_kubelet::NetnsKubelet;
use support::{kernel, FakeApi};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");
const MANAGED: &str = "app.kubernetes.io/managed-by";
/// This test's namespaces, apart from the lab's `rip-`.
const PREFIX: &str = "ript-";

/// One lab at a time: two cores, and the leftovers check is exact.
static KERNEL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn missing() -> Option<String> {
    if let Some(why) = kernel::missing_root_or(&[
        "ip",
        "iptables-restore",
        "iptables-save",
        "nft",
        "ipset",
        "bash",
        "sysctl",
        "setpriv",
    ]) {
        return Some(why);
    }
    if let Some(why) = kernel::missing_netns(PREFIX) {
        return Some(why);
    }
    if kubectl_realip::embedded::probes().is_empty() {
        return Some("this build carries no probe (REALIP_PROBE_EMBED=none)".into());
    }
    None
}

fn our_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

/// A lab for one scenario, its control plane and its kubelet.
struct Setup {
    api: FakeApi,
    kubelet: NetnsKubelet,
    scenario: Scenario,
    tools: Tools,
    /// The probes may hold NET_ADMIN: with `--evidence`, each rewrite must name its rule.
    net_admin: bool,
    /// Its processes (proxies) live as long as the setup.
    _proxies: Vec<Proc>,
    _probe_dir: tempfile::TempDir,
    /// Last: removing the namespaces ends every process left in them.
    lab: Lab,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        Setup::stripping(name, &[]).await
    }

    /// A setup whose kubelet takes `strip` from the probe's capabilities.
    async fn stripping(name: &str, strip: &[&str]) -> Setup {
        let scenario = scenario::select(name)
            .and_then(|s| s.into_iter().next())
            .expect("a lab scenario");
        let id = format!("{:04x}", std::process::id() & 0xffff);
        let mut lab = Lab::create(Names::with_prefix(PREFIX, id)).expect("building the lab");
        // The echo backends run the probe this plugin carries, as the lab does.
        let probe_dir = tempfile::tempdir().unwrap();
        let probe = probe_dir.path().join("realip-probe");
        let carried = &kubectl_realip::embedded::probes()[0];
        std::fs::write(&probe, carried.binary().unwrap()).unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tools = Tools {
            probe,
            me: PathBuf::from(PLUGIN),
        };
        driver::start_backends(&mut lab, &tools).expect("echo backends");
        let services = scenario.services().expect("the scenario's Services");
        driver::apply_rules(&mut lab, &scenario, &services).expect("the scenario's rules");
        let proxies = driver::start_proxies(&lab, &tools, &scenario).expect("the proxies");
        let api = FakeApi::start_in_netns(&lab.ns(Host::Client))
            .await
            .expect("the API server in the client's namespace");
        cluster_of(&api, &scenario);
        let nodes = Node::ALL
            .into_iter()
            .map(|node| (node.name().to_string(), lab.ns(Host::Node(node))))
            .collect();
        let kubelet = NetnsKubelet::start_stripping(&api, nodes, strip);
        Setup {
            api,
            kubelet,
            scenario,
            tools,
            net_admin: !strip.contains(&"NET_ADMIN"),
            _proxies: proxies,
            _probe_dir: probe_dir,
            lab,
        }
    }

    /// `kubectl-realip ARGS --kubeconfig …` inside the client's namespace.
    fn plugin(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.lab.ns(Host::Client), PLUGIN])
            .args(args)
            .arg("--kubeconfig")
            .arg(self.api.kubeconfig())
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the plugin runs")
    }

    /// Waits until every probe pod's log has said hello (the probes listen).
    async fn probes_listening(&self, plugin: &mut tokio::process::Child) {
        let started = Instant::now();
        loop {
            let pods: Vec<(String, String)> = self
                .api
                .objects("pods")
                .iter()
                .filter(|pod| pod["metadata"]["labels"][MANAGED].is_string())
                .map(|pod| {
                    let meta = &pod["metadata"];
                    (
                        meta["namespace"].as_str().unwrap_or_default().to_string(),
                        meta["name"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let listening = !pods.is_empty()
                && pods.iter().all(|(ns, pod)| {
                    self.api
                        .live_lines(ns, pod)
                        .iter()
                        .any(|line| line.contains("\"type\":\"hello\""))
                });
            if listening {
                return;
            }
            if let Ok(Some(status)) = plugin.try_wait() {
                panic!(
                    "the plugin ended ({status}) before its probes listened: {:?}",
                    self.kubelet.stderr()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the probes never listened: {:?}",
                self.kubelet.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the scenario's connections (those `keep` selects), as the lab does.
    async fn connect(
        &self,
        keep: impl Fn(&scenario::Connection) -> bool,
    ) -> Vec<(scenario::Connection, GetOutcome)> {
        let mut made = Vec::new();
        for conn in self.scenario.connections.iter().filter(|c| keep(c)) {
            let timeout = match conn.expect {
                Expect::Dropped { .. } => "1200",
                Expect::Answered { .. } => "3000",
            };
            let out = tokio::process::Command::new("ip")
                .args(["netns", "exec", &self.lab.ns(driver::host_of(conn.from))])
                .arg(&self.tools.me)
                .args([
                    "lab-net",
                    "get",
                    "--to",
                    &conn.to.to_string(),
                    "--timeout-ms",
                    timeout,
                ])
                .output()
                .await
                .expect("lab-net get runs");
            let outcome: GetOutcome = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
                panic!(
                    "lab-net get: {err}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            made.push((conn.clone(), outcome));
        }
        made
    }

    /// Nothing of the run is left: no object, and no probe process.
    async fn assert_nothing_left(&self) {
        let started = Instant::now();
        while self.kubelet.running() > 0 && started.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.kubelet.running(), 0, "probe processes left running");
        let mut left = Vec::new();
        for resource in ["jobs", "daemonsets", "configmaps", "pods", "namespaces"] {
            for object in self.api.objects(resource) {
                if object["metadata"]["labels"][MANAGED].is_string() {
                    left.push(format!("{resource}/{}", object["metadata"]["name"]));
                }
            }
        }
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// The cluster a scenario models, as the API server holds it: the two nodes, the Services of
/// the scenario's manifest, their EndpointSlices (the pods kube-proxy sends to) and the lab's
/// pods.
fn cluster_of(api: &FakeApi, scenario: &Scenario) {
    for node in Node::ALL {
        api.insert(&support::cluster::node(node.name(), &node.ip().to_string()));
    }
    for service in &scenario
        .objects()
        .expect("the scenario's manifest")
        .services
    {
        let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        if api.get("namespaces", None, namespace).is_none() {
            api.insert(&support::cluster::namespace(namespace, &[]));
        }
        api.insert(service);
    }
    for service in scenario.services().expect("the scenario's Services") {
        endpoint_slice(api, &service);
    }
    for pod in Pod::ALL {
        api.insert(&support::cluster::app_pod(
            "default",
            pod.name(),
            pod.name(),
            pod.node().name(),
            &pod.ip().to_string(),
        ));
    }
}

fn endpoint_slice(api: &FakeApi, service: &LabService) {
    let endpoints: Vec<Value> = service
        .endpoints
        .iter()
        .map(|endpoint| {
            let pod = Pod::ALL.into_iter().find(|pod| pod.ip() == endpoint.ip);
            json!({
                "addresses": [endpoint.ip.to_string()],
                "conditions": {"ready": true},
                "nodeName": endpoint.node.name(),
                "targetRef": {"kind": "Pod", "namespace": service.namespace,
                              "name": pod.map(|p| p.name()).unwrap_or_default()},
            })
        })
        .collect();
    api.insert(&json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{}-lab", service.name), "namespace": service.namespace,
                     "labels": {"kubernetes.io/service-name": service.name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": service.port_name, "port": service.target_port, "protocol": "TCP"}],
    }));
}

/// The plugin's output, within a bound.
async fn finish(plugin: tokio::process::Child, setup: &Setup) -> Output {
    tokio::time::timeout(Duration::from_secs(90), plugin.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the trace did not end: {:?}", setup.kubelet.stderr()))
        .expect("the plugin's output")
}

fn report_of(output: &Output) -> (Value, Report) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "trace failed ({:?}): {stderr}",
        output.status
    );
    let json: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stderr}"));
    let report: Report = serde_json::from_value(json.clone()).expect("the analysis contract");
    (json, report)
}

/// Traces `svc/web` while the scenario's connections are made, and judges each connection with
/// the lab's judge. Returns the report and how long the verdict took.
async fn trace_scenario(
    name: &str,
    extra: &[&str],
    keep: impl Fn(&scenario::Connection) -> bool,
) -> (Value, Duration) {
    trace_in(Setup::new(name).await, extra, keep).await
}

/// [`trace_scenario`] on a given setup.
async fn trace_in(
    setup: Setup,
    extra: &[&str],
    keep: impl Fn(&scenario::Connection) -> bool,
) -> (Value, Duration) {
    let name = setup.scenario.name;
    let answered = setup
        .scenario
        .connections
        .iter()
        .filter(|c| keep(c) && matches!(c.expect, Expect::Answered { .. }))
        .count()
        .to_string();
    let mut args = vec![
        "trace",
        "svc/web",
        "-n",
        "default",
        "-o",
        "json",
        "--duration",
        "30s",
        "--flows",
        &answered,
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let mut plugin = setup.plugin(&args);
    setup.probes_listening(&mut plugin).await;
    let listening = started.elapsed();
    let made = setup.connect(&keep).await;
    let output = finish(plugin, &setup).await;
    let took = started.elapsed();
    let (json, report) = report_of(&output);
    // With --evidence, every rewrite must name the rule the lab installed for it.
    let installed = (extra.contains(&"--evidence") && setup.net_admin)
        .then(|| Installed::read(&setup.lab, &setup.scenario).expect("the installed rules"));
    for (conn, outcome) in &made {
        let mut check = verdict::check(conn, outcome, &report, verdict::Evidence::Partial);
        if let Some(installed) = &installed {
            verdict::check_rules(&mut check, &setup.scenario, &report, installed);
        }
        assert!(
            check.matches,
            "{name}: {} → {}: {:?}\n{json:#}",
            check.from, check.to, check.problems
        );
    }
    setup.assert_nothing_left().await;
    eprintln!(
        "{name}: probes listening {:.1}s, report {:.1}s after the start",
        listening.as_secs_f64(),
        took.as_secs_f64()
    );
    (json, took)
}

fn runnable(test: &str) -> bool {
    kernel::runnable(test, missing())
}

/// A kernel test running: alone (one lab at a time), and where it can run at all. `done` checks
/// it left none of its namespaces behind.
struct KernelTest {
    _one: tokio::sync::MutexGuard<'static, ()>,
    before: Vec<String>,
}

/// Waits its turn; `None` (and SKIPPED, or a failure under CI=true) where `test` cannot run.
async fn kernel_test(test: &str) -> Option<KernelTest> {
    let one = KERNEL.lock().await;
    runnable(test).then(|| KernelTest {
        _one: one,
        before: our_namespaces(),
    })
}

impl KernelTest {
    fn done(self) {
        assert_eq!(our_namespaces(), self.before, "namespaces left behind");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_policy_across_nodes_gives_the_labs_verdict() {
    let Some(test) = kernel_test("cluster_policy_across_nodes_gives_the_labs_verdict").await else {
        return;
    };
    let (json, _) = trace_scenario("cluster-cross-node", &[], |_| true).await;
    // Both nodes' hops of the connection: node-a's SNAT to its own address, seen at the pod.
    let flow = json["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reached_pod"] == true)
        .unwrap();
    let nodes: Vec<&str> = flow["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["node"].as_str().unwrap())
        .collect();
    assert!(
        nodes.contains(&"node-a") && nodes.contains(&"node-b"),
        "{flow:#}"
    );
    assert_eq!(flow["pod_sees"], Node::A.ip().to_string());
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn local_policy_gives_the_labs_verdict() {
    let Some(test) = kernel_test("local_policy_gives_the_labs_verdict").await else {
        return;
    };
    // With Local, trace probes the endpoint's node only: the connection node-b drops is
    // outside its view (the lab, probing every node, checks that one).
    let (json, _) = trace_scenario("local", &[], |c| {
        matches!(c.expect, Expect::Answered { .. })
    })
    .await;
    assert_eq!(json["probed_nodes"], json!(["node-a"]));
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn l7_behind_the_ingress_gives_the_labs_verdict() {
    let Some(test) = kernel_test("l7_behind_the_ingress_gives_the_labs_verdict").await else {
        return;
    };
    for name in ["nginx-ingress-local", "nginx-ingress-cluster"] {
        trace_scenario(name, &["--l7"], |_| true).await;
    }
    test.done();
}

/// The rule named behind each of `json`'s SNATs: (node, owner, chain).
fn snat_rules(json: &Value) -> Vec<(String, String, String)> {
    json["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["translations"].as_array().into_iter().flatten())
        .filter(|t| t["kind"] == "snat")
        .map(|t| {
            let a = &t["attribution"];
            (
                t["node"].as_str().unwrap_or_default().to_string(),
                a["owner"].as_str().unwrap_or_default().to_string(),
                a["rule"]["chain"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_names_each_rewrite_as_the_lab_installed_it() {
    let Some(test) = kernel_test("evidence_names_each_rewrite_as_the_lab_installed_it").await
    else {
        return;
    };
    // The probes get NET_ADMIN, are stopped at the end for their end snapshot, and every rewrite
    // names its rule, checked by the lab's judge against iptables-save and nft.
    for name in ["cluster-cross-node", "cluster-cross-node-nft"] {
        let (json, took) = trace_scenario(name, &["--evidence"], |_| true).await;
        let rules = snat_rules(&json);
        assert_eq!(rules.len(), 1, "{name}: {json:#}");
        assert_eq!(
            (rules[0].0.as_str(), rules[0].1.as_str()),
            ("node-a", "kube-proxy")
        );
        assert_eq!(json["summary"]["evidence"][0]["counted"], true, "{json:#}");
        eprintln!(
            "{name} --evidence: report {:.1}s after the start",
            took.as_secs_f64()
        );
    }
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_calico_masquerade_is_flagged_against_explains_prediction() {
    let Some(test) =
        kernel_test("a_calico_masquerade_is_flagged_against_explains_prediction").await
    else {
        return;
    };
    let (json, _) = trace_scenario("calico-nat-outgoing", &["--evidence"], |_| true).await;
    assert_eq!(
        snat_rules(&json),
        [(
            "node-b".to_string(),
            "calico".to_string(),
            "cali-nat-outgoing".to_string()
        )]
    );
    // explain predicts kube-proxy's masquerade; the node shows Calico's made the rewrite. The
    // address is the one predicted (node-b's): only the cause is flagged.
    let flagged = &json["cause_disagreements"][0];
    assert_eq!(flagged["origin"], "in-cluster-pod", "{json:#}");
    assert_eq!(flagged["predicted"], "SNAT by kube-proxy (MASQUERADE)");
    assert_eq!(flagged["predicted_owner"], "kube-proxy");
    assert_eq!(flagged["measured_owner"], "calico");
    assert_eq!(json["disagreements"], serde_json::json!([]), "{json:#}");
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_denied_net_admin_still_captures_and_says_the_evidence_was_not_available() {
    let Some(test) = kernel_test(
        "a_probe_denied_net_admin_still_captures_and_says_the_evidence_was_not_available",
    )
    .await
    else {
        return;
    };
    // The runtime takes NET_ADMIN away: the probes capture with NET_RAW alone, and the verdict
    // is the lab's; each rewrite says why no rule is named.
    let setup = Setup::stripping("cluster-cross-node", &["NET_ADMIN"]).await;
    let (json, _) = trace_in(setup, &["--evidence"], |_| true).await;
    let rewrites: Vec<&Value> = json["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["translations"].as_array().into_iter().flatten())
        .collect();
    assert!(!rewrites.is_empty(), "{json:#}");
    for t in rewrites {
        assert_eq!(t["attribution"]["status"], "no_evidence", "{t:#}");
        assert!(
            t["attribution"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("CAP_NET_ADMIN is missing")),
            "{t:#}"
        );
    }
    for node in json["summary"]["evidence"].as_array().into_iter().flatten() {
        assert_eq!(node["available"], false, "{node:#}");
    }
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn send_ties_its_test_connections_to_what_the_probes_saw() {
    let Some(test) = kernel_test("send_ties_its_test_connections_to_what_the_probes_saw").await
    else {
        return;
    };
    let setup = Setup::new("cluster-cross-node").await;
    let started = Instant::now();
    let plugin = setup.plugin(&[
        "trace",
        "svc/web",
        "-n",
        "default",
        "-o",
        "json",
        "--duration",
        "8s",
        "--send",
    ]);
    let output = finish(plugin, &setup).await;
    let took = started.elapsed();
    let (json, _) = report_of(&output);
    let sent = json["sent"].as_array().expect("the test connections");
    let by_target = |target: String| {
        sent.iter()
            .find(|s| s["target"] == target)
            .unwrap_or_else(|| panic!("no test connection to {target}: {json:#}"))
    };
    // Through the load balancer to node-a, forwarded to the pod on node-b: the lab's verdict
    // for this scenario (the pod sees node-a's address), tied by the SYN's source.
    let via_lb = by_target(format!("{VIP}:80"));
    assert_eq!(via_lb["result"], "reached", "{via_lb:#}");
    assert_eq!(via_lb["pod_sees"], Node::A.ip().to_string(), "{json:#}");
    assert_eq!(via_lb["last_seen"]["node"], "node-b");
    assert!(
        via_lb["seen_at"].as_array().is_some_and(|s| !s.is_empty()),
        "the token was read by a probe: {via_lb:#}"
    );
    // Straight to node-b's NodePort, where the pod runs: masqueraded to the bridge.
    let node_b = by_target(format!("{}:31080", Node::B.ip()));
    assert_eq!(node_b["result"], "reached");
    assert_eq!(
        node_b["pod_sees"],
        Node::B.cbr0_ip().to_string(),
        "{json:#}"
    );
    for s in sent {
        assert!(
            s["connection"].is_u64(),
            "every test connection is tied: {s:#}"
        );
    }
    setup.assert_nothing_left().await;
    eprintln!(
        "--send: report {:.1}s after the start (--duration 8s)",
        took.as_secs_f64()
    );
    drop(setup);
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_removes_the_probes_and_their_processes() {
    let Some(test) = kernel_test("sigint_removes_the_probes_and_their_processes").await else {
        return;
    };
    let setup = Setup::new("cluster-cross-node").await;
    let mut plugin = setup.plugin(&["trace", "svc/web", "-n", "default", "--duration", "10m"]);
    setup.probes_listening(&mut plugin).await;
    assert_eq!(setup.kubelet.running(), 2);
    let pid = plugin.id().expect("a pid").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let output = finish(plugin, &setup).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    setup.assert_nothing_left().await;
    drop(setup);
    test.done();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_plugin_leaves_probes_that_cleanup_removes() {
    let Some(test) = kernel_test("a_killed_plugin_leaves_probes_that_cleanup_removes").await else {
        return;
    };
    let setup = Setup::new("cluster-cross-node").await;
    let mut plugin = setup.plugin(&["trace", "svc/web", "-n", "default", "--duration", "10m"]);
    setup.probes_listening(&mut plugin).await;
    plugin.start_kill().unwrap();
    let _ = plugin.wait().await;
    // Nothing removed them: the probes still capture, their objects carry the expiry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.kubelet.running(), 2);
    let job = &setup.api.objects("jobs")[0];
    assert!(job["metadata"]["annotations"]["kubectl-realip/expires-at"].is_string());
    let cleanup = finish(setup.plugin(&["cleanup"]), &setup).await;
    assert!(
        cleanup.status.success(),
        "{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    setup.assert_nothing_left().await;
    drop(setup);
    test.done();
}
