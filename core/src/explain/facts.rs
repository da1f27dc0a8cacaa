//! What the rules reason about: the configuration that decides each rewrite, already extracted
//! from API objects. Pure data; [`super::gather`] builds it from manifests or a live cluster.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A known value and the setting it was read from (shown to the user as the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact<T> {
    pub value: T,
    /// Where it came from, e.g. `kube-system/kube-proxy config.conf mode=ipvs`.
    pub from: String,
}

impl<T> Fact<T> {
    pub fn new(value: T, from: impl Into<String>) -> Self {
        Fact {
            value,
            from: from.into(),
        }
    }
}

/// Everything explain knows about one Service and the cluster around it.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub target: ServiceBackends,
    /// Ingresses that route to the target Service.
    pub ingresses: Vec<IngressFacts>,
    /// The ingress-nginx controller in front of it, when an nginx Ingress routes to it.
    pub nginx: Option<NginxFacts>,
    pub cluster: ClusterFacts,
    /// What was assumed because the input did not say.
    pub assumptions: Vec<String>,
}

/// A Service together with what is known about its backends, the pods behind it (a backend is
/// one endpoint, as in trace).
#[derive(Debug, Clone, Default)]
pub struct ServiceBackends {
    pub service: ServiceFacts,
    /// Nodes hosting its endpoints (None: unknown).
    pub endpoint_nodes: Option<Vec<String>>,
    /// Its pods use VPC-CNI (ENI) addresses on TKE, or not; None: unknown.
    pub eni_pods: Option<Fact<bool>>,
    /// Some endpoints run on virtual nodes (TKE super nodes / eklet, virtual-kubelet).
    pub on_virtual_nodes: Option<Fact<VirtualPlacement>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtualPlacement {
    All,
    Some,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

impl TrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpMode {
    Vip,
    Proxy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbIngress {
    /// IP or hostname.
    pub address: String,
    pub is_hostname: bool,
    pub ip_mode: Option<IpMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `spec.ports[].protocol` (TCP when not set).
    pub fn of(text: Option<&str>) -> Protocol {
        match text {
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }
}

/// Where a Service port sends to in the pod: a number, or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortFacts {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    /// None: the same as `port`.
    pub target_port: Option<TargetPort>,
}

/// One endpoint of a Service, as its EndpointSlices list it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointFacts {
    /// Its addresses (IPs, or names in an FQDN slice).
    pub addresses: Vec<String>,
    pub node: Option<String>,
    /// The pod behind it, when the slice names one.
    pub pod: Option<String>,
    /// Ready unless the slice says otherwise.
    pub ready: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceFacts {
    pub name: String,
    /// None when the manifest had no metadata.namespace.
    pub namespace: Option<String>,
    pub type_: ServiceType,
    /// Whether spec.type was written (the default ClusterIP otherwise).
    pub type_given: bool,
    pub external_traffic_policy: TrafficPolicy,
    pub etp_given: bool,
    pub internal_traffic_policy: TrafficPolicy,
    pub health_check_node_port: Option<i32>,
    pub load_balancer_class: Option<String>,
    pub allocate_lb_node_ports: bool,
    pub headless: bool,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<PortFacts>,
    /// `spec.clusterIPs` (or `clusterIP`); empty for a headless Service.
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<String>,
    pub lb_ingress: Vec<LbIngress>,
}

impl ServiceFacts {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(|v| v.trim())
    }

    /// The annotation is present and says "true".
    pub fn annotation_true(&self, key: &str) -> bool {
        self.annotation(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    pub fn has_node_ports(&self) -> bool {
        match self.type_ {
            ServiceType::NodePort => true,
            ServiceType::LoadBalancer => self.allocate_lb_node_ports,
            _ => false,
        }
    }

    /// `node:PORT` for the first node port, or `node:NodePort`.
    pub fn node_port_label(&self) -> String {
        match self.ports.iter().find_map(|p| p.node_port) {
            Some(port) => format!("node:{port}"),
            None => "node:NodePort".to_string(),
        }
    }

    pub fn only_udp(&self) -> bool {
        !self.ports.is_empty() && self.ports.iter().all(|p| p.protocol == Protocol::Udp)
    }

    /// `namespace/name`.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.ns(), self.name)
    }

    /// Traffic from outside can land on nodes without an endpoint and be forwarded (and
    /// SNATed) to another node.
    pub fn forwards_between_nodes(&self) -> bool {
        matches!(
            self.type_,
            ServiceType::LoadBalancer | ServiceType::NodePort
        ) && self.external_traffic_policy == TrafficPolicy::Cluster
    }
}

/// Which controller serves an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressController {
    /// Tencent CLB layer 7 (class `qcloud`).
    Qcloud,
    /// ingress-nginx (the Kubernetes community controller, also TKE's nginx-ingress add-on).
    Nginx,
    /// AWS Load Balancer Controller (ALB).
    Alb,
    /// GKE Ingress (external or internal Application Load Balancer).
    Gce,
    /// A class explain has no rules for.
    Other(String),
    /// No class at all.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct IngressFacts {
    pub name: String,
    pub namespace: Option<String>,
    pub controller: Fact<IngressController>,
    pub annotations: BTreeMap<String, String>,
}

impl IngressFacts {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(|v| v.trim())
    }
}

/// The ingress-nginx controller: its own Service and its ConfigMap.
#[derive(Debug, Clone)]
pub struct NginxFacts {
    /// None when the controller's Service was not found.
    pub controller: Option<ServiceBackends>,
    /// `namespace/name` of the ConfigMap read, with its data; None when not found.
    pub config: Option<(String, BTreeMap<String, String>)>,
}

impl NginxFacts {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.config
            .as_ref()
            .and_then(|(_, data)| data.get(key))
            .map(|v| v.trim())
    }

    pub fn config_name(&self) -> &str {
        self.config
            .as_ref()
            .map_or("the ingress-nginx ConfigMap", |(name, _)| name.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Ipvs,
    Nftables,
    /// Cilium replaces kube-proxy (eBPF service load balancing).
    Cilium(CiliumLbMode),
}

impl ProxyMode {
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Ipvs => "ipvs",
            ProxyMode::Nftables => "nftables",
            ProxyMode::Cilium(_) => "cilium",
        }
    }
}

/// Cilium's `bpf-lb-mode`: how a node forwards external traffic to a remote backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiliumLbMode {
    Snat,
    Dsr,
    /// DSR for TCP, SNAT for UDP.
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Tke,
    Aws,
    Gke,
    Azure,
}

impl Cloud {
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Tke => "Tencent TKE",
            Cloud::Aws => "AWS",
            Cloud::Gke => "GKE",
            Cloud::Azure => "Azure",
        }
    }
}

/// TKE's cluster network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TkeNetwork {
    VpcCni,
    GlobalRouter,
    CiliumOverlay,
}

impl TkeNetwork {
    pub fn name(self) -> &'static str {
        match self {
            TkeNetwork::VpcCni => "VPC-CNI",
            TkeNetwork::GlobalRouter => "GlobalRouter",
            TkeNetwork::CiliumOverlay => "Cilium-Overlay",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetalLbMode {
    L2,
    Bgp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    pub virtual_node: bool,
    /// How many InternalIP addresses the node reports (more than one: several NICs).
    pub internal_ips: usize,
}

/// Cluster-wide settings.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub proxy: Option<Fact<ProxyMode>>,
    /// kube-proxy `masqueradeAll` / `--masquerade-all`.
    pub masquerade_all: Option<Fact<bool>>,
    pub cloud: Option<Fact<Cloud>>,
    pub tke_network: Option<Fact<TkeNetwork>>,
    /// `GlobalRouteDirectAccess` in kube-system/tke-service-controller-config.
    pub global_route_direct_access: Option<Fact<bool>>,
    pub metallb: Option<Fact<Option<MetalLbMode>>>,
    pub nodes: Vec<NodeFacts>,
    /// The node the connection enters at, when the caller knows it (lab scenarios).
    pub entry_node: Option<String>,
}

impl ClusterFacts {
    pub fn cloud_is(&self, cloud: Cloud) -> bool {
        self.cloud.as_ref().is_some_and(|c| c.value == cloud)
    }

    pub fn multi_nic(&self) -> bool {
        self.nodes.iter().any(|n| n.internal_ips > 1)
    }
}
