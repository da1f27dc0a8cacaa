//! What analysis produces: the stable `-o json` contract of `trace` and `analyze`.
//!
//! Field names and meanings are public (docs/analyze.md, "The JSON contract"): add fields,
//! never rename. [`SCHEMA`] counts the versions of meaning.

use realip_probe::wire::{Conntrack, Direction, Owner, Route, RuleEntry};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// The version of the report's meaning, written as its `schema` field. 2: `client_ip_preserved`
/// may be null, the source's kind and the verdict are given, proxy legs are joined into client
/// connections and the summary counts client connections.
pub const SCHEMA: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default = "schema")]
    pub schema: u32,
    pub flows: Vec<Flow>,
    pub summary: Summary,
}

fn schema() -> u32 {
    SCHEMA
}

impl Report {
    pub fn new(flows: Vec<Flow>, summary: Summary) -> Self {
        Report {
            schema: SCHEMA,
            flows,
            summary,
        }
    }
}

/// One TCP connection (one leg of a client connection when a proxy is on the way): every
/// sighting of its SYN, in path order, what changed between them, and what that means for the
/// client's address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub isn: u32,
    pub hops: Vec<Hop>,
    pub translations: Vec<Translation>,
    /// Source address at the last hop: what the pod's accept() returns. `None` when the SYN
    /// did not reach a pod (`reached_pod` false): no pod accepted it.
    pub pod_sees: Option<IpAddr>,
    /// Whether the pod at the end of this leg sees the client connection's client: `true` only
    /// when the client is established by evidence and reaches the pod unchanged; `false` when a
    /// rewrite was seen or the source is known not to be the client; `null` when the evidence
    /// does not tell (`reason` says why).
    pub client_ip_preserved: Option<bool>,
    pub l7_client_ip: Option<L7ClientIp>,
    /// Source address at the first hop (the first capture point): the client only when
    /// `client_kind` says so.
    pub client: Option<IpAddr>,
    /// Destination at the first hop (`addr:port` in JSON): the way in.
    pub entry: SocketAddr,
    /// Index into `hops` of the first hop whose source no longer is the client's address.
    pub lost_at: Option<usize>,
    /// Retransmissions of the SYN seen (same connection, counted once).
    pub retries: u32,
    /// False when the last sighting is not pod-facing by the interface kinds the probes
    /// announced (e.g. `in` on a node's uplink and nothing after: dropped, or the rest was not
    /// captured). True when it is, and when no `hello` names the interface (cannot tell).
    #[serde(default = "yes")]
    pub reached_pod: bool,
    /// Where the SYN was seen last.
    #[serde(default)]
    pub last_seen: Option<LastSeen>,
    /// Where the SYN ended, when the capture tells: at a pod, at a local socket of a node (a
    /// proxy or a hostNetwork process accepted it), or `unknown` (dropped, gone on uncaptured,
    /// or no `hello` names the last interface).
    #[serde(default)]
    pub ends_at: EndsAt,
    /// Where the SYN was seen first: what happened before it was not captured.
    #[serde(default)]
    pub first_seen: Option<LastSeen>,
    /// What the source at the first capture point is.
    #[serde(default)]
    pub client_kind: ClientKind,
    /// Whether that source is established as the client: an address from outside the cluster
    /// that is not the load balancer's, a test sender's, or a pod or node seen opening the
    /// connection. Only then can `client_ip_preserved` be true.
    #[serde(default)]
    pub client_established: bool,
    /// Why `client_kind` is what it is, one fact a line.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The client connection's outcome at the end of this leg.
    #[serde(default)]
    pub verdict: Verdict,
    /// The verdict in one sentence, saying what was not seen.
    #[serde(default)]
    pub reason: String,
    /// Where and how the client address was lost, when it was.
    #[serde(default)]
    pub lost: Option<Loss>,
    /// Whether the client reaches the pod in a forwarding header (`l7_client_ip`): `null` when
    /// no header was read or the client is not established.
    #[serde(default)]
    pub l7_client_preserved: Option<bool>,
    /// The client connection this leg belongs to, numbered from 1 in output order.
    #[serde(default)]
    pub connection: usize,
    /// This leg's place in its client connection (1-based) and the number of legs: a proxy on
    /// the way (an L7 load balancer, an ingress controller) opens a new connection.
    #[serde(default = "one")]
    pub leg: usize,
    #[serde(default = "one")]
    pub legs: usize,
    /// On legs after the first: the proxy that opened this leg, and why it continues the one
    /// before.
    #[serde(default)]
    pub proxied_by: Option<ProxyLink>,
}

fn one() -> usize {
    1
}

impl Flow {
    /// A flow of `hops` and nothing else known yet: no rewrite, no verdict (what correlation
    /// starts from; tests build on it).
    pub fn of_hops(isn: u32, hops: Vec<Hop>) -> Flow {
        let first = hops.first();
        let entry = first.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |h| {
            SocketAddr::new(h.dst, h.dport)
        });
        Flow {
            isn,
            translations: Vec::new(),
            pod_sees: None,
            client_ip_preserved: None,
            l7_client_ip: None,
            client: first.map(|h| h.src),
            entry,
            lost_at: None,
            retries: 0,
            reached_pod: true,
            last_seen: hops.last().map(|h| LastSeen {
                node: h.node.clone(),
                iface: h.iface.clone(),
                dir: h.dir,
            }),
            ends_at: EndsAt::Unknown,
            first_seen: None,
            client_kind: ClientKind::Unknown,
            client_established: false,
            evidence: Vec::new(),
            verdict: Verdict::Unknown,
            reason: String::new(),
            lost: None,
            l7_client_preserved: None,
            connection: 0,
            leg: 1,
            legs: 1,
            proxied_by: None,
            hops,
        }
    }
}

/// What the source address at a flow's first capture point is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// The client, established: an address from outside the cluster that is not the load
    /// balancer's, a pod or node seen opening the connection, or a test sender's address.
    Client,
    /// A load balancer's or a router's: the client was rewritten before the first capture point.
    Lb,
    /// A node's address, not seen opening the connection.
    Node,
    /// A pod's address, not seen opening the connection.
    Pod,
    /// A proxy's: this leg was opened by a proxy for an earlier leg.
    Proxy,
    /// Nothing tells.
    #[default]
    Unknown,
}

/// A client connection's outcome, as far as the evidence goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The pod sees the client's address.
    Kept,
    /// The pod sees another address, but reads the client in a forwarding header.
    KeptInHeader,
    /// A rewrite (an SNAT, a proxy) on the captured path replaced the client's address.
    Rewritten,
    /// The source at the first capture point is already not the client's: a load balancer or a
    /// router before it rewrote it.
    LostBeforeCapture,
    /// The evidence does not tell (`reason` says what was not seen).
    #[default]
    Unknown,
    /// The SYN reached no pod: dropped, or the rest was not captured.
    Unreached,
    /// The SYN ended at a node's own socket, and no onward leg was seen.
    AtHost,
}

impl Verdict {
    /// The verdict in a few words.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Kept => "kept",
            Verdict::KeptInHeader => "kept in a header only",
            Verdict::Rewritten => "rewritten",
            Verdict::LostBeforeCapture => "lost before the first capture point",
            Verdict::Unknown => "not settled",
            Verdict::Unreached => "reached no pod",
            Verdict::AtHost => "ended at a local socket",
        }
    }
}

/// How the client address was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// An SNAT seen between two capture points (or between two nodes, unseen in between).
    Snat,
    /// A proxy opened a new connection from its own address.
    Proxy,
    /// Before the first capture point.
    BeforeCapture,
}

/// Where the client address was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    pub by: LossKind,
    /// The leg (1-based) it happened on.
    pub leg: usize,
    /// For an SNAT: index into that leg's `hops` of the first hop with the new source.
    pub hop: Option<usize>,
    /// Where: the node of an SNAT ("between A and B" when unseen), the proxy, or "before"
    /// the first capture point.
    pub at: String,
    /// The address that replaced the client's.
    pub to: IpAddr,
    /// What owns it.
    pub to_owner: String,
}

impl ProxyLink {
    /// "the proxy pod ingress-nginx (198.18.1.20)", "the proxy on clb (198.51.100.1)", "the
    /// proxy at 198.18.1.20 (a pod behind cbr0 of node-a)".
    pub fn describe(&self) -> String {
        if self.owner.starts_with("pod ") || self.owner.starts_with("on ") {
            format!("the proxy {} ({})", self.owner, self.address)
        } else {
            format!("the proxy at {} ({})", self.address, self.owner)
        }
    }
}

/// Why a leg continues the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyLink {
    /// The proxy's address: the source of this leg, where the leg before ended.
    pub address: IpAddr,
    /// What it is: "pod ingress-nginx/ingress-nginx-controller-…", "clb".
    pub owner: String,
    /// The ISN of the leg before.
    pub from_isn: u32,
    /// The facts that join the two legs.
    pub evidence: Vec<String>,
}

fn snat() -> LossKind {
    LossKind::Snat
}

/// Where a flow's SYN ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndsAt {
    /// The last sighting faces a pod.
    Pod,
    /// `in` on a node, addressed to one of that node's own addresses, never retransmitted:
    /// delivered to a socket of the node itself. Any next hop is a new connection.
    Host,
    /// Went on past the last capture point into a node whose way to its pods was not seen: its
    /// pod side was not captured, or its datapath (eBPF host routing, netkit) delivers to pods
    /// where packet capture cannot see. The pod, if any, sees the last source unless something
    /// unseen rewrites it.
    Unseen,
    /// Nothing says: dropped, gone on where no probe watched, or an interface no `hello` named.
    #[default]
    Unknown,
}

fn yes() -> bool {
    true
}

/// The last capture point of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    pub node: String,
    pub iface: String,
    pub dir: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub node: String,
    pub iface: String,
    pub dir: Direction,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub ts_ns: u64,
    /// True when the capture did not record the direction (a plain pcap) and `dir` was inferred
    /// from the hop's place in the path: the first sighting on a node `in`, later ones `out`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir_inferred: bool,
    /// IPv4 TTL or IPv6 hop limit as captured: a SYN that leaves its sender carries the initial
    /// value (64, 128 or 255), a forwarded one less.
    #[serde(default)]
    pub ttl: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranslationKind {
    Snat,
    Dnat,
}

/// A rewrite between two neighbouring hops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    pub kind: TranslationKind,
    /// The node whose netfilter made the rewrite.
    pub node: String,
    /// Before (`addr:port` in JSON).
    pub from: SocketAddr,
    /// After.
    pub to: SocketAddr,
    /// What owns the new address, e.g. "cbr0 of node-a"; "unknown" when nothing says.
    pub to_owner: String,
    /// Index into the flow's `hops` of the first hop that carries the new address.
    #[serde(default)]
    pub hop: usize,
    /// Which netfilter rule made it, from the node's own state (`--evidence`). Absent when no
    /// probe of the capture read evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
}

/// What the node's netfilter state says made a rewrite: the rule, its owner, the conntrack entry
/// that shows the rewrite, and for SNAT the route that chose the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub status: AttributionStatus,
    /// What names the rule, or what is missing, in one sentence.
    pub reason: String,
    /// The rule, as the node's probe read it: table, chain, position (and nftables handle), its
    /// text as `iptables-save` or `nft` prints it, its owner, its counters and how far they moved
    /// during the capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleEntry>,
    /// Who installed the rule (`rule.owner`), for a reader that wants only that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// How the rule was told from the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<AttributionBasis>,
    /// With `ambiguous`: every rule that could have made it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<RuleEntry>,
    /// The connection's conntrack entry on that node, when its tuples show this very rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<Conntrack>,
    /// For an SNAT: the route the node uses toward the connection's destination, with the
    /// address MASQUERADE takes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

impl Attribution {
    /// `status` for `reason`, naming nothing yet.
    pub fn of(status: AttributionStatus, reason: String) -> Attribution {
        Attribution {
            status,
            reason,
            rule: None,
            owner: None,
            basis: None,
            candidates: Vec::new(),
            conntrack: None,
            route: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionStatus {
    /// One rule made it (`rule`).
    Rule,
    /// Several rules could have (`candidates`): the counters do not tell which.
    Ambiguous,
    /// None of the rules the node's probe read fits.
    NoRule,
    /// The node gave no evidence: its probe ran without `--evidence`, lacked `CAP_NET_ADMIN`,
    /// or no probe ran where the rewrite happened.
    NoEvidence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionBasis {
    /// Of the rules whose target fits, only its counter moved during the capture.
    Counter,
    /// It is the only rule whose target fits; it keeps no counter (kube-proxy's nftables rules
    /// keep none), and no rule that counts moved.
    OnlyFit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L7ClientIp {
    /// `x-forwarded-for`, `x-real-ip`, `forwarded` or `proxy-protocol`.
    pub header: String,
    pub value: String,
}

/// Counts per client connection (the legs of a proxied connection count once, by their last
/// leg's verdict).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub connections: usize,
    /// Verdict `kept`: the pod sees the established client.
    pub preserved: usize,
    /// Verdict `rewritten`: an SNAT or a proxy on the captured path replaced the client.
    pub rewritten: usize,
    /// Verdict `kept_in_header`: the client reaches the pod only in a forwarding header.
    #[serde(default)]
    pub kept_in_header: usize,
    /// Verdict `lost_before_capture`.
    #[serde(default)]
    pub lost_before_capture: usize,
    /// Verdict `unknown`: the evidence does not tell.
    #[serde(default)]
    pub unknown: usize,
    /// TCP connections seen (legs): more than `connections` when proxies are on the way.
    #[serde(default)]
    pub legs: usize,
    /// Connections whose SYN reached no pod (`reached_pod` false) nor a node's own socket:
    /// dropped or not captured; neither kept nor rewritten.
    #[serde(default)]
    pub unreached: usize,
    /// Connections whose SYN ended at a local socket of a node (`ends_at` host): neither kept,
    /// rewritten nor unreached.
    #[serde(default)]
    pub at_host: usize,
    pub entries: Vec<EntrySummary>,
    /// Kernel drops reported by the probes: when non-zero some SYNs may be missing.
    pub drops: u64,
    /// Problems met while reading input that did not stop the analysis.
    pub warnings: Vec<String>,
    /// Per node whose probe ran with `--evidence`: whether it could read the node's netfilter
    /// state, and what it read. Absent when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<NodeEvidence>,
}

/// What one node's probe could read of its netfilter state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvidence {
    pub node: String,
    pub available: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// NAT rules read at the start and at the end of the capture (listed in full, of all).
    #[serde(default)]
    pub rules_listed: u64,
    #[serde(default)]
    pub rules_total: u64,
    /// The end snapshot came: counters moved during the capture are known.
    #[serde(default)]
    pub counted: bool,
    /// Conntrack entries found, of the connections looked up.
    #[serde(default)]
    pub conntrack_found: u64,
    #[serde(default)]
    pub conntrack_lookups: u64,
}

/// Per way in (destination at the first hop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntrySummary {
    pub entry: SocketAddr,
    pub connections: usize,
    pub preserved: usize,
    pub rewritten: usize,
    #[serde(default)]
    pub kept_in_header: usize,
    #[serde(default)]
    pub lost_before_capture: usize,
    #[serde(default)]
    pub unknown: usize,
    #[serde(default)]
    pub unreached: usize,
    #[serde(default)]
    pub at_host: usize,
    /// Where the client address was lost and into what, most frequent first.
    pub rewritten_at: Vec<RewriteCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteCount {
    /// How: an SNAT, a proxy, or before the first capture point.
    #[serde(default = "snat")]
    pub by: LossKind,
    pub node: String,
    pub to: IpAddr,
    pub to_owner: String,
    pub count: usize,
}
