//! Property tests of correlation: path order without trusting clocks across nodes, and ISN
//! collisions that must not merge.

use kubectl_realip::analyze::model::TranslationKind;
use kubectl_realip::analyze::{analyze_events, Analyzer};
use proptest::prelude::*;
use realip_probe::wire::{Direction, Event, Syn};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// One connection's true path: sightings in path order.
#[derive(Debug, Clone)]
struct Path {
    syns: Vec<Syn>,
}

/// Per node: how many capture points after the receiving one, whether it DNATs, SNATs.
type NodePlan = (usize, bool, bool, i64);

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Builds a physically consistent path: each node receives (`in`), routes (TTL − 1, maybe NAT)
/// and sends on one or more capture points (`out`, bridge ports keep the packet unchanged);
/// the next node receives exactly what the previous one sent. Each node's clock has its own
/// offset.
fn build_path(conn: u8, isn: u32, ids: bool, nodes: &[NodePlan]) -> Path {
    let mut syns = Vec::new();
    let (mut src, mut sport) = (ip(198, 51, 100, conn), 40_000 + u16::from(conn));
    let (mut dst, mut dport) = (ip(192, 0, 2, 10), 31_908);
    let mut ttl = 64u8;
    for (n, &(outs, dnat, snat, offset)) in nodes.iter().enumerate() {
        let node = format!("node-{n}");
        let mut ts = (1_000_000_000_000i64 + offset) as u64 + u64::from(conn) * 7;
        let sighting = |iface: String, dir, src, sport, dst, dport, ttl, ts| Syn {
            ts_ns: ts,
            node: node.clone(),
            iface,
            dir,
            src,
            sport,
            dst,
            dport,
            isn,
            tsval: ids.then_some(1000 + u32::from(conn)),
            ttl,
            ip_id: ids.then_some(u16::from(conn)),
        };
        syns.push(sighting(
            format!("in{n}"),
            Direction::In,
            src,
            sport,
            dst,
            dport,
            ttl,
            ts,
        ));
        ttl -= 1;
        if dnat {
            dst = ip(10, 244, n as u8, 5);
            dport = 8080;
        }
        if snat {
            src = ip(10, 244, n as u8, 1);
            sport = sport.wrapping_add(1000 + u16::from(conn));
        }
        for o in 0..outs {
            ts += 3;
            syns.push(sighting(
                format!("out{n}-{o}"),
                Direction::Out,
                src,
                sport,
                dst,
                dport,
                ttl,
                ts,
            ));
        }
    }
    Path { syns }
}

fn node_plan() -> impl Strategy<Value = NodePlan> {
    (
        1usize..=3,
        any::<bool>(),
        any::<bool>(),
        -1_000_000_000_000i64..1_000_000_000_000,
    )
}

fn order(syns: &[Syn]) -> Vec<(String, String)> {
    syns.iter()
        .map(|s| (s.node.clone(), s.iface.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Shuffled input from nodes with arbitrary clock offsets comes back in path order.
    #[test]
    fn hops_come_back_in_path_order(
        nodes in prop::collection::vec(node_plan(), 1..=4),
        isn in any::<u32>(),
        ids in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let path = build_path(1, isn, ids, &nodes);
        let mut events: Vec<Event> = path.syns.iter().cloned().map(Event::Syn).collect();
        shuffle(&mut events, seed);
        let report = analyze_events(events);
        prop_assert_eq!(report.flows.len(), 1);
        let got: Vec<(String, String)> =
            report.flows[0].hops.iter().map(|h| (h.node.clone(), h.iface.clone())).collect();
        prop_assert_eq!(got, order(&path.syns));
        let last = path.syns.last().unwrap();
        prop_assert_eq!(report.flows[0].pod_sees, Some(last.src));
        // Unnamed interfaces tell nothing of the pod side: a rewrite seen is a verdict, an
        // unchanged source is not.
        let expected = (last.src != path.syns[0].src).then_some(false);
        prop_assert_eq!(report.flows[0].client_ip_preserved, expected);
    }

    /// Two unrelated connections sharing an ISN stay two flows, each with only its own hops.
    #[test]
    fn isn_collisions_do_not_merge(
        a in prop::collection::vec(node_plan(), 1..=3),
        b in prop::collection::vec(node_plan(), 1..=3),
        isn in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let (pa, pb) = (build_path(1, isn, true, &a), build_path(2, isn, true, &b));
        let mut events: Vec<Event> =
            pa.syns.iter().chain(&pb.syns).cloned().map(Event::Syn).collect();
        shuffle(&mut events, seed);
        let report = analyze_events(events);
        prop_assert_eq!(report.flows.len(), 2);
        for flow in &report.flows {
            let truth = if flow.client == Some(pa.syns[0].src) { &pa } else { &pb };
            let got: Vec<(String, String)> =
                flow.hops.iter().map(|h| (h.node.clone(), h.iface.clone())).collect();
            prop_assert_eq!(got, order(&truth.syns));
        }
    }

    /// Without any id (no TSval, no IPv4 id) the same collision still never merges two
    /// clients into one flow.
    #[test]
    fn isn_collisions_without_ids_keep_clients_apart(
        a in prop::collection::vec(node_plan(), 1..=3),
        b in prop::collection::vec(node_plan(), 1..=3),
        isn in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let (pa, pb) = (build_path(1, isn, false, &a), build_path(2, isn, false, &b));
        let mut events: Vec<Event> =
            pa.syns.iter().chain(&pb.syns).cloned().map(Event::Syn).collect();
        shuffle(&mut events, seed);
        let report = analyze_events(events);
        let clients: Vec<_> = report.flows.iter().filter_map(|f| f.client).collect();
        prop_assert!(clients.contains(&pa.syns[0].src));
        prop_assert!(clients.contains(&pb.syns[0].src));
        let hops: usize = report.flows.iter().map(|f| f.hops.len()).sum();
        prop_assert_eq!(hops, pa.syns.len() + pb.syns.len());
    }

    /// Retransmissions (new TSval and id, same ISN and client tuple) are one connection.
    #[test]
    fn retransmissions_are_retries(
        nodes in prop::collection::vec(node_plan(), 1..=3),
        retries in 0u32..4,
        seed in any::<u64>(),
    ) {
        let mut events = Vec::new();
        for r in 0..=retries {
            let mut path = build_path(1, 77, true, &nodes);
            for s in &mut path.syns {
                s.ts_ns += (u64::from(r) * 1_000_000_000) << r;
                s.tsval = s.tsval.map(|t| t + r * 1000);
                s.ip_id = s.ip_id.map(|i| i + r as u16 * 100);
            }
            events.extend(path.syns.into_iter().map(Event::Syn));
        }
        shuffle(&mut events, seed);
        let report = analyze_events(events);
        prop_assert_eq!(report.flows.len(), 1);
        prop_assert_eq!(report.flows[0].retries, retries);
    }
}

/// A pod's SYN through its own node's bridge, NATed by br_netfilter between the bridge and a
/// port: shape 0 is the hairpin (in on the veth toward the Service, out on cbr0 after DNAT, out
/// on the veth after MASQUERADE); shape 1 the pod calling a load balancer address (in on the
/// veth, in on cbr0 after DNAT, routed out of the uplink). `keep_port`: MASQUERADE kept the port.
fn bridge_path(conn: u8, isn: u32, shape: u8, keep_port: bool, ts: u64) -> Vec<Syn> {
    let pod = ip(198, 18, 1, 10 + conn);
    let sport = 40_000 + u16::from(conn);
    let step = |i: u64, iface: &str, dir, src, sport, dst, dport, ttl| Syn {
        ts_ns: ts + i * 20_000,
        node: "node-a".into(),
        iface: iface.into(),
        dir,
        src,
        sport,
        dst,
        dport,
        isn,
        tsval: Some(5_000 + u32::from(conn)),
        ttl,
        ip_id: Some(u16::from(conn)),
    };
    let veth = format!("veth-{conn}");
    let (svc, lb, target) = (ip(198, 19, 0, 10), ip(203, 0, 113, 100), ip(198, 18, 2, 10));
    if shape == 0 {
        let masq_port = if keep_port {
            sport
        } else {
            2_000 + u16::from(conn)
        };
        vec![
            step(0, &veth, Direction::In, pod, sport, svc, 80, 64),
            step(1, "cbr0", Direction::Out, pod, sport, pod, 8080, 64),
            step(
                2,
                &veth,
                Direction::Out,
                ip(198, 18, 1, 1),
                masq_port,
                pod,
                8080,
                64,
            ),
        ]
    } else {
        vec![
            step(0, &veth, Direction::In, pod, sport, lb, 80, 64),
            step(1, "cbr0", Direction::In, pod, sport, target, 8080, 64),
            step(2, "eth0", Direction::Out, pod, sport, target, 8080, 63),
        ]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// NAT between a bridge port and the bridge device keeps one SYN one flow, its DNAT then
    /// SNAT on the node in path order; a second connection with the same ISN on the same node
    /// at the same moment (another TSval and IPv4 id) stays its own flow.
    #[test]
    fn bridge_nat_is_one_flow_and_collisions_stay_apart(
        shape in 0u8..2,
        other_shape in 0u8..2,
        keep_port in any::<bool>(),
        isn in any::<u32>(),
        offset in 0u64..60_000,
        seed in any::<u64>(),
    ) {
        let a = bridge_path(1, isn, shape, keep_port, 1_000_000);
        let b = bridge_path(2, isn, other_shape, keep_port, 1_000_000 + offset);
        let mut events: Vec<Event> = a.iter().chain(&b).cloned().map(Event::Syn).collect();
        shuffle(&mut events, seed);
        let report = analyze_events(events);
        prop_assert_eq!(report.flows.len(), 2);
        for flow in &report.flows {
            let truth = if flow.client == Some(a[0].src) { &a } else { &b };
            let got: Vec<(String, Direction)> =
                flow.hops.iter().map(|h| (h.iface.clone(), h.dir)).collect();
            let want: Vec<(String, Direction)> =
                truth.iter().map(|s| (s.iface.clone(), s.dir)).collect();
            prop_assert_eq!(got, want);
            let kinds: Vec<_> = flow.translations.iter().map(|t| (t.kind, t.node.as_str())).collect();
            let want_kinds = if truth[2].src != truth[0].src || truth[2].sport != truth[0].sport {
                vec![(TranslationKind::Dnat, "node-a"), (TranslationKind::Snat, "node-a")]
            } else {
                vec![(TranslationKind::Dnat, "node-a")]
            };
            prop_assert_eq!(kinds, want_kinds);
        }
    }
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Nodes whose clocks differ by at most two seconds.
fn synced_node_plan() -> impl Strategy<Value = NodePlan> {
    (
        1usize..=3,
        any::<bool>(),
        any::<bool>(),
        -2_000_000_000i64..2_000_000_000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// A long capture read in time order through a window, each connection reported as soon as
    /// it is complete, says what the whole input held at once says, in the same order: ISNs
    /// reused minutes apart and retransmissions included.
    #[test]
    fn windowed_streaming_equals_the_whole(
        conns in prop::collection::vec(
            (prop::collection::vec(synced_node_plan(), 1..=3), 0u32..3, 0u64..60_000_000_000, 0u32..3),
            1..=16,
        ),
    ) {
        let mut events = Vec::new();
        let mut start = 0u64;
        for (n, (nodes, isn, gap, retries)) in conns.iter().enumerate() {
            start += gap;
            for r in 0..=*retries {
                let mut path = build_path(n as u8 + 1, *isn, true, nodes);
                for s in &mut path.syns {
                    s.ts_ns += start + u64::from(r) * 3_000_000_000;
                    s.tsval = s.tsval.map(|t| t + r * 1000);
                    s.ip_id = s.ip_id.map(|i| i + r as u16 * 100);
                }
                events.extend(path.syns.into_iter().map(Event::Syn));
            }
        }
        let whole = analyze_events(events.clone());
        // What `analyze` does with one file per node: each in time order, merged by time.
        events.sort_by_key(|e| match e {
            Event::Syn(s) => s.ts_ns,
            _ => 0,
        });
        let mut analyzer = Analyzer::windowed(Duration::from_secs(10));
        let mut streamed = Vec::new();
        for event in events {
            analyzer.push(event);
            streamed.extend(std::iter::from_fn(|| analyzer.next_flow()));
        }
        analyzer.close();
        streamed.extend(std::iter::from_fn(|| analyzer.next_flow()));
        prop_assert_eq!(streamed, whole.flows);
    }
}
