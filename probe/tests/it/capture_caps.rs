//! The probe with CAP_NET_RAW alone (uid 0, every other capability dropped from the bounding
//! set), with no capability at all, and with a wrong interface name — each in a network
//! namespace made here. Needs root, iproute2 and `setpriv` (util-linux); otherwise each test
//! says SKIPPED and why, and fails under `CI=true`.

use realip_probe::wire::{decode_line, Event};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use crate::common;

const PROBE: &str = env!("CARGO_BIN_EXE_realip-probe");
/// setpriv arguments keeping only CAP_NET_RAW, in every set, for the probe.
const NET_RAW_ONLY: [&str; 3] = [
    "--inh-caps=-all,+net_raw",
    "--ambient-caps=-all,+net_raw",
    "--bounding-set=-all,+net_raw",
];
const NO_CAPS: [&str; 3] = [
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all",
];

/// Whether these tests can run here (they fail under CI=true when they cannot).
fn runnable() -> bool {
    common::runnable(
        &common::current_test(),
        common::missing_root_or(&["ip", "setpriv"]).or_else(|| common::missing_netns("rpc-")),
    )
}

/// A network namespace with loopback up, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("rpc-{tag}-{}", std::process::id());
        let ok = Command::new("sh")
            .args([
                "-ec",
                &format!("ip netns add {name}; ip -n {name} link set lo up"),
            ])
            .status()
            .expect("ip netns add")
            .success();
        assert!(ok, "cannot create {name}");
        Netns(name)
    }

    fn run(&self, caps: &[&str], args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "setpriv"])
            .args(caps)
            .arg("--")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("setpriv")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn net_raw_alone_is_enough_to_capture() {
    if !runnable() {
        return;
    }
    let ns = Netns::new("caps");
    // The capability sets the probe will run with: CAP_NET_RAW (bit 13) and nothing else.
    let status = ns.run(&NET_RAW_ONLY, &["cat", "/proc/self/status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(set) && l.ends_with("0000000000002000")),
            "{set} is not NET_RAW alone:\n{status}"
        );
    }

    let ns_name = ns.0.clone();
    let traffic = thread::spawn(move || {
        thread::sleep(Duration::from_millis(700));
        let _ = Command::new("ip")
            .args(["netns", "exec", &ns_name, "bash", "-c"])
            .arg("(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; true")
            .status();
    });
    let out = ns.run(
        &NET_RAW_ONLY,
        &[PROBE, "capture", "--duration", "2", "--node", "n1"],
    );
    traffic.join().expect("traffic thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Event> = stdout
        .lines()
        .map(|l| decode_line(l).expect("line"))
        .collect();
    assert!(matches!(events.first(), Some(Event::Hello(_))), "{stdout}");
    assert!(matches!(events.last(), Some(Event::Bye(b)) if b.reason == "duration"));
    let syns = events
        .iter()
        .filter(|e| matches!(e, Event::Syn(s) if s.dport == 9 && s.iface == "lo"))
        .count();
    assert_eq!(syns, 2, "one SYN out and in on lo:\n{stdout}");
}

#[test]
fn without_net_raw_the_error_says_what_to_grant() {
    if !runnable() {
        return;
    }
    let ns = Netns::new("nocaps");
    let out = ns.run(&NO_CAPS, &[PROBE, "capture", "--duration", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
    assert!(stderr.contains("hint: grant CAP_NET_RAW"), "{stderr}");
    assert!(out.stdout.is_empty(), "no events without a capture");
}

#[test]
fn unknown_interface_is_named_with_the_ones_that_exist() {
    if !runnable() {
        return;
    }
    let ns = Netns::new("noif");
    let out = ns.run(&NET_RAW_ONLY, &[PROBE, "capture", "--iface", "nope0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no interface named nope0 on this node (it has: lo)"),
        "{stderr}"
    );
}
