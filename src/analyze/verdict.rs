//! What a connection's capture proves about the client's address, and no more.
//!
//! The source at the first capture point is not necessarily the client: a load balancer or a
//! router before it may have rewritten it, a proxy leg's source is the proxy, a partial capture
//! may have missed the entry. [`classify`] says what that source is from the evidence at hand
//! (the probes' `hello`, the cluster view, the address's range); [`judge`] turns it, the rewrites
//! seen and where the SYN ended into the leg's verdict, saying what was not seen.

use super::flow::{losing_snat, place};
use super::model::{ClientKind, EndsAt, Flow, Hop, L7ClientIp, LastSeen, Loss, LossKind, Verdict};
use super::owners::{Owners, Role};
use realip_probe::wire::{Direction, IfaceKind};
use std::net::IpAddr;

/// What the source at the first capture point is, and how sure that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: ClientKind,
    /// The evidence settles it: for `Client`, the client is established; for `Node` and `Pod`,
    /// whether that node or pod opened the connection (`origin`); for `Lb`, the source is known
    /// not to be the client.
    pub established: bool,
    /// A node or pod of the cluster opened the connection: it is the client.
    pub origin: bool,
    pub evidence: Vec<String>,
}

impl Source {
    fn new(kind: ClientKind, established: bool, evidence: String) -> Self {
        Source {
            kind,
            established,
            origin: false,
            evidence: vec![evidence],
        }
    }

    /// A node or pod seen (or known) to have opened the connection.
    fn origin(kind: ClientKind, evidence: String) -> Self {
        Source {
            origin: true,
            ..Source::new(kind, true, evidence)
        }
    }

    /// The client itself, established: the verdict can say "kept".
    pub fn is_client(&self) -> bool {
        self.established && (self.kind == ClientKind::Client || self.origin)
    }

    /// Known not to be the client: a load balancer's, a router's, a proxy's, a node that
    /// forwarded it.
    pub fn is_not_client(&self) -> bool {
        self.established
            && !self.origin
            && matches!(
                self.kind,
                ClientKind::Lb | ClientKind::Proxy | ClientKind::Node
            )
    }
}

/// Where an address comes from by its range alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Routable on the internet.
    Public,
    /// Reserved for documentation (RFC 5737, RFC 3849): stands for a public address.
    Documentation,
    /// Not routable on the internet: RFC 1918, shared (CGNAT), unique local, benchmarking.
    Private,
    /// Loopback, link-local, multicast, unspecified: never a client's.
    Special,
}

pub fn range(ip: IpAddr) -> Range {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            match (a, b, c) {
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Range::Documentation,
                (10, ..) | (192, 168, _) => Range::Private,
                (172, b, _) if (16..32).contains(&b) => Range::Private,
                (100, b, _) if (64..128).contains(&b) => Range::Private,
                (198, 18 | 19, _) => Range::Private,
                (0 | 127, ..) | (169, 254, _) => Range::Special,
                (a, ..) if a >= 224 => Range::Special,
                _ => Range::Public,
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return range(IpAddr::V4(v4));
            }
            let s = v6.segments();
            match s[0] {
                0x2001 if s[1] == 0x0db8 => Range::Documentation,
                x if x & 0xfe00 == 0xfc00 => Range::Private,
                x if x & 0xffc0 == 0xfe80 || x & 0xff00 == 0xff00 => Range::Special,
                x if x & 0xe000 == 0x2000 => Range::Public,
                _ => Range::Special,
            }
        }
    }
}

/// The TTLs (and IPv6 hop limits) systems send with: Linux and most others 64, Windows 128,
/// some network gear 255. A forwarded packet carries less.
const INITIAL_TTLS: [u8; 3] = [64, 128, 255];

fn faces_pods(kind: IfaceKind) -> bool {
    matches!(kind, IfaceKind::Veth | IfaceKind::Bridge | IfaceKind::Eni)
}

fn range_words(range: Range) -> &'static str {
    match range {
        Range::Public => "public",
        Range::Documentation => "public (a documentation range)",
        Range::Private => "a private address",
        Range::Special => "a loopback, link-local or multicast address",
    }
}

/// Whether the flow came in through the Service's load balancer: to its address, or to one of
/// a `LoadBalancer` Service's NodePorts on a node.
pub fn via_lb(flow: &Flow, owners: &Owners) -> bool {
    let Some(first) = flow.hops.first() else {
        return false;
    };
    match owners.role(first.dst) {
        Some(Role::LoadBalancer) => true,
        Some(Role::Node { .. }) => owners.view().lb_node_ports.contains(&first.dport),
        _ => false,
    }
}

fn point(hop: &Hop) -> String {
    format!("{} {}", hop.node, hop.iface)
}

/// What the source at the flow's first capture point is.
pub fn classify(flow: &Flow, owners: &Owners) -> Source {
    let Some(first) = flow.hops.first() else {
        return Source::new(ClientKind::Unknown, false, "no hop was captured".into());
    };
    let mut source = classify_address(first.src, Some(first), via_lb(flow, owners), owners);
    // A connection that carries a forwarding header naming someone else was opened for that
    // someone: by a proxy, or by a client that says so. Either way its own address is not
    // settled as the client's.
    let forwards_for = flow
        .l7_client_ip
        .as_ref()
        .filter(|l7| l7.value.parse::<IpAddr>().ok() != Some(first.src));
    if let Some(l7) = forwards_for {
        source.evidence.push(format!(
            "it sends {} naming {}: a proxy forwarding for that address, or a client that says so",
            header_words(l7),
            l7.value
        ));
        if !source.is_not_client() {
            source.kind = ClientKind::Proxy;
            source.established = false;
            source.origin = false;
        }
    }
    source
}

/// What `src` is, first seen at `first` (or read in a header when `None`).
fn classify_address(src: IpAddr, first: Option<&Hop>, via_lb: bool, owners: &Owners) -> Source {
    let arriving = first.is_none_or(|h| h.dir == Direction::In || h.dir_inferred);
    match owners.role(src) {
        Some(Role::Sender) => {
            return Source::new(
                ClientKind::Client,
                true,
                format!("{src} is the address the test connection was opened from"),
            )
        }
        Some(Role::LoadBalancer) => {
            return Source::new(
                ClientKind::Lb,
                true,
                format!("{src} is the load balancer's own address"),
            )
        }
        Some(Role::Node { node, iface }) => {
            let whose = match iface {
                Some(iface) => format!("{node}'s {iface}"),
                None => format!("node {node}'s"),
            };
            if let Some(h) = first.filter(|h| h.node == node && h.dir == Direction::Out) {
                // Leaving the node with its own address: sent by a process there, or forwarded
                // and masqueraded by it where its arrival was not captured. The TTL tells.
                return if INITIAL_TTLS.contains(&h.ttl) {
                    Source::origin(
                        ClientKind::Node,
                        format!(
                            "{src} is {whose} address and {node} sent this SYN out of {} with TTL {}, as a local process does: a process on {node} opened it",
                            h.iface, h.ttl
                        ),
                    )
                } else {
                    Source::new(
                        ClientKind::Node,
                        true,
                        format!(
                            "{src} is {whose} address on a SYN {node} forwarded (TTL {} on {}): {node} rewrote the source where its arrival was not captured",
                            h.ttl, h.iface
                        ),
                    )
                };
            }
            let lead = format!("{src} is {whose} address");
            return if via_lb {
                Source::new(
                    ClientKind::Node,
                    true,
                    format!("{lead}, and the SYN came through the load balancer: {node} forwarded it with its own address"),
                )
            } else {
                Source::new(
                    ClientKind::Node,
                    false,
                    format!(
                        "{lead}: a process on {node}, or a rewrite on {node} that was not captured"
                    ),
                )
            };
        }
        Some(Role::Pod { name, node }) => {
            let who = match (&name, &node) {
                (Some(name), _) => format!("pod {name}'s address"),
                (None, Some(node)) => format!("in the pod network of {node}"),
                (None, None) => "a pod's address".to_string(),
            };
            let from_pod = first.is_some_and(|h| {
                h.dir == Direction::In
                    && node.as_deref().is_none_or(|n| n == h.node)
                    && owners.kind(&h.node, &h.iface).is_some_and(faces_pods)
            });
            let how = if from_pod {
                "the pod opened it: its SYN was first seen coming from it"
            } else {
                "a pod's own connections keep its address: the pod opened it"
            };
            return Source::origin(ClientKind::Pod, format!("{src} is {who}; {how}"));
        }
        Some(Role::ClusterIp) => {
            return Source::new(
                ClientKind::Unknown,
                false,
                format!("{src} is a Service's cluster IP, which never opens connections"),
            )
        }
        None => {}
    }
    if let Some(h) = first.filter(|_| arriving) {
        if let Some(network) = owners.on_uplink_network(&h.node, src) {
            return Source::new(
                ClientKind::Lb,
                true,
                format!(
                    "{src} is on {network}, no node's: a load balancer or router there rewrote the client (a client on that network would look the same)"
                ),
            );
        }
    }
    let r = range(src);
    // First seen leaving a machine that forwarded it (TTL below any initial value): its
    // arrival was not captured, and that machine may have rewritten the source on the way.
    if let Some(h) = first.filter(|h| !arriving && !INITIAL_TTLS.contains(&h.ttl)) {
        return Source::new(
            ClientKind::Unknown,
            false,
            format!(
                "{src} is {} first seen leaving {} (TTL {}: forwarded, its arrival not captured), where it may have been rewritten",
                range_words(r),
                point(h),
                h.ttl
            ),
        );
    }
    match r {
        Range::Public | Range::Documentation => {
            let from = match first {
                Some(h) if arriving => format!(", arriving at {} from outside the cluster", point(h)),
                Some(h) => format!(", sent by {} (TTL {})", h.node, h.ttl),
                None => String::new(),
            };
            Source::new(
                ClientKind::Client,
                true,
                format!(
                    "{src} is {}{from}; not the cluster's nor the load balancer's",
                    range_words(r)
                ),
            )
        }
        Range::Private if via_lb => Source::new(
            ClientKind::Lb,
            false,
            format!(
                "{src} is a private address nothing names, arriving through the load balancer: the load balancer (or a router) rewrote the client, unless clients reach it from inside the network"
            ),
        ),
        _ => Source::new(
            ClientKind::Unknown,
            false,
            format!(
                "{src} is {} that neither the probes nor the cluster name",
                range_words(r)
            ),
        ),
    }
}

/// The leg's verdict from its own capture alone: a flow that no proxy leg precedes.
pub fn judge(flow: &mut Flow, owners: &mut Owners) {
    let source = classify(flow, owners);
    flow.first_seen = flow.hops.first().map(|h| LastSeen {
        node: h.node.clone(),
        iface: h.iface.clone(),
        dir: h.dir,
    });
    flow.client_kind = source.kind;
    flow.client_established = source.is_client();
    flow.evidence = source.evidence.clone();
    let (verdict, reason, lost) = l4(flow, &source, owners);
    flow.verdict = verdict;
    flow.reason = reason;
    flow.lost = lost;
    flow.client_ip_preserved = preserved(verdict);
    apply_l7(flow, None, source.is_not_client(), owners);
}

/// `client_ip_preserved` of a verdict.
pub fn preserved(verdict: Verdict) -> Option<bool> {
    match verdict {
        Verdict::Kept => Some(true),
        Verdict::KeptInHeader | Verdict::Rewritten | Verdict::LostBeforeCapture => Some(false),
        Verdict::Unknown | Verdict::Unreached | Verdict::AtHost => None,
    }
}

/// Where the client's address was lost on this leg alone: before the first capture point (the
/// source is known not to be the client), or at the first rewrite of the source seen.
fn loss(flow: &Flow, source: &Source, owners: &mut Owners) -> Option<Loss> {
    if source.is_not_client() {
        return before_capture(flow, owners);
    }
    let at = flow.lost_at?;
    let to = flow.hops.get(at)?.src;
    Some(match losing_snat(flow) {
        Some(t) => Loss {
            by: LossKind::Snat,
            leg: flow.leg,
            hop: Some(at),
            at: t.node.clone(),
            to,
            to_owner: t.to_owner.clone(),
        },
        // The source changed where no SNAT is recorded (odd input): the hop says where.
        None => Loss {
            by: LossKind::Snat,
            leg: flow.leg,
            hop: Some(at),
            at: flow.hops[at].node.clone(),
            to,
            to_owner: "unknown".into(),
        },
    })
}

/// The L4 verdict of one leg judged alone.
fn l4(flow: &Flow, source: &Source, owners: &mut Owners) -> (Verdict, String, Option<Loss>) {
    let lost = loss(flow, source, owners);
    let first = flow.first_seen_text();
    let src = flow
        .client
        .map_or_else(|| "?".to_string(), |ip| ip.to_string());
    if flow.ends_at == EndsAt::Host {
        let node = flow
            .last_seen
            .as_ref()
            .map_or("a node", |at| at.node.as_str());
        return (
            Verdict::AtHost,
            format!("ended at a local socket on {node} (a proxy or a hostNetwork process); no onward connection was joined to it"),
            lost,
        );
    }
    if !flow.reached_pod {
        let last = flow.last_seen.as_ref().map_or_else(
            || "nowhere".to_string(),
            |at| format!("on {} {}", at.node, at.iface),
        );
        return (
            Verdict::Unreached,
            format!("did not reach a pod: last seen {last} (dropped or not captured)"),
            lost,
        );
    }
    match &lost {
        Some(l) if l.by == LossKind::BeforeCapture => {
            let before = flow.first_seen.as_ref().map_or("it", |at| at.node.as_str());
            let why = match source.kind {
                ClientKind::Node => format!("the source is already {src}, a node's"),
                _ => format!(
                    "the load balancer (or a router before {before}) rewrote the source to {src}"
                ),
            };
            return (
                Verdict::LostBeforeCapture,
                format!("the client was lost before {first}, the first capture point: {why}"),
                lost,
            );
        }
        Some(l) => {
            let whose = if source.is_client() {
                format!("client {src}")
            } else {
                format!("the source {src} ({})", kind_words(source.kind))
            };
            let at = l.hop.unwrap_or_default();
            return (
                Verdict::Rewritten,
                format!("{whose} lost at hop {at} (SNAT {})", place(&l.at)),
                lost,
            );
        }
        None => {}
    }
    if !source.is_client() {
        return (
            Verdict::Unknown,
            format!("unchanged since {first} (the first capture point); what happened before it was not captured"),
            None,
        );
    }
    if flow.ends_at == EndsAt::Unseen {
        let (node, iface) = flow
            .last_seen
            .as_ref()
            .map_or(("?", "?"), |at| (at.node.as_str(), at.iface.as_str()));
        let why = owners
            .unseen_delivery(node)
            .unwrap_or_else(|| "its pod side was not captured".to_string());
        return (
            Verdict::Unknown,
            format!("unchanged as far as {node} {iface}, the last capture point; not seen after it: {why}. The pod sees {src} if nothing after it rewrites the source"),
            None,
        );
    }
    if flow.ends_at != EndsAt::Pod {
        let last = flow.last_seen.as_ref().map_or_else(
            || "the last hop".to_string(),
            |at| format!("{} {}", at.node, at.iface),
        );
        return (
            Verdict::Unknown,
            format!("unchanged as far as {last}; nothing tells whether that interface faces the pod. The pod sees {src} if nothing after it rewrites the source"),
            None,
        );
    }
    (
        Verdict::Kept,
        format!("the client {src} reaches the pod unchanged"),
        None,
    )
}

/// The loss before the first capture point: the address seen there instead of the client's.
fn before_capture(flow: &Flow, owners: &mut Owners) -> Option<Loss> {
    let to = flow.client?;
    // Only what names the address itself: a neighbour's subnet says nothing of who it is.
    let to_owner = match owners.role(to) {
        Some(_) => owners.owner(to),
        None => None,
    };
    let to_owner = to_owner.unwrap_or_else(|| {
        let on = flow
            .hops
            .first()
            .and_then(|h| owners.on_uplink_network(&h.node, to));
        match on {
            Some(network) => format!("a load balancer or router on {network}"),
            None => "a load balancer or router".to_string(),
        }
    });
    Some(Loss {
        by: LossKind::BeforeCapture,
        leg: flow.leg,
        hop: None,
        at: format!("before {}", flow.first_seen_text()),
        to,
        to_owner,
    })
}

pub fn kind_words(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Client => "the client",
        ClientKind::Lb => "a load balancer's or router's",
        ClientKind::Node => "a node's",
        ClientKind::Pod => "a pod's",
        ClientKind::Proxy => "a proxy's",
        ClientKind::Unknown => "unknown",
    }
}

/// The L7 verdict: whether the forwarding header the pod receives names the client. `client`:
/// the client connection's established client, when a leg before this one established it.
/// `behind_proxy`: the source is known to be a load balancer's, a proxy's or a forwarding
/// node's, which wrote the header. A header that arrives from the client itself, or from a
/// source nothing settles, proves nothing: anyone can send one.
pub fn apply_l7(flow: &mut Flow, client: Option<IpAddr>, behind_proxy: bool, owners: &Owners) {
    flow.l7_client_preserved = None;
    let Some(l7) = flow.l7_client_ip.clone() else {
        return;
    };
    let Ok(value) = l7.value.parse::<IpAddr>() else {
        return;
    };
    let names_client = match client {
        Some(client) => Some(value == client),
        None if flow.client_established => {
            flow.evidence.push(format!(
                "{} {value} came from the client itself: no proxy on the captured path wrote it",
                header_words(&l7)
            ));
            return;
        }
        None if !behind_proxy => {
            // The source's evidence already says what the header claims.
            if flow.client_kind != ClientKind::Proxy {
                flow.evidence.push(format!(
                    "{} names {value}, but who wrote it is not settled",
                    header_words(&l7)
                ));
            }
            return;
        }
        None => {
            let read = classify_address(value, None, false, owners);
            if read.is_client() {
                Some(true)
            } else if read.kind == ClientKind::Unknown {
                None
            } else {
                Some(false)
            }
        }
    };
    flow.l7_client_preserved = names_client;
    if names_client == Some(true) && flow.verdict != Verdict::Kept && flow.reached_pod {
        flow.verdict = Verdict::KeptInHeader;
        flow.client_ip_preserved = Some(false);
        flow.reason = format!(
            "{}; the pod reads the client {value} in {}",
            flow.reason,
            header_words(&l7)
        );
    }
}

pub fn header_words(l7: &L7ClientIp) -> &'static str {
    match l7.header.as_str() {
        "x-forwarded-for" => "X-Forwarded-For",
        "x-real-ip" => "X-Real-IP",
        "forwarded" => "Forwarded",
        "proxy-protocol" => "the PROXY protocol header",
        _ => "a forwarding header",
    }
}

impl Flow {
    /// "node-a eth0", the first capture point.
    pub fn first_seen_text(&self) -> String {
        self.hops
            .first()
            .map_or_else(|| "the first capture point".into(), point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &str| range(s.parse().unwrap());
        assert_eq!(r("8.8.8.8"), Range::Public);
        assert_eq!(r("192.0.2.10"), Range::Documentation);
        assert_eq!(r("10.1.2.3"), Range::Private);
        assert_eq!(r("172.31.0.1"), Range::Private);
        assert_eq!(r("172.32.0.1"), Range::Public);
        assert_eq!(r("100.64.0.1"), Range::Private);
        assert_eq!(r("198.18.1.1"), Range::Private);
        assert_eq!(r("169.254.1.1"), Range::Special);
        assert_eq!(r("224.0.0.1"), Range::Special);
        assert_eq!(r("2001:db8::7"), Range::Documentation);
        assert_eq!(r("fd00::1"), Range::Private);
        assert_eq!(r("fe80::1"), Range::Special);
        assert_eq!(r("2600::1"), Range::Public);
        assert_eq!(r("::ffff:10.0.0.1"), Range::Private);
    }
}
