//! Which Ethernet addresses are the capturing host's own, learnt from one capture file's frames,
//! so that a plain Ethernet capture (`tcpdump -i eth0 -w`, which records no direction) still
//! tells a frame the host sent (`out`: from its address) from one it received (`in`: to it).
//!
//! Two kinds of evidence, both from the file alone:
//! - a SYN the host routed: seen arriving, then leaving with a TTL one lower (the same ISN,
//!   TSval and IPv4 id within a second). It arrived addressed to the host's address on that
//!   link and left from the host's address on the other: both are the host's, on every
//!   interface of the file (a bridge port carries the bridge's address).
//! - the one address on every unicast frame of an interface, once frames with two different
//!   peers have been seen: a host that does not capture promiscuously sees only frames to and
//!   from itself. On the node's end of a pod link (a veth by its name) that address is the
//!   pod's, the far end. A frame with neither candidate (a promiscuous capture, a mirror
//!   port) ends this evidence for the interface.
//!
//! Both assume the file was taken on a host, not on a switch's mirror port.

use super::node_ifaces::Mac;
use super::SAME_NODE_WINDOW_NS;
use realip_probe::parse::Macs;
use realip_probe::wire::Direction;
use std::collections::{HashMap, VecDeque};

/// SYNs remembered to find the routed copy of one: at most this many, none older than a second.
const RECENT: usize = 65_536;

/// Same ISN, TSval and IPv4 identification: one transmission of a SYN.
type Transmission = (u32, Option<u32>, Option<u16>);

#[derive(Debug, Clone, Copy)]
struct Seen {
    ts_ns: u64,
    ttl: u8,
    macs: Macs,
}

/// The addresses on every unicast frame of one interface.
#[derive(Debug)]
struct EveryFrame {
    /// `None` before the first unicast frame; then the addresses every frame carried so far.
    candidates: Option<Vec<Mac>>,
    /// The node's end of a pod link: the one address on every frame is the pod's.
    pod_link: bool,
}

#[derive(Debug, Default)]
pub struct HostMacs {
    /// The host's own addresses, proven by SYNs it routed.
    host: Vec<Mac>,
    recent: HashMap<Transmission, Vec<Seen>>,
    order: VecDeque<(u64, Transmission)>,
    every: HashMap<u32, EveryFrame>,
}

/// `out` when `macs` come from one of `own`, `in` when they go to one.
fn by_owner(own: &[Mac], macs: &Macs) -> Option<Direction> {
    match (own.contains(&macs.src), own.contains(&macs.dst)) {
        (true, false) => Some(Direction::Out),
        (false, true) => Some(Direction::In),
        _ => None,
    }
}

impl HostMacs {
    /// Any Ethernet frame of interface `iface` (an id within the file); `pod_link` says whether
    /// that interface is the node's end of a pod link, asked once per interface.
    pub fn frame(&mut self, iface: u32, macs: &Macs, pod_link: impl FnOnce() -> bool) {
        if !macs.unicast() || macs.src == macs.dst {
            return;
        }
        let every = self.every.entry(iface).or_insert_with(|| EveryFrame {
            candidates: None,
            pod_link: pod_link(),
        });
        match &mut every.candidates {
            None => every.candidates = Some(vec![macs.src, macs.dst]),
            Some(candidates) => candidates.retain(|m| *m == macs.src || *m == macs.dst),
        }
    }

    /// A SYN of the file: with a copy one hop away, it proves two of the host's addresses.
    pub fn syn(&mut self, ts_ns: u64, macs: &Macs, id: Transmission, ttl: u8) {
        let seen = Seen {
            ts_ns,
            ttl,
            macs: *macs,
        };
        let routed = self.recent.get(&id).into_iter().flatten().find_map(|x| {
            let near = x.ts_ns.abs_diff(ts_ns) <= SAME_NODE_WINDOW_NS;
            match (
                x.ttl.checked_sub(1) == Some(ttl),
                ttl.checked_sub(1) == Some(x.ttl),
            ) {
                (true, _) if near => Some((*x, seen)),
                (_, true) if near => Some((seen, *x)),
                _ => None,
            }
        });
        if let Some((received, sent)) = routed.filter(|(received, _)| received.macs.unicast()) {
            for mac in [received.macs.dst, sent.macs.src] {
                if !self.host.contains(&mac) {
                    self.host.push(mac);
                }
            }
        }
        self.remember(id, seen);
    }

    fn remember(&mut self, id: Transmission, seen: Seen) {
        self.recent.entry(id).or_default().push(seen);
        self.order.push_back((seen.ts_ns, id));
        while let Some(&(ts, old)) = self.order.front() {
            let stale = ts.saturating_add(SAME_NODE_WINDOW_NS) < seen.ts_ns;
            if !stale && self.order.len() <= RECENT {
                break;
            }
            self.order.pop_front();
            if let Some(list) = self.recent.get_mut(&old) {
                list.retain(|s| s.ts_ns != ts);
                if list.is_empty() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// The direction of a frame of interface `iface`, when the evidence so far tells.
    pub fn direction(&self, iface: u32, macs: &Macs) -> Option<Direction> {
        if let Some(dir) = by_owner(&self.host, macs) {
            return Some(dir);
        }
        let every = self.every.get(&iface)?;
        let [one] = every.candidates.as_deref()? else {
            return None;
        };
        let dir = by_owner(std::slice::from_ref(one), macs)?;
        Some(match (every.pod_link, dir) {
            (false, dir) => dir,
            (true, Direction::In) => Direction::Out,
            (true, Direction::Out) => Direction::In,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Mac = [2, 0, 0, 0, 0x0a, 5];
    const HOST_EXT: Mac = [2, 0, 0, 0, 0x0a, 1];
    const PEER: Mac = [2, 0, 0, 0, 0x0b, 5];
    const GATEWAY: Mac = [2, 0, 0, 0, 0, 1];
    const POD: Mac = [2, 0, 0, 0, 1, 5];

    fn macs(src: Mac, dst: Mac) -> Macs {
        Macs { src, dst }
    }

    #[test]
    fn the_address_on_every_frame_is_the_host_once_two_peers_were_seen() {
        let mut h = HostMacs::default();
        h.frame(0, &macs(HOST, PEER), || false);
        h.frame(0, &macs(PEER, HOST), || false);
        // One peer only: either end could be the host.
        assert_eq!(h.direction(0, &macs(HOST, PEER)), None);
        // Broadcasts and multicasts come from anyone on the link: they prove nothing.
        h.frame(0, &macs(GATEWAY, [0xff; 6]), || false);
        assert_eq!(h.direction(0, &macs(HOST, PEER)), None);
        h.frame(0, &macs(GATEWAY, HOST), || false);
        assert_eq!(h.direction(0, &macs(HOST, PEER)), Some(Direction::Out));
        assert_eq!(h.direction(0, &macs(GATEWAY, HOST)), Some(Direction::In));
        // Another interface of the file knows nothing yet.
        assert_eq!(h.direction(1, &macs(HOST, PEER)), None);
        // A frame between two others: the capture was promiscuous, the evidence is gone.
        h.frame(0, &macs(PEER, GATEWAY), || false);
        assert_eq!(h.direction(0, &macs(HOST, PEER)), None);
    }

    #[test]
    fn on_a_pod_link_the_address_on_every_frame_is_the_pods() {
        let mut h = HostMacs::default();
        h.frame(3, &macs(POD, HOST), || true);
        h.frame(3, &macs(PEER, POD), || unreachable!("asked once"));
        assert_eq!(h.direction(3, &macs(POD, HOST)), Some(Direction::In));
        assert_eq!(h.direction(3, &macs(HOST, POD)), Some(Direction::Out));
    }

    #[test]
    fn a_routed_syn_proves_the_host_addresses_on_both_links() {
        let mut h = HostMacs::default();
        let id = (7, Some(99), Some(1));
        // Sent first in the file (dumpcap writes interfaces out of order), received second.
        h.syn(1_050, &macs(HOST, PEER), id, 63);
        assert_eq!(h.direction(0, &macs(HOST, PEER)), None);
        h.syn(1_000, &macs(GATEWAY, HOST_EXT), id, 64);
        for iface in [0, 1, 7] {
            assert_eq!(h.direction(iface, &macs(HOST, PEER)), Some(Direction::Out));
            assert_eq!(
                h.direction(iface, &macs(GATEWAY, HOST_EXT)),
                Some(Direction::In)
            );
        }
        // A bridge port carries the bridge's address: the host's as well.
        assert_eq!(h.direction(9, &macs(POD, HOST)), Some(Direction::In));
    }

    #[test]
    fn copies_that_are_not_one_routed_hop_prove_nothing() {
        let mut h = HostMacs::default();
        let id = (7, Some(99), Some(1));
        // Bridged (same TTL), two hops apart, another transmission, or a second later.
        h.syn(0, &macs(GATEWAY, HOST), id, 64);
        h.syn(10, &macs(HOST, PEER), id, 64);
        h.syn(20, &macs(HOST, PEER), id, 62);
        h.syn(30, &macs(HOST, PEER), (7, Some(100), Some(1)), 63);
        h.syn(2 * SAME_NODE_WINDOW_NS, &macs(HOST, PEER), id, 63);
        assert_eq!(h.direction(0, &macs(HOST, PEER)), None);
        assert!(h.host.is_empty());
    }

    #[test]
    fn memory_of_recent_syns_is_bounded() {
        let mut h = HostMacs::default();
        for i in 0..(RECENT as u64 + 10) {
            h.syn(i, &macs(HOST, PEER), (i as u32, None, None), 64);
        }
        assert!(h.order.len() <= RECENT);
        assert!(h.recent.len() <= RECENT);
        // A second later everything before is forgotten.
        h.syn(
            10 * SAME_NODE_WINDOW_NS,
            &macs(HOST, PEER),
            (1, None, None),
            64,
        );
        assert_eq!(h.order.len(), 1);
    }
}
