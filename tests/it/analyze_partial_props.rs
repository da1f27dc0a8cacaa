//! Property tests of the verdict on captures as users take them: capture points dropped (a
//! node's pod side, the entry, whole nodes, every `hello`), records duplicated, a clock glitch.
//! Whatever is missing, a verdict may say less than the full capture, never something the
//! pod's real view contradicts: `true` only when the pod sees the client, `false` only when it
//! does not.

use kubectl_realip::analyze::analyze_events;
use kubectl_realip::analyze::model::Verdict;
use proptest::prelude::*;
use realip_probe::wire::{Direction, Event, Hello, IfaceKind, Interface, LinkType, Syn};
use std::net::{IpAddr, Ipv4Addr};

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// The node's uplink address; every node is on 10.0.0.0/24.
fn node_ip(n: u8) -> IpAddr {
    ip(10, 0, 0, 10 + n)
}

fn pod_ip(n: u8) -> IpAddr {
    ip(10, 244, n, 10)
}

fn bridge_ip(n: u8) -> IpAddr {
    ip(10, 244, n, 1)
}

fn iface(index: u32, name: &str, kind: IfaceKind, addr: Option<String>) -> Interface {
    Interface {
        index,
        name: name.into(),
        kind,
        link_type: LinkType::Ethernet,
        addresses: addr.into_iter().collect(),
        mtu: 1500,
        mac: None,
    }
}

fn hello(n: u8) -> Event {
    Event::Hello(Hello {
        ts_ns: 1,
        node: format!("node-{n}"),
        probe_version: "test".into(),
        interfaces: vec![
            iface(
                2,
                "eth0",
                IfaceKind::Uplink,
                Some(format!("{}/24", node_ip(n))),
            ),
            iface(
                3,
                "cbr0",
                IfaceKind::Bridge,
                Some(format!("{}/24", bridge_ip(n))),
            ),
            iface(4, "veth-app", IfaceKind::Veth, None),
        ],
        filter: String::new(),
        l7: false,
    })
}

/// How one connection travels: the client, an unprobed load balancer that may rewrite the
/// source, the node it enters, whether that node masquerades, and where the pod runs.
#[derive(Debug, Clone)]
struct Plan {
    /// A public client, or a private one (inside the network).
    public_client: bool,
    /// The unprobed load balancer in front rewrites the source to its own address on the
    /// nodes' network.
    lb_snat: bool,
    /// The node masquerades (externalTrafficPolicy Cluster).
    node_snat: bool,
    /// The pod runs on the other node.
    cross_node: bool,
}

/// The sightings of one SYN, in path order, and what the pod's accept() returns.
fn path(k: u8, plan: &Plan) -> (Vec<Syn>, IpAddr, IpAddr) {
    let client = if plan.public_client {
        ip(203, 0, 113, k)
    } else {
        ip(172, 16, 9, k)
    };
    let isn = 1_000 + u32::from(k);
    let mut src = if plan.lb_snat {
        ip(10, 0, 0, 200)
    } else {
        client
    };
    let mut sport = 40_000 + u16::from(k);
    let mut ttl = 60u8;
    let base = u64::from(k) * 1_000_000_000;
    let mut syns = Vec::new();
    let mut add = |node: u8, iface: &str, dir, src, sport, dst, dport, ttl, t: u64| {
        syns.push(Syn {
            ts_ns: base + t,
            node: format!("node-{node}"),
            iface: iface.into(),
            dir,
            src,
            sport,
            dst,
            dport,
            isn,
            tsval: Some(isn),
            ttl,
            ip_id: Some(u16::from(k)),
        });
    };
    add(
        0,
        "eth0",
        Direction::In,
        src,
        sport,
        node_ip(0),
        31_080,
        ttl,
        10,
    );
    let pod_node = if plan.cross_node { 1 } else { 0 };
    let pod = pod_ip(pod_node);
    ttl -= 1;
    if plan.node_snat {
        src = if plan.cross_node {
            node_ip(0)
        } else {
            bridge_ip(0)
        };
        sport = sport.wrapping_add(7);
    }
    if plan.cross_node {
        add(0, "eth0", Direction::Out, src, sport, pod, 8080, ttl, 20);
        ttl -= 1;
        add(1, "eth0", Direction::In, src, sport, pod, 8080, ttl, 30);
        add(
            1,
            "cbr0",
            Direction::Out,
            src,
            sport,
            pod,
            8080,
            ttl - 1,
            40,
        );
        add(
            1,
            "veth-app",
            Direction::Out,
            src,
            sport,
            pod,
            8080,
            ttl - 1,
            41,
        );
    } else {
        add(0, "cbr0", Direction::Out, src, sport, pod, 8080, ttl, 20);
        add(
            0,
            "veth-app",
            Direction::Out,
            src,
            sport,
            pod,
            8080,
            ttl,
            21,
        );
    }
    (syns, client, src)
}

fn plan() -> impl Strategy<Value = Plan> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(public_client, lb_snat, node_snat, cross_node)| Plan {
            public_client,
            lb_snat,
            node_snat,
            cross_node,
        },
    )
}

/// What a partial capture keeps.
#[derive(Debug, Clone)]
struct Damage {
    keep_hello: [bool; 2],
    keep_iface: [[bool; 3]; 2],
    /// One sighting given twice.
    duplicate: Option<usize>,
    /// One sighting dated in 2100.
    glitch: Option<usize>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        [any::<bool>(), any::<bool>()],
        [[any::<bool>(); 3], [any::<bool>(); 3]],
        prop::option::of(0usize..64),
        prop::option::of(0usize..64),
    )
        .prop_map(|(keep_hello, keep_iface, duplicate, glitch)| Damage {
            keep_hello,
            keep_iface,
            duplicate,
            glitch,
        })
}

const IFACES: [&str; 3] = ["eth0", "cbr0", "veth-app"];

fn apply(damage: &Damage, syns: &[Syn]) -> Vec<Event> {
    let mut events: Vec<Event> = (0..2u8)
        .filter(|n| damage.keep_hello[usize::from(*n)])
        .map(hello)
        .collect();
    let mut kept: Vec<Syn> = syns
        .iter()
        .filter(|s| {
            let node = usize::from(s.node.ends_with('1'));
            let i = IFACES.iter().position(|name| *name == s.iface).unwrap_or(0);
            damage.keep_iface[node][i]
        })
        .cloned()
        .collect();
    if let Some(i) = damage.duplicate {
        if !kept.is_empty() {
            let copy = kept[i % kept.len()].clone();
            kept.push(copy);
        }
    }
    if let Some(i) = damage.glitch {
        if !kept.is_empty() {
            let n = kept.len();
            // 2100-01-01, as a glitching clock writes.
            kept[i % n].ts_ns = 4_102_444_800_000_000_000;
        }
    }
    events.extend(kept.into_iter().map(Event::Syn));
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The full capture settles every connection, and rightly.
    #[test]
    fn the_full_capture_tells_the_truth(plans in prop::collection::vec(plan(), 1..6)) {
        let mut events: Vec<Event> = (0..2).map(hello).collect();
        let mut truths = Vec::new();
        for (k, plan) in plans.iter().enumerate() {
            let (syns, client, sees) = path(u8::try_from(k).unwrap(), plan);
            truths.push((syns[0].isn, client, sees, plan.clone()));
            events.extend(syns.into_iter().map(Event::Syn));
        }
        let report = analyze_events(events);
        for (isn, client, sees, plan) in truths {
            let flow = report.flows.iter().find(|f| f.isn == isn).unwrap();
            prop_assert_eq!(flow.pod_sees, Some(sees));
            let kept = sees == client;
            match flow.client_ip_preserved {
                Some(claim) => prop_assert_eq!(claim, kept, "{:?}", flow),
                // Only an unprobed private source stays open: nothing says who it is.
                None => prop_assert!(!plan.public_client && !plan.lb_snat, "{:?} {:?}", plan, flow),
            }
            if plan.lb_snat {
                prop_assert_eq!(flow.verdict, Verdict::LostBeforeCapture, "{:?}", flow);
            }
        }
    }

    /// A partial, duplicated or glitched capture may leave a verdict open; it never claims what
    /// the pod's real view contradicts.
    #[test]
    fn partial_captures_never_claim_what_is_false(
        plans in prop::collection::vec(plan(), 1..6),
        damage in damage(),
    ) {
        let mut syns = Vec::new();
        let mut truths = Vec::new();
        for (k, plan) in plans.iter().enumerate() {
            let (path, client, sees) = path(u8::try_from(k).unwrap(), plan);
            truths.push((path[0].isn, client, sees));
            syns.extend(path);
        }
        let report = analyze_events(apply(&damage, &syns));
        for flow in &report.flows {
            let Some(&(_, client, sees)) = truths.iter().find(|t| t.0 == flow.isn) else {
                continue;
            };
            match flow.client_ip_preserved {
                Some(true) => prop_assert_eq!(sees, client, "{:?} {:?}", damage, flow),
                Some(false) => prop_assert_ne!(sees, client, "{:?} {:?}", damage, flow),
                None => {}
            }
        }
    }
}
