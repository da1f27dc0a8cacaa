//! The probe → plugin wire format: JSON Lines, one [`Event`] per line.
//!
//! Every line carries `v` (the schema version) and `type`. Readers accept any line whose `v` is
//! at most [`SCHEMA_VERSION`]; a line of an unknown `type` within a known version decodes as
//! [`Event::Unknown`] so that older plugins can read newer probes' additive events.

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
