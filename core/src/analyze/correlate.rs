//! Correlation: which sightings are the same SYN at successive hops, and in which order.
//!
//! Netfilter NAT rewrites addresses and ports but not the ISN nor the TCP timestamp, so the
//! candidates for one connection share the ISN (and TSval when the SYN carries one). Inside such
//! a group the path is rebuilt from evidence that does not depend on clocks across nodes:
//! direction (in before out), TTL decrements, and address continuity (what one node sends is what
//! the next one receives). Clocks are compared only between sightings of the same node.

use super::sighting::Sighting;
use realip_probe::wire::Direction;
use std::cmp::Reverse;

/// Forwarding through one node takes microseconds; anything slower is another transmission.
pub const SAME_NODE_WINDOW_NS: u64 = 1_000_000_000;
/// Linux gives up on a SYN after about two minutes of retransmissions.
pub const RETRY_WINDOW_NS: u64 = 180_000_000_000;
/// Candidates linked pairwise at most; larger groups (a scanner reusing one ISN) are cut in
/// time order so that the work stays linear in the input.
pub const MAX_GROUP: usize = 64;

/// One connection: its sightings in path order, and how many retransmissions were folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub hops: Vec<usize>,
    pub retries: u32,
}

#[derive(Debug, Default)]
pub struct Correlation {
    pub chains: Vec<Chain>,
    pub warnings: Vec<String>,
}

/// Groups `sightings` (any order, any nodes) into connections.
pub fn correlate(sightings: &[Sighting]) -> Correlation {
    let mut order: Vec<usize> = (0..sightings.len()).collect();
    order.sort_unstable_by_key(|&i| {
        let s = &sightings[i];
        (s.isn, s.tsval, s.node, s.ts_ns, i)
    });
    let mut out = Correlation::default();
    for bucket in order.chunk_by(|&a, &b| sightings[a].isn == sightings[b].isn) {
        let mut chains = Vec::new();
        // A sighting without TSval (a snap length cut it, or the client sends none) may be any
        // transmission's: the ISN's sightings are then linked together, and each step still
        // refuses TSvals that differ.
        let groups: Vec<&[usize]> = if bucket.iter().any(|&i| sightings[i].tsval.is_none()) {
            vec![bucket]
        } else {
            bucket
                .chunk_by(|&a, &b| sightings[a].tsval == sightings[b].tsval)
                .collect()
        };
        for group in groups {
            if group.len() > MAX_GROUP {
                out.warnings.push(format!(
                    "ISN {} seen {} times: correlated in time windows of {MAX_GROUP} sightings",
                    sightings[group[0]].isn,
                    group.len()
                ));
                let mut by_time = group.to_vec();
                by_time.sort_by_key(|&i| (sightings[i].ts_ns, i));
                for window in by_time.chunks(MAX_GROUP) {
                    chains.extend(link(sightings, window));
                }
            } else {
                chains.extend(link(sightings, group));
            }
        }
        out.chains.extend(merge_retries(sightings, chains));
    }
    out
}

/// How strongly `b` looks like the next sighting after `a`: (score, gap); higher score and
/// smaller gap win. `None` when `b` cannot follow `a`.
pub fn follows(a: &Sighting, b: &Sighting) -> Option<(u32, u64)> {
    if a.isn != b.isn || a.src.is_ipv4() != b.src.is_ipv4() {
        return None;
    }
    // NAT keeps TSval and the IPv4 identification: a difference means another transmission.
    if matches!((a.tsval, b.tsval), (Some(x), Some(y)) if x != y)
        || matches!((a.ip_id, b.ip_id), (Some(x), Some(y)) if x != y)
    {
        return None;
    }
    // Small preferences between otherwise equal candidates: ports usually survive NAT.
    let bonus = u32::from(a.sport == b.sport) * 2 + u32::from(a.dst == b.dst);
    if a.node == b.node {
        if a.iface == b.iface
            && ((a.dir == b.dir && a.dir_known && b.dir_known)
                || (a.same_tuple(b) && a.ttl == b.ttl))
        {
            // The same capture point twice (a retransmission, or one packet in two captures of
            // the same interface): never a next hop.
            return None;
        }
        let gap = b.ts_ns.checked_sub(a.ts_ns)?;
        if gap > SAME_NODE_WINDOW_NS {
            return None;
        }
        if gap == 0
            && a.dir_known
            && b.dir_known
            && a.dir == Direction::Out
            && b.dir == Direction::In
        {
            return None; // equal kernel timestamps: in comes before out
        }
        if a.same_tuple(b) && a.ttl == b.ttl {
            return Some((100 * 16, gap)); // the same packet at another capture point
        }
        if a.may_be_in() && b.may_be_out() {
            if b.ttl.checked_add(1) == Some(a.ttl) {
                return Some((80 * 16 + bonus, gap)); // routed through the node; NAT allowed
            }
            if b.ttl == a.ttl {
                return Some((40 * 16 + bonus, gap)); // bridged, NAT by br_netfilter
            }
        }
        if a.dir_known && b.dir_known && a.dir == b.dir && a.ttl == b.ttl && same_transmission(a, b)
        {
            // br_netfilter NATs between a bridge port and the bridge device: a pod's SYN is
            // seen `in` on its veth, then DNATed `in` on cbr0; a hairpin SYN leaves `out` by
            // cbr0, then MASQUERADEd `out` by the veth. Source and destination may both change,
            // so only the ids the kernel keeps vouch for the step.
            return Some((30 * 16 + bonus, gap));
        }
        None
    } else {
        if !(a.may_be_out() && b.may_be_in()) || b.ttl > a.ttl {
            return None;
        }
        let gap = u64::from(a.ttl - b.ttl);
        if a.same_tuple(b) {
            return Some((90 * 16, gap)); // address continuity on the wire between nodes
        }
        // An uncaptured rewrite in between (a load balancer): only with the TSval of both
        // sightings as witness.
        let witness = matches!((a.tsval, b.tsval), (Some(x), Some(y)) if x == y);
        if witness && (a.same_source(b) || a.same_destination(b)) {
            return Some((20 * 16 + bonus, gap));
        }
        None
    }
}

/// Whether two sightings carry every id a transmission keeps through NAT: the TSval, and the
/// IPv4 identification (IPv6 has none). Within one node and one second, that is one SYN.
fn same_transmission(a: &Sighting, b: &Sighting) -> bool {
    let ids = matches!((a.tsval, b.tsval), (Some(x), Some(y)) if x == y);
    let ip_id = match (a.ip_id, b.ip_id) {
        (Some(x), Some(y)) => x == y,
        (None, None) => !a.src.is_ipv4(),
        _ => false,
    };
    ids && ip_id
}

/// Two captures of one interface at once (the probe and tcpdump) see each packet twice.
pub const DUPLICATE_WINDOW_NS: u64 = 10_000_000;

/// Whether `b` is the same packet as `a` at the same capture point, recorded by another capture.
fn duplicate(a: &Sighting, b: &Sighting) -> bool {
    a.node == b.node
        && a.iface == b.iface
        && a.same_tuple(b)
        && a.ttl == b.ttl
        && a.ip_id == b.ip_id
        && (a.dir == b.dir || !a.dir_known || !b.dir_known)
        && a.ts_ns.abs_diff(b.ts_ns) <= DUPLICATE_WINDOW_NS
}

/// Links the sightings of one ISN/TSval group into paths: best edges first, each sighting with
/// at most one predecessor and one successor, never a cycle.
fn link(sightings: &[Sighting], group: &[usize]) -> Vec<Chain> {
    // Keep one sighting per packet and capture point, preferring one that knows its direction.
    let mut kept: Vec<usize> = Vec::with_capacity(group.len());
    for &i in group {
        let s = &sightings[i];
        match kept.iter_mut().find(|k| duplicate(&sightings[**k], s)) {
            Some(k) if !sightings[*k].dir_known && s.dir_known => *k = i,
            Some(_) => {}
            None => kept.push(i),
        }
    }
    let group = &kept[..];
    let m = group.len();
    if m == 1 {
        return vec![Chain {
            hops: vec![group[0]],
            retries: 0,
        }];
    }
    let mut edges = Vec::new();
    for (ai, &a) in group.iter().enumerate() {
        for (bi, &b) in group.iter().enumerate() {
            if ai != bi {
                if let Some((score, gap)) = follows(&sightings[a], &sightings[b]) {
                    edges.push((Reverse(score), gap, ai, bi));
                }
            }
        }
    }
    edges.sort_unstable();
    let mut next = vec![usize::MAX; m];
    let mut prev = vec![usize::MAX; m];
    let mut root: Vec<usize> = (0..m).collect();
    for &(_, _, a, b) in &edges {
        if next[a] != usize::MAX || prev[b] != usize::MAX {
            continue;
        }
        let (ra, rb) = (find(&mut root, a), find(&mut root, b));
        if ra == rb {
            continue;
        }
        root[rb] = ra;
        next[a] = b;
        prev[b] = a;
    }
    (0..m)
        .filter(|&i| prev[i] == usize::MAX)
        .map(|head| {
            let mut hops = vec![group[head]];
            let mut at = head;
            while next[at] != usize::MAX && hops.len() <= m {
                at = next[at];
                hops.push(group[at]);
            }
            Chain { hops, retries: 0 }
        })
        .collect()
}

fn find(root: &mut [usize], mut i: usize) -> usize {
    while root[i] != i {
        root[i] = root[root[i]];
        i = root[i];
    }
    i
}

/// Folds retransmissions into one connection: chains of one ISN whose first hop is the same
/// client tuple at the same capture point, within the retry window. The most complete
/// transmission stands for the connection.
fn merge_retries(sightings: &[Sighting], mut chains: Vec<Chain>) -> Vec<Chain> {
    if chains.len() < 2 {
        return chains;
    }
    let head = |c: &Chain| sightings[c.hops[0]];
    chains.sort_by_key(|c| {
        let h = head(c);
        (h.node, h.iface, h.src, h.sport, h.dst, h.dport, h.ts_ns)
    });
    let mut merged: Vec<Chain> = Vec::with_capacity(chains.len());
    let mut last_ts = 0u64;
    for chain in chains {
        let h = head(&chain);
        let retry = merged.last().is_some_and(|m: &Chain| {
            let mh = head(m);
            mh.node == h.node
                && mh.iface == h.iface
                && mh.same_tuple(&h)
                && h.ts_ns.saturating_sub(last_ts) <= RETRY_WINDOW_NS
        });
        last_ts = h.ts_ns;
        match merged.last_mut() {
            Some(m) if retry => {
                m.retries += 1 + chain.retries;
                if chain.hops.len() > m.hops.len() {
                    m.hops = chain.hops;
                }
            }
            _ => merged.push(chain),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn s(
        node: u32,
        iface: u32,
        dir: Direction,
        ts: u64,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        ttl: u8,
    ) -> Sighting {
        Sighting {
            ts_ns: ts,
            node,
            iface,
            dir,
            dir_known: true,
            src: ip(src),
            sport,
            dst: ip(dst),
            dport,
            isn: 7,
            tsval: Some(99),
            ttl,
            ip_id: Some(1),
        }
    }

    use Direction::{In, Out};

    /// node 0 receives on iface 10, DNAT+MASQUERADE, sends out iface 10 to node 1, which
    /// forwards to cbr0 (11) and the pod's veth (12).
    fn cross_node() -> Vec<Sighting> {
        vec![
            s(
                0,
                10,
                In,
                1_000,
                "198.51.100.7",
                41770,
                "192.0.2.10",
                31908,
                64,
            ),
            s(
                0,
                10,
                Out,
                1_050,
                "192.0.2.10",
                41770,
                "10.244.1.5",
                8080,
                63,
            ),
            s(1, 10, In, 5, "192.0.2.10", 41770, "10.244.1.5", 8080, 63),
            s(1, 11, Out, 30, "192.0.2.10", 41770, "10.244.1.5", 8080, 62),
            s(1, 12, Out, 31, "192.0.2.10", 41770, "10.244.1.5", 8080, 62),
        ]
    }

    #[test]
    fn cross_node_path_is_ordered_without_trusting_clocks() {
        let mut input = cross_node();
        input.reverse();
        let c = correlate(&input);
        assert_eq!(c.chains.len(), 1);
        let order: Vec<(u32, u32)> = c.chains[0]
            .hops
            .iter()
            .map(|&i| (input[i].node, input[i].iface))
            .collect();
        assert_eq!(order, vec![(0, 10), (0, 10), (1, 10), (1, 11), (1, 12)]);
        assert_eq!(input[c.chains[0].hops[0]].dir, In);
    }

    #[test]
    fn retransmission_is_a_retry_of_the_same_connection() {
        let mut input = cross_node();
        let mut again = input[0];
        again.ts_ns += 1_000_000_000;
        again.tsval = Some(1099);
        again.ip_id = Some(2);
        input.push(again);
        let c = correlate(&input);
        assert_eq!(c.chains.len(), 1);
        assert_eq!(c.chains[0].retries, 1);
        assert_eq!(c.chains[0].hops.len(), 5);
    }

    #[test]
    fn same_isn_from_two_clients_does_not_merge() {
        let mut input = cross_node();
        let other = [
            s(
                0,
                10,
                In,
                1_020,
                "203.0.113.9",
                5555,
                "192.0.2.10",
                31908,
                60,
            ),
            s(
                0,
                10,
                Out,
                1_060,
                "192.0.2.10",
                5555,
                "10.244.1.5",
                8080,
                59,
            ),
        ];
        input.extend(other.iter().map(|o| Sighting {
            tsval: None,
            ip_id: Some(9),
            ..*o
        }));
        let c = correlate(&input);
        assert_eq!(c.chains.len(), 2);
        for chain in &c.chains {
            let client = input[chain.hops[0]].src;
            let sport = input[chain.hops[0]].sport;
            assert!(
                chain.hops.iter().all(|&i| input[i].sport == sport),
                "{client}"
            );
        }
    }

    /// A pod reaching its own Service (node 0: veth 12, cbr0 11): in on the veth toward the
    /// ClusterIP, DNAT, out on cbr0, MASQUERADE, out on the veth again. One SYN, one chain.
    fn hairpin() -> Vec<Sighting> {
        vec![
            s(0, 12, In, 100, "10.244.0.5", 53674, "10.96.0.10", 80, 64),
            s(0, 11, Out, 126, "10.244.0.5", 53674, "10.244.0.5", 8080, 64),
            s(0, 12, Out, 144, "10.244.0.1", 2718, "10.244.0.5", 8080, 64),
        ]
    }

    fn path(input: &[Sighting], chain: &Chain) -> Vec<(u32, Direction)> {
        chain
            .hops
            .iter()
            .map(|&i| (input[i].iface, input[i].dir))
            .collect()
    }

    #[test]
    fn hairpin_nat_between_bridge_and_port_is_one_chain() {
        for reversed in [false, true] {
            let mut input = hairpin();
            if reversed {
                input.reverse();
            }
            let c = correlate(&input);
            assert_eq!(c.chains.len(), 1, "{:?}", c.chains);
            assert_eq!(
                path(&input, &c.chains[0]),
                vec![(12, In), (11, Out), (12, Out)]
            );
        }
    }

    /// A pod's SYN to a load balancer address on node 0: in on its veth (12), DNATed by
    /// br_netfilter as it enters cbr0 (11, still `in`), routed out of the uplink (10).
    #[test]
    fn dnat_between_port_and_bridge_on_the_way_in_is_one_chain() {
        let input = vec![
            s(
                0,
                10,
                Out,
                470,
                "10.244.0.20",
                42626,
                "10.244.1.10",
                8080,
                63,
            ),
            s(
                0,
                11,
                In,
                453,
                "10.244.0.20",
                42626,
                "10.244.1.10",
                8080,
                64,
            ),
            s(
                0,
                12,
                In,
                428,
                "10.244.0.20",
                42626,
                "203.0.113.100",
                80,
                64,
            ),
        ];
        let c = correlate(&input);
        assert_eq!(c.chains.len(), 1, "{:?}", c.chains);
        assert_eq!(
            path(&input, &c.chains[0]),
            vec![(12, In), (11, In), (10, Out)]
        );
    }

    /// The same shape from two connections that only share the ISN stays apart: the step
    /// between two sightings of one direction needs the TSval and the IPv4 id to agree.
    #[test]
    fn same_direction_steps_need_every_id() {
        let mut input = hairpin();
        input[2].tsval = Some(100);
        assert_eq!(correlate(&input).chains.len(), 2);
        let mut input = hairpin();
        input[2].ip_id = Some(2);
        assert_eq!(correlate(&input).chains.len(), 2);
        let mut input = hairpin();
        input[2].ip_id = None;
        assert_eq!(correlate(&input).chains.len(), 2);
        // Beyond the window on one node it is another transmission.
        let mut input = hairpin();
        input[2].ts_ns += SAME_NODE_WINDOW_NS;
        assert_eq!(correlate(&input).chains.len(), 2);
    }

    /// A capture whose snap length cut the TCP options (node 1's) joins the hops of a capture
    /// that has them (node 0's) by ISN, address continuity, TTL and IPv4 id.
    #[test]
    fn sightings_without_tsval_join_those_with_it() {
        let mut input = cross_node();
        for hop in &mut input[2..] {
            hop.tsval = None;
        }
        let c = correlate(&input);
        assert_eq!(c.chains.len(), 1, "{:?}", c.chains);
        assert_eq!(c.chains[0].hops.len(), 5);
        // Two transmissions of node 0 (TSvals 99 and 1099), one each of node 1 without TSval:
        // each joins the transmission its IPv4 id names; the later is a retry.
        let mut again: Vec<Sighting> = cross_node()
            .into_iter()
            .map(|s| Sighting {
                ts_ns: s.ts_ns + 1_000_000_000,
                tsval: s.tsval.map(|t| t + 1000),
                ip_id: Some(2),
                ..s
            })
            .collect();
        for hop in &mut again[2..] {
            hop.tsval = None;
        }
        input.extend(again);
        let c = correlate(&input);
        assert_eq!(c.chains.len(), 1, "{:?}", c.chains);
        assert_eq!((c.chains[0].hops.len(), c.chains[0].retries), (5, 1));
        for &i in &c.chains[0].hops {
            assert_eq!(input[i].ip_id, input[c.chains[0].hops[0]].ip_id);
        }
    }

    /// An unseen rewrite between nodes needs the TSval on both sides: a sighting whose TSval
    /// is unknown is no witness.
    #[test]
    fn an_unseen_rewrite_needs_the_tsval_on_both_sides() {
        let sent = s(0, 10, Out, 0, "198.51.100.7", 41770, "203.0.113.1", 80, 60);
        let received = s(1, 10, In, 0, "10.0.0.4", 41770, "203.0.113.1", 80, 58);
        assert!(follows(&sent, &received).is_some());
        for (a, b) in [
            (
                Sighting {
                    tsval: None,
                    ..sent
                },
                received,
            ),
            (
                sent,
                Sighting {
                    tsval: None,
                    ..received
                },
            ),
        ] {
            assert_eq!(follows(&a, &b), None);
            assert_eq!(correlate(&[a, b]).chains.len(), 2);
        }
    }

    #[test]
    fn huge_groups_stay_bounded() {
        let one = s(0, 10, In, 0, "198.51.100.7", 1, "192.0.2.10", 80, 64);
        let input: Vec<Sighting> = (0..5_000u64)
            .map(|i| Sighting {
                ts_ns: i,
                sport: (i % 60_000) as u16,
                ..one
            })
            .collect();
        let c = correlate(&input);
        assert_eq!(c.chains.iter().map(|c| c.hops.len()).sum::<usize>(), 5_000);
        assert!(!c.warnings.is_empty());
    }
}
