//! The end-to-end proof: `kubectl realip lab` on the real kernel, with the real probe.
//!
//! Needs root, network namespaces, iptables, nft and ipset; without them each test says so
//! loudly and skips, and fails under `CI=true`.

#[path = "../probe/tests/common/mod.rs"]
mod kernel;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lab runs in one process share the `rip-` prefix: one at a time, so the leftovers check is exact.
static KERNEL: Mutex<()> = Mutex::new(());

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-realip");

fn lab_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("rip-"))
        .map(str::to_string)
        .collect()
}

/// Why the kernel tests cannot run here, if they cannot.
fn missing_capability() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    let name = format!("rip-check-{}", std::process::id());
    let added = Command::new("ip").args(["netns", "add", &name]).output();
    match added {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
        Ok(out) => {
            return Some(format!(
                "no network namespaces: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Err(err) => return Some(format!("no `ip` (install iproute2): {err}")),
    }
    for (tool, package) in [
        ("iptables-restore", "iptables"),
        ("nft", "nftables"),
        ("ipset", "ipset"),
    ] {
        if !kernel::has_tool(tool) {
            return Some(format!("no {tool} (install {package})"));
        }
    }
    None
}

fn skip(test: &str) -> bool {
    !kernel::runnable(
        test,
        missing_capability().map(|why| {
            format!("the netns lab needs root, iproute2, iptables, nft and ipset ({why})")
        }),
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

fn lab(args: &[&str]) -> Output {
    Command::new(PLUGIN)
        .arg("lab")
        .args(args)
        .env("REALIP_PROBE_BIN", probe())
        .env("NO_COLOR", "1")
        .output()
        .expect("plugin runs")
}

#[test]
fn every_scenario_matches_its_ground_truth_and_nothing_is_left() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if skip("every_scenario_matches_its_ground_truth_and_nothing_is_left") {
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
    if skip("text_report_names_the_rewrite_and_its_cause") {
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
    if skip("keep_leaves_the_lab_up_and_down_removes_it") {
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
    assert!(stderr.contains("ip netns exec rip-"), "{stderr}");
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

#[test]
fn sigterm_removes_everything() {
    let _one = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if skip("sigterm_removes_everything") {
        return;
    }
    let before = lab_namespaces();
    let child = Command::new(PLUGIN)
        .args(["lab", "--scenario", "all"])
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
    if !rustix::process::geteuid().is_root() {
        let out = Command::new(PLUGIN)
            .arg("lab")
            .output()
            .expect("plugin runs");
        assert_eq!(out.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&out.stderr).contains("needs root"));
        return;
    }
    // As root: drop to nobody for this one run, if setpriv (util-linux) is there.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PLUGIN,
            "lab",
        ])
        .output();
    match out {
        Ok(out) if out.status.code() == Some(4) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("needs root"), "{stderr}");
            assert!(stderr.contains("sudo"), "{stderr}");
        }
        Ok(out) => eprintln!(
            "SKIPPED without_root_the_error_says_what_to_do: cannot run as nobody here ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => {
            eprintln!("SKIPPED without_root_the_error_says_what_to_do: no setpriv ({err})")
        }
    }
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
