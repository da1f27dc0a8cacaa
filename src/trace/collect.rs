//! Probe log lines in, events out: decoded, deduplicated across reconnects, counted per node,
//! and checked against the stop conditions (`--flows N`, every probe said bye). Each event
//! taken is handed back at once (trace streams it into the analyzer): none is kept here.
//!
//! A stop does not end the capture at once: each probe's stream is drained up to the moment
//! of the stop, which its heartbeat (the `stats` it writes every second, carrying its clock)
//! proves. Another node's stream may lag: without the drain a connection that crossed two
//! nodes would show only its first.

use realip_probe::wire::{self, Event};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// Per-node progress of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCount {
    pub syns: u64,
    pub said_hello: bool,
    pub said_bye: bool,
    /// The probe's clock at its latest event (ns since the epoch): how far its stream has come.
    pub clock_ns: u64,
}

/// How far past the stop every stream must have come: room for clock skew between nodes and
/// for a SYN's way from one node to the next.
pub const STOP_MARGIN_NS: u64 = 500_000_000;

#[derive(Debug, Default)]
pub struct Collector {
    /// Hashes of (pod, line) already taken: a re-followed log repeats what it sent before.
    seen: HashSet<u64>,
    nodes: BTreeMap<String, NodeCount>,
    /// Backend addresses: a SYN that reaches one completes a connection.
    backends: BTreeSet<IpAddr>,
    complete: BTreeSet<u32>,
    warnings: Vec<String>,
    undecodable: usize,
    /// The probe version this plugin speaks; another one (a `--image`) is worth a warning.
    expected_version: Option<String>,
    /// The stop moment, in the probes' clock: connections that began later are left out.
    stop_ns: Option<u64>,
    /// Connections (ISNs) sighted so far: a stopped capture still takes their later hops.
    isns: HashSet<u32>,
    /// The latest event time of any probe.
    clock_ns: u64,
}

impl Collector {
    pub fn new(backends: impl IntoIterator<Item = IpAddr>) -> Self {
        Collector {
            backends: backends.into_iter().collect(),
            ..Collector::default()
        }
    }

    /// Warns when a probe says hello with another version.
    pub fn expect_version(&mut self, version: &str) {
        self.expected_version = Some(version.to_string());
    }

    /// Expects a probe on `node`, so that stop-on-bye waits for it.
    pub fn expect(&mut self, node: &str) {
        self.nodes.entry(node.to_string()).or_default();
    }

    /// Takes one log line of `pod`: the event it holds, when the line is new and the event is
    /// taken (after a stop, only the connections already begun are).
    pub fn push_line(&mut self, pod: &str, node: &str, line: &str) -> Option<Event> {
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        (pod, line).hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            return None;
        }
        match wire::decode_line(line) {
            Ok(event) => self.take(node, event),
            Err(err @ wire::DecodeError::NewerSchema { .. }) => {
                self.warn_once(format!("probe on {node}: {err}"));
                None
            }
            Err(_) => {
                // A partial last line of a broken stream, or the shell's own messages.
                self.undecodable += 1;
                None
            }
        }
    }

    fn take(&mut self, node: &str, event: Event) -> Option<Event> {
        let ts = event.ts_ns().unwrap_or(0);
        let count = self.nodes.entry(node.to_string()).or_default();
        count.clock_ns = count.clock_ns.max(ts);
        self.clock_ns = self.clock_ns.max(ts);
        if let Some(stop) = self.stop_ns {
            // After the stop only the connections already seen are followed further.
            let known = match &event {
                Event::Syn(syn) => ts <= stop || self.isns.contains(&syn.isn),
                Event::L7(l7) => self.isns.contains(&l7.seq.wrapping_sub(1)),
                _ => true,
            };
            if !known {
                return None;
            }
        }
        match &event {
            Event::Hello(hello) => {
                count.said_hello = true;
                if let Some(expected) = &self.expected_version {
                    if &hello.probe_version != expected {
                        let warning = format!(
                            "the probe on {node} is version {}, this plugin carries {expected}: \
                             events it added or changed may be missing",
                            hello.probe_version
                        );
                        self.warn_once(warning);
                    }
                }
            }
            Event::Bye(_) => count.said_bye = true,
            Event::Syn(syn) => {
                count.syns += 1;
                self.isns.insert(syn.isn);
                if self.backends.contains(&syn.dst) {
                    self.complete.insert(syn.isn);
                }
            }
            _ => {}
        }
        Some(event)
    }

    /// Records a problem for the report, once.
    pub fn warn_once(&mut self, warning: String) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    pub fn nodes(&self) -> &BTreeMap<String, NodeCount> {
        &self.nodes
    }

    /// SYN sightings taken from all probes.
    pub fn syns(&self) -> u64 {
        self.nodes.values().map(|n| n.syns).sum()
    }

    /// Connections seen reaching a backend.
    pub fn complete_flows(&self) -> usize {
        self.complete.len()
    }

    /// Stops taking new connections: the latest moment any probe has reported is the stop.
    pub fn stop(&mut self) {
        self.stop_ns.get_or_insert(self.clock_ns);
    }

    /// The nodes whose stream has not yet come past the stop (nor ended).
    pub fn lagging(&self) -> Vec<String> {
        let Some(stop) = self.stop_ns else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .filter(|(_, n)| !n.said_bye && n.clock_ns < stop.saturating_add(STOP_MARGIN_NS))
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// Every expected probe has ended its capture.
    pub fn all_done(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.values().all(|n| n.said_bye)
    }

    /// The problems met, for the analysis.
    pub fn finish(mut self) -> Vec<String> {
        if self.undecodable > 0 {
            self.warnings.push(format!(
                "{} probe log lines were not events and were skipped",
                self.undecodable
            ));
        }
        for (node, count) in &self.nodes {
            if !count.said_hello {
                self.warnings.push(format!(
                    "no event came from the probe on {node}: its capture is missing"
                ));
            }
        }
        self.warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_probe::wire::{encode_line, Bye, Direction, Hello, Syn};

    fn syn(node: &str, isn: u32, dst: &str) -> String {
        syn_at(node, isn, dst, u64::from(isn))
    }

    fn syn_at(node: &str, isn: u32, dst: &str, ts_ns: u64) -> String {
        encode_line(&Event::Syn(Syn {
            ts_ns,
            node: node.into(),
            iface: "eth0".into(),
            dir: Direction::In,
            src: "203.0.113.50".parse().unwrap(),
            sport: 40000,
            dst: dst.parse().unwrap(),
            dport: 8080,
            isn,
            tsval: None,
            ttl: 60,
            ip_id: None,
        }))
    }

    fn hello(node: &str) -> String {
        encode_line(&Event::Hello(Hello {
            ts_ns: 0,
            node: node.into(),
            probe_version: "0.1.0".into(),
            interfaces: vec![],
            filter: String::new(),
            l7: false,
        }))
    }

    fn bye(node: &str) -> String {
        encode_line(&Event::Bye(Bye {
            ts_ns: 9,
            node: node.into(),
            reason: "duration".into(),
            error: None,
        }))
    }

    #[test]
    fn warns_about_another_probe_version() {
        let mut c = Collector::new([]);
        c.expect_version("0.2.0");
        c.push_line("pa", "a", &hello("a"));
        let warnings = c.finish();
        assert_eq!(
            warnings,
            ["the probe on a is version 0.1.0, this plugin carries 0.2.0: events it added or changed may be missing"]
        );
    }

    #[test]
    fn dedupes_reconnects_counts_and_stops() {
        let mut c = Collector::new(["10.244.1.5".parse().unwrap()]);
        c.expect_version("0.1.0");
        c.expect("a");
        c.expect("b");
        let mut events = Vec::new();
        let mut push = |c: &mut Collector, pod: &str, node: &str, line: &str| {
            let event = c.push_line(pod, node, line);
            let taken = event.is_some();
            events.extend(event);
            taken
        };
        assert!(push(&mut c, "pa", "a", &hello("a")));
        assert!(push(&mut c, "pa", "a", &syn("a", 1, "198.51.100.1")));
        // The stream broke and was followed again from the start.
        assert!(!push(&mut c, "pa", "a", &hello("a")));
        assert!(!push(&mut c, "pa", "a", &syn("a", 1, "198.51.100.1")));
        assert!(push(&mut c, "pb", "b", &syn("b", 1, "10.244.1.5")));
        assert!(!push(&mut c, "pb", "b", "{\"v\":1,\"type\":\"sy"));
        assert_eq!(c.nodes()["a"].syns, 1);
        assert_eq!(c.complete_flows(), 1);
        assert!(!c.all_done());
        push(&mut c, "pa", "a", &bye("a"));
        push(&mut c, "pb", "b", &bye("b"));
        assert!(c.all_done());
        let warnings = c.finish();
        assert_eq!(events.len(), 5);
        assert_eq!(
            warnings,
            [
                "1 probe log lines were not events and were skipped",
                "no event came from the probe on b: its capture is missing"
            ]
        );
    }

    fn heartbeat(node: &str, ts_ns: u64) -> String {
        encode_line(&Event::Stats(realip_probe::wire::Stats {
            ts_ns,
            node: node.into(),
            interfaces: vec![],
            last: false,
        }))
    }

    #[test]
    fn a_stop_waits_for_every_stream_and_takes_only_connections_already_begun() {
        const S: u64 = 1_000_000_000;
        let mut c = Collector::new(["10.244.1.5".parse().unwrap()]);
        let mut events = Vec::new();
        c.expect("a");
        c.expect("b");
        events.extend(c.push_line("pa", "a", &hello("a")));
        // node-a forwards connection 7 to the pod: it looks complete, node-b has said nothing.
        events.extend(c.push_line("pa", "a", &syn_at("a", 7, "10.244.1.5", 10 * S)));
        assert_eq!(c.complete_flows(), 1);
        c.stop();
        assert_eq!(c.lagging(), ["a", "b"]);
        // node-a's heartbeat comes past the stop and margin; node-b's stream is still behind.
        events.extend(c.push_line("pa", "a", &heartbeat("a", 10 * S + STOP_MARGIN_NS)));
        assert_eq!(c.lagging(), ["b"]);
        // A connection that began after the stop is not taken; connection 7's next hop is.
        events.extend(c.push_line("pa", "a", &syn_at("a", 8, "10.244.1.5", 11 * S)));
        events.extend(c.push_line("pb", "b", &syn_at("b", 7, "10.244.1.5", 10 * S + 1_000)));
        events.extend(c.push_line("pb", "b", &heartbeat("b", 11 * S)));
        assert!(c.lagging().is_empty());
        let isns: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                Event::Syn(syn) => Some(syn.isn),
                _ => None,
            })
            .collect();
        assert_eq!(isns, [7, 7]);
    }
}
