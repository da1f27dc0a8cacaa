//! What analysis produces: the stable `-o json` contract of `trace` and `analyze`.
//!
//! Field names and meanings are public (DESIGN.md, "Analysis output"): add fields, never rename.

use realip_probe::wire::Direction;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub flows: Vec<Flow>,
    pub summary: Summary,
}

/// One connection: every sighting of its SYN, in path order, and what changed between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub isn: u32,
    pub hops: Vec<Hop>,
    pub translations: Vec<Translation>,
    /// Source address at the last hop: what the pod's accept() returns. `None` when the SYN
    /// did not reach a pod (`reached_pod` false): no pod accepted it.
    pub pod_sees: Option<IpAddr>,
    /// Whether the pod sees the client's address; false when no pod was reached.
    pub client_ip_preserved: bool,
    pub l7_client_ip: Option<L7ClientIp>,
    /// Source address at the first hop.
    pub client: Option<IpAddr>,
    /// Destination at the first hop, `addr:port`: the way in.
    pub entry: String,
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
}

/// Where a flow's SYN ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndsAt {
    /// The last sighting faces a pod.
    Pod,
    /// `in` on a node, addressed to one of that node's own addresses, never retransmitted:
    /// delivered to a socket of the node itself. Any next hop is a new connection.
    Host,
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
    /// `addr:port` before.
    pub from: String,
    /// `addr:port` after.
    pub to: String,
    /// What owns the new address, e.g. "cbr0 of node-a"; "unknown" when nothing says.
    pub to_owner: String,
    /// Index into the flow's `hops` of the first hop that carries the new address.
    #[serde(default)]
    pub hop: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L7ClientIp {
    /// `x-forwarded-for`, `x-real-ip`, `forwarded` or `proxy-protocol`.
    pub header: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub connections: usize,
    pub preserved: usize,
    /// Connections that reached a pod with another source than the client's.
    pub rewritten: usize,
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
}

/// Per way in (destination at the first hop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntrySummary {
    pub entry: String,
    pub connections: usize,
    pub preserved: usize,
    pub rewritten: usize,
    #[serde(default)]
    pub unreached: usize,
    #[serde(default)]
    pub at_host: usize,
    /// Where the client address was lost and into what, most frequent first.
    pub rewritten_at: Vec<RewriteCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteCount {
    pub node: String,
    pub to: String,
    pub to_owner: String,
    pub count: usize,
}
