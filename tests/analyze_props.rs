//! Property tests of correlation: path order without trusting clocks across nodes, and ISN
//! collisions that must not merge.

use kubectl_realip::analyze::analyze_events;
use proptest::prelude::*;
use realip_probe::wire::{Direction, Event, Syn};
use std::net::{IpAddr, Ipv4Addr};

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
        prop_assert_eq!(report.flows[0].client_ip_preserved, last.src == path.syns[0].src);
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

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}
