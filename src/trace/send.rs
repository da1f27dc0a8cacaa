//! `--send`: the plugin opens test connections itself, an HTTP GET carrying a unique
//! `X-Realip-Token` to every way in, so one command gives evidence without waiting for traffic.
//! The token ties a sighting to its test connection even where an L7 proxy breaks the ISN chain.

use super::topology::Topology;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One test connection and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// `host:port` as dialled.
    pub target: String,
    pub token: String,
    /// `HTTP/1.1 200 OK`, `connected, no HTTP answer`, or the error.
    pub outcome: String,
    /// Where a probe read this token (`node iface src → dst`): ties the test connection to
    /// its sightings even after a proxy opened a new connection (new ISN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_at: Vec<String>,
}

/// Fills `seen_at` from the probes' l7 events.
pub fn attach_sightings(sent: &mut [Sent], events: &[realip_probe::wire::Event]) {
    for event in events {
        let realip_probe::wire::Event::L7(l7) = event else {
            continue;
        };
        let Some(token) = &l7.realip_token else {
            continue;
        };
        let endpoint = |ip: Option<std::net::IpAddr>, port: u16| match ip {
            Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Some(ip) => format!("{ip}:{port}"),
            None => format!("?:{port}"),
        };
        let place = format!(
            "{} {} {} → {}",
            l7.node,
            l7.iface,
            endpoint(l7.src, l7.sport),
            endpoint(l7.dst, l7.dport)
        );
        for sent in sent.iter_mut().filter(|s| &s.token == token) {
            if !sent.seen_at.contains(&place) {
                sent.seen_at.push(place.clone());
            }
        }
    }
}

/// Every way in: each LB ingress address × Service port, each probed node's addresses ×
/// NodePort; `--send-to` replaces them.
pub fn entry_points(topology: &Topology, probed: &[String], send_to: &[String]) -> Vec<String> {
    if !send_to.is_empty() {
        return send_to.to_vec();
    }
    let mut out = BTreeSet::new();
    let tcp = || topology.ports.iter().filter(|p| p.protocol == "TCP");
    for ingress in &topology.lb_ingress {
        for port in tcp() {
            out.insert(join(ingress, port.port));
        }
    }
    for node in topology.nodes.iter().filter(|n| probed.contains(&n.name)) {
        for (kind, address) in &node.addresses {
            if kind != "InternalIP" && kind != "ExternalIP" {
                continue;
            }
            for port in tcp() {
                if let Some(node_port) = port.node_port {
                    out.insert(join(address, node_port));
                }
            }
        }
    }
    out.into_iter().collect()
}

fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The token of the `n`th test connection of a run.
pub fn token(run_id: &str, n: usize) -> String {
    format!("realip-{run_id}-{n}")
}

pub fn request(target: &str, token: &str) -> String {
    format!(
        "GET /?realip-token={token} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: kubectl-realip/{}\r\n\
         X-Realip-Token: {token}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Opens one test connection to each target, all at once.
pub async fn send_all(run_id: &str, targets: &[String], timeout: Duration) -> Vec<Sent> {
    let sends = targets.iter().enumerate().map(|(n, target)| {
        let token = token(run_id, n + 1);
        async move {
            let outcome = match tokio::time::timeout(timeout, send_one(target, &token)).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(err)) => format!("failed: {err}"),
                Err(_) => format!("no answer within {}s", timeout.as_secs()),
            };
            Sent {
                target: target.clone(),
                token,
                outcome,
                seen_at: Vec::new(),
            }
        }
    });
    futures::future::join_all(sends).await
}

async fn send_one(target: &str, token: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(target).await?;
    stream.write_all(request(target, token).as_bytes()).await?;
    let mut answer = vec![0u8; 512];
    let read = stream.read(&mut answer).await?;
    let first = String::from_utf8_lossy(&answer[..read]);
    Ok(match first.lines().next() {
        Some(status) if status.starts_with("HTTP/") => status.trim().to_string(),
        _ => "connected, no HTTP answer".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::topology::{NodeInfo, ServicePort};

    fn topology() -> Topology {
        Topology {
            namespace: "shop".into(),
            service: "web".into(),
            type_: "LoadBalancer".into(),
            external_traffic_policy: "Cluster".into(),
            cluster_ips: vec!["10.96.0.10".into()],
            ports: vec![ServicePort {
                name: None,
                protocol: "TCP".into(),
                port: 80,
                node_port: Some(31080),
            }],
            lb_ingress: vec!["203.0.113.10".into(), "2001:db8::10".into()],
            backends: vec![],
            nodes: ["a", "b"]
                .iter()
                .map(|n| NodeInfo {
                    name: n.to_string(),
                    addresses: vec![
                        (
                            "InternalIP".into(),
                            format!("198.51.100.{}", if *n == "a" { 1 } else { 2 }),
                        ),
                        ("Hostname".into(), n.to_string()),
                    ],
                    arch: None,
                    unusable: None,
                    lb_excluded: None,
                    pod_cidrs: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn every_way_in_or_the_chosen_ones() {
        assert_eq!(
            entry_points(&topology(), &["a".into()], &[]),
            ["198.51.100.1:31080", "203.0.113.10:80", "[2001:db8::10]:80"]
        );
        assert_eq!(
            entry_points(&topology(), &["a".into()], &["192.0.2.1:80".into()]),
            ["192.0.2.1:80"]
        );
        let request = request("203.0.113.10:80", &token("a1b2c3", 1));
        assert!(
            request.contains("\r\nX-Realip-Token: realip-a1b2c3-1\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn sends_the_token_over_a_real_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let sent = send_all(
            "r1",
            &[target, "127.0.0.1:1".into()],
            Duration::from_secs(5),
        )
        .await;
        let seen = server.await.unwrap();
        assert!(seen.contains("X-Realip-Token: realip-r1-1"), "{seen}");
        assert_eq!(sent[0].outcome, "HTTP/1.1 200 OK");
        assert!(sent[1].outcome.starts_with("failed"), "{}", sent[1].outcome);
    }

    #[test]
    fn tokens_tie_sightings_to_test_connections() {
        use realip_probe::wire::{Event, L7};
        let mut sent = vec![Sent {
            target: "203.0.113.10:80".into(),
            token: "realip-r1-1".into(),
            outcome: "HTTP/1.1 200 OK".into(),
            seen_at: vec![],
        }];
        let l7 = |token: &str| {
            Event::L7(L7 {
                node: "node-b".into(),
                iface: "veth1".into(),
                src: Some("10.244.0.9".parse().unwrap()),
                sport: 33000,
                dst: Some("10.244.1.5".parse().unwrap()),
                dport: 8080,
                realip_token: Some(token.into()),
                ..L7::default()
            })
        };
        attach_sightings(
            &mut sent,
            &[l7("realip-r1-1"), l7("realip-r1-1"), l7("other")],
        );
        assert_eq!(
            sent[0].seen_at,
            ["node-b veth1 10.244.0.9:33000 → 10.244.1.5:8080"]
        );
    }
}
