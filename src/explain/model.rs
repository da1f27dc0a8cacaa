//! What explain predicts: the stable `explain -o json` contract (DESIGN.md, "Explain output").

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginVerdict {
    pub origin: Origin,
    pub l4_source_seen_by_pod: L4Source,
    pub l7_client_ip: L7Source,
    pub reasons: Vec<Reason>,
    pub fixes: Vec<Fix>,
}

/// The prediction for one Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub service: String,
    pub namespace: String,
    /// What was assumed because the input did not say (offline mode states every one).
    pub assumptions: Vec<String>,
    pub origins: Vec<OriginVerdict>,
}
