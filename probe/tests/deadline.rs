//! `--until`: the absolute deadline a DaemonSet's restarted probe keeps.

use realip_probe::wire::{decode_line, Event};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

const PROBE: &str = env!("CARGO_BIN_EXE_realip-probe");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Past the deadline the probe opens nothing and waits for SIGTERM: exiting would only make
/// the DaemonSet start it again.
#[test]
fn past_the_deadline_nothing_is_captured_until_sigterm() {
    let child = Command::new(PROBE)
        .args(["capture", "--until", &(now() - 10).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success(),
        "the probe was still waiting"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the deadline (--until) has passed"),
        "{out:?}"
    );
}

/// Before the deadline it captures only what is left, however long `--duration` says.
#[test]
fn a_deadline_ahead_ends_the_capture_on_time() {
    if !common::is_root() {
        eprintln!("SKIPPED a_deadline_ahead_ends_the_capture_on_time: capturing needs root");
        return;
    }
    let netns = format!("rpd-{}", std::process::id());
    let made = Command::new("sh")
        .args([
            "-ec",
            &format!("ip netns add {netns}; ip -n {netns} link set lo up"),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        eprintln!("SKIPPED a_deadline_ahead_ends_the_capture_on_time: no network namespaces");
        return;
    }
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &netns, PROBE, "capture", "--iface", "lo"])
        .args(["--duration", "600", "--until", &(now() + 2).to_string()])
        .output();
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    let out = out.unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| decode_line(l).ok())
        .next_back();
    assert!(matches!(last, Some(Event::Bye(_))), "{last:?}");
}
