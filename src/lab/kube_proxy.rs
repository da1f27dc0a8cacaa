//! The netfilter rules kube-proxy (iptables mode) writes on a node, as `iptables-restore` text.
//!
//! Same chains, same order, same comments and same chain-name hashes as kube-proxy's
//! `syncProxyRules`: KUBE-SERVICES → KUBE-EXT-* (external: LB IP, NodePort) / KUBE-SVC-*
//! (cluster) / KUBE-SVL-* (node-local) → KUBE-SEP-* (DNAT to one endpoint), KUBE-MARK-MASQ
//! setting mark 0x4000, KUBE-POSTROUTING masquerading what carries it. With
//! externalTrafficPolicy=Local the external chain skips the masquerade mark, and a node without
//! local endpoints drops external traffic in the filter table.

use super::topology::{Node, Pod, CLUSTER_CIDR};
use crate::explain::facts::{Protocol, ServiceFacts, ServiceType, TargetPort, TrafficPolicy};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub node: Node,
}

/// One port of one Service, with what kube-proxy needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub port: u16,
    pub target_port: u16,
    pub cluster_ip: Ipv4Addr,
    pub node_port: Option<u16>,
    pub load_balancer_ip: Option<Ipv4Addr>,
    pub external_traffic_policy: TrafficPolicy,
    pub endpoints: Vec<Endpoint>,
}

/// What the lab's kube-proxy cannot program from a Service.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("Service {service}: {what}, which the lab does not model")]
pub struct Unsupported {
    pub service: String,
    pub what: String,
}

impl Service {
    /// Each TCP port of `service` (explain's model of it) as kube-proxy programs it, with
    /// `pods` as its endpoints.
    pub fn ports_of(service: &ServiceFacts, pods: &[Pod]) -> Result<Vec<Service>, Unsupported> {
        let unsupported = |what: String| Unsupported {
            service: service.qualified(),
            what,
        };
        let cluster_ip = service
            .cluster_ips
            .iter()
            .find_map(|ip| match ip {
                IpAddr::V4(ip) => Some(*ip),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| unsupported("no IPv4 cluster IP".into()))?;
        let load_balancer_ip = (service.type_ == ServiceType::LoadBalancer)
            .then(|| {
                service
                    .lb_ingress
                    .iter()
                    .find_map(|i| i.address.parse::<Ipv4Addr>().ok())
            })
            .flatten();
        let endpoints: Vec<Endpoint> = pods
            .iter()
            .map(|pod| Endpoint {
                ip: pod.ip(),
                node: pod.node(),
            })
            .collect();
        service
            .ports
            .iter()
            .filter(|port| port.protocol == Protocol::Tcp)
            .map(|port| {
                let target_port = match &port.target_port {
                    None => port.port,
                    Some(TargetPort::Number(number)) => *number,
                    Some(TargetPort::Name(name)) => {
                        return Err(unsupported(format!("the named targetPort {name:?}")))
                    }
                };
                Ok(Service {
                    namespace: service.ns().to_string(),
                    name: service.name.clone(),
                    port_name: port.name.clone().unwrap_or_default(),
                    port: port.port,
                    target_port,
                    cluster_ip,
                    node_port: port.node_port.filter(|_| service.has_node_ports()),
                    load_balancer_ip,
                    external_traffic_policy: service.external_traffic_policy,
                    endpoints: endpoints.clone(),
                })
            })
            .collect()
    }

    /// kube-proxy's `ServicePortName` string, `namespace/name:port`.
    pub fn port_name_string(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }

    pub(super) fn has_external(&self) -> bool {
        self.node_port.is_some() || self.load_balancer_ip.is_some()
    }
}

/// kube-proxy's `portProtoHash`: the first 16 base32 characters of SHA-256.
fn proto_hash(text: &str) -> String {
    hash_prefix(text, 16)
}

/// The first `len` base32 characters of the SHA-256 of `text`: kube-proxy's chain-name hashes
/// (16 in iptables mode, 8 in nftables mode).
pub(super) fn hash_prefix(text: &str, len: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    base32(&digest).chars().take(len).collect()
}

/// RFC 4648 base32 (standard alphabet); only the prefix is used, so no padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The per-service chain names, as kube-proxy derives them.
pub struct Chains {
    pub svc: String,
    pub svl: String,
    pub ext: String,
}

pub fn chains(service: &Service) -> Chains {
    let hash = proto_hash(&format!("{}tcp", service.port_name_string()));
    Chains {
        svc: format!("KUBE-SVC-{hash}"),
        svl: format!("KUBE-SVL-{hash}"),
        ext: format!("KUBE-EXT-{hash}"),
    }
}

pub fn endpoint_chain(service: &Service, endpoint: &Endpoint) -> String {
    let text = format!(
        "{}tcp{}:{}",
        service.port_name_string(),
        endpoint.ip,
        service.target_port
    );
    format!("KUBE-SEP-{}", proto_hash(&text))
}

/// The masquerade bit kube-proxy uses (`--iptables-masquerade-bit=14`).
pub const MASQ_MARK: &str = "0x4000";

/// The full `iptables-restore` input (filter and nat) for `node`.
pub fn node_rules(services: &[Service], node: Node) -> String {
    let mut filter_chains = vec![
        "KUBE-EXTERNAL-SERVICES".to_string(),
        "KUBE-FORWARD".to_string(),
    ];
    filter_chains.sort();
    let mut filter_rules = vec![
        r#"-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES"#.to_string(),
        r#"-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD"#.to_string(),
        r#"-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES"#.to_string(),
    ];
    let mut nat_chains = vec![
        "KUBE-MARK-MASQ".to_string(),
        "KUBE-NODEPORTS".to_string(),
        "KUBE-POSTROUTING".to_string(),
        "KUBE-SERVICES".to_string(),
    ];
    let mut nat_rules = vec![
        r#"-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#.to_string(),
        r#"-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#.to_string(),
        r#"-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING"#.to_string(),
        format!("-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}"),
        r#"-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully"#.to_string(),
        format!("-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"),
    ];

    for service in services {
        write_service(
            service,
            node,
            &mut nat_chains,
            &mut nat_rules,
            &mut filter_rules,
        );
    }
    nat_rules.push(r#"-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"#.to_string());
    filter_rules.extend([
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP".to_string(),
        format!(r#"-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"#),
        r#"-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"#.to_string(),
    ]);

    let mut out = String::new();
    table(
        &mut out,
        "filter",
        &["INPUT", "FORWARD", "OUTPUT"],
        &filter_chains,
        &filter_rules,
    );
    table(
        &mut out,
        "nat",
        &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        &nat_chains,
        &nat_rules,
    );
    out
}

fn table(out: &mut String, name: &str, builtin: &[&str], chains: &[String], rules: &[String]) {
    let _ = writeln!(out, "*{name}");
    for chain in builtin {
        let _ = writeln!(out, ":{chain} ACCEPT [0:0]");
    }
    for chain in chains {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for rule in rules {
        let _ = writeln!(out, "{rule}");
    }
    let _ = writeln!(out, "COMMIT");
}

/// One service's rules, in the order kube-proxy's `syncProxyRules` writes them.
fn write_service(
    service: &Service,
    node: Node,
    nat_chains: &mut Vec<String>,
    nat: &mut Vec<String>,
    filter: &mut Vec<String>,
) {
    let name = service.port_name_string();
    let Chains { svc, svl, ext } = chains(service);
    let local: Vec<&Endpoint> = service
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.node == node)
        .collect();
    let external_local = service.external_traffic_policy == TrafficPolicy::Local;
    let has_endpoints = !service.endpoints.is_empty();
    let has_external_endpoints = !external_local || !local.is_empty();
    let uses_external_chain = service.has_external() && has_endpoints;
    let uses_local_chain = external_local && uses_external_chain;
    let external_target = if external_local { &svl } else { &svc };

    nat_chains.push(svc.clone());
    if uses_external_chain {
        nat_chains.push(ext.clone());
    }
    if uses_local_chain {
        nat_chains.push(svl.clone());
    }

    let cluster_ip = format!(
        r#"-m comment --comment "{name} cluster IP" -m tcp -p tcp -d {}/32 --dport {}"#,
        service.cluster_ip, service.port
    );
    // Off-cluster traffic to the cluster IP is masqueraded (it may bounce off-node).
    nat.push(format!(
        "-A {svc} {cluster_ip} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ"
    ));
    nat.push(format!("-A KUBE-SERVICES {cluster_ip} -j {svc}"));

    if let Some(lb_ip) = service.load_balancer_ip {
        let matcher = format!(
            r#"-m comment --comment "{name} loadbalancer IP" -m tcp -p tcp -d {lb_ip}/32 --dport {}"#,
            service.port
        );
        if uses_external_chain {
            nat.push(format!("-A KUBE-SERVICES {matcher} -j {ext}"));
        }
        if !has_external_endpoints {
            filter.push(format!(
                r#"-A KUBE-EXTERNAL-SERVICES -m comment --comment "{name} has no local endpoints" -m tcp -p tcp -d {lb_ip}/32 --dport {} -j DROP"#,
                service.port
            ));
        }
    }
    if let Some(node_port) = service.node_port {
        if uses_external_chain {
            nat.push(format!(
                r#"-A KUBE-NODEPORTS -m comment --comment "{name}" -m tcp -p tcp --dport {node_port} -j {ext}"#
            ));
        }
        if !has_external_endpoints {
            filter.push(format!(
                r#"-A KUBE-EXTERNAL-SERVICES -m comment --comment "{name} has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport {node_port} -j DROP"#
            ));
        }
    }

    if uses_external_chain {
        if external_local {
            // Pods reaching the external address act as if they went up to the LB and back.
            nat.push(format!(
                r#"-A {ext} -m comment --comment "pod traffic for {name} external destinations" -s {CLUSTER_CIDR} -j {svc}"#
            ));
            // The node itself: the LB IP is local, so its source would be chosen locally.
            nat.push(format!(
                r#"-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"#
            ));
            nat.push(format!(
                r#"-A {ext} -m comment --comment "route LOCAL traffic for {name} external destinations" -m addrtype --src-type LOCAL -j {svc}"#
            ));
        } else {
            // Cluster: any node may forward to another one, so always masquerade.
            nat.push(format!(
                r#"-A {ext} -m comment --comment "masquerade traffic for {name} external destinations" -j KUBE-MARK-MASQ"#
            ));
        }
        if has_external_endpoints {
            nat.push(format!("-A {ext} -j {external_target}"));
        }
    }

    let all: Vec<&Endpoint> = service.endpoints.iter().collect();
    write_balance(service, &svc, &all, nat);
    if uses_local_chain {
        write_balance(service, &svl, &local, nat);
    }
    for endpoint in &service.endpoints {
        let sep = endpoint_chain(service, endpoint);
        nat_chains.push(sep.clone());
        // Hairpin: an endpoint reaching its own Service must be masqueraded to get the reply.
        nat.push(format!(
            r#"-A {sep} -m comment --comment {name} -s {}/32 -j KUBE-MARK-MASQ"#,
            endpoint.ip
        ));
        nat.push(format!(
            r#"-A {sep} -m comment --comment {name} -m tcp -p tcp -j DNAT --to-destination {}:{}"#,
            endpoint.ip, service.target_port
        ));
    }
}

/// Random choice among endpoints: rule i matches with probability 1/(n-i).
fn write_balance(service: &Service, chain: &str, endpoints: &[&Endpoint], nat: &mut Vec<String>) {
    let name = service.port_name_string();
    let count = endpoints.len();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let sep = endpoint_chain(service, endpoint);
        let comment = format!(
            r#"-m comment --comment "{name} -> {}:{}""#,
            endpoint.ip, service.target_port
        );
        if i + 1 < count {
            let probability = 1.0 / (count - i) as f64;
            nat.push(format!(
                "-A {chain} {comment} -m statistic --mode random --probability {probability:.10} -j {sep}"
            ));
        } else {
            nat.push(format!("-A {chain} {comment} -j {sep}"));
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The web Service of the lab's manifests, with `endpoints`.
    pub(in crate::lab) fn svc(policy: TrafficPolicy, endpoints: &[Pod]) -> Service {
        Service {
            namespace: "default".into(),
            name: "web".into(),
            port_name: "http".into(),
            port: 80,
            target_port: 8080,
            cluster_ip: Ipv4Addr::new(198, 19, 0, 10),
            node_port: Some(31080),
            load_balancer_ip: Some(Ipv4Addr::new(203, 0, 113, 100)),
            external_traffic_policy: policy,
            endpoints: endpoints
                .iter()
                .map(|pod| Endpoint {
                    ip: pod.ip(),
                    node: pod.node(),
                })
                .collect(),
        }
    }

    #[test]
    fn chain_names_match_kube_proxy() {
        // Values from kube-proxy's own tests (ns1/svc1:p80, endpoint 10.180.0.1:80).
        assert_eq!(proto_hash("ns1/svc1:p80tcp"), "XPGD46QRK7WJZT7O");
        assert_eq!(
            proto_hash("ns1/svc1:p80tcp10.180.0.1:80"),
            "SXIVWICOYRO3J4NJ"
        );
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn cluster_policy_marks_external_traffic_for_masquerade() {
        let rules = node_rules(&[svc(TrafficPolicy::Cluster, &[Pod::AppA])], Node::A);
        let ext = chains(&svc(TrafficPolicy::Cluster, &[])).ext;
        assert!(rules.contains(&format!(
            r#"-A {ext} -m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ"#
        )));
        assert!(rules.contains("-j DNAT --to-destination 198.18.1.10:8080"));
        assert!(!rules.contains("has no local endpoints"));
    }

    #[test]
    fn local_policy_keeps_the_source_and_drops_without_local_endpoints() {
        let service = svc(TrafficPolicy::Local, &[Pod::AppA]);
        let on_a = node_rules(std::slice::from_ref(&service), Node::A);
        let on_b = node_rules(std::slice::from_ref(&service), Node::B);
        let Chains { ext, svl, .. } = chains(&service);
        assert!(on_a.contains(&format!("-A {ext} -j {svl}")));
        assert!(!on_a.contains("masquerade traffic for default/web:http external"));
        assert!(!on_b.contains(&format!("-A {ext} -j {svl}")));
        assert!(on_b.contains("--dport 31080 -j DROP"));
    }

    #[test]
    fn probabilities_split_evenly() {
        let rules = node_rules(
            &[svc(TrafficPolicy::Cluster, &[Pod::AppA, Pod::AppB])],
            Node::A,
        );
        assert!(rules.contains("--probability 0.5000000000 -j KUBE-SEP-"));
    }

    #[test]
    fn rules_snapshot_cluster() {
        insta::assert_snapshot!(node_rules(
            &[svc(TrafficPolicy::Cluster, &[Pod::AppA, Pod::AppB])],
            Node::A
        ));
    }

    #[test]
    fn rules_snapshot_local_without_endpoints() {
        insta::assert_snapshot!(node_rules(
            &[svc(TrafficPolicy::Local, &[Pod::AppA])],
            Node::B
        ));
    }
}
