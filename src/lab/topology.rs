//! The lab's dataplane: who lives where, with which address, and the `ip` commands that build it.
//!
//! One topology serves every scenario (only the rules change), so it is built once per run:
//!
//! ```text
//! client ──inet0── clb ──eth0── vpc0 (bridge in "vpc") ──┬── eth0 node-a cbr0 ── app-a, ingress-nginx
//! 192.0.2.10       VIP 203.0.113.100                      │   eth1 (second NIC)
//!                                                         │    │
//!                                                         └── eth0 node-b cbr0 ── app-b, toolbox
//!                                                             eth1
//! ```
//!
//! Every address is from a documentation or benchmark range: the client on 192.0.2.0/24, the
//! load balancer's VIP on 203.0.113.0/24, the VPC on 198.51.100.0/24, pods on 198.18.0.0/16,
//! Service cluster IPs on 198.19.0.0/24 and the nodes' second network (eth1, a link of their
//! own) on 198.19.254.0/24. Routes use the second network only where a scenario says so
//! ([`route_to_other_pods`]). Nothing is created outside the run's namespaces.

use std::fmt;
use std::net::Ipv4Addr;

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The load balancer's leg towards the client.
pub const CLB_INET_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The load balancer's leg in the VPC, the source of its L7 proxy's connections.
pub const CLB_VPC_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The load balancer's public address (the Service's `status.loadBalancer.ingress[0].ip`).
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
/// Every pod address (kube-proxy's `--cluster-cidr`, its "local traffic" detector).
pub const CLUSTER_CIDR: &str = "198.18.0.0/16";
/// The port every app pod's echo listens on (the Services' targetPort).
pub const ECHO_PORT: u16 = 8080;
/// The port the ingress controller pod listens on.
pub const INGRESS_PORT: u16 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    A,
    B,
}

impl Node {
    pub const ALL: [Node; 2] = [Node::A, Node::B];

    pub fn name(self) -> &'static str {
        match self {
            Node::A => "node-a",
            Node::B => "node-b",
        }
    }

    fn index(self) -> u8 {
        match self {
            Node::A => 1,
            Node::B => 2,
        }
    }

    /// The node's VPC address (its InternalIP).
    pub fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 10 + self.index())
    }

    /// The pod bridge's address, the pods' gateway.
    pub fn cbr0_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index(), 1)
    }

    /// The node's pod network: its address and prefix length.
    pub fn pod_net(self) -> (Ipv4Addr, u8) {
        (Ipv4Addr::new(198, 18, self.index(), 0), 24)
    }

    /// The node's pod CIDR, as `ip route` and the API write it.
    pub fn pod_cidr(self) -> String {
        let (net, prefix) = self.pod_net();
        format!("{net}/{prefix}")
    }

    /// The node's address on its second NIC (eth1), which is not its InternalIP.
    pub fn second_nic_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 254, 10 + self.index())
    }

    pub fn other(self) -> Node {
        match self {
            Node::A => Node::B,
            Node::B => Node::A,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pod {
    /// An app replica on node-a, running the echo.
    AppA,
    /// An app replica on node-b, running the echo.
    AppB,
    /// The ingress controller (an HTTP proxy) on node-a.
    Ingress,
    /// A pod on node-b that only opens connections.
    Toolbox,
}

impl Pod {
    pub const ALL: [Pod; 4] = [Pod::AppA, Pod::AppB, Pod::Ingress, Pod::Toolbox];

    pub fn name(self) -> &'static str {
        match self {
            Pod::AppA => "app-a",
            Pod::AppB => "app-b",
            Pod::Ingress => "ingress-nginx",
            Pod::Toolbox => "toolbox",
        }
    }

    pub fn node(self) -> Node {
        match self {
            Pod::AppA | Pod::Ingress => Node::A,
            Pod::AppB | Pod::Toolbox => Node::B,
        }
    }

    pub fn ip(self) -> Ipv4Addr {
        let host = match self {
            Pod::AppA | Pod::AppB => 10,
            Pod::Ingress | Pod::Toolbox => 20,
        };
        Ipv4Addr::new(198, 18, self.node().index(), host)
    }

    /// The node side of the pod's veth pair (at most 15 characters).
    pub fn veth(self) -> String {
        let short = match self {
            Pod::Ingress => "ingress",
            other => other.name(),
        };
        format!("veth-{short}")
    }

    /// Whether the pod runs `realip-probe echo` on [`ECHO_PORT`].
    pub fn runs_echo(self) -> bool {
        matches!(self, Pod::AppA | Pod::AppB)
    }
}

impl fmt::Display for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A network namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Client,
    /// The cloud load balancer (CLB/NLB/ALB): DNAT for L4 listeners, a proxy for L7 ones.
    Clb,
    /// The VPC's switch: a bridge joining the load balancer and the nodes.
    Vpc,
    Node(Node),
    Pod(Pod),
}

impl Host {
    pub fn all() -> Vec<Host> {
        let mut hosts = vec![Host::Client, Host::Clb, Host::Vpc];
        hosts.extend(Node::ALL.map(Host::Node));
        hosts.extend(Pod::ALL.map(Host::Pod));
        hosts
    }

    pub fn role(self) -> &'static str {
        match self {
            Host::Client => "client",
            Host::Clb => "clb",
            Host::Vpc => "vpc",
            Host::Node(node) => node.name(),
            Host::Pod(pod) => pod.name(),
        }
    }
}

/// Names of one run's namespaces: `PREFIX-ID-ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub id: String,
    /// [`NS_PREFIX`] for the lab; another for a test, whose namespaces must never be taken for
    /// a user's lab (nor a user's lab for the test's).
    ns_prefix: String,
}

/// Every lab namespace starts with this unless `lab --ns-prefix` says otherwise.
pub const NS_PREFIX: &str = "rip-";

impl Names {
    pub fn new(id: impl Into<String>) -> Self {
        Names::with_prefix(NS_PREFIX, id)
    }

    /// The same topology under another namespace prefix (e.g. trace's end-to-end test, or
    /// `lab --ns-prefix` run by a test).
    pub fn with_prefix(ns_prefix: impl Into<String>, id: impl Into<String>) -> Self {
        Names {
            id: id.into(),
            ns_prefix: ns_prefix.into(),
        }
    }

    /// The namespace prefix shared by every run under it (`rip-`).
    pub fn ns_prefix(&self) -> &str {
        &self.ns_prefix
    }

    pub fn prefix(&self) -> String {
        format!("{}{}-", self.ns_prefix, self.id)
    }

    pub fn ns(&self, host: Host) -> String {
        format!("{}{}", self.prefix(), host.role())
    }

    pub fn all(&self) -> Vec<String> {
        Host::all().into_iter().map(|host| self.ns(host)).collect()
    }
}

/// A command to run: the program and its arguments.
pub type Argv = Vec<String>;

fn argv(parts: &[&str]) -> Argv {
    parts.iter().map(|part| part.to_string()).collect()
}

/// `ip -n NS ...`
fn ip(ns: &str, rest: &[&str]) -> Argv {
    let mut cmd = argv(&["ip", "-n", ns]);
    cmd.extend(rest.iter().map(|part| part.to_string()));
    cmd
}

/// The commands that build the whole topology, in order. Namespaces are created by the caller
/// (it records each one for cleanup as it goes); everything here happens inside them.
pub fn build_commands(names: &Names) -> Vec<Argv> {
    let client = names.ns(Host::Client);
    let clb = names.ns(Host::Clb);
    let vpc = names.ns(Host::Vpc);
    let mut cmds: Vec<Argv> = Host::all()
        .into_iter()
        .map(|host| ip(&names.ns(host), &["link", "set", "lo", "up"]))
        .collect();

    // The VPC switch.
    cmds.push(ip(&vpc, &["link", "add", "vpc0", "type", "bridge"]));
    cmds.push(ip(&vpc, &["link", "set", "vpc0", "up"]));

    // client <-> clb, the "internet".
    cmds.push(ip(
        &client,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "inet0", "netns", &clb,
        ],
    ));
    cmds.push(ip(
        &client,
        &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"],
    ));
    cmds.push(ip(&client, &["link", "set", "eth0", "up"]));
    cmds.push(ip(
        &client,
        &["route", "add", "default", "via", &CLB_INET_IP.to_string()],
    ));
    cmds.push(ip(
        &clb,
        &["addr", "add", &format!("{CLB_INET_IP}/24"), "dev", "inet0"],
    ));
    cmds.push(ip(&clb, &["link", "set", "inet0", "up"]));

    // clb <-> vpc; the VIP lives on the load balancer's loopback (its L7 proxy binds it).
    cmds.extend(uplink(&clb, &vpc, "vpc-clb", CLB_VPC_IP));
    cmds.push(ip(
        &clb,
        &["addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    ));
    for node in Node::ALL {
        // The VPC routes each node's pod CIDR to it (GlobalRouter / VPC-CNI style).
        cmds.push(ip(
            &clb,
            &[
                "route",
                "add",
                &node.pod_cidr(),
                "via",
                &node.ip().to_string(),
            ],
        ));
    }

    for node in Node::ALL {
        let ns = names.ns(Host::Node(node));
        cmds.extend(uplink(
            &ns,
            &vpc,
            &format!("vpc-{}", node.name()),
            node.ip(),
        ));
        cmds.push(ip(
            &ns,
            &["route", "add", "default", "via", &CLB_VPC_IP.to_string()],
        ));
        let other = node.other();
        cmds.push(ip(
            &ns,
            &[
                "route",
                "add",
                &other.pod_cidr(),
                "via",
                &other.ip().to_string(),
            ],
        ));
        cmds.push(ip(&ns, &["link", "add", "cbr0", "type", "bridge"]));
        cmds.push(ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{}/24", node.cbr0_ip()),
                "dev",
                "cbr0",
            ],
        ));
        cmds.push(ip(&ns, &["link", "set", "cbr0", "up"]));
    }

    // The second NIC: a link of the nodes' own (a storage or backend network).
    let (a, b) = (names.ns(Host::Node(Node::A)), names.ns(Host::Node(Node::B)));
    cmds.push(ip(
        &a,
        &[
            "link", "add", SECOND_NIC, "type", "veth", "peer", "name", SECOND_NIC, "netns", &b,
        ],
    ));
    for node in Node::ALL {
        let ns = names.ns(Host::Node(node));
        cmds.push(ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{}/24", node.second_nic_ip()),
                "dev",
                SECOND_NIC,
            ],
        ));
        cmds.push(ip(&ns, &["link", "set", SECOND_NIC, "up"]));
    }

    for pod in Pod::ALL {
        let node_ns = names.ns(Host::Node(pod.node()));
        let pod_ns = names.ns(Host::Pod(pod));
        let veth = pod.veth();
        cmds.push(ip(
            &node_ns,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod_ns,
            ],
        ));
        cmds.push(ip(&node_ns, &["link", "set", &veth, "master", "cbr0"]));
        // kubelet's --hairpin-mode=hairpin-veth.
        cmds.push(ip(
            &node_ns,
            &[
                "link",
                "set",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ],
        ));
        cmds.push(ip(&node_ns, &["link", "set", &veth, "up"]));
        cmds.push(ip(
            &pod_ns,
            &["addr", "add", &format!("{}/24", pod.ip()), "dev", "eth0"],
        ));
        cmds.push(ip(&pod_ns, &["link", "set", "eth0", "up"]));
        cmds.push(ip(
            &pod_ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &pod.node().cbr0_ip().to_string(),
            ],
        ));
    }

    // Forwarding on the routers; kube-proxy needs bridged traffic to see iptables (-e: the
    // br_netfilter key may be missing, then bridged traffic simply skips iptables).
    for host in [Host::Clb, Host::Node(Node::A), Host::Node(Node::B)] {
        let mut cmd = argv(&["ip", "netns", "exec"]);
        cmd.push(names.ns(host));
        cmd.extend(argv(&["sysctl", "-q", "-e", "-w", "net.ipv4.ip_forward=1"]));
        if matches!(host, Host::Node(_)) {
            cmd.push("net.bridge.bridge-nf-call-iptables=1".into());
        }
        cmds.push(cmd);
    }
    cmds
}

/// The nodes' second NIC.
pub const SECOND_NIC: &str = "eth1";

/// The arguments of `ip` that set the route `node` takes to the other node's pods: through the
/// VPC (eth0), or when `second_nic` names it, through its second NIC, whose address MASQUERADE
/// then takes.
pub fn route_to_other_pods(node: Node, second_nic: Option<Node>) -> Vec<String> {
    let other = node.other();
    let (via, dev) = if second_nic == Some(node) {
        (other.second_nic_ip(), SECOND_NIC)
    } else {
        (other.ip(), "eth0")
    };
    argv(&[
        "route",
        "replace",
        &other.pod_cidr(),
        "via",
        &via.to_string(),
        "dev",
        dev,
    ])
}

/// A veth from `ns` (named eth0, with `addr`/24) into the VPC bridge.
fn uplink(ns: &str, vpc: &str, port: &str, addr: Ipv4Addr) -> Vec<Argv> {
    vec![
        ip(
            ns,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", vpc,
            ],
        ),
        ip(vpc, &["link", "set", port, "master", "vpc0", "up"]),
        ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"]),
        ip(ns, &["link", "set", "eth0", "up"]),
    ]
}

/// The host an address belongs to (the VIP and both legs of the load balancer are one host).
pub fn host_of(addr: std::net::IpAddr) -> Option<Host> {
    let std::net::IpAddr::V4(addr) = addr else {
        return None;
    };
    if addr == CLIENT_IP {
        return Some(Host::Client);
    }
    if addr == VIP || addr == CLB_VPC_IP || addr == CLB_INET_IP {
        return Some(Host::Clb);
    }
    if let Some(node) = Node::ALL
        .into_iter()
        .find(|node| addr == node.ip() || addr == node.cbr0_ip() || addr == node.second_nic_ip())
    {
        return Some(Host::Node(node));
    }
    Pod::ALL
        .into_iter()
        .find(|pod| pod.ip() == addr)
        .map(Host::Pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run_id_and_stay_short_enough() {
        let names = Names::new("3f2a");
        assert_eq!(names.ns(Host::Node(Node::A)), "rip-3f2a-node-a");
        assert_eq!(names.ns(Host::Pod(Pod::Ingress)), "rip-3f2a-ingress-nginx");
        assert_eq!(names.all().len(), 9);
        assert!(names.all().iter().all(|ns| ns.starts_with("rip-3f2a-")));
        for pod in Pod::ALL {
            assert!(pod.veth().len() <= 15, "{}", pod.veth());
        }
    }

    #[test]
    fn addresses_are_documentation_or_benchmark_ranges() {
        let doc = |a: Ipv4Addr| {
            let o = a.octets();
            (o[0] == 192 && o[1] == 0 && o[2] == 2)
                || (o[0] == 198 && o[1] == 51 && o[2] == 100)
                || (o[0] == 203 && o[1] == 0 && o[2] == 113)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        };
        let mut all = vec![CLIENT_IP, CLB_INET_IP, CLB_VPC_IP, VIP];
        for node in Node::ALL {
            all.extend([node.ip(), node.cbr0_ip(), node.second_nic_ip()]);
        }
        all.extend(Pod::ALL.map(Pod::ip));
        assert!(all.iter().all(|a| doc(*a)), "{all:?}");
    }

    #[test]
    fn the_load_balancers_addresses_are_one_host() {
        assert_eq!(host_of(VIP.into()), Some(Host::Clb));
    }

    #[test]
    fn build_script_snapshot() {
        let script: Vec<String> = build_commands(&Names::new("3f2a"))
            .into_iter()
            .map(|argv| argv.join(" "))
            .collect();
        insta::assert_snapshot!(script.join("\n"));
    }
}
