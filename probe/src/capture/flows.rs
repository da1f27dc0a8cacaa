//! Which data segment is a flow's first: the one whose sequence number is the SYN's ISN + 1.
//! Pure and bounded: at most `cap` flows wait for their first segment; the oldest are forgotten.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// A flow as seen on one interface (NAT changes the tuple between interfaces, not the ISN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

#[derive(Debug)]
pub struct FirstSegments {
    pending: HashMap<FlowKey, u32>,
    order: VecDeque<FlowKey>,
    cap: usize,
}

impl FirstSegments {
    pub fn new(cap: usize) -> Self {
        FirstSegments {
            pending: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remembers a SYN's ISN (a retransmitted SYN replaces it).
    pub fn on_syn(&mut self, key: FlowKey, isn: u32) {
        while self.pending.len() >= self.cap && !self.pending.contains_key(&key) {
            match self.order.pop_front() {
                Some(old) => {
                    self.pending.remove(&old);
                }
                None => break,
            }
        }
        if self.pending.insert(key, isn).is_none() {
            self.order.push_back(key);
        }
        // Keys of flows that got their first segment linger in `order`: prune them.
        if self.order.len() > 2 * self.cap {
            let pending = &self.pending;
            self.order.retain(|k| pending.contains_key(k));
        }
    }

    /// True exactly once per flow: for the segment carrying the first payload byte.
    pub fn on_data(&mut self, key: FlowKey, seq: u32) -> bool {
        match self.pending.get(&key) {
            Some(&isn) if isn.wrapping_add(1) == seq => {
                self.pending.remove(&key);
                true
            }
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            ifindex: 2,
            src: "198.51.100.7".parse().unwrap(),
            sport,
            dst: "198.51.100.1".parse().unwrap(),
            dport: 80,
        }
    }

    #[test]
    fn only_the_first_segment_counts_once() {
        let mut flows = FirstSegments::new(8);
        flows.on_syn(key(1), u32::MAX);
        assert!(!flows.on_data(key(1), 5), "not ISN + 1");
        assert!(!flows.on_data(key(2), 0), "no SYN seen");
        assert!(flows.on_data(key(1), 0), "ISN + 1 wraps");
        assert!(!flows.on_data(key(1), 0), "retransmission");
        assert!(flows.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_oldest_go_first() {
        let mut flows = FirstSegments::new(3);
        for port in 1..=10 {
            flows.on_syn(key(port), 100);
        }
        assert_eq!(flows.len(), 3);
        assert!(!flows.on_data(key(1), 101));
        assert!(flows.on_data(key(10), 101));
        for port in 11..1000 {
            flows.on_syn(key(port), 100);
            flows.on_data(key(port), 101);
        }
        assert!(flows.order.len() <= 6);
    }
}
