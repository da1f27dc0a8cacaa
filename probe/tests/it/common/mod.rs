//! What the kernel tests need of the machine, checked the same way everywhere (the plugin's
//! tests include this file too, through tests/it/support).
#![allow(dead_code)]

pub mod listing;

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether this process runs as uid 0 (network namespaces, raw sockets).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `tool` is on PATH.
pub fn has_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// What is missing for a test that needs root and `tools` on PATH: the first missing piece.
pub fn missing_root_or(tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces, raw sockets and netfilter need it)".into());
    }
    tools
        .iter()
        .find(|tool| !has_tool(tool))
        .map(|tool| format!("no `{tool}` on PATH (see .ci/debian-packages)"))
}

/// What is missing for a test that makes network namespaces: a probe namespace named
/// `<prefix>check-<pid>-<n>` (the test's own prefix) is made and removed (a container may
/// forbid namespaces even to root).
pub fn missing_netns(prefix: &str) -> Option<String> {
    // Tests run in parallel threads of one process: each check has its own name.
    static CHECKS: AtomicUsize = AtomicUsize::new(0);
    let n = CHECKS.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}check-{}-{n}", std::process::id());
    match Command::new("ip").args(["netns", "add", &name]).output() {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            None
        }
        Ok(out) => Some(format!(
            "no network namespaces: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Some(format!("cannot run `ip`: {err}")),
    }
}

/// Whether CI=true: then a test that cannot run fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// The running test's name: the harness names each test's thread after it (with
/// `--test-threads=1` the test runs on the main thread, which says nothing).
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

/// Whether a test that needs `missing`'s capability may run. When it is missing, under
/// `CI=true` the test fails, so that a skipped test never stands in for a passing one;
/// elsewhere it returns false (the test returns) after saying so on the terminal.
///
/// The line is written to the process's stderr directly: the test harness captures only what
/// `print!`/`eprint!` write, so it shows in a plain `cargo test`, not only with `--nocapture`.
pub fn runnable(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    cannot_run(test, &why);
    false
}

/// For `test`, which cannot run here (`why`): fails under `CI=true`, else says SKIPPED (the
/// caller returns). What [`runnable`] does when something is missing.
pub fn cannot_run(test: &str, why: &str) {
    if in_ci() {
        panic!("{test} cannot run here ({why}), and CI=true requires it");
    }
    skipped(
        test,
        &format!("{why}. It did not run; with CI=true it fails instead"),
    );
}

/// Says on the terminal that `test` did not run, and why.
pub fn skipped(test: &str, why: &str) {
    // A leading newline: the harness may have left "test NAME ... " unfinished on the line.
    let _ = writeln!(std::io::stderr().lock(), "\nSKIPPED {test}: {why}");
}
