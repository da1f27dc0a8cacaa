//! The client address an L7 event announces: left-most X-Forwarded-For, X-Real-IP, Forwarded
//! `for=`, or the PROXY protocol source, in that order.

use super::model::L7ClientIp;
use super::sighting::{Names, Sighting};
use realip_probe::l7::{client_from_forwarded, client_from_xff, node_ip};
use realip_probe::wire::L7;
use std::net::IpAddr;

/// An L7 event that names a client, kept with the SYN sightings of its ISN.
#[derive(Debug, Clone)]
pub struct Fact {
    node: u32,
    iface: u32,
    src: Option<IpAddr>,
    sport: u16,
    dst: Option<IpAddr>,
    dport: u16,
    client: L7ClientIp,
}

impl Fact {
    /// The fact of `l7` and the ISN it belongs to (its first segment's seq − 1), when it names
    /// a client.
    pub fn of(l7: &L7, names: &mut Names) -> Option<(u32, Fact)> {
        let client = client_ip(l7)?;
        let fact = Fact {
            node: names.id(&l7.node),
            iface: names.id(&l7.iface),
            src: l7.src,
            sport: l7.sport,
            dst: l7.dst,
            dport: l7.dport,
            client,
        };
        Some((l7.seq.wrapping_sub(1), fact))
    }

    /// Whether this data segment was seen where and as `s` saw the SYN.
    fn seen_as(&self, s: &Sighting) -> bool {
        self.node == s.node
            && self.iface == s.iface
            && self.sport == s.sport
            && self.dport == s.dport
            && self.src.is_none_or(|ip| ip == s.src)
            && self.dst.is_none_or(|ip| ip == s.dst)
    }
}

/// The L7 client of a connection: a fact of its ISN seen at one of its hops, earliest hop first.
pub fn client_of(facts: &[Fact], hops: &[Sighting]) -> Option<L7ClientIp> {
    hops.iter().find_map(|s| {
        facts
            .iter()
            .find(|f| f.seen_as(s))
            .map(|f| f.client.clone())
    })
}

pub fn client_ip(l7: &L7) -> Option<L7ClientIp> {
    let found = |header: &str, value: String| L7ClientIp {
        header: header.to_string(),
        value,
    };
    if let Some(v) = l7.x_forwarded_for.as_deref().and_then(client_from_xff) {
        return Some(found("x-forwarded-for", v));
    }
    if let Some(ip) = l7.x_real_ip.as_deref().and_then(node_ip) {
        return Some(found("x-real-ip", ip.to_string()));
    }
    if let Some(v) = l7.forwarded.as_deref().and_then(client_from_forwarded) {
        return Some(found("forwarded", v));
    }
    l7.proxy_protocol
        .as_ref()
        .map(|p| found("proxy-protocol", p.src.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_most_forwarding_header_wins_in_order() {
        let mut l7 = L7 {
            x_forwarded_for: Some("198.51.100.7, 10.0.0.1".into()),
            forwarded: Some("for=203.0.113.1".into()),
            ..L7::default()
        };
        assert_eq!(
            client_ip(&l7),
            Some(L7ClientIp {
                header: "x-forwarded-for".into(),
                value: "198.51.100.7".into()
            })
        );
        l7.x_forwarded_for = Some("unknown".into());
        assert_eq!(client_ip(&l7).unwrap().value, "203.0.113.1");
        l7.forwarded = Some(r#"For="[2001:db8::7]:4711";proto=https"#.into());
        assert_eq!(client_ip(&l7).unwrap().value, "2001:db8::7");
        assert_eq!(client_ip(&L7::default()), None);
    }
}
