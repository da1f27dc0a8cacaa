//! The end-to-end proof: `kubectl realip lab` on the real kernel, with the real probe.
//!
//! Every lab here is built under this file's own namespace prefix (`lab --ns-prefix`), so a
//! lab a user left up with `--keep` is never removed, nor counted, by these tests. Needs root,
//! iproute2, iptables, nft and ipset; without them each test says SKIPPED, and fails under
//! `CI=true`.

use crate::support::kernel;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lab runs in one process share the prefix: one at a time, so the leftovers check is exact.
static KERNEL: Mutex<()> = Mutex::new(());

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");
/// This file's labs; never the lab's default `rip-`.
const PREFIX: &str = "riplt-";

/// The namespaces of labs built under `prefix`, sorted.
fn namespaces_of(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// This file's lab namespaces.
fn lab_namespaces() -> Vec<String> {
    namespaces_of(PREFIX)
}

/// Whether the kernel tests can run here; under CI=true they fail when they cannot.
fn runnable(test: &str) -> bool {
    kernel::runnable(
        test,
        kernel::missing_root_or(&["ip", "iptables-restore", "nft", "ipset", "sysctl"])
            .or_else(|| kernel::missing_netns(PREFIX)),
    )
}

/// The probe binary beside the plugin, built if missing (a plain `cargo test` builds only the
/// plugin's binaries).
fn probe() -> PathBuf {
    let dir = Path::new(PLUGIN).parent().expect("plugin has a directory");
    let probe = dir.join("realip-probe");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "realip-probe", "--bin", "realip-probe"]);
    if dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    // Always run: cargo makes it a no-op when up to date, and rebuilds a stale probe.
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building realip-probe failed");
    assert!(probe.is_file(), "no probe at {}", probe.display());
    probe
}

/// `kubectl realip lab ARGS` under this file's prefix.
fn lab(args: &[&str]) -> Output {
    lab_under(PREFIX, args)
}

fn lab_under(prefix: &str, args: &[&str]) -> Output {
    Command::new(PLUGIN)
        .args(["lab", "--ns-prefix", prefix])
        .args(args)
        .env("REALIP_PROBE_BIN", probe())
        .env("NO_COLOR", "1")
        .output()
        .expect("plugin runs")
}

#[test]
fn every_scenario_matches_its_ground_truth_and_nothing_is_left() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !runnable("every_scenario_matches_its_ground_truth_and_nothing_is_left") {
        return;
    }
    let before = lab_namespaces();
    let started = Instant::now();
    let out = lab(&["--scenario", "all", "-o", "json"]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let value: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}):\n{stdout}\nstderr:\n{stderr}"));
    let entries = value.as_array().expect("a list of scenarios");
    assert_eq!(entries.len(), 16, "{stdout}");
    let failed: Vec<String> = entries
        .iter()
        .filter(|entry| entry["matches"] != true)
        .map(|entry| {
            format!(
                "{}: {}",
                entry["scenario"],
                serde_json::to_string_pretty(&entry["connections"]).unwrap_or_default()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "scenarios differ from their ground truth:\n{}",
        failed.join("\n")
    );
    for entry in entries {
        assert!(
            entry["flows"].as_array().is_some_and(|f| !f.is_empty()),
            "{entry}"
        );
        // Every rewrite names its rule, its owner and the conntrack entry that shows it, and
        // the lab checked each against the rule it installed.
        for flow in entry["flows"].as_array().into_iter().flatten() {
            for t in flow["translations"].as_array().into_iter().flatten() {
                let a = &t["attribution"];
                assert_eq!(a["status"], "rule", "{}: {t:#}", entry["scenario"]);
                assert!(
                    a["owner"].is_string() && a["rule"]["text"].is_string(),
                    "{t:#}"
                );
                assert!(a["conntrack"]["orig"].is_object(), "{t:#}");
            }
        }
        for check in entry["connections"].as_array().into_iter().flatten() {
            for rule in check["rules"].as_array().into_iter().flatten() {
                assert_eq!(rule["ok"], true, "{}: {rule:#}", entry["scenario"]);
            }
        }
    }
    let rewrites: usize = entries
        .iter()
        .flat_map(|e| e["connections"].as_array().into_iter().flatten())
        .map(|c| c["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(rewrites >= 20, "{rewrites} rewrites checked");
    let owners: Vec<&str> = entries
        .iter()
        .flat_map(|e| e["connections"].as_array().into_iter().flatten())
        .flat_map(|c| c["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["expected"].as_str())
        .collect();
    assert!(
        owners
            .iter()
            .any(|o| o.starts_with("Calico in cali-nat-outgoing")),
        "{owners:?}"
    );
    assert!(
        owners.iter().any(|o| o.contains("in masquerading")),
        "{owners:?}"
    );
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    assert_eq!(lab_namespaces(), before, "namespaces left behind");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn text_report_names_the_rewrite_and_its_cause() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !runnable("text_report_names_the_rewrite_and_its_cause") {
        return;
    }
    let before = lab_namespaces();
    let saved = tempfile::tempdir().unwrap();
    let dir = saved.path().to_str().unwrap();
    let out = lab(&["--scenario", "cluster-cross-node", "--save", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cluster-cross-node"), "{stdout}");
    assert!(
        stdout.contains("node-a: SNAT 192.0.2.10 → 198.51.100.11 (eth0 of node-a)"),
        "{stdout}"
    );
    // The rule behind it, its conntrack entry and the route that chose the address.
    assert!(stdout.contains("rule (kube-proxy): iptables-"), "{stdout}");
    assert!(
        stdout.contains("-A KUBE-POSTROUTING -m comment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MASQUERADE takes 198.51.100.11"),
        "{stdout}"
    );
    assert!(stdout.contains("externalTrafficPolicy"), "{stdout}");
    assert!(stdout.contains("fix:"), "{stdout}");
    assert_eq!(lab_namespaces(), before, "namespaces left behind");
    // What --save wrote is one stream in time order, and analyze tells the same from it.
    let file = saved.path().join("cluster-cross-node.jsonl");
    let times: Vec<u64> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ts_ns"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let analyzed = Command::new(PLUGIN)
        .args(["analyze", "--window", "1s"])
        .arg(&file)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&analyzed.stdout);
    assert!(
        analyzed.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&analyzed.stderr)
    );
    assert!(
        text.contains("SNAT on node-a: 192.0.2.10:") && text.contains("(eth0 of node-a)"),
        "{text}"
    );
    // The saved evidence names the same rule when read back.
    assert!(text.contains("rule (kube-proxy): iptables-"), "{text}");
    assert!(text.contains("conntrack: 192.0.2.10:"), "{text}");
}

#[test]
fn keep_leaves_the_lab_up_and_down_removes_it() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !runnable("keep_leaves_the_lab_up_and_down_removes_it") {
        return;
    }
    let before = lab_namespaces();
    let out = lab(&["--scenario", "direct", "--keep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("ip netns exec {PREFIX}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("kubectl realip lab --down --ns-prefix {PREFIX}")),
        "{stderr}"
    );
    let kept: Vec<String> = lab_namespaces()
        .into_iter()
        .filter(|ns| !before.contains(ns))
        .collect();
    assert_eq!(kept.len(), 9, "{kept:?}");
    let down = lab(&["--down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(lab_namespaces(), before, "--down left namespaces behind");
}

/// `--down` removes the labs of its own prefix only: another prefix's kept lab, standing in
/// for one a user left up, stays. (Comparing every namespace on the machine would not do: other
/// programs may add and remove theirs meanwhile.)
#[test]
fn down_removes_only_the_labs_of_its_prefix() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !runnable("down_removes_only_the_labs_of_its_prefix") {
        return;
    }
    const OTHER: &str = "riplu-";
    let other_before = namespaces_of(OTHER);
    let kept = lab_under(OTHER, &["--scenario", "direct", "--keep"]);
    assert!(
        kept.status.success(),
        "{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let other_kept = namespaces_of(OTHER);
    assert_eq!(other_kept.len(), other_before.len() + 9, "{other_kept:?}");
    let mine = lab(&["--scenario", "direct", "--keep"]);
    assert!(
        mine.status.success(),
        "{}",
        String::from_utf8_lossy(&mine.stderr)
    );

    let down = lab(&["--down"]);
    let removed = String::from_utf8_lossy(&down.stdout);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(lab_namespaces().is_empty(), "{:?}", lab_namespaces());
    assert_eq!(namespaces_of(OTHER), other_kept, "{removed}");

    let down = lab_under(OTHER, &["--down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(namespaces_of(OTHER), other_before);
}

#[test]
fn sigterm_removes_everything() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !runnable("sigterm_removes_everything") {
        return;
    }
    let before = lab_namespaces();
    let child = Command::new(PLUGIN)
        .args(["lab", "--ns-prefix", PREFIX, "--scenario", "all"])
        .env("REALIP_PROBE_BIN", probe())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin runs");
    // Wait until the lab exists, then interrupt it mid-way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lab_namespaces().len() < before.len() + 9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal sent");
    let out = child.wait_with_output().expect("plugin exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(
        lab_namespaces(),
        before,
        "namespaces left behind after SIGTERM"
    );
}

#[test]
fn without_root_the_error_says_what_to_do() {
    if !kernel::is_root() {
        let out = Command::new(PLUGIN)
            .arg("lab")
            .output()
            .expect("plugin runs");
        assert_eq!(out.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&out.stderr).contains("needs root"));
        return;
    }
    // As root: drop to nobody for this one run, with setpriv (util-linux).
    let test = "without_root_the_error_says_what_to_do";
    if !kernel::runnable(test, kernel::missing_root_or(&["setpriv"])) {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PLUGIN,
            "lab",
        ])
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Nobody may be unable to reach the binary (a home directory closed to others).
    let unreachable = out.status.code() == Some(126) || out.status.code() == Some(127);
    if !kernel::runnable(
        test,
        unreachable.then(|| format!("nobody cannot run {PLUGIN}: {}", stderr.trim())),
    ) {
        return;
    }
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("sudo"), "{stderr}");
}

#[test]
fn list_names_the_sixteen_scenarios() {
    let out = Command::new(PLUGIN)
        .args(["lab", "--list"])
        .output()
        .expect("plugin runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 16, "{stdout}");
    assert!(stdout.contains("nginx-ingress-local"), "{stdout}");
}

#[test]
fn unknown_scenario_is_a_usage_error() {
    let out = Command::new(PLUGIN)
        .args(["lab", "--scenario", "nope"])
        .output()
        .expect("plugin runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster-same-node"));
}

#[test]
fn rules_print_without_touching_the_kernel() {
    let out = Command::new(PLUGIN)
        .args(["lab", "--rules", "--scenario", "local"])
        .output()
        .expect("plugin runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("-j KUBE-MARK-MASQ"), "{stdout}");
    assert!(
        stdout.contains("has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 31080 -j DROP"),
        "{stdout}"
    );
}
