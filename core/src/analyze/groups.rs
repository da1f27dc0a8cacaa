//! Sightings held until their connection can have no more: grouped by ISN, a group closes once
//! the input has moved a window past its newest sighting (room for retransmissions and for
//! clock skew between nodes). A closed group is correlated at once; its connections wait, as
//! compact chains, until nothing earlier can still come, then leave in output order.
//!
//! Unrelated connections that share an ISN (frequent in a busy capture: 2^32 values) get groups
//! of their own as long as no sighting could link them, so that one collision does not hold a
//! group, and every connection after it, open for another window.
//!
//! Memory is therefore bounded by the SYNs inside one window, not by the length of the capture.
//! Without a window (the library default for `trace` and `lab`, whose inputs are short and not
//! time-merged) every group stays open until [`Groups::close_all`].

use super::correlate;
use super::l7::{self, Fact};
use super::model::L7ClientIp;
use super::sighting::{Names, Sighting};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// Sightings one ISN may gather before its group is closed anyway: only a scanner reusing one
/// ISN gets there, and correlation cuts such groups into windows of its own.
pub const MAX_OPEN: usize = 1024;

#[derive(Debug)]
struct Group {
    isn: u32,
    sightings: Vec<Sighting>,
    first_ts: u64,
    last_ts: u64,
}

/// The open groups of one ISN: almost always one, kept without an allocation.
#[derive(Debug)]
enum Ids {
    One(u64),
    Many(Vec<u64>),
}

impl Ids {
    fn as_slice(&self) -> &[u64] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(ids) => ids,
        }
    }

    fn push(&mut self, id: u64) {
        match self {
            Ids::One(first) => *self = Ids::Many(vec![*first, id]),
            Ids::Many(ids) => ids.push(id),
        }
    }

    /// Removes `id`; whether any is left.
    fn remove(&mut self, id: u64) -> bool {
        match self {
            Ids::One(one) => *one != id,
            Ids::Many(ids) => {
                ids.retain(|&other| other != id);
                match ids[..] {
                    [] => false,
                    [last] => {
                        *self = Ids::One(last);
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

impl Group {
    /// Whether `s` could be linked to a sighting held here: a next or previous hop, or the same
    /// capture point and tuple (a retransmission, or the same packet captured twice). A group
    /// with no sighting yet (only L7 facts) takes any.
    fn may_hold(&self, s: &Sighting) -> bool {
        self.sightings.is_empty()
            || self.sightings.iter().any(|x| {
                (x.node == s.node && x.iface == s.iface && x.same_tuple(s))
                    || correlate::follows(x, s).is_some()
                    || correlate::follows(s, x).is_some()
            })
    }
}

/// Output order: by the first capture point's clock, then by names (not by ids, which depend
/// on the order files were read in), then by the client tuple.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    ts: u64,
    node: Arc<str>,
    iface: Arc<str>,
    isn: u32,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

/// One connection, correlated: its sightings in path order.
#[derive(Debug)]
pub struct Ready {
    key: Key,
    pub hops: Vec<Sighting>,
    pub retries: u32,
    pub l7_client: Option<L7ClientIp>,
}

impl PartialEq for Ready {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

#[derive(Debug, Default)]
pub struct Groups {
    /// How far behind the newest sighting a group's newest may be and still grow; `None`: no
    /// group closes before `close_all`.
    window: Option<u64>,
    /// Open groups by id.
    open: HashMap<u64, Group>,
    /// Ids of the open groups of each ISN.
    by_isn: HashMap<u32, Ids>,
    next_id: u64,
    /// L7 facts of open groups, by ISN: few captures have any.
    l7: HashMap<u32, Vec<Fact>>,
    /// (last_ts + window, id) per open group, checked lazily: a group that grew since is
    /// pushed again with its new deadline.
    deadlines: BinaryHeap<Reverse<(u64, u64)>>,
    /// (first_ts, id) of open groups: no connection of theirs starts earlier.
    firsts: BTreeSet<(u64, u64)>,
    ready: BinaryHeap<Reverse<Ready>>,
    /// The newest sighting's time.
    watermark: u64,
    /// The newest sighting of any group closed by the window: a sighting no later than a window
    /// after it may belong to a connection already closed.
    closed_through: Option<u64>,
    /// Such sightings: the input was not in time order.
    late: u64,
    finished: bool,
    pub warnings: Vec<String>,
}

impl Groups {
    pub fn new(window: Option<u64>) -> Self {
        Groups {
            window,
            ..Groups::default()
        }
    }

    /// Sightings that came too late for their window so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn add(&mut self, s: Sighting, names: &Names) {
        if let (Some(window), Some(closed)) = (self.window, self.closed_through) {
            if s.ts_ns <= closed.saturating_add(window) {
                self.late += 1;
            }
        }
        self.watermark = self.watermark.max(s.ts_ns);
        let id = self.place(&s);
        let Some(group) = self.widen(id, s.ts_ns, s.ts_ns) else {
            return;
        };
        group.sightings.push(s);
        if group.sightings.len() >= MAX_OPEN {
            self.close(id, names);
        }
        self.expire(names);
    }

    /// Keeps an L7 fact with the sightings of its ISN, which may come before or after it.
    pub fn add_l7(&mut self, isn: u32, ts_ns: u64, fact: Fact) {
        if !self.by_isn.contains_key(&isn) {
            self.open_group(isn, ts_ns);
        }
        self.l7.entry(isn).or_default().push(fact);
    }

    /// The open group `s` belongs to: the one of its ISN holding a sighting it could be linked
    /// to (several such are merged), else a new one.
    fn place(&mut self, s: &Sighting) -> u64 {
        let mut found = None;
        let mut more = Vec::new();
        for &id in self.by_isn.get(&s.isn).map_or(&[][..], Ids::as_slice) {
            if self.open.get(&id).is_some_and(|g| g.may_hold(s)) {
                match found {
                    None => found = Some(id),
                    Some(_) => more.push(id),
                }
            }
        }
        let Some(keep) = found else {
            return self.open_group(s.isn, s.ts_ns);
        };
        for other in more {
            self.merge(keep, other);
        }
        keep
    }

    fn open_group(&mut self, isn: u32, ts_ns: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(window) = self.window {
            self.deadlines
                .push(Reverse((ts_ns.saturating_add(window), id)));
        }
        self.firsts.insert((ts_ns, id));
        match self.by_isn.get_mut(&isn) {
            Some(ids) => ids.push(id),
            None => {
                self.by_isn.insert(isn, Ids::One(id));
            }
        }
        self.open.insert(
            id,
            Group {
                isn,
                sightings: Vec::with_capacity(2),
                first_ts: ts_ns,
                last_ts: ts_ns,
            },
        );
        id
    }

    /// Moves group `other` into `keep`: a sighting links them.
    fn merge(&mut self, keep: u64, other: u64) {
        let Some(from) = self.forget(other) else {
            return;
        };
        if let Some(group) = self.widen(keep, from.first_ts, from.last_ts) {
            group.sightings.extend(from.sightings);
        }
    }

    /// Makes group `id` span `first..=last` too, keeping the index of first sightings right.
    fn widen(&mut self, id: u64, first: u64, last: u64) -> Option<&mut Group> {
        let group = self.open.get_mut(&id)?;
        if first < group.first_ts {
            self.firsts.remove(&(group.first_ts, id));
            self.firsts.insert((first, id));
            group.first_ts = first;
        }
        group.last_ts = group.last_ts.max(last);
        Some(group)
    }

    /// Takes group `id` out of every index.
    fn forget(&mut self, id: u64) -> Option<Group> {
        let group = self.open.remove(&id)?;
        self.firsts.remove(&(group.first_ts, id));
        if self
            .by_isn
            .get_mut(&group.isn)
            .is_some_and(|ids| !ids.remove(id))
        {
            self.by_isn.remove(&group.isn);
        }
        Some(group)
    }

    /// Closes the groups the watermark has left a window behind.
    fn expire(&mut self, names: &Names) {
        let Some(window) = self.window else {
            return;
        };
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline >= self.watermark {
                break;
            }
            self.deadlines.pop();
            let Some(group) = self.open.get(&id) else {
                continue; // closed already
            };
            let due = group.last_ts.saturating_add(window);
            if due >= self.watermark {
                self.deadlines.push(Reverse((due, id)));
                continue;
            }
            self.closed_through = self.closed_through.max(Some(group.last_ts));
            self.close(id, names);
        }
    }

    fn close(&mut self, id: u64, names: &Names) {
        let Some(group) = self.forget(id) else {
            return;
        };
        let isn = group.isn;
        // The last open group of its ISN takes the facts along; others share them.
        let facts = if self.by_isn.contains_key(&isn) {
            self.l7.get(&isn).cloned().unwrap_or_default()
        } else {
            self.l7.remove(&isn).unwrap_or_default()
        };
        let correlation = correlate::correlate(&group.sightings);
        self.warnings.extend(correlation.warnings);
        for chain in correlation.chains {
            let hops: Vec<Sighting> = chain.hops.iter().map(|&i| group.sightings[i]).collect();
            let Some(first) = hops.first() else {
                continue;
            };
            let key = Key {
                ts: first.ts_ns,
                node: names.shared(first.node),
                iface: names.shared(first.iface),
                isn,
                src: first.src,
                sport: first.sport,
                dst: first.dst,
                dport: first.dport,
            };
            let l7_client = l7::client_of(&facts, &hops);
            self.ready.push(Reverse(Ready {
                key,
                hops,
                retries: chain.retries,
                l7_client,
            }));
        }
    }

    /// The input has ended: every group is complete. They are closed lazily, earliest first,
    /// by [`Groups::next`], so that the end of a large input streams out like the rest.
    pub fn close_all(&mut self) {
        self.deadlines.clear();
        self.finished = true;
    }

    /// The input has ended and every connection has been handed out.
    pub fn is_drained(&self) -> bool {
        self.finished && self.firsts.is_empty() && self.ready.is_empty()
    }

    /// The next connection in output order, once nothing that is still open or still to come
    /// could start before it.
    pub fn next(&mut self, names: &Names) -> Option<Ready> {
        loop {
            let open = self.firsts.first().copied();
            let bound = match (self.finished, self.window) {
                (true, _) => open.map_or(u64::MAX, |(ts, _)| ts),
                (false, Some(window)) => open
                    .map_or(u64::MAX, |(ts, _)| ts)
                    .min(self.watermark.saturating_sub(window)),
                (false, None) => return None,
            };
            if self
                .ready
                .peek()
                .is_some_and(|Reverse(head)| head.key.ts < bound)
            {
                return self.ready.pop().map(|Reverse(ready)| ready);
            }
            match open {
                // At the end: the earliest open group may hold the next connection.
                Some((_, id)) if self.finished => self.close(id, names),
                None if self.finished => return self.ready.pop().map(|Reverse(ready)| ready),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_probe::wire::Direction;

    const SECOND: u64 = 1_000_000_000;

    fn syn(names: &mut Names, node: &str, ts: u64, isn: u32, sport: u16) -> Sighting {
        Sighting {
            ts_ns: ts,
            node: names.id(node),
            iface: names.id("eth0"),
            dir: Direction::In,
            dir_known: true,
            src: "198.51.100.7".parse().unwrap(),
            sport,
            dst: "192.0.2.10".parse().unwrap(),
            dport: 80,
            isn,
            tsval: Some(isn),
            ttl: 64,
            ip_id: None,
        }
    }

    #[test]
    fn groups_close_a_window_after_their_last_sighting_and_leave_in_order() {
        let mut names = Names::default();
        let mut groups = Groups::new(Some(10 * SECOND));
        let a = syn(&mut names, "node-b", 5 * SECOND, 1, 1000);
        let b = syn(&mut names, "node-a", 2 * SECOND, 2, 1001);
        groups.add(a, &names);
        groups.add(b, &names);
        assert_eq!(groups.open.len(), 2);
        assert!(groups.next(&names).is_none(), "nothing is closed yet");
        // Time moves on past both windows: both close, the earlier first.
        let c = syn(&mut names, "node-a", 30 * SECOND, 3, 1002);
        groups.add(c, &names);
        assert_eq!(groups.open.len(), 1);
        assert_eq!(groups.next(&names).map(|r| r.key.isn), Some(2));
        assert_eq!(groups.next(&names).map(|r| r.key.isn), Some(1));
        assert!(groups.next(&names).is_none(), "isn 3 is still open");
        assert_eq!(groups.late(), 0);
        groups.close_all();
        assert_eq!(groups.next(&names).map(|r| r.key.isn), Some(3));
        assert!(groups.next(&names).is_none());
    }

    #[test]
    fn a_group_that_grows_stays_open_and_late_sightings_are_counted() {
        let mut names = Names::default();
        let mut groups = Groups::new(Some(10 * SECOND));
        groups.add(syn(&mut names, "n", 0, 7, 1000), &names);
        groups.add(syn(&mut names, "n", 8 * SECOND, 9, 1001), &names);
        // A retransmission 8 s later keeps isn 7 open past its first deadline.
        groups.add(syn(&mut names, "n", 8 * SECOND, 7, 1000), &names);
        groups.add(syn(&mut names, "n", 15 * SECOND, 8, 1002), &names);
        assert!(groups.by_isn.contains_key(&7));
        groups.add(syn(&mut names, "n", 19 * SECOND, 8, 1002), &names);
        assert!(!groups.by_isn.contains_key(&7) && !groups.by_isn.contains_key(&9));
        let first = groups.next(&names).expect("isn 7 is ready");
        assert_eq!((first.key.isn, first.retries), (7, 1));
        groups.add(syn(&mut names, "n", SECOND, 5, 1003), &names);
        assert_eq!(groups.late(), 1);
    }

    /// Memory follows the window, not the capture: 1,000 s of 100 connections a second.
    #[test]
    fn a_long_capture_holds_only_its_window() {
        let mut names = Names::default();
        let mut groups = Groups::new(Some(10 * SECOND));
        let (mut held, mut out) = (0, 0);
        for i in 0..100_000u64 {
            let ts = i * 10_000_000;
            // Sent by node-a, received by node-b: one connection of two hops.
            let mut sent = syn(&mut names, "node-a", ts, i as u32, 1000);
            sent.dir = Direction::Out;
            groups.add(sent, &names);
            groups.add(syn(&mut names, "node-b", ts + 1, i as u32, 1000), &names);
            held = held.max(groups.open.len() + groups.ready.len());
            out += std::iter::from_fn(|| groups.next(&names)).count();
        }
        groups.close_all();
        out += std::iter::from_fn(|| groups.next(&names)).count();
        assert_eq!(out, 100_000);
        assert!(
            held <= 1_100,
            "{held} groups held for a 10 s window at 100/s"
        );
    }

    #[test]
    fn without_a_window_nothing_leaves_before_the_end() {
        let mut names = Names::default();
        let mut groups = Groups::new(None);
        for i in 0..100u32 {
            groups.add(
                syn(&mut names, "n", u64::from(i) * 60 * SECOND, i, 1000),
                &names,
            );
        }
        assert!(groups.next(&names).is_none());
        groups.close_all();
        assert_eq!(std::iter::from_fn(|| groups.next(&names)).count(), 100);
    }

    /// One SYN sent again and again (the same tuple at the same place) stays one group, closed
    /// at the cap.
    #[test]
    fn an_isn_repeated_without_end_is_closed_at_the_cap() {
        let mut names = Names::default();
        let mut groups = Groups::new(None);
        for i in 0..MAX_OPEN as u64 {
            groups.add(syn(&mut names, "n", i * SECOND, 4, 1), &names);
        }
        assert!(groups.open.is_empty());
        assert!(!groups.ready.is_empty());
    }

    /// Unrelated connections that share an ISN get groups of their own: the first can leave
    /// while the second is still open, so a collision holds nothing else back.
    #[test]
    fn isn_collisions_do_not_hold_each_other_open() {
        let mut names = Names::default();
        let mut groups = Groups::new(Some(10 * SECOND));
        groups.add(syn(&mut names, "n", 0, 7, 1000), &names);
        groups.add(syn(&mut names, "n", 5 * SECOND, 7, 2000), &names);
        assert_eq!(groups.open.len(), 2);
        groups.add(syn(&mut names, "n", 12 * SECOND, 8, 3000), &names);
        let first = groups
            .next(&names)
            .expect("the first isn 7 connection is complete");
        assert_eq!((first.key.isn, first.key.sport), (7, 1000));
        assert!(groups.next(&names).is_none(), "the second is still open");
        // A retransmission of the second joins it, whatever came in between.
        groups.add(syn(&mut names, "n", 13 * SECOND, 7, 2000), &names);
        groups.close_all();
        let second = groups.next(&names).unwrap();
        assert_eq!((second.key.sport, second.retries), (2000, 1));
    }
}
