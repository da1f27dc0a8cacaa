//! What explain predicts: the stable `explain -o json` contract (docs/scenarios.md, "Reading
//! the answer").

pub use realip_probe::wire::Owner;
use serde::{Deserialize, Serialize};

/// A way into the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    InternetViaLb,
    NodePort,
    InClusterPod,
    Node,
}

/// The L4 source address the pod's accept() returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Source {
    Client,
    Node,
    Bridge,
    Lb,
    Proxy,
    Pod,
    Unknown,
}

/// Where the client address can still be read at layer 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum L7Source {
    None,
    XForwardedFor,
    XRealIp,
    Forwarded,
    ProxyProtocol,
    /// The configuration does not say (the reasons tell what is missing). Added after v1.
    Unknown,
}

/// A step of the reasoning, naming the setting that decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The deciding setting, e.g. `spec.externalTrafficPolicy=Cluster`.
    pub setting: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub text: String,
    /// A command or manifest change that applies it, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<String>,
}

/// One step of the predicted path, in order from the client to the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Where the packet is, e.g. `CLB`, `node:32197`, `nginx pod`, `pod`.
    pub at: String,
    /// The source address this hop receives.
    pub source: L4Source,
    /// What rewrote the source on the way into this hop, when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Whose netfilter rule made that rewrite, when a node's rule did (`kube-proxy`, `cilium`;
    /// the owners `--evidence` names): what a measured rule is held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginVerdict {
    pub origin: Origin,
    /// Which entry of that way in: `lb`, `ingress/NAME`, `external-ip`, `node-port`,
    /// `cluster-ip`, `hairpin`, `lb-address`. Added after v1.
    #[serde(default)]
    pub via: String,
    pub l4_source_seen_by_pod: L4Source,
    pub l7_client_ip: L7Source,
    pub reasons: Vec<Reason>,
    pub fixes: Vec<Fix>,
    /// The predicted path, client first. Added after v1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<Hop>,
}

/// A way in that does not exist for this Service, and why. Added after v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub origin: Origin,
    pub reason: Reason,
}

/// The prediction for one Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub service: String,
    pub namespace: String,
    /// What was assumed because the input did not say (offline mode states every one).
    pub assumptions: Vec<String>,
    pub origins: Vec<OriginVerdict>,
    /// Ways in that this Service does not have (e.g. no LB for a ClusterIP Service). Added after v1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<Closed>,
}

impl Origin {
    pub const ALL: [Origin; 4] = [
        Origin::InternetViaLb,
        Origin::NodePort,
        Origin::InClusterPod,
        Origin::Node,
    ];

    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::InternetViaLb => "internet-via-lb",
            Origin::NodePort => "node-port",
            Origin::InClusterPod => "in-cluster-pod",
            Origin::Node => "node",
        }
    }
}

impl L4Source {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Source::Client => "client",
            L4Source::Node => "node",
            L4Source::Bridge => "bridge",
            L4Source::Lb => "lb",
            L4Source::Proxy => "proxy",
            L4Source::Pod => "pod",
            L4Source::Unknown => "unknown",
        }
    }
}

impl L7Source {
    pub fn as_str(self) -> &'static str {
        match self {
            L7Source::None => "none",
            L7Source::XForwardedFor => "x-forwarded-for",
            L7Source::XRealIp => "x-real-ip",
            L7Source::Forwarded => "forwarded",
            L7Source::ProxyProtocol => "proxy-protocol",
            L7Source::Unknown => "unknown",
        }
    }
}
