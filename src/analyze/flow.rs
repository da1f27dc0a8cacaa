//! One correlated chain of sightings → the flow of the report: hops, rewrites, verdict.

use super::model::{EndsAt, Flow, Hop, LastSeen, Translation, TranslationKind};
use super::owners::Owners;
use super::reach;
use super::sighting::{Names, Sighting};
use realip_probe::wire::Direction;
use std::net::{IpAddr, SocketAddr};

/// The flow of one connection from its sightings in path order; `retries` folded in.
pub fn build(path: &[Sighting], retries: u32, names: &Names, owners: &mut Owners) -> Flow {
    let hops: Vec<Hop> = path
        .iter()
        .enumerate()
        .map(|(i, s)| Hop {
            node: names.get(s.node).to_string(),
            iface: names.get(s.iface).to_string(),
            dir: if s.dir_known {
                s.dir
            } else if i == 0 || path[i - 1].node != s.node {
                Direction::In
            } else {
                Direction::Out
            },
            dir_inferred: !s.dir_known,
            ttl: s.ttl,
            src: s.src,
            sport: s.sport,
            dst: s.dst,
            dport: s.dport,
            ts_ns: s.ts_ns,
        })
        .collect();
    let mut translations = Vec::new();
    for (i, pair) in path.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
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
                from: SocketAddr::new(a.dst, a.dport),
                to: SocketAddr::new(b.dst, b.dport),
                to_owner: owner(b.dst, TranslationKind::Dnat, a, b, names, owners),
                hop: i + 1,
                attribution: None,
            });
        }
        if !a.same_source(b) {
            translations.push(Translation {
                kind: TranslationKind::Snat,
                node,
                from: SocketAddr::new(a.src, a.sport),
                to: SocketAddr::new(b.src, b.sport),
                to_owner: owner(b.src, TranslationKind::Snat, a, b, names, owners),
                hop: i + 1,
                attribution: None,
            });
        }
    }
    let first = path[0];
    let client = first.src;
    let last_seen = path.last().zip(hops.last()).map(|(s, hop)| {
        let (ends_at, reached) = reach::ends_at(reach::LastHop {
            kind: owners.kind(&hop.node, &hop.iface),
            dir: hop.dir,
            dst_on_iface: owners.is_address_of(&hop.node, &hop.iface, s.dst),
            dst_on_node: owners.is_node_address(&hop.node, s.dst),
            retries,
            pod_side_seen: owners.pod_side_seen(&hop.node),
        });
        (
            s.src,
            reached,
            ends_at,
            LastSeen {
                node: hop.node.clone(),
                iface: hop.iface.clone(),
                dir: hop.dir,
            },
        )
    });
    let reached_pod = last_seen
        .as_ref()
        .is_some_and(|(_, reached, _, _)| *reached);
    // What a pod's accept() returns; nothing when no pod got the SYN.
    let pod_sees = last_seen
        .as_ref()
        .filter(|(_, reached, _, _)| *reached)
        .map(|(src, _, _, _)| *src);
    let ends_at = last_seen
        .as_ref()
        .map_or(EndsAt::Unknown, |(_, _, ends_at, _)| *ends_at);
    Flow {
        translations,
        pod_sees,
        reached_pod,
        last_seen: last_seen.map(|(_, _, _, at)| at),
        ends_at,
        lost_at: path.iter().position(|s| s.src != client),
        retries,
        ..Flow::of_hops(first.isn, hops)
    }
}

/// `addr:port`, IPv6 in brackets. IPv4 is written by hand: a large capture formats millions.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(21);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(&mut out, u32::from(octet));
            }
            out.push(':');
            push_decimal(&mut out, u32::from(port));
            out
        }
        IpAddr::V6(_) => SocketAddr::new(addr, port).to_string(),
    }
}

fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// Where a rewrite happened, as a phrase: "on node-a", or "between client and node-a" for a
/// rewrite made by something not captured.
pub fn place(node: &str) -> String {
    if node.starts_with("between ") {
        node.to_string()
    } else {
        format!("on {node}")
    }
}

/// The rewrite that replaced the client's address, if any: the SNAT into the hop where the
/// source first differs from the client.
pub fn losing_snat(flow: &Flow) -> Option<&Translation> {
    let at = flow.lost_at?;
    flow.translations
        .iter()
        .find(|t| t.kind == TranslationKind::Snat && t.hop == at)
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
            TranslationKind::Snat => format!("{iface} of {node}, inferred"),
            TranslationKind::Dnat => format!("reached via {iface} of {node}, inferred"),
        };
    }
    "unknown".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::model::TranslationKind::{Dnat, Snat};

    fn sighting(
        names: &mut Names,
        node: &str,
        iface: &str,
        hop: (&str, u16, &str, u16),
    ) -> Sighting {
        Sighting {
            ts_ns: 0,
            node: names.id(node),
            iface: names.id(iface),
            dir: Direction::In,
            dir_known: false,
            src: hop.0.parse().unwrap(),
            sport: hop.1,
            dst: hop.2.parse().unwrap(),
            dport: hop.3,
            isn: 1,
            tsval: Some(2),
            ttl: 64,
            ip_id: None,
        }
    }

    #[test]
    fn without_hello_masquerade_owner_is_inferred_and_directions_marked() {
        let mut names = Names::default();
        let path = vec![
            sighting(
                &mut names,
                "node-a",
                "ens5",
                ("198.51.100.7", 5000, "192.0.2.10", 31908),
            ),
            sighting(
                &mut names,
                "node-a",
                "cbr0",
                ("10.244.0.1", 6000, "10.244.0.5", 8080),
            ),
        ];
        let flow = build(&path, 2, &names, &mut Owners::default());
        assert_eq!(flow.hops[0].dir, Direction::In);
        assert_eq!(flow.hops[1].dir, Direction::Out);
        assert!(flow.hops.iter().all(|h| h.dir_inferred));
        let kinds: Vec<_> = flow.translations.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, vec![Dnat, Snat]);
        assert_eq!(flow.translations[1].to_owner, "cbr0 of node-a, inferred");
        assert_eq!(flow.translations[1].from.to_string(), "198.51.100.7:5000");
        assert_eq!(flow.translations[1].hop, 1);
        assert_eq!(flow.lost_at, Some(1));
        assert_eq!(flow.retries, 2);
        assert_eq!(losing_snat(&flow).map(|t| t.node.as_str()), Some("node-a"));
    }

    #[test]
    fn a_rewrite_between_nodes_names_both_and_port_only_snat_keeps_the_client() {
        let mut names = Names::default();
        let path = vec![
            sighting(
                &mut names,
                "client",
                "eth0",
                ("2001:db8::7", 5000, "2001:db8::1", 443),
            ),
            sighting(
                &mut names,
                "node-b",
                "ens5",
                ("2001:db8::7", 5001, "2001:db8::b", 30443),
            ),
        ];
        let flow = build(&path, 0, &names, &mut Owners::default());
        assert_eq!(flow.translations.len(), 2);
        assert!(flow
            .translations
            .iter()
            .all(|t| t.node == "between client and node-b"));
        assert_eq!(flow.translations[0].to.to_string(), "[2001:db8::b]:30443");
        assert_eq!(flow.translations[0].to_owner, "unknown");
        assert_eq!(flow.lost_at, None);
        assert_eq!(losing_snat(&flow), None);
        assert_eq!(flow.entry.to_string(), "[2001:db8::1]:443");
        assert_eq!(endpoint("10.0.255.1".parse().unwrap(), 0), "10.0.255.1:0");
        assert_eq!(endpoint("0.0.0.0".parse().unwrap(), 65535), "0.0.0.0:65535");
    }
}
