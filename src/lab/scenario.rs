//! The scenarios of the field notes, as data: the Services kube-proxy programs, the load
//! balancer's listeners, the proxies, the connections to open and what each must show.

use super::clb::Listener;
use super::dataplane::{Dataplane, ProxyMode};
use super::kube_proxy::{self, Service};
use super::net::XffMode;
use super::topology::{Node, Pod, CLB_VPC_IP, CLIENT_IP, ECHO_PORT, INGRESS_PORT, VIP};
use crate::explain::gather::service_facts;
use crate::explain::model::Origin;
use crate::explain::objects::Objects;
use crate::explain::ExplainError;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Who opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Client,
    /// A process on the node itself (hostNetwork).
    NodeHost(Node),
    Pod(Pod),
}

impl From {
    pub fn ip(self) -> Ipv4Addr {
        match self {
            From::Client => CLIENT_IP,
            From::NodeHost(node) => node.ip(),
            From::Pod(pod) => pod.ip(),
        }
    }
}

impl fmt::Display for From {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            From::Client => f.write_str("client"),
            From::NodeHost(node) => write!(f, "{node} (host)"),
            From::Pod(pod) => write!(f, "pod {pod}"),
        }
    }
}

/// An address the lab can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Client,
    NodeIp(Node),
    Bridge(Node),
    Pod(Pod),
    /// The load balancer's own address in the VPC.
    Lb,
    /// A node's address on its second NIC (not its InternalIP).
    SecondNic(Node),
}

impl Who {
    pub fn ip(self) -> Ipv4Addr {
        match self {
            Who::Client => CLIENT_IP,
            Who::NodeIp(node) => node.ip(),
            Who::SecondNic(node) => node.second_nic_ip(),
            Who::Bridge(node) => node.cbr0_ip(),
            Who::Pod(pod) => pod.ip(),
            Who::Lb => CLB_VPC_IP,
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Client => write!(f, "the client ({CLIENT_IP})"),
            Who::NodeIp(node) => write!(f, "{node}'s address ({})", node.ip()),
            Who::Bridge(node) => write!(f, "cbr0 of {node} ({})", node.cbr0_ip()),
            Who::Pod(pod) => write!(f, "pod {pod} ({})", pod.ip()),
            Who::Lb => write!(f, "the load balancer's VPC address ({CLB_VPC_IP})"),
            Who::SecondNic(node) => {
                write!(
                    f,
                    "eth1 of {node}, its second NIC ({})",
                    node.second_nic_ip()
                )
            }
        }
    }
}

/// What a connection must show (the scenario's claim, checked against the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The echo in `by` answers; its accept() returns `l4`; X-Forwarded-For carries `xff`.
    Answered { by: Pod, l4: Who, xff: Option<Who> },
    /// No answer: the SYN is last seen arriving at `at`, which drops it.
    Dropped { at: Node },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub from: From,
    pub to: SocketAddrV4,
    /// The way in, in words ("the load balancer's VIP", "the Service's cluster IP").
    pub via: &'static str,
    pub expect: Expect,
    /// The explain verdict this connection is an instance of: its origin and `via`
    /// (`lb`, `ingress/NAME`, `lb-address`, `cluster-ip`, `hairpin`); `None` when no Service is
    /// involved.
    pub explained_by: Option<(Origin, &'static str)>,
}

/// An HTTP proxy the scenario runs: the cloud L7 load balancer or an ingress controller pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `None`: in the load balancer; `Some(pod)`: in that pod.
    pub pod: Option<Pod>,
    pub listen: SocketAddrV4,
    pub to: SocketAddrV4,
    pub xff: XffMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    /// The real setups it stands for.
    pub models: &'static str,
    /// The pods behind each Service of `manifest`, by the Service's name.
    pub endpoints: Vec<(&'static str, Vec<Pod>)>,
    pub listeners: Vec<Listener>,
    pub proxies: Vec<Proxy>,
    pub connections: Vec<Connection>,
    /// The manifests it models: the Services kube-proxy programs, and what explain reads.
    pub manifest: &'static str,
    /// How the nodes are programmed: kube-proxy's mode, a CNI's masquerade, a second NIC.
    pub dataplane: Dataplane,
    /// Whether a probe runs on the load balancer: a cloud's load balancer is out of reach, and
    /// the verdict must then rest on what the nodes saw.
    pub probe_lb: bool,
    /// Why, in one line (used when explain has nothing to say).
    pub cause: &'static str,
    pub fix: &'static str,
}

/// The web Service's cluster IP and node port, as its manifests give them (the connections and
/// the load balancer's listeners aim at them).
const WEB_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const WEB_NODE_PORT: u16 = 31080;
const INGRESS_NODE_PORT: u16 = 30080;

const WEB: &str = "web";
const INGRESS_CONTROLLER: &str = "ingress-nginx-controller";

/// What a scenario's manifest does not hold as the lab models it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("scenario {scenario}: {source}")]
    Manifest {
        scenario: &'static str,
        source: ExplainError,
    },
    #[error("scenario {scenario}: {source}")]
    Unsupported {
        scenario: &'static str,
        source: kube_proxy::Unsupported,
    },
}

impl Scenario {
    /// The objects of its manifest, as explain reads them.
    pub fn objects(&self) -> Result<Objects, ModelError> {
        let mut objects = Objects::default();
        objects
            .add_yaml(self.manifest)
            .map_err(|source| ModelError::Manifest {
                scenario: self.name,
                source,
            })?;
        Ok(objects)
    }

    /// The Services kube-proxy programs: each Service of the manifest, read into explain's
    /// model, with the pods [`Scenario::endpoints`] puts behind it.
    pub fn services(&self) -> Result<Vec<Service>, ModelError> {
        let mut services = Vec::new();
        for service in &self.objects()?.services {
            let facts = service_facts(service);
            let pods = self
                .endpoints
                .iter()
                .find(|(name, _)| *name == facts.name)
                .map_or(&[][..], |(_, pods)| pods);
            let ports =
                Service::ports_of(&facts, pods).map_err(|source| ModelError::Unsupported {
                    scenario: self.name,
                    source,
                })?;
            services.extend(ports);
        }
        Ok(services)
    }
}

fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(VIP, port)
}

fn to_node(node: Node, port: u16) -> Listener {
    Listener::L4 {
        port: 80,
        backend: SocketAddrV4::new(node.ip(), port),
        backend_name: format!("{node}:{port}"),
        snat: false,
    }
}

fn from_client(expect: Expect) -> Connection {
    Connection {
        from: From::Client,
        to: vip(80),
        via: "the load balancer's VIP",
        expect,
        explained_by: Some((Origin::InternetViaLb, "lb")),
    }
}

fn answered(by: Pod, l4: Who, xff: Option<Who>) -> Expect {
    Expect::Answered { by, l4, xff }
}

/// Every scenario, in the order `--scenario all` runs them.
pub fn all() -> Vec<Scenario> {
    let mut all = vec![
        Scenario {
            name: "cluster-same-node",
            title: "LB → NodePort, externalTrafficPolicy=Cluster, endpoint on the receiving node",
            models: "a cloud layer-4 load balancer (an AWS NLB, TKE's CLB) in front of a \
                     LoadBalancer Service with the default traffic policy",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![to_node(Node::A, WEB_NODE_PORT)],
            proxies: vec![],
            connections: vec![from_client(answered(Pod::AppA, Who::Bridge(Node::A), None))],
            manifest: WEB_CLUSTER_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "externalTrafficPolicy=Cluster: kube-proxy marks external traffic for masquerade \
                    (KUBE-EXT → KUBE-MARK-MASQ) and KUBE-POSTROUTING rewrites the source to the \
                    address of the interface it leaves by, cbr0, as the endpoint is on this node",
            fix: "set spec.externalTrafficPolicy: Local, or let the load balancer reach pods directly",
        },
        Scenario {
            name: "cluster-cross-node",
            title: "LB → NodePort, externalTrafficPolicy=Cluster, endpoint on the other node",
            models: "the same Service when the LB picks a node that hosts no replica",
            endpoints: vec![(WEB, vec![Pod::AppB])],
            listeners: vec![to_node(Node::A, WEB_NODE_PORT)],
            proxies: vec![],
            connections: vec![from_client(answered(Pod::AppB, Who::NodeIp(Node::A), None))],
            manifest: WEB_CLUSTER_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "externalTrafficPolicy=Cluster: node-a DNATs to a pod on node-b and masquerades \
                    to its own address so that the reply comes back through it",
            fix: "set spec.externalTrafficPolicy: Local, or let the load balancer reach pods directly",
        },
        Scenario {
            name: "local",
            title: "LB → NodePort, externalTrafficPolicy=Local",
            models: "a LoadBalancer Service with externalTrafficPolicy: Local; the LB health-checks \
                     healthCheckNodePort and should only send to nodes with endpoints",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![
                to_node(Node::A, WEB_NODE_PORT),
                Listener::L4 {
                    port: 81,
                    backend: SocketAddrV4::new(Node::B.ip(), WEB_NODE_PORT),
                    backend_name: format!("node-b:{WEB_NODE_PORT} (no endpoint there)"),
                    snat: false,
                },
            ],
            proxies: vec![],
            connections: vec![
                from_client(answered(Pod::AppA, Who::Client, None)),
                Connection {
                    from: From::Client,
                    to: vip(81),
                    via: "the load balancer, sent to node-b which hosts no endpoint",
                    expect: Expect::Dropped { at: Node::B },
                    explained_by: Some((Origin::InternetViaLb, "lb")),
                },
            ],
            manifest: WEB_LOCAL_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "externalTrafficPolicy=Local: the external chain only jumps to local endpoints \
                    and never marks for masquerade; a node without local endpoints drops the \
                    connection (KUBE-EXTERNAL-SERVICES … has no local endpoints -j DROP)",
            fix: "keep Local, and make sure the load balancer sends only to nodes with a ready \
                  endpoint: it must health-check the Service's spec.healthCheckNodePort (cloud \
                  controllers set that up for Local)",
        },
        Scenario {
            name: "lb-snat",
            title: "an unprobed load balancer that rewrites the source → NodePort, Local",
            models: "a full-NAT load balancer, an AWS NLB without client IP preservation, a router \
                     that masquerades: none of them can be probed, only the nodes behind",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![Listener::L4 {
                port: 80,
                backend: SocketAddrV4::new(Node::A.ip(), WEB_NODE_PORT),
                backend_name: format!("node-a:{WEB_NODE_PORT}"),
                snat: true,
            }],
            proxies: vec![],
            connections: vec![Connection {
                explained_by: None,
                ..from_client(answered(Pod::AppA, Who::Lb, None))
            }],
            manifest: WEB_LOCAL_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: false,
            cause: "the load balancer replaces the client's address with its own before the \
                    first node sees the SYN; externalTrafficPolicy=Local then keeps what it \
                    receives, which is already the load balancer's address",
            fix: "enable the load balancer's client IP preservation (AWS NLB: \
                  preserve_client_ip.enabled=true), or have it send the PROXY protocol and \
                  read it in the backend",
        },
        Scenario {
            name: "direct",
            title: "LB straight to the pod IP",
            models: "a load balancer that targets pod IPs: AWS NLB ip targets with client IP \
                     preservation, GKE container-native load balancing, TKE direct access \
                     (service.cloud.tencent.com/direct-access: \"true\" on VPC-CNI, or \
                     GlobalRouter with GlobalRouteDirectAccess)",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![Listener::L4 {
                port: 80,
                backend: SocketAddrV4::new(Pod::AppA.ip(), ECHO_PORT),
                backend_name: format!("pod app-a {}:{ECHO_PORT}", Pod::AppA.ip()),
                snat: false,
            }],
            proxies: vec![],
            connections: vec![from_client(answered(Pod::AppA, Who::Client, None))],
            manifest: WEB_DIRECT_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "the load balancer targets the pod IP: no NodePort, no kube-proxy rule matches, \
                    nothing rewrites the source",
            fix: "nothing to fix: this is the recommended way to keep the client address",
        },
        Scenario {
            name: "l7-ingress",
            title: "L7 load balancer (adds X-Forwarded-For) → NodePort, externalTrafficPolicy=Cluster",
            models: "a cloud layer-7 load balancer sending to NodePorts: AWS ALB instance \
                     targets, TKE's CLB Ingress (kubernetes.io/ingress.class: qcloud)",
            endpoints: vec![(WEB, vec![Pod::AppB])],
            listeners: vec![Listener::L7 {
                port: 80,
                backend: SocketAddrV4::new(Node::A.ip(), WEB_NODE_PORT),
            }],
            proxies: vec![Proxy {
                pod: None,
                listen: vip(80),
                to: SocketAddrV4::new(Node::A.ip(), WEB_NODE_PORT),
                xff: XffMode::Append,
            }],
            connections: vec![Connection {
                explained_by: Some((Origin::InternetViaLb, "ingress/web")),
                ..from_client(answered(Pod::AppB, Who::NodeIp(Node::A), Some(Who::Client)))
            }],
            manifest: L7_INGRESS_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "an L7 load balancer terminates the client's connection and opens its own; it \
                    writes the client address into X-Forwarded-For, and the NodePort hop \
                    (Cluster) masquerades the L4 source to a node",
            fix: "read the client address from X-Forwarded-For / X-Real-IP (trust only the load \
                  balancer's addresses)",
        },
        Scenario {
            name: "nginx-ingress-cluster",
            title: "ingress-nginx behind a NodePort with externalTrafficPolicy=Cluster",
            models: "the ingress-nginx controller Service left at the default traffic policy",
            endpoints: vec![(INGRESS_CONTROLLER, vec![Pod::Ingress]), (WEB, vec![Pod::AppA])],
            listeners: vec![to_node(Node::B, INGRESS_NODE_PORT)],
            proxies: vec![ingress_proxy()],
            connections: vec![from_client(answered(
                Pod::AppA,
                Who::Pod(Pod::Ingress),
                Some(Who::NodeIp(Node::B)),
            ))],
            manifest: NGINX_CLUSTER_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "the controller's own Service uses Cluster: node-b masquerades the client's \
                    connection before the controller accepts it, so the controller writes a node \
                    address into X-Forwarded-For",
            fix: "set externalTrafficPolicy: Local on the ingress-nginx controller Service (or \
                  run it with hostNetwork / direct access)",
        },
        Scenario {
            name: "nginx-ingress-local",
            title: "ingress-nginx behind a NodePort with externalTrafficPolicy=Local",
            models: "the ingress-nginx controller Service with externalTrafficPolicy: Local",
            endpoints: vec![(INGRESS_CONTROLLER, vec![Pod::Ingress]), (WEB, vec![Pod::AppA])],
            listeners: vec![to_node(Node::A, INGRESS_NODE_PORT)],
            proxies: vec![ingress_proxy()],
            connections: vec![from_client(answered(
                Pod::AppA,
                Who::Pod(Pod::Ingress),
                Some(Who::Client),
            ))],
            manifest: NGINX_LOCAL_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "the controller's Service uses Local: the controller accepts the client's own \
                    address and puts it in X-Forwarded-For; the app sees the controller at L4",
            fix: "read X-Forwarded-For / X-Real-IP in the app; keep Local on the controller's \
                  Service, with the load balancer health-checking its healthCheckNodePort so that \
                  only nodes with a controller pod get traffic",
        },
        Scenario {
            name: "in-cluster-to-lb",
            title: "a node and a pod connect to the load balancer's address from inside",
            models: "health checks, cron jobs or sidecars calling the public address of a Service \
                     of their own cluster",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![to_node(Node::A, WEB_NODE_PORT)],
            proxies: vec![],
            connections: vec![
                Connection {
                    from: From::NodeHost(Node::B),
                    to: vip(80),
                    via: "the load balancer's VIP, DNATed to the pod by kube-proxy inside \
                          node-b before any interface: no hop shows the VIP",
                    expect: answered(Pod::AppA, Who::NodeIp(Node::B), None),
                    explained_by: Some((Origin::Node, "lb-address")),
                },
                Connection {
                    from: From::Pod(Pod::Toolbox),
                    to: vip(80),
                    via: "the load balancer's VIP, DNATed to the pod by kube-proxy on node-b, \
                          between the pod's veth and cbr0",
                    expect: answered(Pod::AppA, Who::Pod(Pod::Toolbox), None),
                    explained_by: Some((Origin::InClusterPod, "lb-address")),
                },
            ],
            manifest: WEB_LOCAL_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "kube-proxy captures the LB address on every node (KUBE-SERVICES \"loadbalancer \
                    IP\") and DNATs it to an endpoint: the traffic never reaches the load \
                    balancer. The node's own connection is DNATed in its output path, before any \
                    interface, and marked for MASQUERADE even with Local, which leaves it the \
                    node's address it already has; a pod's keeps the pod's address",
            fix: "call the Service by its cluster DNS name inside the cluster; expect node \
                  addresses for host-network callers",
        },
        Scenario {
            name: "pod-to-pod",
            title: "a pod connects to another pod's IP",
            models: "any CNI with routable pod IPs (flannel host-gw, GlobalRouter, VPC-CNI, Calico)",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![],
            proxies: vec![],
            connections: vec![Connection {
                from: From::Pod(Pod::Toolbox),
                to: SocketAddrV4::new(Pod::AppA.ip(), ECHO_PORT),
                via: "the pod IP",
                expect: answered(Pod::AppA, Who::Pod(Pod::Toolbox), None),
                explained_by: None,
            }],
            manifest: WEB_CLUSTER_IP_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "pod-to-pod traffic is routed, not translated: no Service, no kube-proxy rule",
            fix: "nothing to fix",
        },
        Scenario {
            name: "hairpin",
            title: "a pod reaches its own Service and lands on itself",
            models: "a pod calling its own Service's cluster IP (kubelet --hairpin-mode=hairpin-veth)",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![],
            proxies: vec![],
            connections: vec![Connection {
                from: From::Pod(Pod::AppA),
                to: SocketAddrV4::new(WEB_CLUSTER_IP, 80),
                via: "the Service's cluster IP",
                expect: answered(Pod::AppA, Who::Bridge(Node::A), None),
                explained_by: Some((Origin::InClusterPod, "hairpin")),
            }],
            manifest: WEB_CLUSTER_IP_YAML,
            dataplane: Dataplane::KUBE_PROXY,
            probe_lb: true,
            cause: "hairpin: the endpoint chain masquerades traffic from the endpoint itself \
                    (KUBE-SEP … -s <pod IP> -j KUBE-MARK-MASQ), or its reply would skip the \
                    un-DNAT; the pod sees cbr0",
            fix: "nothing to fix: expected for a pod calling itself through its Service",
        },
    ];
    let variants = nftables_variants(&all);
    all.extend(variants);
    all.extend(other_rewriters());
    all
}

/// Scenarios again with kube-proxy in nftables mode: the same verdicts from other rules (one
/// `ip kube-proxy` table, no iptables rule, no rule counters).
fn nftables_variants(all: &[Scenario]) -> Vec<Scenario> {
    let variants = [
        (
            "cluster-same-node",
            "cluster-same-node-nft",
            "cluster-same-node with kube-proxy in nftables mode",
        ),
        (
            "cluster-cross-node",
            "cluster-cross-node-nft",
            "cluster-cross-node with kube-proxy in nftables mode",
        ),
        (
            "local",
            "local-nft",
            "local with kube-proxy in nftables mode",
        ),
    ];
    variants
        .into_iter()
        .filter_map(|(base, name, title)| {
            let base = all.iter().find(|s| s.name == base)?;
            Some(Scenario {
                name,
                title,
                models: "the same Service with kube-proxy --proxy-mode=nftables",
                dataplane: Dataplane {
                    proxy: ProxyMode::Nftables,
                    ..base.dataplane
                },
                ..base.clone()
            })
        })
        .collect()
}

/// Rewrites not made by kube-proxy's rules as explain reads them: a CNI's masquerade ahead of
/// kube-proxy's, and MASQUERADE on a second NIC.
fn other_rewriters() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "calico-nat-outgoing",
            title: "a pod calls its Service's LB address; Calico masquerades ahead of kube-proxy",
            models: "Calico with natOutgoing (its chains run ahead of kube-proxy's), while \
                     node-a's pods hold addresses of a pool Calico no longer lists (deleted, or \
                     a pod CIDR added by hand): to node-b's Calico they are outside the cluster",
            endpoints: vec![(WEB, vec![Pod::AppA])],
            listeners: vec![to_node(Node::A, WEB_NODE_PORT)],
            proxies: vec![],
            connections: vec![Connection {
                from: From::Pod(Pod::Toolbox),
                to: vip(80),
                via: "the load balancer's VIP, DNATed to the pod by kube-proxy on node-b",
                expect: answered(Pod::AppA, Who::NodeIp(Node::B), None),
                explained_by: Some((Origin::InClusterPod, "lb-address")),
            }],
            manifest: WEB_CLUSTER_YAML,
            dataplane: Dataplane {
                cni_masquerade: Some(Node::B),
                ..Dataplane::KUBE_PROXY
            },
            probe_lb: true,
            cause: "kube-proxy marks the connection for its MASQUERADE, but Calico's natOutgoing \
                    (cali-nat-outgoing, in POSTROUTING ahead of KUBE-POSTROUTING) masquerades \
                    it first: its destination, app-a, is in no IP pool; the pod sees node-b's \
                    address either way, from another rule than the one explain names",
            fix: "put every pod CIDR in a Calico IP pool (calicoctl get ippools -o wide)",
        },
        Scenario {
            name: "multi-nic",
            title: "LB → NodePort, Cluster, the other node's pods routed through a second NIC",
            models: "nodes with several interfaces (a storage or backend network, secondary \
                     ENIs): MASQUERADE takes the address of the interface the packet leaves by, \
                     not the node's InternalIP (kubernetes#133024)",
            endpoints: vec![(WEB, vec![Pod::AppB])],
            listeners: vec![to_node(Node::A, WEB_NODE_PORT)],
            proxies: vec![],
            connections: vec![from_client(answered(
                Pod::AppB,
                Who::SecondNic(Node::A),
                None,
            ))],
            manifest: WEB_CLUSTER_YAML,
            dataplane: Dataplane {
                second_nic: Some(Node::A),
                ..Dataplane::KUBE_PROXY
            },
            probe_lb: true,
            cause: "externalTrafficPolicy=Cluster: node-a masquerades, and MASQUERADE takes the \
                    address of the interface the packet leaves by: node-a routes node-b's pods \
                    through eth1, so the pod sees eth1's address, not node-a's InternalIP",
            fix: "set spec.externalTrafficPolicy: Local, or route pod traffic through the \
                  InternalIP's interface",
        },
    ]
}

fn ingress_proxy() -> Proxy {
    Proxy {
        pod: Some(Pod::Ingress),
        listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, INGRESS_PORT),
        to: SocketAddrV4::new(Pod::AppA.ip(), ECHO_PORT),
        xff: XffMode::Replace,
    }
}

/// The scenarios `--scenario NAME` selects (`all` for every one).
pub fn select(name: &str) -> Option<Vec<Scenario>> {
    let all = all();
    if name == "all" {
        return Some(all);
    }
    let chosen: Vec<Scenario> = all.into_iter().filter(|s| s.name == name).collect();
    (!chosen.is_empty()).then_some(chosen)
}

/// The scenarios `--scenario A,B` chooses, in the order given and each once (`all` for every
/// one); the first name no scenario has is the error.
pub fn choose(names: &[String]) -> Result<Vec<Scenario>, String> {
    let all = all();
    if names.iter().any(|n| n == "all") {
        return Ok(all);
    }
    let mut chosen: Vec<Scenario> = Vec::new();
    for name in names {
        let scenario = all
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| name.clone())?;
        if !chosen.iter().any(|c| c.name == scenario.name) {
            chosen.push(scenario.clone());
        }
    }
    Ok(chosen)
}

// What each scenario models, as manifests explain reads (also usable with `explain -f`).
const WEB_CLUSTER_YAML: &str = include_str!("manifests/web-cluster.yaml");

const WEB_LOCAL_YAML: &str = include_str!("manifests/web-local.yaml");

const WEB_DIRECT_YAML: &str = include_str!("manifests/web-direct.yaml");

const WEB_CLUSTER_IP_YAML: &str = include_str!("manifests/web-cluster-ip.yaml");

const L7_INGRESS_YAML: &str = include_str!("manifests/l7-ingress.yaml");

const NGINX_CLUSTER_YAML: &str = include_str!("manifests/nginx-ingress-cluster.yaml");

const NGINX_LOCAL_YAML: &str = include_str!("manifests/nginx-ingress-local.yaml");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::facts::TrafficPolicy;
    use serde::Deserialize;

    #[test]
    fn sixteen_scenarios_with_unique_names() {
        let all = all();
        assert_eq!(all.len(), 16);
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 16);
        for scenario in &all {
            assert!(!scenario.connections.is_empty(), "{}", scenario.name);
            assert!(
                serde_yaml::Deserializer::from_str(scenario.manifest)
                    .all(|doc| serde_yaml::Value::deserialize(doc).is_ok()),
                "{} manifest is not YAML",
                scenario.name
            );
        }
    }

    #[test]
    fn selecting_by_name() {
        assert_eq!(select("all").map(|s| s.len()), Some(16));
        assert_eq!(select("local").unwrap()[0].name, "local");
        assert!(select("nope").is_none());
        let names = |list: &[&str]| -> Result<Vec<&str>, String> {
            let list: Vec<String> = list.iter().map(|n| n.to_string()).collect();
            choose(&list).map(|s| s.iter().map(|s| s.name).collect())
        };
        assert_eq!(
            names(&["multi-nic", "local", "multi-nic"]),
            Ok(vec!["multi-nic", "local"])
        );
        assert_eq!(names(&["local", "all"]).map(|n| n.len()), Ok(16));
        assert_eq!(names(&["local", "nope"]), Err("nope".to_string()));
    }

    /// One description per scenario: kube-proxy's Services come from the manifest explain reads.
    #[test]
    fn the_services_come_from_the_manifests() {
        let services = |name: &str| select(name).unwrap().remove(0).services().unwrap();
        for scenario in all() {
            let services = scenario.services().unwrap();
            for (name, _) in &scenario.endpoints {
                assert!(
                    services.iter().any(|s| s.name == *name),
                    "{}: no Service {name} in its manifest",
                    scenario.name
                );
            }
            // The load balancer sends to a node port of the scenario's Services, or to a pod.
            for listener in &scenario.listeners {
                let (Listener::L4 { backend, .. } | Listener::L7 { backend, .. }) = listener;
                let to_node_port = services.iter().any(|s| s.node_port == Some(backend.port()));
                let to_pod = Pod::ALL.iter().any(|p| p.ip() == *backend.ip());
                assert!(to_node_port || to_pod, "{}: {backend}", scenario.name);
            }
        }
        let web = &services("cluster-same-node")[0];
        assert_eq!(
            (web.port_name.as_str(), web.port, web.target_port),
            ("http", 80, ECHO_PORT)
        );
        assert_eq!(
            (web.cluster_ip, web.node_port, web.load_balancer_ip),
            (WEB_CLUSTER_IP, Some(WEB_NODE_PORT), Some(VIP))
        );
        assert_eq!(web.external_traffic_policy, TrafficPolicy::Cluster);
        assert_eq!(web.endpoints.len(), 1);
        let web = &services("local")[0];
        assert_eq!(web.external_traffic_policy, TrafficPolicy::Local);
        let web = &services("l7-ingress")[0];
        assert_eq!(
            (web.node_port, web.load_balancer_ip),
            (Some(WEB_NODE_PORT), None)
        );
        let web = &services("hairpin")[0];
        assert_eq!((web.cluster_ip, web.node_port), (WEB_CLUSTER_IP, None));
        let nginx = services("nginx-ingress-local");
        let names: Vec<&str> = nginx.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [INGRESS_CONTROLLER, WEB]);
        assert_eq!(nginx[0].external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(
            (nginx[0].node_port, nginx[0].target_port),
            (Some(INGRESS_NODE_PORT), INGRESS_PORT)
        );
        assert_eq!(nginx[1].node_port, None);
    }
}
