//! What the kernel tests need of the machine, checked the same way everywhere.
#![allow(dead_code)]

pub mod listing;

use std::process::Command;

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

/// Whether a test that needs `missing`'s capability may run: false (the test returns) when it
/// is missing, said on stderr; under `CI=true` a missing capability fails the test instead, so
/// that a skipped test never stands in for a passing one.
pub fn runnable(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test} cannot run here ({why}), and CI=true requires it");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}
