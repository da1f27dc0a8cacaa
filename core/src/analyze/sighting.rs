//! The compact form in which the analyzer keeps every SYN sighting until it correlates them.

use realip_probe::wire::{Direction, Syn};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Node and interface names are interned: a capture repeats a handful of them many times.
#[derive(Debug, Default)]
pub struct Names {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Names {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.index.insert(name, id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", |name| name)
    }

    /// The name itself, cheap to keep: sort keys compare names, not ids that depend on the
    /// order the input was read in.
    pub fn shared(&self, id: u32) -> Arc<str> {
        self.names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }
}

/// One sighting of a SYN on one interface of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub ts_ns: u64,
    pub node: u32,
    pub iface: u32,
    pub dir: Direction,
    /// False when the capture did not record the direction (plain Ethernet pcap) and `dir` is a guess.
    pub dir_known: bool,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub isn: u32,
    pub tsval: Option<u32>,
    pub ttl: u8,
    pub ip_id: Option<u16>,
}

impl Sighting {
    pub fn from_syn(syn: &Syn, names: &mut Names) -> Self {
        Sighting {
            ts_ns: syn.ts_ns,
            node: names.id(&syn.node),
            iface: names.id(&syn.iface),
            dir: syn.dir,
            dir_known: true,
            src: syn.src,
            sport: syn.sport,
            dst: syn.dst,
            dport: syn.dport,
            isn: syn.isn,
            tsval: syn.tsval,
            ttl: syn.ttl,
            ip_id: syn.ip_id,
        }
    }

    pub fn same_tuple(&self, other: &Sighting) -> bool {
        self.src == other.src
            && self.sport == other.sport
            && self.dst == other.dst
            && self.dport == other.dport
    }

    pub fn same_source(&self, other: &Sighting) -> bool {
        self.src == other.src && self.sport == other.sport
    }

    pub fn same_destination(&self, other: &Sighting) -> bool {
        self.dst == other.dst && self.dport == other.dport
    }

    /// Could this sighting have been received (`in`) on its interface?
    pub fn may_be_in(&self) -> bool {
        !self.dir_known || self.dir == Direction::In
    }

    /// Could this sighting have been sent (`out`) on its interface?
    pub fn may_be_out(&self) -> bool {
        !self.dir_known || self.dir == Direction::Out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SYN sighting is held until correlation: its size is the analyzer's memory per SYN.
    #[test]
    fn a_sighting_stays_compact() {
        assert!(std::mem::size_of::<Sighting>() <= 80);
    }

    #[test]
    fn names_are_interned_once() {
        let mut names = Names::default();
        let a = names.id("node-b");
        let b = names.id("eth0");
        assert_eq!(names.id("node-b"), a);
        assert_ne!(a, b);
        assert_eq!(names.get(a), "node-b");
        assert_eq!(&*names.shared(b), "eth0");
        assert_eq!(names.get(7), "?");
    }
}
