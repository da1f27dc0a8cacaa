//! Per way in (destination at the first hop of a client connection's first leg): how many client
//! connections kept the client address, how many lost it, and where, how many the evidence does
//! not settle; connections that reached no pod, and those that ended at a node's own socket, are
//! counted apart.

use super::model::{EntrySummary, Flow, LossKind, RewriteCount, Summary, Verdict};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Where the client address was lost: how, where, new address, its owner.
type Place = (LossKind, String, IpAddr, String);

/// The summary counted one flow at a time, so that flows need not all be held at once. The
/// legs of a client connection arrive together: the first gives the way in, the last the
/// verdict.
#[derive(Debug, Default)]
pub struct Tally {
    entries: BTreeMap<SocketAddr, (EntrySummary, BTreeMap<Place, usize>)>,
    totals: Counts,
    legs: usize,
    /// The way in of the client connection whose legs are being counted.
    entry: Option<SocketAddr>,
}

impl Tally {
    /// Client connections counted so far.
    pub fn connections(&self) -> usize {
        self.totals.connections
    }

    pub fn add(&mut self, flow: &Flow) {
        self.legs += 1;
        if flow.leg <= 1 {
            self.entry = Some(flow.entry);
        }
        if flow.leg < flow.legs {
            return;
        }
        self.totals.add(flow.verdict);
        let way_in = self.entry.unwrap_or(flow.entry);
        let (entry, places) = self
            .entries
            .entry(way_in)
            .or_insert_with(|| (empty(way_in), BTreeMap::new()));
        let mut counts = Counts::of(entry);
        counts.add(flow.verdict);
        counts.write(entry);
        if let Some(loss) = &flow.lost {
            if matches!(
                flow.verdict,
                Verdict::Rewritten | Verdict::LostBeforeCapture | Verdict::KeptInHeader
            ) {
                let key = (loss.by, loss.at.clone(), loss.to, loss.to_owner.clone());
                *places.entry(key).or_default() += 1;
            }
        }
    }

    pub fn finish(self, drops: u64, warnings: Vec<String>) -> Summary {
        let mut entries: Vec<EntrySummary> = self
            .entries
            .into_values()
            .map(|(mut entry, places)| {
                entry.rewritten_at = places
                    .into_iter()
                    .map(|((by, node, to, to_owner), count)| RewriteCount {
                        by,
                        node,
                        to,
                        to_owner,
                        count,
                    })
                    .collect();
                entry
                    .rewritten_at
                    .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.node.cmp(&b.node)));
                entry
            })
            .collect();
        entries.sort_by(|a, b| {
            b.connections
                .cmp(&a.connections)
                .then_with(|| a.entry.cmp(&b.entry))
        });
        let t = &self.totals;
        Summary {
            connections: t.connections,
            preserved: t.preserved,
            rewritten: t.rewritten,
            kept_in_header: t.kept_in_header,
            lost_before_capture: t.lost_before_capture,
            unknown: t.unknown,
            legs: self.legs,
            unreached: t.unreached,
            at_host: t.at_host,
            entries,
            drops,
            warnings,
            evidence: Vec::new(),
        }
    }
}

fn empty(entry: SocketAddr) -> EntrySummary {
    EntrySummary {
        entry,
        connections: 0,
        preserved: 0,
        rewritten: 0,
        kept_in_header: 0,
        lost_before_capture: 0,
        unknown: 0,
        unreached: 0,
        at_host: 0,
        rewritten_at: Vec::new(),
    }
}

/// Client connections by verdict.
#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    preserved: usize,
    rewritten: usize,
    kept_in_header: usize,
    lost_before_capture: usize,
    unknown: usize,
    unreached: usize,
    at_host: usize,
}

impl Counts {
    fn add(&mut self, verdict: Verdict) {
        self.connections += 1;
        let slot = match verdict {
            Verdict::Kept => &mut self.preserved,
            Verdict::KeptInHeader => &mut self.kept_in_header,
            Verdict::Rewritten => &mut self.rewritten,
            Verdict::LostBeforeCapture => &mut self.lost_before_capture,
            Verdict::Unknown => &mut self.unknown,
            Verdict::Unreached => &mut self.unreached,
            Verdict::AtHost => &mut self.at_host,
        };
        *slot += 1;
    }

    fn of(e: &EntrySummary) -> Self {
        Counts {
            connections: e.connections,
            preserved: e.preserved,
            rewritten: e.rewritten,
            kept_in_header: e.kept_in_header,
            lost_before_capture: e.lost_before_capture,
            unknown: e.unknown,
            unreached: e.unreached,
            at_host: e.at_host,
        }
    }

    fn write(self, e: &mut EntrySummary) {
        e.connections = self.connections;
        e.preserved = self.preserved;
        e.rewritten = self.rewritten;
        e.kept_in_header = self.kept_in_header;
        e.lost_before_capture = self.lost_before_capture;
        e.unknown = self.unknown;
        e.unreached = self.unreached;
        e.at_host = self.at_host;
    }
}
