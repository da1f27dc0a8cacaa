//! Per way in (destination at the first hop): how many connections kept the client address,
//! how many lost it, and where; connections that reached no pod, and those that ended at a
//! node's own socket, are counted apart.

use super::flow::{losing_snat, new_address};
use super::model::{EndsAt, EntrySummary, Flow, RewriteCount, Summary};
use std::collections::BTreeMap;

/// Where the client address was lost: node, new address, its owner.
type Place = (String, String, String);

pub fn summarize(flows: &[Flow], drops: u64, warnings: Vec<String>) -> Summary {
    let mut entries: BTreeMap<&str, (EntrySummary, BTreeMap<Place, usize>)> = BTreeMap::new();
    for flow in flows {
        let (entry, places) = entries.entry(&flow.entry).or_insert_with(|| {
            (
                EntrySummary {
                    entry: flow.entry.clone(),
                    connections: 0,
                    preserved: 0,
                    rewritten: 0,
                    unreached: 0,
                    at_host: 0,
                    rewritten_at: Vec::new(),
                },
                BTreeMap::new(),
            )
        });
        entry.connections += 1;
        if flow.ends_at == EndsAt::Host {
            entry.at_host += 1;
            continue;
        }
        if !flow.reached_pod {
            entry.unreached += 1;
            continue;
        }
        if flow.client_ip_preserved {
            entry.preserved += 1;
            continue;
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
    let mut entries: Vec<EntrySummary> = entries
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
        connections: flows.len(),
        preserved: flows.iter().filter(|f| f.client_ip_preserved).count(),
        rewritten: flows
            .iter()
            .filter(|f| f.reached_pod && !f.client_ip_preserved)
            .count(),
        unreached: flows
            .iter()
            .filter(|f| !f.reached_pod && f.ends_at != EndsAt::Host)
            .count(),
        at_host: flows.iter().filter(|f| f.ends_at == EndsAt::Host).count(),
        entries,
        drops,
        warnings,
    }
}
