//! `--send`: the plugin opens test connections itself, an HTTP GET carrying a unique
//! `X-Realip-Token` to every way in, so one command gives evidence without waiting for traffic.
//! The token ties a sighting to its test connection even where an L7 proxy breaks the ISN chain.

use super::topology::Topology;
use crate::analyze::model::{LastSeen, Report};
use crate::explain::facts::Protocol;
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One test connection and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// `host:port` as dialled.
    pub target: String,
    pub token: String,
    /// What became of the TCP connection.
    pub result: SendResult,
    /// In words: `HTTP/1.1 200 OK`, `connected, no HTTP answer`, or what failed.
    pub outcome: String,
    /// The plugin's end of the connection, `addr:port`: its SYN's source before any NAT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Where the probes saw the connection's SYN, when they did.
    #[serde(flatten)]
    pub path: Option<SeenPath>,
    /// Where a probe read this token (`node iface src → dst`): ties the test connection to
    /// its sightings even after a proxy opened a new connection (new ISN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_at: Vec<String>,
}

/// What became of a test connection, from the plugin's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendResult {
    /// The handshake completed: something accepted it (an HTTP answer or not).
    Reached,
    /// A RST (or an ICMP port unreachable) answered the SYN.
    Refused,
    /// Reset once established.
    Reset,
    /// Nothing answered the SYN in time: dropped somewhere.
    Timeout,
    /// It could not be sent (no route, a bad target).
    Error,
}

impl SendResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SendResult::Reached => "reached",
            SendResult::Refused => "refused",
            SendResult::Reset => "reset",
            SendResult::Timeout => "timeout",
            SendResult::Error => "error",
        }
    }
}

/// The analysed connection that carried a test connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenPath {
    /// 1-based, as the connections of the text report.
    pub connection: usize,
    /// The hop where its SYN was seen last.
    pub last_seen: Option<LastSeen>,
    pub reached_pod: bool,
    /// What the pod's accept() returns; only for a connection that reached a pod (no verdict on
    /// the client address of one that reached none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_sees: Option<IpAddr>,
}

/// Ties each test connection to the analysed connection its SYN started: the first sighting's
/// source is the plugin's own end (no NAT before the first probe), else its destination is the
/// target and its source port the plugin's (a NAT that kept the port).
pub fn attach_flows(sent: &mut [Sent], report: &Report) {
    for sent in sent.iter_mut() {
        let Some(local) = sent
            .local
            .as_deref()
            .and_then(|l| l.parse::<SocketAddr>().ok())
        else {
            continue;
        };
        let target = sent.target.parse::<SocketAddr>().ok();
        let found = report.flows.iter().enumerate().find(|(_, flow)| {
            flow.hops.first().is_some_and(|hop| {
                (hop.src == local.ip() && hop.sport == local.port())
                    || (hop.sport == local.port()
                        && target == Some(SocketAddr::new(hop.dst, hop.dport)))
            })
        });
        sent.path = found.map(|(index, flow)| SeenPath {
            connection: if flow.connection > 0 {
                flow.connection
            } else {
                index + 1
            },
            last_seen: flow.last_seen.clone(),
            reached_pod: flow.reached_pod,
            pod_sees: flow.pod_sees.filter(|_| flow.reached_pod),
        });
    }
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

/// The addresses test connections were opened from: a source that is one of them is the
/// client by construction.
pub fn senders(sent: &[Sent]) -> Vec<std::net::IpAddr> {
    sent.iter()
        .filter_map(|s| s.local.as_deref()?.parse::<std::net::SocketAddr>().ok())
        .map(|local| local.ip())
        .collect()
}

/// Every way in: each LB ingress address × Service port, each probed node's addresses ×
/// NodePort; `--send-to` replaces them.
pub fn entry_points(topology: &Topology, probed: &[String], send_to: &[String]) -> Vec<String> {
    if !send_to.is_empty() {
        return send_to.to_vec();
    }
    let mut out = BTreeSet::new();
    let service = &topology.service;
    let tcp = || service.ports.iter().filter(|p| p.protocol == Protocol::Tcp);
    for ingress in &service.lb_ingress {
        for port in tcp() {
            out.insert(join(&ingress.address, port.port));
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
            let attempt = Attempt::default();
            let (result, outcome) =
                match tokio::time::timeout(timeout, send_one(target, &token, &attempt)).await {
                    Ok(Ok(outcome)) => (SendResult::Reached, outcome),
                    Ok(Err(err)) => failed(&err, attempt.connected()),
                    Err(_) if attempt.connected() => (
                        SendResult::Reached,
                        format!("connected, no answer within {}s", timeout.as_secs()),
                    ),
                    Err(_) => (
                        SendResult::Timeout,
                        format!("no answer within {}s", timeout.as_secs()),
                    ),
                };
            Sent {
                target: target.clone(),
                token,
                result,
                outcome,
                local: attempt.local().map(|l| l.to_string()),
                path: None,
                seen_at: Vec::new(),
            }
        }
    });
    futures::future::join_all(sends).await
}

/// How far a test connection came, kept when its timeout cancels it.
#[derive(Debug, Default)]
struct Attempt {
    local: std::sync::Mutex<Option<SocketAddr>>,
    connected: std::sync::atomic::AtomicBool,
}

impl Attempt {
    fn local(&self) -> Option<SocketAddr> {
        self.local.lock().ok().and_then(|l| *l)
    }

    fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn failed(err: &std::io::Error, connected: bool) -> (SendResult, String) {
    use std::io::ErrorKind;
    let result = match err.kind() {
        ErrorKind::ConnectionRefused => SendResult::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            SendResult::Reset
        }
        ErrorKind::TimedOut => SendResult::Timeout,
        _ if connected => SendResult::Reached,
        _ => SendResult::Error,
    };
    let when = if connected && result == SendResult::Reset {
        " once connected"
    } else {
        ""
    };
    (result, format!("{}{when}: {err}", result.as_str()))
}

async fn send_one(target: &str, token: &str, attempt: &Attempt) -> std::io::Result<String> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{target} resolves to no address")))?;
    // Bound before connecting, to the address the route gives: the SYN's source is known even
    // when nothing answers, and the probes' sightings can be matched to it.
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source_for(addr).await?, 0))?;
    if let Ok(mut local) = attempt.local.lock() {
        *local = socket.local_addr().ok();
    }
    let mut stream = socket.connect(addr).await?;
    attempt
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    stream.write_all(request(target, token).as_bytes()).await?;
    let mut answer = vec![0u8; 512];
    let read = stream.read(&mut answer).await?;
    let first = String::from_utf8_lossy(&answer[..read]);
    Ok(match first.lines().next() {
        Some(status) if status.starts_with("HTTP/") => status.trim().to_string(),
        _ => "connected, no HTTP answer".to_string(),
    })
}

/// The local address the kernel's routes pick toward `to` (a connected UDP socket sends nothing).
async fn source_for(to: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = tokio::net::UdpSocket::bind(any).await?;
    probe.connect(to).await?;
    Ok(probe.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::facts::{LbIngress, PortFacts, ServiceFacts, ServiceType, TrafficPolicy};
    use crate::trace::topology::NodeInfo;

    fn topology() -> Topology {
        let lb = |address: &str| LbIngress {
            address: address.into(),
            is_hostname: false,
            ip_mode: None,
        };
        Topology {
            service: ServiceFacts {
                name: "web".into(),
                namespace: Some("shop".into()),
                type_: ServiceType::LoadBalancer,
                external_traffic_policy: TrafficPolicy::Cluster,
                cluster_ips: vec!["10.96.0.10".parse().unwrap()],
                ports: vec![PortFacts {
                    port: 80,
                    node_port: Some(31080),
                    ..PortFacts::default()
                }],
                lb_ingress: vec![lb("203.0.113.10"), lb("2001:db8::10")],
                ..ServiceFacts::default()
            },
            endpoints: vec![],
            endpoint_ports: vec![],
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
        assert_eq!(sent[0].result, SendResult::Reached);
        assert_eq!(sent[0].outcome, "HTTP/1.1 200 OK");
        assert!(sent[0]
            .local
            .as_deref()
            .is_some_and(|l| l.starts_with("127.0.0.1:")));
        assert_eq!(sent[1].result, SendResult::Refused);
        assert!(
            sent[1].outcome.starts_with("refused: "),
            "{}",
            sent[1].outcome
        );
    }

    /// A reset once connected, and a SYN nobody answers: each told apart from a refusal.
    #[tokio::test]
    async fn resets_and_timeouts_are_told_apart() {
        // Accepts, then closes with SO_LINGER 0: a RST.
        let resetting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reset_target = resetting.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = resetting.accept().await.unwrap();
            stream.set_zero_linger().unwrap();
            drop(stream);
        });
        // A full accept queue: the kernel drops further SYNs, as a dropping node does.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = socket.listen(0).unwrap();
        let full_target = full.local_addr().unwrap().to_string();
        let mut queued = Vec::new();
        for _ in 0..2 {
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(&full_target),
            )
            .await
            {
                queued.push(stream);
            }
        }
        let sent = send_all(
            "r1",
            &[reset_target, full_target],
            Duration::from_millis(1500),
        )
        .await;
        assert_eq!(sent[0].result, SendResult::Reset, "{:?}", sent[0]);
        assert!(
            sent[0].outcome.starts_with("reset once connected: "),
            "{}",
            sent[0].outcome
        );
        assert_eq!(sent[1].result, SendResult::Timeout, "{:?}", sent[1]);
        assert_eq!(sent[1].outcome, "no answer within 1s");
        assert!(sent[1].local.is_some(), "the SYN's source is known");
        drop(full);
    }

    #[test]
    fn test_connections_are_tied_to_the_connection_their_syn_started() {
        use crate::analyze::model::{EndsAt, Flow, Hop, Summary};
        use realip_probe::wire::Direction;
        let hop = |node: &str, src: &str, dst: &str| {
            let src: SocketAddr = src.parse().unwrap();
            let dst: SocketAddr = dst.parse().unwrap();
            Hop {
                node: node.into(),
                iface: "eth0".into(),
                dir: Direction::In,
                src: src.ip(),
                sport: src.port(),
                dst: dst.ip(),
                dport: dst.port(),
                ts_ns: 0,
                dir_inferred: false,
                ttl: 64,
            }
        };
        let flow = |hops: Vec<Hop>, reached: bool| Flow {
            pod_sees: reached.then(|| hops[hops.len() - 1].src),
            reached_pod: reached,
            ends_at: if reached {
                EndsAt::Pod
            } else {
                EndsAt::Unknown
            },
            ..Flow::of_hops(1, hops)
        };
        let report = Report::new(
            vec![
                // Someone else's connection from the same port.
                flow(
                    vec![hop("node-a", "203.0.113.9:40001", "198.51.100.11:31080")],
                    true,
                ),
                // The load balancer DNATed the VIP before the first probe: the source tells.
                flow(
                    vec![
                        hop("node-a", "192.0.2.10:40001", "198.51.100.11:31080"),
                        hop("node-b", "198.51.100.11:40001", "198.18.2.10:8080"),
                    ],
                    true,
                ),
                // Dropped at node-b.
                flow(
                    vec![hop("node-b", "192.0.2.10:40002", "198.51.100.12:31080")],
                    false,
                ),
            ],
            Summary::default(),
        );
        let sent = |target: &str, local: &str, result| Sent {
            target: target.into(),
            token: "t".into(),
            result,
            outcome: String::new(),
            local: Some(local.into()),
            path: None,
            seen_at: vec![],
        };
        let mut sent = vec![
            sent("203.0.113.100:80", "192.0.2.10:40001", SendResult::Reached),
            sent(
                "198.51.100.12:31080",
                "192.0.2.10:40002",
                SendResult::Timeout,
            ),
            sent(
                "198.51.100.13:31080",
                "192.0.2.10:40003",
                SendResult::Refused,
            ),
        ];
        attach_flows(&mut sent, &report);
        let reached = sent[0].path.as_ref().unwrap();
        assert_eq!(reached.connection, 2);
        assert_eq!(reached.pod_sees, Some("198.51.100.11".parse().unwrap()));
        let dropped = sent[1].path.as_ref().unwrap();
        assert_eq!(dropped.connection, 3);
        assert!(!dropped.reached_pod);
        assert_eq!(
            dropped.pod_sees, None,
            "no verdict for a connection that reached no pod"
        );
        assert_eq!(dropped.last_seen.as_ref().unwrap().node, "node-b");
        assert_eq!(sent[2].path, None);
        let json = serde_json::to_value(&sent[1]).unwrap();
        assert_eq!(json["result"], "timeout");
        assert_eq!(json["reached_pod"], false);
        assert!(json.get("pod_sees").is_none(), "{json}");
        assert!(json.get("client_ip_preserved").is_none(), "{json}");
    }

    #[test]
    fn tokens_tie_sightings_to_test_connections() {
        use realip_probe::wire::{Event, L7};
        let mut sent = vec![Sent {
            target: "203.0.113.10:80".into(),
            token: "realip-r1-1".into(),
            result: SendResult::Reached,
            outcome: "HTTP/1.1 200 OK".into(),
            local: None,
            path: None,
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
