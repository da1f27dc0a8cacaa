//! After the capture: explain's prediction for the nodes the measured connections entered at,
//! from the objects trace read and the rest read once.

use crate::cluster::explain_reads::{self as live, Known};
use crate::cluster::Cluster;
use crate::explain::explain_gathered;
use crate::explain::model::Explanation;
use crate::trace::TraceOptions;
use std::collections::BTreeMap;

/// The nodes measured connections entered at, most entered first.
fn entry_nodes(report: &crate::analyze::model::Report) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for flow in &report.flows {
        if let Some(first) = flow.hops.first() {
            *counts.entry(first.node.as_str()).or_default() += 1;
        }
    }
    let mut nodes: Vec<(&str, usize)> = counts.into_iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    nodes
        .into_iter()
        .map(|(node, _)| node.to_string())
        .collect()
}

/// Entry nodes explain is asked about, at most: the report sets each beside its measurements.
const MAX_ENTRY_PREDICTIONS: usize = 4;

/// explain's prediction for the node most connections entered at, and, when they entered at
/// several, one per entry node: the entry node decides between the node's and the bridge's
/// address, so each measurement is set beside the prediction for its own path. explain is
/// given the Service, EndpointSlices and nodes trace read, and reads the rest once.
pub(super) async fn predictions(
    cluster: &Cluster,
    known: Known,
    report: &crate::analyze::model::Report,
    options: &TraceOptions,
) -> (Option<Explanation>, BTreeMap<String, Explanation>) {
    if let Some(given) = &options.prediction {
        return (Some(given.clone()), BTreeMap::new());
    }
    if !options.predict_live {
        return (None, BTreeMap::new());
    }
    let source = live::KubeSource {
        cluster: cluster.clone(),
    };
    let objects = live::gather_known(&source, known).await;
    let entries = entry_nodes(report);
    if entries.len() < 2 {
        let main = explain_gathered(&objects, entries.first().map(String::as_str));
        return (Some(main), BTreeMap::new());
    }
    let by_entry_node: BTreeMap<String, Explanation> = entries
        .iter()
        .take(MAX_ENTRY_PREDICTIONS)
        .map(|node| (node.clone(), explain_gathered(&objects, Some(node))))
        .collect();
    let main = by_entry_node.get(&entries[0]).cloned();
    (main, by_entry_node)
}
