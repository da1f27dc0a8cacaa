//! One correlated chain of sightings → the flow of the report: hops, rewrites, verdict.

use super::correlate::Chain;
use super::model::{Flow, Hop, Translation, TranslationKind};
use super::owners::Owners;
use super::sighting::{Names, Sighting};
use std::net::{IpAddr, SocketAddr};

pub fn build(sightings: &[Sighting], chain: &Chain, names: &Names, owners: &mut Owners) -> Flow {
    let path: Vec<&Sighting> = chain.hops.iter().map(|&i| &sightings[i]).collect();
    let hops: Vec<Hop> = path
        .iter()
        .map(|s| Hop {
            node: names.get(s.node).to_string(),
            iface: names.get(s.iface).to_string(),
            dir: s.dir,
            src: s.src,
            sport: s.sport,
            dst: s.dst,
            dport: s.dport,
            ts_ns: s.ts_ns,
        })
        .collect();
    let mut translations = Vec::new();
    for (i, pair) in path.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        let node = if a.node == b.node {
            names.get(a.node).to_string()
        } else {
            format!("between {} and {}", names.get(a.node), names.get(b.node))
        };
        // PREROUTING (DNAT) comes before POSTROUTING (SNAT).
        if !a.same_destination(b) {
            translations.push(Translation {
                kind: TranslationKind::Dnat,
                node: node.clone(),
                from: endpoint(a.dst, a.dport),
                to: endpoint(b.dst, b.dport),
                to_owner: owner(b.dst, TranslationKind::Dnat, a, b, names, owners),
                hop: i + 1,
            });
        }
        if !a.same_source(b) {
            translations.push(Translation {
                kind: TranslationKind::Snat,
                node,
                from: endpoint(a.src, a.sport),
                to: endpoint(b.src, b.sport),
                to_owner: owner(b.src, TranslationKind::Snat, a, b, names, owners),
                hop: i + 1,
            });
        }
    }
    let first = path[0];
    let client = first.src;
    let pod_sees = path.last().map(|s| s.src);
    Flow {
        isn: first.isn,
        translations,
        pod_sees,
        client_ip_preserved: pod_sees == Some(client),
        l7_client_ip: None,
        client: Some(client),
        entry: endpoint(first.dst, first.dport),
        lost_at: path.iter().position(|s| s.src != client),
        retries: chain.retries,
        hops,
    }
}

/// `addr:port`, IPv6 in brackets.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

/// The address part of an `addr:port` written by [`endpoint`].
pub fn host(endpoint: &str) -> Option<IpAddr> {
    endpoint.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The rewrite that replaced the client's address, if any: the first SNAT whose address changed.
pub fn losing_snat(flow: &Flow) -> Option<&Translation> {
    flow.translations
        .iter()
        .find(|t| t.kind == TranslationKind::Snat && host(&t.from) != host(&t.to))
}

/// Who owns a rewritten address: the probes' interfaces when they say; without a `hello` from
/// that node, what the capture shows (MASQUERADE takes the outgoing interface's address).
fn owner(
    addr: IpAddr,
    kind: TranslationKind,
    before: &Sighting,
    after: &Sighting,
    names: &Names,
    owners: &mut Owners,
) -> String {
    if let Some(owner) = owners.owner(addr) {
        return owner;
    }
    let node = names.get(after.node);
    if before.node == after.node && !owners.knows_node(node) && after.may_be_out() {
        let iface = names.get(after.iface);
        return match kind {
            TranslationKind::Snat => format!("{iface} of {node} (inferred)"),
            TranslationKind::Dnat => format!("behind {iface} of {node} (inferred)"),
        };
    }
    "unknown".to_string()
}
