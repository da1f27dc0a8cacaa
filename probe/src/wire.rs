//! The probe → plugin wire format: JSON Lines, one [`Event`] per line.
//!
//! Every line carries `v` (the schema version) and `type`. Readers accept any line whose `v` is
//! at most [`SCHEMA_VERSION`]; a line of an unknown `type` within a known version decodes as
//! [`Event::Unknown`] so that older plugins can read newer probes' additive events. The events of
//! `capture --evidence` (`evidence`, `ruleset`, `conntrack`, `route`) were added that way: a
//! reader from before them passes over them.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Version of the event schema written in every line's `v` field.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of the stream: the schema version and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub v: u32,
    #[serde(flatten)]
    pub event: Event,
}

impl Line {
    pub fn new(event: Event) -> Self {
        Line {
            v: SCHEMA_VERSION,
            event,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Hello(Hello),
    Syn(Syn),
    L7(L7),
    Iface(IfaceChange),
    Stats(Stats),
    Bye(Bye),
    /// `--evidence`: whether the evidence could be read; once after `hello`, and with the
    /// totals at the end.
    Evidence(EvidenceStatus),
    /// `--evidence`: the NAT rules at the start and at the end of the capture.
    Ruleset(Ruleset),
    /// `--evidence`: the conntrack entry of a connection whose SYN the probe saw.
    Conntrack(Conntrack),
    /// `--evidence`: the route toward a destination the node source-NATed a connection to.
    Route(Route),
    /// A `type` this reader does not know (written by a newer probe of the same schema).
    #[serde(other)]
    Unknown,
}

impl Event {
    /// When the probe wrote or saw it; `None` for a kind this reader does not know.
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            Event::Hello(e) => Some(e.ts_ns),
            Event::Syn(e) => Some(e.ts_ns),
            Event::L7(e) => Some(e.ts_ns),
            Event::Iface(e) => Some(e.ts_ns),
            Event::Stats(e) => Some(e.ts_ns),
            Event::Bye(e) => Some(e.ts_ns),
            Event::Evidence(e) => Some(e.ts_ns),
            Event::Ruleset(e) => Some(e.ts_ns),
            Event::Conntrack(e) => Some(e.ts_ns),
            Event::Route(e) => Some(e.ts_ns),
            Event::Unknown => None,
        }
    }

    /// The node whose probe wrote it; `None` for a kind this reader does not know.
    pub fn node(&self) -> Option<&str> {
        match self {
            Event::Hello(e) => Some(&e.node),
            Event::Syn(e) => Some(&e.node),
            Event::L7(e) => Some(&e.node),
            Event::Iface(e) => Some(&e.node),
            Event::Stats(e) => Some(&e.node),
            Event::Bye(e) => Some(&e.node),
            Event::Evidence(e) => Some(&e.node),
            Event::Ruleset(e) => Some(&e.node),
            Event::Conntrack(e) => Some(&e.node),
            Event::Route(e) => Some(&e.node),
            Event::Unknown => None,
        }
    }
}

/// First event of a stream: who is speaking and what it listens on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub ts_ns: u64,
    pub node: String,
    pub probe_version: String,
    pub interfaces: Vec<Interface>,
    /// What the in-kernel filter passes, in words (e.g. "tcp syn, ports 80,31908").
    #[serde(default)]
    pub filter: String,
    #[serde(default)]
    pub l7: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    pub kind: IfaceKind,
    pub link_type: LinkType,
    /// Addresses with prefix length, e.g. `10.0.0.4/24`, `fd00::4/64`.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub mtu: u32,
    /// Hardware address for Ethernet-like links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfaceKind {
    /// Holds a default route or a node address: where NodePort traffic arrives.
    Uplink,
    /// A Linux bridge (cbr0, cni0, docker0, …).
    Bridge,
    /// The node side of a pod's veth pair (veth*, cali*, lxc*, …).
    Veth,
    /// A secondary cloud NIC handed to pods (VPC-CNI eni*, …).
    Eni,
    /// An overlay or tunnel device (vxlan, ipip, geneve, wireguard, …).
    Tunnel,
    Loopback,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    Ethernet,
    /// No link header: the frame starts with the IP header (tun, ipip, wireguard).
    RawIp,
    Loopback,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received on the interface (PACKET_HOST, PACKET_BROADCAST, PACKET_OTHERHOST…).
    In,
    /// Sent out of the interface (PACKET_OUTGOING).
    Out,
}

/// One sighting of a TCP SYN (SYN set, ACK clear) on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Syn {
    pub ts_ns: u64,
    pub node: String,
    pub iface: String,
    pub dir: Direction,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub isn: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsval: Option<u32>,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification; absent for IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
}

/// Forwarding facts from the first data segment of a flow. Nothing else of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct L7 {
    pub ts_ns: u64,
    pub node: String,
    pub iface: String,
    pub dir: Option<Direction>,
    pub src: Option<IpAddr>,
    pub sport: u16,
    pub dst: Option<IpAddr>,
    pub dport: u16,
    /// Sequence number of the data segment; for a first segment it is the SYN's ISN + 1.
    pub seq: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_real_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxySource>,
    /// `X-Realip-Token` of a test request sent by `kubectl realip trace --send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realip_token: Option<String>,
}

/// The addresses a PROXY protocol (v1 or v2) header announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxySource {
    pub version: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
}

/// An interface appeared (a new pod) or vanished after `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceChange {
    pub ts_ns: u64,
    pub node: String,
    pub change: Change,
    pub interface: Interface,
}

/// Per-interface counters since the probe started (cumulative, never reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub ts_ns: u64,
    pub node: String,
    pub interfaces: Vec<IfaceStats>,
    /// True on the last stats of a stream.
    #[serde(default)]
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceStats {
    pub iface: String,
    /// Packets the kernel filter passed to the probe (PACKET_STATISTICS tp_packets).
    pub packets: u64,
    /// Packets the kernel dropped because the probe's buffer was full (tp_drops).
    pub drops: u64,
    /// SYN events written for this interface.
    #[serde(default)]
    pub syns: u64,
    /// Frames that passed the filter but could not be parsed.
    #[serde(default)]
    pub malformed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bye {
    pub ts_ns: u64,
    pub node: String,
    /// Why capture ended: `duration`, `signal` or `error`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether `--evidence` could read the node's netfilter state, and what it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceStatus {
    pub ts_ns: u64,
    pub node: String,
    /// True when rules and conntrack could be read (the probe has CAP_NET_ADMIN).
    pub available: bool,
    /// Why the evidence is not available, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each reader and how it fared: `nftables`, `iptables-legacy`, `ip6tables-legacy`,
    /// `conntrack`, `route`.
    #[serde(default)]
    pub sources: Vec<EvidenceSource>,
    /// True on the status written at the end, with the totals below.
    #[serde(default)]
    pub last: bool,
    /// Connections looked up in conntrack, found, not found, and not looked up (bound reached).
    #[serde(default)]
    pub conntrack_lookups: u64,
    #[serde(default)]
    pub conntrack_found: u64,
    #[serde(default)]
    pub conntrack_missed: u64,
    #[serde(default)]
    pub conntrack_skipped: u64,
    /// Route events written.
    #[serde(default)]
    pub routes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceSource {
    pub name: String,
    /// `read`, `absent` (the node does not use it), `refused` (no capability) or `failed`.
    pub state: SourceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Read,
    Absent,
    Refused,
    Failed,
}

/// Which netfilter front-end holds a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Native nftables (kube-proxy's nftables mode, Calico's nftables dataplane, `nft -f`).
    Nftables,
    /// iptables rules stored as nftables (iptables-nft).
    IptablesNft,
    /// The x_tables kernel tables (iptables-legacy).
    IptablesLegacy,
}

/// How a rule's `text` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    /// As `iptables-save` prints it: `-A CHAIN …`.
    Iptables,
    /// As `nft list ruleset` prints the rule's line inside its chain.
    Nft,
}

/// Who installed a rule, guessed from names (see [`Ruleset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    KubeProxy,
    Calico,
    Cilium,
    Flannel,
    IpMasqAgent,
    AwsVpcCni,
    Docker,
    /// None of the above: the node's own or an unknown component's.
    User,
}

/// What the owner guess rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerBasis {
    /// The chain's name (`KUBE-POSTROUTING`, `cali-nat-outgoing`, …).
    Chain,
    /// The nftables table's name (`kube-proxy`, `calico`, `cilium`).
    Table,
    /// A built-in chain's rule that jumps to an owned chain.
    Jump,
    /// The rule's comment (`cali:…`, `cilium…`, `flanneld masq`, …).
    Comment,
    /// An interface the rule matches on (`docker0`).
    Iface,
    /// Nothing recognised: owner `user`.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatKind {
    Snat,
    Dnat,
    Masquerade,
    Redirect,
}

/// What a NAT rule rewrites to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatTarget {
    pub kind: NatKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr_min: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr_max: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_min: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_max: Option<u16>,
    /// `random`, `fully-random`, `persistent`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Start,
    End,
}

/// The NAT rules of the node: every table that has a NAT hook, its chains summarised, and in
/// full only the rules that matter (see [`Why`]). Bounded however many rules the node has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub ts_ns: u64,
    pub node: String,
    pub phase: Phase,
    pub tables: Vec<RuleTable>,
    /// Rules in full, each self-describing.
    pub rules: Vec<RuleEntry>,
    /// Rules of these tables not listed in `rules` (counted in their chains).
    pub summarised: u64,
    /// Rules that qualified for `rules` but were left out to keep the event bounded.
    #[serde(default)]
    pub left_out: u64,
    /// Readers that failed while taking this snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTable {
    pub backend: Backend,
    /// `ip`, `ip6`, `inet`, …
    pub family: String,
    pub name: String,
    /// Chains with a hook and chains holding a listed rule.
    pub chains: Vec<ChainEntry>,
    /// The other chains, counted per owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<OwnerTally>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub name: String,
    pub owner: Owner,
    /// `prerouting`, `input`, `output`, `postrouting`, `forward` for a chain a hook enters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The nftables chain type (`nat`, `filter`, `route`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Rules in the chain.
    pub rules: u32,
    /// The policy's counters (built-in chains that keep them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerTally {
    pub owner: Owner,
    pub chains: u64,
    pub rules: u64,
}

/// Why a rule is listed in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// It sits in a chain a NAT hook enters: where every NAT path starts.
    Hook,
    /// Its counters moved during the capture (end snapshot).
    Moved,
    /// It rewrites the source (SNAT, MASQUERADE): there are few, and each is a suspect.
    SourceNat,
    /// It DNATs to an address a captured connection was DNATed to (end snapshot).
    DnatSeen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEntry {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
    /// 1-based position in the chain, as `iptables -L --line-numbers` counts.
    pub position: u32,
    /// The nftables rule handle (`nft -a`); absent for iptables-legacy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    pub syntax: Syntax,
    pub text: String,
    pub owner: Owner,
    pub owner_from: OwnerBasis,
    /// Counters now; absent for a rule without a counter (nftables rules without `counter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// End snapshot: how much the counters moved since the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_bytes: Option<u64>,
    /// End snapshot: the rule was not there at the start (its delta is its whole count).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatTarget>,
    /// The chain it jumps (or with `goto`, goes) to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub goto: bool,
    pub why: Vec<Why>,
}

/// One direction of a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CtTuple {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// IP protocol number (6 for TCP).
    pub proto: u8,
}

/// The conntrack entry of a connection the probe saw a SYN of, read shortly after the SYN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    pub ts_ns: u64,
    pub node: String,
    /// The sighting that found the entry: its ISN (to join the connection), interface and
    /// direction.
    pub isn: u32,
    pub iface: String,
    pub dir: Direction,
    /// As the first packet arrived, and as replies will look.
    pub orig: CtTuple,
    pub reply: CtTuple,
    /// Status bits by name: `src-nat`, `dst-nat`, `confirmed`, `seen-reply`, `assured`, …
    pub status: Vec<String>,
    pub status_bits: u32,
    pub mark: u32,
    pub zone: u16,
    /// Source and destination were rewritten (`IPS_SRC_NAT` / `IPS_DST_NAT`).
    pub src_nat: bool,
    pub dst_nat: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// TCP state (`SYN_SENT`, `ESTABLISHED`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_state: Option<String>,
}

/// The route the node uses toward `dst`, looked up once per destination a SNATed connection
/// went to: why MASQUERADE picked the address it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub ts_ns: u64,
    pub node: String,
    pub dst: IpAddr,
    /// The source address conntrack shows the connection rewritten to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_to: Option<IpAddr>,
    /// Egress interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oif: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oif_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The route's preferred source (what a locally sent packet would use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefsrc: Option<IpAddr>,
    /// The address MASQUERADE takes on `oif` toward the next hop: the first primary address
    /// in the next hop's subnet, else the first primary address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade_source: Option<IpAddr>,
    /// Routing table id (254 main, 255 local).
    pub table: u32,
    /// `unicast`, `local`, `blackhole`, …
    pub kind: String,
    /// The egress interface's addresses with prefix length, in the kernel's order.
    #[serde(default)]
    pub oif_addresses: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a probe event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema version {found} is newer than this reader understands ({SCHEMA_VERSION}); upgrade kubectl-realip")]
    NewerSchema { found: u32 },
}

/// Decodes one JSONL line.
pub fn decode_line(line: &str) -> Result<Event, DecodeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let newer = |v: u32| (v > SCHEMA_VERSION).then_some(DecodeError::NewerSchema { found: v });
    match serde_json::from_str::<Line>(line) {
        Ok(line) => match newer(line.v) {
            Some(err) => Err(err),
            None => Ok(line.event),
        },
        // A newer probe may have changed the shape: name the version, not the field.
        Err(err) => Err(serde_json::from_str::<VersionOnly>(line)
            .ok()
            .and_then(|only| newer(only.v))
            .unwrap_or(DecodeError::Json(err))),
    }
}

/// Encodes one event as a JSONL line without the trailing newline.
pub fn encode_line(event: &Event) -> String {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        v: u32,
        #[serde(flatten)]
        event: &'a Event,
    }
    // Serializing plain data into a String cannot fail.
    serde_json::to_string(&Borrowed {
        v: SCHEMA_VERSION,
        event,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn() -> Syn {
        Syn {
            ts_ns: 1,
            node: "node-a".into(),
            iface: "eth0".into(),
            dir: Direction::In,
            src: "198.51.100.7".parse().unwrap(),
            sport: 41770,
            dst: "198.51.100.1".parse().unwrap(),
            dport: 31908,
            isn: 629798247,
            tsval: Some(2657712186),
            ttl: 64,
            ip_id: Some(4242),
        }
    }

    #[test]
    fn syn_line_round_trips_with_version_and_type() {
        let line = encode_line(&Event::Syn(syn()));
        assert!(line.starts_with(r#"{"v":1,"type":"syn","#), "{line}");
        assert_eq!(decode_line(&line).unwrap(), Event::Syn(syn()));
    }

    #[test]
    fn evidence_events_round_trip() {
        let event = Event::Conntrack(Conntrack {
            ts_ns: 1,
            node: "node-a".into(),
            isn: 629798247,
            iface: "eth0".into(),
            dir: Direction::In,
            orig: CtTuple {
                src: "198.51.100.7".parse().unwrap(),
                sport: 41770,
                dst: "198.51.100.1".parse().unwrap(),
                dport: 31908,
                proto: 6,
            },
            reply: CtTuple {
                src: "10.244.0.5".parse().unwrap(),
                sport: 8080,
                dst: "10.244.0.1".parse().unwrap(),
                dport: 41770,
                proto: 6,
            },
            status: vec!["src-nat".into(), "dst-nat".into()],
            status_bits: 0x30,
            mark: 0x4000,
            zone: 0,
            src_nat: true,
            dst_nat: true,
            id: None,
            tcp_state: Some("SYN_SENT".into()),
        });
        let line = encode_line(&event);
        assert!(line.starts_with(r#"{"v":1,"type":"conntrack","#), "{line}");
        assert_eq!(decode_line(&line).unwrap(), event);
        assert!(matches!(
            decode_line(r#"{"v":2,"type":"ruleset"}"#),
            Err(DecodeError::NewerSchema { found: 2 })
        ));
    }

    #[test]
    fn unknown_type_is_tolerated_and_newer_schema_is_refused() {
        assert_eq!(
            decode_line(r#"{"v":1,"type":"later","x":1}"#).unwrap(),
            Event::Unknown
        );
        assert!(matches!(
            decode_line(r#"{"v":2,"type":"syn"}"#),
            Err(DecodeError::NewerSchema { found: 2 })
        ));
        assert!(decode_line("not json").is_err());
    }
}
