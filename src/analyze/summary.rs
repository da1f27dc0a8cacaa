//! Per way in (destination at the first hop): how many connections kept the client address,
//! how many lost it, and where; connections that reached no pod, and those that ended at a
//! node's own socket, are counted apart.

use super::flow::{losing_snat, new_address};
use super::model::{EndsAt, EntrySummary, Flow, RewriteCount, Summary};
use std::collections::BTreeMap;

/// Where the client address was lost: node, new address, its owner.
type Place = (String, String, String);

/// The summary counted one flow at a time, so that flows need not all be held at once.
#[derive(Debug, Default)]
pub struct Tally {
    entries: BTreeMap<String, (EntrySummary, BTreeMap<Place, usize>)>,
    connections: usize,
    preserved: usize,
    rewritten: usize,
    unreached: usize,
    at_host: usize,
}

impl Tally {
    /// Connections counted so far.
    pub fn connections(&self) -> usize {
        self.connections
    }

    pub fn add(&mut self, flow: &Flow) {
        self.connections += 1;
        if flow.client_ip_preserved {
            self.preserved += 1;
        }
        if flow.reached_pod && !flow.client_ip_preserved {
            self.rewritten += 1;
        }
        if flow.ends_at == EndsAt::Host {
            self.at_host += 1;
        } else if !flow.reached_pod {
            self.unreached += 1;
        }
        if !self.entries.contains_key(&flow.entry) {
            let entry = EntrySummary {
                entry: flow.entry.clone(),
                connections: 0,
                preserved: 0,
                rewritten: 0,
                unreached: 0,
                at_host: 0,
                rewritten_at: Vec::new(),
            };
            self.entries
                .insert(flow.entry.clone(), (entry, BTreeMap::new()));
        }
        let Some((entry, places)) = self.entries.get_mut(&flow.entry) else {
            return;
        };
        entry.connections += 1;
        if flow.ends_at == EndsAt::Host {
            entry.at_host += 1;
            return;
        }
        if !flow.reached_pod {
            entry.unreached += 1;
            return;
        }
        if flow.client_ip_preserved {
            entry.preserved += 1;
            return;
        }
        entry.rewritten += 1;
        let key = match losing_snat(flow) {
            Some(t) => (t.node.clone(), new_address(flow, t), t.to_owner.clone()),
            None => (
                "unknown".to_string(),
                flow.pod_sees
                    .map_or_else(|| "unknown".into(), |ip| ip.to_string()),
                "unknown".to_string(),
            ),
        };
        *places.entry(key).or_default() += 1;
    }

    pub fn finish(self, drops: u64, warnings: Vec<String>) -> Summary {
        let mut entries: Vec<EntrySummary> = self
            .entries
            .into_values()
            .map(|(mut entry, places)| {
                entry.rewritten_at = places
                    .into_iter()
                    .map(|((node, to, to_owner), count)| RewriteCount {
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
        Summary {
            connections: self.connections,
            preserved: self.preserved,
            rewritten: self.rewritten,
            unreached: self.unreached,
            at_host: self.at_host,
            entries,
            drops,
            warnings,
        }
    }
}
