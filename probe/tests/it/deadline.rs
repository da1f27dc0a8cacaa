//! `--until`: the absolute deadline a DaemonSet's restarted probe keeps.

use realip_probe::wire::{decode_line, Event};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;

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

/// Before the deadline it captures only what is left, however long `--duration` says; at the
/// deadline it says bye, then stays, capturing nothing, until SIGTERM.
#[test]
fn a_deadline_ahead_ends_the_capture_on_time_and_the_probe_stays_quietly() {
    let test = "a_deadline_ahead_ends_the_capture_on_time_and_the_probe_stays_quietly";
    let missing = common::missing_root_or(&["ip"]).or_else(|| common::missing_netns("rpd-"));
    if !common::runnable(test, missing) {
        return;
    }
    let netns = format!("rpd-{}", std::process::id());
    let made = Command::new("sh")
        .args([
            "-ec",
            &format!("ip netns add {netns}; ip -n {netns} link set lo up"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        let _ = Command::new("ip").args(["netns", "del", &netns]).status();
        panic!("cannot make the network namespace {netns}");
    }
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns, PROBE, "capture", "--iface", "lo"])
        .args(["--duration", "600", "--until", &(now() + 2).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said_bye = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        if matches!(decode_line(&line), Ok(Event::Bye(_))) {
            said_bye = true;
            break;
        }
    }
    let took = started.elapsed();
    // Past its deadline the probe neither exits (a restart loop) nor writes anything.
    std::thread::sleep(Duration::from_millis(1500));
    let still_running = child.try_wait().unwrap().is_none();
    let quiet = rx.try_recv().is_err();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    assert!(said_bye, "no bye at the deadline");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(still_running, "the probe exited at its deadline: {status}");
    assert!(quiet, "the probe wrote after its bye");
    assert!(status.success(), "{status}");
}
