//! Golden tests of what analyze prints, from committed fixtures.

use kubectl_realip::analyze::model::{ClientKind, EndsAt, LossKind, TranslationKind, Verdict};
use kubectl_realip::analyze::{analyze_events, render_json, render_mermaid, render_text};
use kubectl_realip::output::plain;
use realip_probe::wire::{decode_line, Event};
use std::path::Path;

fn events(fixture: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| decode_line(l).unwrap())
        .collect()
}

/// Snapshots live with the fixtures they come from.
macro_rules! golden {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../fixtures/analyze/snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[test]
fn two_nodes_text() {
    let report = analyze_events(events("hand/two-nodes.jsonl"));
    golden!("two_nodes_text", plain(&render_text(&report)));
}

#[test]
fn two_nodes_json() {
    let report = analyze_events(events("hand/two-nodes.jsonl"));
    let json = render_json(&report);
    assert!(json.ends_with("}\n"));
    golden!("two_nodes_json", json);
}

#[test]
fn two_nodes_mermaid() {
    let report = analyze_events(events("hand/two-nodes.jsonl"));
    golden!("two_nodes_mermaid", render_mermaid(&report));
}

#[test]
fn event_order_does_not_matter() {
    let mut evs = events("hand/two-nodes.jsonl");
    let forward = analyze_events(evs.clone());
    evs.reverse();
    assert_eq!(analyze_events(evs), forward);
}

/// The real capture of tests/fixtures/analyze/netns (probe JSONL of two nodes).
#[test]
fn netns_capture_text_json_mermaid() {
    let mut evs = events("netns/node-a.jsonl");
    evs.extend(events("netns/node-b.jsonl"));
    let report = analyze_events(evs);
    golden!("netns_text", plain(&render_text(&report)));
    golden!("netns_json", render_json(&report));
    golden!("netns_mermaid", render_mermaid(&report));
}

/// The same traffic from dumpcap's pcapng files: no hello, directions and owners inferred.
#[test]
fn netns_pcapng_text() {
    let mut analyzer = kubectl_realip::analyze::Analyzer::new();
    for file in ["netns/node-a.pcapng", "netns/node-b.pcapng"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/analyze")
            .join(file);
        let problems = kubectl_realip::analyze::read_file(
            &path,
            &kubectl_realip::cmd::analyze::LocalFiles,
            &mut analyzer,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
    golden!("netns_pcapng_text", plain(&render_text(&analyzer.finish())));
}

/// Renderers take any report (trace and lab build their own): odd ones must not panic.
#[test]
fn renderers_survive_odd_reports() {
    let mut report = analyze_events(events("hand/two-nodes.jsonl"));
    report.flows[0].translations[0].hop = 99;
    report.flows[1].hops.clear();
    report.flows[1].lost_at = Some(7);
    for text in [
        render_text(&report),
        render_mermaid(&report),
        render_json(&report),
    ] {
        assert!(!text.is_empty());
    }
}

/// A rewrite between two capture points (a load balancer's SNAT) drawn as an unseen hop.
#[test]
fn unseen_rewrite_text_and_mermaid() {
    let report = analyze_events(events("hand/unseen-rewrite.jsonl"));
    assert_eq!(report.flows.len(), 1);
    assert_eq!(report.flows[0].hops.len(), 3);
    golden!("unseen_rewrite_text", plain(&render_text(&report)));
    golden!("unseen_rewrite_mermaid", render_mermaid(&report));
}

/// `kubectl realip lab --scenario hairpin --save`: a pod reaching its own Service. The SYN is
/// seen in on the pod's veth toward the ClusterIP, out on cbr0 after DNAT, and out on the veth
/// again after the hairpin MASQUERADE: one connection with both rewrites on node-a, in order.
#[test]
fn lab_hairpin_is_one_flow_with_dnat_then_snat() {
    let report = analyze_events(events("lab/hairpin.jsonl"));
    assert_eq!(report.flows.len(), 1, "{}", render_json(&report));
    let flow = &report.flows[0];
    let steps: Vec<_> = flow
        .translations
        .iter()
        .map(|t| (t.kind, t.node.as_str(), t.hop))
        .collect();
    assert_eq!(
        steps,
        vec![
            (TranslationKind::Dnat, "node-a", 1),
            (TranslationKind::Snat, "node-a", 2)
        ]
    );
    assert!(flow.reached_pod);
    assert_eq!(flow.pod_sees, Some("198.18.1.1".parse().unwrap()));
    assert_eq!(flow.client, Some("198.18.1.10".parse().unwrap()));
    golden!("lab_hairpin_text", plain(&render_text(&report)));
    golden!("lab_hairpin_mermaid", render_mermaid(&report));
}

/// `lab --scenario in-cluster-to-lb`: the toolbox pod's SYN to the load balancer address is
/// DNATed between its veth and cbr0 (both `in`), then crosses to node-a: one flow.
#[test]
fn lab_in_cluster_to_lb_pod_connection_is_one_flow() {
    let report = analyze_events(events("lab/in-cluster-to-lb.jsonl"));
    assert_eq!(report.flows.len(), 2, "{}", render_json(&report));
    let pod = report
        .flows
        .iter()
        .find(|f| f.client == Some("198.18.2.20".parse().unwrap()))
        .unwrap();
    let points: Vec<_> = pod
        .hops
        .iter()
        .map(|h| format!("{} {}", h.node, h.iface))
        .collect();
    assert_eq!(
        points[..3],
        ["node-b veth-toolbox", "node-b cbr0", "node-b eth0"]
    );
    assert_eq!(pod.entry, "203.0.113.100:80".parse().unwrap());
    assert!(pod.reached_pod);
    // The pod was seen opening it: its address is the client, and the app sees it.
    assert!(pod.client_established);
    assert_eq!(pod.client_ip_preserved, Some(true));
    assert_eq!(pod.verdict, Verdict::Kept);
}

/// `lab --scenario local`: the SYN sent to node-b (no local endpoint, Local policy) is last seen
/// in on node-b's uplink. No pod saw it: no `pod_sees`, not "preserved", counted apart.
#[test]
fn lab_local_drop_did_not_reach_a_pod() {
    let report = analyze_events(events("lab/local.jsonl"));
    assert_eq!(report.flows.len(), 2, "{}", render_json(&report));
    let dropped = report
        .flows
        .iter()
        .find(|f| f.entry == "203.0.113.100:81".parse().unwrap())
        .unwrap();
    assert!(!dropped.reached_pod);
    assert_eq!(dropped.ends_at, EndsAt::Unknown, "retransmitted: a drop");
    assert_eq!(dropped.pod_sees, None);
    // No pod saw it: no preservation verdict either way.
    assert_eq!(dropped.client_ip_preserved, None);
    assert_eq!(dropped.verdict, Verdict::Unreached);
    let last = dropped.last_seen.as_ref().unwrap();
    assert_eq!(
        (last.node.as_str(), last.iface.as_str()),
        ("node-b", "eth0")
    );
    assert_eq!(
        (
            report.summary.preserved,
            report.summary.rewritten,
            report.summary.unreached
        ),
        (1, 0, 1)
    );
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    let flow = json["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["entry"] == "203.0.113.100:81")
        .unwrap();
    assert!(flow["pod_sees"].is_null());
    assert_eq!(flow["reached_pod"], false);
    assert_eq!(flow["last_seen"]["node"], "node-b");
    let text = plain(&render_text(&report));
    assert!(
        text.contains("did not reach a pod: last seen on node-b eth0 (dropped or not captured)"),
        "{text}"
    );
    golden!("lab_local_text", text);
    golden!("lab_local_mermaid", render_mermaid(&report));
}

/// `lab --scenario l7-ingress`: the client's SYN ends in on the load balancer, addressed to its
/// VIP, and is answered (no retry): the L7 proxy accepted it. Not a drop; its own connection to
/// node-a's NodePort is the next leg of the same client connection, joined by the proxy's
/// address, its timing and the X-Forwarded-For it carries.
#[test]
fn lab_l7_ingress_first_connection_ends_at_the_proxy() {
    let report = analyze_events(events("lab/l7-ingress.jsonl"));
    assert_eq!(report.flows.len(), 2, "{}", render_json(&report));
    let accepted = report
        .flows
        .iter()
        .find(|f| f.entry == "203.0.113.100:80".parse().unwrap())
        .unwrap();
    assert_eq!(accepted.ends_at, EndsAt::Host);
    assert!(!accepted.reached_pod);
    assert_eq!(accepted.pod_sees, None);
    assert_eq!((accepted.leg, accepted.legs), (1, 2));
    let last = accepted.last_seen.as_ref().unwrap();
    assert_eq!((last.node.as_str(), last.iface.as_str()), ("clb", "inet0"));
    let onward = report
        .flows
        .iter()
        .find(|f| f.entry == "198.51.100.11:31080".parse().unwrap())
        .unwrap();
    assert_eq!(onward.ends_at, EndsAt::Pod);
    assert_eq!((onward.leg, onward.connection), (2, accepted.connection));
    let link = onward.proxied_by.as_ref().unwrap();
    assert_eq!(link.from_isn, accepted.isn);
    assert!(
        link.evidence.iter().any(|e| e.contains("X-Forwarded-For")),
        "{link:?}"
    );
    // At L4 the app sees node-a (the proxy's leg was masqueraded); in the header, the client.
    assert_eq!(onward.client_ip_preserved, Some(false));
    assert_eq!(onward.l7_client_preserved, Some(true));
    assert_eq!(onward.verdict, Verdict::KeptInHeader);
    let s = &report.summary;
    assert_eq!(
        (
            s.connections,
            s.legs,
            s.kept_in_header,
            s.rewritten,
            s.at_host
        ),
        (1, 2, 1, 0, 0)
    );
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    let ends: Vec<&str> = json["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["ends_at"].as_str().unwrap())
        .collect();
    assert!(ends.contains(&"host") && ends.contains(&"pod"), "{ends:?}");
    let text = plain(&render_text(&report));
    assert!(
        text.contains("ended at the proxy on clb, which opened leg 2"),
        "{text}"
    );
    assert!(!text.contains("dropped"), "{text}");
    golden!("lab_l7_ingress_text", text);
    golden!("lab_l7_ingress_mermaid", render_mermaid(&report));
}

/// `lab --scenario lb-snat --save`: the load balancer (not probed) rewrote the source to its own
/// address on the nodes' network before the first capture point. The pod sees that address; the
/// report says the client was lost before the capture, not that it was preserved.
#[test]
fn lab_unprobed_masquerading_lb_loses_the_client_before_the_capture() {
    let report = analyze_events(events("lab/lb-snat.jsonl"));
    assert_eq!(report.flows.len(), 1, "{}", render_json(&report));
    let flow = &report.flows[0];
    assert_eq!(flow.client_kind, ClientKind::Lb);
    assert_eq!(flow.verdict, Verdict::LostBeforeCapture);
    assert_eq!(flow.client_ip_preserved, Some(false));
    let lost = flow.lost.as_ref().unwrap();
    assert_eq!(lost.by, LossKind::BeforeCapture);
    assert_eq!(lost.at, "before node-a eth0");
    assert_eq!(report.summary.lost_before_capture, 1);
    let text = plain(&render_text(&report));
    assert!(
        text.contains("the client was lost before node-a eth0, the first"),
        "{text}"
    );
    assert!(!text.contains("preserved"), "{text}");
    golden!("lab_lb_snat_text", text);
    let mermaid = render_mermaid(&report);
    assert!(
        mermaid.contains("load balancer or router<br/>198.51.100.1"),
        "{mermaid}"
    );
    assert!(!mermaid.contains("_end kept"), "{mermaid}");
    golden!("lab_lb_snat_mermaid", mermaid);
}

/// `lab --scenario nginx-ingress-cluster --save`: node-b masquerades the client's connection to
/// the ingress controller, which opens its own to the app. The two legs are one client
/// connection: lost at node-b's SNAT before the proxy, and the header the proxy writes names
/// node-b, not the client.
#[test]
fn lab_ingress_behind_cluster_policy_is_one_story_lost_before_the_proxy() {
    let report = analyze_events(events("lab/nginx-ingress-cluster.jsonl"));
    assert_eq!(report.flows.len(), 2, "{}", render_json(&report));
    let (first, app) = (&report.flows[0], &report.flows[1]);
    assert_eq!((first.leg, app.leg, app.legs), (1, 2, 2));
    assert_eq!(first.connection, app.connection);
    assert_eq!(app.proxied_by.as_ref().map(|p| p.from_isn), Some(first.isn));
    assert_eq!(app.client_kind, ClientKind::Proxy);
    assert_eq!(app.verdict, Verdict::Rewritten);
    assert_eq!(app.client_ip_preserved, Some(false));
    assert_eq!(app.l7_client_preserved, Some(false));
    let lost = app.lost.as_ref().unwrap();
    assert_eq!(
        (lost.by, lost.leg, lost.at.as_str()),
        (LossKind::Snat, 1, "node-b")
    );
    let s = &report.summary;
    assert_eq!(
        (s.connections, s.legs, s.rewritten, s.preserved),
        (1, 2, 1, 0)
    );
    assert!(
        app.reason
            .starts_with("client 192.0.2.10 lost on leg 1 at hop 3 (SNAT on node-b), before"),
        "{}",
        app.reason
    );
    let text = plain(&render_text(&report));
    assert!(text.contains("↳ leg 2 of 2"), "{text}");
    golden!("lab_nginx_ingress_cluster_text", text);
    let mermaid = render_mermaid(&report);
    assert!(mermaid.contains("2 legs"), "{mermaid}");
    // The app pod is not green: the client reached it neither at L4 nor in a header.
    assert!(!mermaid.contains("_end kept"), "{mermaid}");
    golden!("lab_nginx_ingress_cluster_mermaid", mermaid);
}

/// `lab --save` writes the nodes' uplinks alone, as `tcpdump -i eth0` would: the pod side was
/// not captured, so the report does not say the client reached the pod; it says where it stopped
/// seeing.
#[test]
fn lab_uplinks_only_leave_the_verdict_open() {
    let report = analyze_events(events("lab/cluster-same-node.uplinks.jsonl"));
    assert_eq!(report.flows.len(), 1, "{}", render_json(&report));
    let flow = &report.flows[0];
    assert_eq!(flow.ends_at, EndsAt::Unseen);
    assert_eq!(flow.verdict, Verdict::Unknown);
    assert_eq!(flow.client_ip_preserved, None);
    assert_eq!(report.summary.unknown, 1);
    let text = plain(&render_text(&report));
    assert!(text.contains("not seen after it"), "{text}");
    golden!("lab_uplinks_only_text", text);
}

/// A node whose `hello` shows Cilium's interfaces: its eBPF host routing hands packets to pods
/// past every capture point, so a SYN last seen arriving there is not "dropped".
#[test]
fn an_ebpf_datapath_hides_the_way_into_the_pod() {
    let report = analyze_events(events("hand/ebpf-node.jsonl"));
    let flow = &report.flows[0];
    assert_eq!(flow.ends_at, EndsAt::Unseen);
    assert!(flow.reached_pod);
    assert_eq!(flow.verdict, Verdict::Unknown);
    assert!(
        flow.reason.contains("eBPF datapath (Cilium)"),
        "{}",
        flow.reason
    );
    assert_eq!(report.summary.unreached, 0);
    golden!("ebpf_node_text", plain(&render_text(&report)));
}
