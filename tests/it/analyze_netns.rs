//! The end-to-end proof: captures of real traffic through kube-proxy-shaped NAT in network
//! namespaces (tests/fixtures/analyze/netns/make.sh) analyzed into the address the pod's
//! accept() reported and the node that masqueraded.

use crate::support::kernel;

use kubectl_realip::analyze::model::{Report, TranslationKind, Verdict};
use kubectl_realip::analyze::{analyze_events, render_json};
use realip_probe::wire::decode_line;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analyze/netns")
}

/// What the pod's accept() returned, one `ip port` per connection.
fn accepted(dir: &Path) -> Vec<(IpAddr, u16)> {
    std::fs::read_to_string(dir.join("accepted.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (ip, port) = l.split_once(' ').unwrap();
            (ip.parse().unwrap(), port.parse().unwrap())
        })
        .collect()
}

fn jsonl_report(dir: &Path) -> Report {
    let mut events = Vec::new();
    for node in ["node-a.jsonl", "node-b.jsonl"] {
        let text = std::fs::read_to_string(dir.join(node)).unwrap();
        events.extend(text.lines().map(|l| decode_line(l).unwrap()));
    }
    analyze_events(events)
}

/// Runs the command on files and parses its JSON.
fn cli_report(files: &[PathBuf]) -> Report {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .arg("analyze")
        .args(["-o", "json"])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every accepted connection is a flow ending in exactly what accept() saw; NodePort 31908
/// (Cluster policy) lost the client to node-a's MASQUERADE, 31909 kept it: `kept` is what the
/// verdict may say of that one (`None` when the capture cannot tell its last interface faces
/// the pod).
fn check(report: &Report, accepted: &[(IpAddr, u16)], kept: Option<bool>) {
    let json = render_json(report);
    assert_eq!(report.flows.len(), accepted.len(), "{json}");
    for &(ip, port) in accepted {
        let flow = report
            .flows
            .iter()
            .find(|f| {
                f.hops
                    .last()
                    .is_some_and(|h| h.src == ip && h.sport == port)
            })
            .unwrap_or_else(|| panic!("no flow ends in {ip}:{port}\n{json}"));
        assert_eq!(flow.pod_sees, Some(ip));
        assert_eq!(flow.hops.len(), 5, "{json}");
        assert_eq!(flow.hops[0].node, "node-a");
        assert_eq!(flow.hops[4].node, "node-b");
        let snat: Vec<_> = flow
            .translations
            .iter()
            .filter(|t| t.kind == TranslationKind::Snat)
            .collect();
        if flow.entry.port() == 31908 {
            assert_eq!(flow.client_ip_preserved, Some(false), "{json}");
            assert_eq!(flow.verdict, Verdict::Rewritten, "{json}");
            assert_eq!(snat.len(), 1, "{json}");
            assert_eq!(snat[0].node, "node-a");
            assert_eq!(snat[0].to, SocketAddr::new(ip, port));
            assert_eq!(flow.lost_at, Some(1));
        } else {
            assert_eq!(flow.entry.port(), 31909, "{json}");
            assert_eq!(flow.client_ip_preserved, kept, "{json}");
            let verdict = if kept.is_some() {
                Verdict::Kept
            } else {
                Verdict::Unknown
            };
            assert_eq!(flow.verdict, verdict, "{json}");
            assert!(snat.is_empty(), "{json}");
        }
        assert!(flow
            .translations
            .iter()
            .any(|t| t.kind == TranslationKind::Dnat && t.node == "node-a"));
    }
}

#[test]
fn probe_jsonl_of_two_nodes_names_the_masquerading_node() {
    let dir = fixtures();
    let report = jsonl_report(&dir);
    check(&report, &accepted(&dir), Some(true));
    assert!(report.flows.iter().all(|f| f.l7_client_ip.is_some()));
    let snat = report.flows[0]
        .translations
        .iter()
        .find(|t| t.kind == TranslationKind::Snat)
        .unwrap();
    assert_eq!(snat.to_owner, "ens5 of node-a");
}

#[test]
fn tcpdump_pcaps_of_the_same_traffic_tell_the_same() {
    let dir = fixtures();
    let report = cli_report(&[dir.join("node-a.pcapng"), dir.join("node-b.pcapng")]);
    check(&report, &accepted(&dir), Some(true));
    // No hello: the masquerading interface is inferred from where the rewritten SYN left.
    let snat = report.flows[0]
        .translations
        .iter()
        .find(|t| t.kind == TranslationKind::Snat)
        .unwrap();
    assert_eq!(snat.to_owner, "ens5 of node-a, inferred");
    assert!(report.flows.iter().all(|f| f.l7_client_ip.is_some()));
    // Linux cooked v2 (tcpdump -i any) records directions: nothing inferred on node-b. It names
    // interfaces by index only: nothing says the last one faces the pod, so no "kept".
    let report = cli_report(&[dir.join("node-a.pcapng"), dir.join("cooked/node-b.pcap")]);
    check(&report, &accepted(&dir), None);
    for flow in &report.flows {
        assert!(flow
            .hops
            .iter()
            .filter(|h| h.node == "node-b")
            .all(|h| !h.dir_inferred));
    }
}

#[test]
fn command_on_jsonl_files_agrees() {
    let dir = fixtures();
    let report = cli_report(&[dir.join("node-a.jsonl"), dir.join("node-b.jsonl")]);
    check(&report, &accepted(&dir), Some(true));
}

/// Regenerates the captures on this kernel and checks the same story comes out.
#[test]
fn live_netns_capture_names_the_masquerading_node() {
    let tools = [
        "ip",
        "iptables-restore",
        "dumpcap",
        "tcpdump",
        "tshark",
        "curl",
        "python3",
    ];
    if !kernel::runnable(
        "live_netns_capture_names_the_masquerading_node",
        kernel::missing_root_or(&tools).or_else(|| kernel::missing_netns("rpa-")),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(fixtures().join("make.sh"))
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "make.sh failed");
    let accepted = accepted(dir.path());
    check(&jsonl_report(dir.path()), &accepted, Some(true));
    check(
        &cli_report(&[
            dir.path().join("node-a.jsonl"),
            dir.path().join("node-b.jsonl"),
        ]),
        &accepted,
        Some(true),
    );
}
