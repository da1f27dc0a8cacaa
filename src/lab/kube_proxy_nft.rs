//! The rules kube-proxy's nftables mode writes on a node, as an `nft -f` script.
//!
//! Same table, chains, maps and chain-name hashes as kube-proxy's nftables proxier: one `ip
//! kube-proxy` table; `services` dispatches through the `service-ips` and `service-nodeports`
//! verdict maps to `service-*` (Cluster policy), `external-*` (LB IP, NodePort) and `local-*`
//! (Local policy) chains, which pick an `endpoint-*` chain with `numgen`; the endpoint chain
//! DNATs. `mark-for-masquerade` sets mark 0x4000, `masquerading` masquerades what carries it.
//! Nodes without local endpoints of a Local Service drop its external traffic through the
//! `no-endpoint-*` maps in the filter chains. Unlike iptables mode, no rule keeps a counter.

use super::kube_proxy::{hash_prefix, Endpoint, Service, MASQ_MARK};
use super::topology::{Node, CLUSTER_CIDR};
use crate::explain::facts::TrafficPolicy;
use std::fmt::Write as _;

/// kube-proxy's `hashAndTruncate`: 8 base32 characters of the name's SHA-256, then the name.
fn hashed(name: &str) -> String {
    format!("{}-{name}", hash_prefix(name, 8))
}

/// `namespace/name/tcp/port`: the base of a Service port's chain names.
fn port_base(service: &Service) -> String {
    format!(
        "{}/{}/tcp/{}",
        service.namespace, service.name, service.port_name
    )
}

/// The per-service chain names, as kube-proxy's nftables mode derives them.
pub struct Chains {
    pub service: String,
    pub local: String,
    pub external: String,
}

pub fn chains(service: &Service) -> Chains {
    let base = hashed(&port_base(service));
    Chains {
        service: format!("service-{base}"),
        local: format!("local-{base}"),
        external: format!("external-{base}"),
    }
}

/// The chain that DNATs to `endpoint`.
pub fn endpoint_chain(service: &Service, endpoint: &Endpoint) -> String {
    let name = format!(
        "{}__{}/{}",
        port_base(service),
        endpoint.ip,
        service.target_port
    );
    format!("endpoint-{}", hashed(&name))
}

/// The table with its fixed part: base chains, helper chains, maps.
const FIXED: &str = r#"	comment "rules for kube-proxy"
	chain filter-prerouting {
		type filter hook prerouting priority -110; policy accept;
		ct state new jump firewall-check
	}
	chain filter-input {
		type filter hook input priority -110; policy accept;
		ct state new jump endpoints-check
	}
	chain filter-forward {
		type filter hook forward priority -110; policy accept;
		ct state new jump endpoints-check
	}
	chain filter-output {
		type filter hook output priority -110; policy accept;
		ct state new jump endpoints-check
		ct state new jump firewall-check
	}
	chain nat-prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}
	chain endpoints-check {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
		fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
	}
	chain firewall-check {
		ip daddr . meta l4proto . th dport vmap @firewall-ips
	}
	chain reject-chain {
		comment "helper for @no-endpoint-services / @no-endpoint-nodeports"
		reject
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
	}
"#;

/// A verdict map with its elements (none: an empty map).
fn map(out: &mut String, name: &str, key: &str, comment: &str, elements: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{");
    let _ = writeln!(out, "\t\ttype {key} : verdict");
    let _ = writeln!(out, "\t\tcomment \"{comment}\"");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

fn chain(out: &mut String, name: &str, rules: &[String]) {
    let _ = writeln!(out, "\tchain {name} {{");
    for rule in rules {
        let _ = writeln!(out, "\t\t{rule}");
    }
    let _ = writeln!(out, "\t}}");
}

/// `numgen random mod N vmap { 0 : goto endpoint-…, … }` over `endpoints`.
fn balance(service: &Service, endpoints: &[&Endpoint]) -> String {
    let elements: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i} : goto {}", endpoint_chain(service, e)))
        .collect();
    format!(
        "numgen random mod {} vmap {{ {} }}",
        endpoints.len(),
        elements.join(", ")
    )
}

/// The whole `nft -f` script for `node`: it replaces the table (created empty first, so that
/// deleting it never fails).
pub fn node_rules(services: &[Service], node: Node) -> String {
    let mut service_ips = Vec::new();
    let mut service_nodeports = Vec::new();
    let mut no_endpoint_services = Vec::new();
    let mut no_endpoint_nodeports = Vec::new();
    let mut chains_text = String::new();
    let mark = format!(
        "0x{:08x}",
        u32::from_str_radix(&MASQ_MARK[2..], 16).unwrap_or(0)
    );
    chain(
        &mut chains_text,
        "mark-for-masquerade",
        &[format!("meta mark set meta mark or {mark}")],
    );
    chain(
        &mut chains_text,
        "masquerading",
        &[
            format!("meta mark & {mark} == 0x00000000 return"),
            format!("meta mark set meta mark xor {mark}"),
            "masquerade fully-random".into(),
        ],
    );
    for service in services {
        if service.endpoints.is_empty() {
            continue;
        }
        let Chains {
            service: cluster_chain,
            local,
            external,
        } = chains(service);
        let local_eps: Vec<&Endpoint> = service
            .endpoints
            .iter()
            .filter(|e| e.node == node)
            .collect();
        let all_eps: Vec<&Endpoint> = service.endpoints.iter().collect();
        let external_local = service.external_traffic_policy == TrafficPolicy::Local;
        let has_external_endpoints = !external_local || !local_eps.is_empty();
        let uses_external = service.has_external();
        let port = service.port;

        service_ips.push(format!(
            "{} . tcp . {port} : goto {cluster_chain}",
            service.cluster_ip
        ));
        if let Some(lb) = service.load_balancer_ip {
            service_ips.push(format!("{lb} . tcp . {port} : goto {external}"));
            if !has_external_endpoints {
                no_endpoint_services.push(format!("{lb} . tcp . {port} : drop"));
            }
        }
        if let Some(node_port) = service.node_port {
            service_nodeports.push(format!("tcp . {node_port} : goto {external}"));
            if !has_external_endpoints {
                no_endpoint_nodeports.push(format!("tcp . {node_port} : drop"));
            }
        }
        // Off-cluster traffic to the cluster IP is masqueraded (it may bounce off-node).
        chain(
            &mut chains_text,
            &cluster_chain,
            &[
                format!(
                    "ip daddr {} tcp dport {port} ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade",
                    service.cluster_ip
                ),
                balance(service, &all_eps),
            ],
        );
        if uses_external {
            let mut rules = Vec::new();
            if external_local {
                rules.push(format!(
                    "ip saddr {CLUSTER_CIDR} goto {cluster_chain} comment \"short-circuit pod traffic\""
                ));
                rules.push(
                    "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
                        .to_string(),
                );
                rules.push(format!(
                    "fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""
                ));
                if has_external_endpoints {
                    rules.push(format!("goto {local}"));
                }
            } else {
                rules.push("jump mark-for-masquerade".into());
                rules.push(format!("goto {cluster_chain}"));
            }
            chain(&mut chains_text, &external, &rules);
            if external_local && !local_eps.is_empty() {
                chain(&mut chains_text, &local, &[balance(service, &local_eps)]);
            }
        }
        for endpoint in &service.endpoints {
            chain(
                &mut chains_text,
                &endpoint_chain(service, endpoint),
                &[
                    format!("ip saddr {} jump mark-for-masquerade", endpoint.ip),
                    format!(
                        "meta l4proto tcp dnat to {}:{}",
                        endpoint.ip, service.target_port
                    ),
                ],
            );
        }
    }
    let mut out = String::from("table ip kube-proxy\ndelete table ip kube-proxy\n");
    out.push_str("table ip kube-proxy {\n");
    out.push_str(FIXED);
    let addr_key = "ipv4_addr . inet_proto . inet_service";
    let port_key = "inet_proto . inet_service";
    map(
        &mut out,
        "no-endpoint-services",
        addr_key,
        "vmap to drop or reject packets to services with no endpoints",
        &no_endpoint_services,
    );
    map(
        &mut out,
        "no-endpoint-nodeports",
        port_key,
        "vmap to drop or reject packets to service nodeports with no endpoints",
        &no_endpoint_nodeports,
    );
    map(
        &mut out,
        "firewall-ips",
        addr_key,
        "destinations that are subject to LoadBalancerSourceRanges",
        &[],
    );
    map(
        &mut out,
        "service-ips",
        addr_key,
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        &service_ips,
    );
    map(
        &mut out,
        "service-nodeports",
        port_key,
        "NodePort traffic",
        &service_nodeports,
    );
    out.push_str(&chains_text);
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::kube_proxy::tests::svc;
    use crate::lab::topology::Pod;

    #[test]
    fn chain_names_match_kube_proxy() {
        // kube-proxy's own example: "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80".
        assert_eq!(
            hashed("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        // And its service chains: "ULMVA6XW-ns1/svc1/tcp/p80".
        assert_eq!(hashed("ns1/svc1/tcp/p80"), "ULMVA6XW-ns1/svc1/tcp/p80");
    }

    #[test]
    fn cluster_policy_marks_external_traffic_and_dnats_in_the_endpoint_chain() {
        let service = svc(TrafficPolicy::Cluster, &[Pod::AppB]);
        let rules = node_rules(std::slice::from_ref(&service), Node::A);
        let Chains {
            external,
            service: cluster,
            ..
        } = chains(&service);
        assert!(rules.contains(&format!(
            "chain {external} {{\n\t\tjump mark-for-masquerade\n\t\tgoto {cluster}\n"
        )));
        assert!(rules.contains("meta l4proto tcp dnat to 198.18.2.10:8080"));
        assert!(rules.contains("masquerade fully-random"));
        assert!(!rules.contains(": drop"));
    }

    #[test]
    fn local_policy_drops_external_traffic_without_local_endpoints() {
        let service = svc(TrafficPolicy::Local, &[Pod::AppA]);
        let on_b = node_rules(std::slice::from_ref(&service), Node::B);
        assert!(on_b.contains("tcp . 31080 : drop"), "{on_b}");
        assert!(!on_b.contains(&format!("goto {}", chains(&service).local)));
        let on_a = node_rules(std::slice::from_ref(&service), Node::A);
        assert!(on_a.contains(&format!("goto {}", chains(&service).local)));
        insta::assert_snapshot!(on_a);
    }
}
