//! The probe on a real kernel: a client, a node (uplink, cbr0 bridge, kube-proxy-shaped DNAT and
//! MASQUERADE) and a pod, each in a network namespace made here. Real connections cross it while
//! the probe and tcpdump watch the node's interfaces; they must agree frame for frame, and each
//! connection must keep its ISN across the NAT.
//!
//! Needs root, iproute2, iptables and tcpdump; without them each test says SKIPPED and why, and
//! fails under `CI=true`.

use realip_probe::wire::{decode_line, Change, Direction, Event, IfaceKind, Syn};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common;

const PROBE: &str = env!("CARGO_BIN_EXE_realip-probe");

/// Returns from the test when root or a tool is missing (fails under CI=true).
macro_rules! require_lab {
    () => {
        if !common::runnable(
            &common::current_test(),
            common::missing_root_or(&["ip", "iptables-restore", "tcpdump"])
                .or_else(|| common::missing_netns("rpc-")),
        ) {
            return;
        }
    };
}

fn sh(script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces named `rpc-<role>-<pid><n>`, deleted (with what runs in them) on drop.
struct Lab {
    id: String,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab {
            id: format!("{}{tag}", std::process::id()),
            children: Vec::new(),
        }
    }
    fn ns(&self, role: &str) -> String {
        format!("rpc-{role}-{}", self.id)
    }
    fn exec(&self, role: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)]).args(args);
        cmd
    }
    /// A probe echo backend in `role` listening on `listen`, stopped with the lab.
    fn echo(&mut self, role: &str, listen: &str) {
        let child = self
            .exec(role, &[PROBE, "echo", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo");
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for role in ["client", "node", "pod", "pod2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// client 198.51.100.7 — eth0 198.51.100.1 [node] cbr0 10.244.0.1 — vethpod0 — 10.244.0.5 pod,
/// with a NodePort 31908 → 10.244.0.5:8080 written the way kube-proxy writes it.
fn build_node(lab: &Lab) {
    let (c, n, p) = (lab.ns("client"), lab.ns("node"), lab.ns("pod"));
    sh(&format!(
        "ip netns add {c}; ip netns add {n}; ip netns add {p}
         ip -n {c} link set lo up; ip -n {n} link set lo up; ip -n {p} link set lo up
         ip link add eth0 netns {c} type veth peer name eth0 netns {n}
         ip -n {c} addr add 198.51.100.7/24 dev eth0; ip -n {c} addr add 2001:db8:1::7/64 dev eth0 nodad
         ip -n {n} addr add 198.51.100.1/24 dev eth0; ip -n {n} addr add 2001:db8:1::1/64 dev eth0 nodad
         ip -n {c} link set eth0 up; ip -n {n} link set eth0 up
         ip -n {n} route add default via 198.51.100.254 dev eth0 onlink
         ip -n {n} link add cbr0 type bridge; ip -n {n} addr add 10.244.0.1/24 dev cbr0
         ip -n {n} link set cbr0 up
         ip link add vethpod0 netns {n} type veth peer name eth0 netns {p}
         ip -n {n} link set vethpod0 master cbr0; ip -n {n} link set vethpod0 up
         ip -n {p} addr add 10.244.0.5/24 dev eth0; ip -n {p} link set eth0 up
         ip -n {p} route add default via 10.244.0.1
         ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1"
    ));
    let rules = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-ECHO - [0:0]
:KUBE-SVC-ECHO - [0:0]
:KUBE-SEP-ECHO - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/echo\" -m tcp --dport 31908 -j KUBE-EXT-ECHO
-A KUBE-EXT-ECHO -m comment --comment \"masquerade traffic for default/echo external destinations\" -j KUBE-MARK-MASQ
-A KUBE-EXT-ECHO -j KUBE-SVC-ECHO
-A KUBE-SVC-ECHO -m comment --comment \"default/echo -> 10.244.0.5:8080\" -j KUBE-SEP-ECHO
-A KUBE-SEP-ECHO -s 10.244.0.5/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-ECHO -p tcp -m tcp -j DNAT --to-destination 10.244.0.5:8080
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
";
    let mut restore = lab
        .exec("node", &["iptables-restore"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-restore");
    use std::io::Write;
    restore
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("write rules");
    assert!(restore.wait().expect("iptables-restore").success());
}

/// Reads a child's stdout lines on a thread, so waiting for one has a deadline.
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = pred(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("timed out waiting for {what}; got {seen:#?}");
}

/// tcpdump on one interface with the probe's SYN filter, stderr watched for readiness.
fn tcpdump(lab: &mut Lab, iface: &str) -> usize {
    let filter = "(ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn) or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)";
    let mut child = lab
        .exec("node", &["tcpdump", "-n", "-tt", "-l", "-i", iface, filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let stderr = lines_of_stderr(&mut child);
    wait_for(&stderr, "tcpdump to listen", |l| l.contains("listening on"));
    lab.children.push(child);
    lab.children.len() - 1
}

fn lines_of_stderr(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

type Tuple = (IpAddr, u16, IpAddr, u16);

/// `1700000000.123456 IP 198.51.100.7.41770 > 198.51.100.1.31908: Flags [S], seq 1, …`
fn tcpdump_tuple(line: &str) -> Option<(Tuple, u32)> {
    let mut words = line.split_whitespace();
    words.next()?;
    let family = words.next()?;
    if family != "IP" && family != "IP6" {
        return None;
    }
    let endpoint = |s: &str| -> Option<(IpAddr, u16)> {
        let s = s.trim_end_matches(':');
        let (ip, port) = s.rsplit_once('.')?;
        Some((ip.parse().ok()?, port.parse().ok()?))
    };
    let (src, sport) = endpoint(words.next()?)?;
    words.next()?; // ">"
    let (dst, dport) = endpoint(words.next()?)?;
    let seq = line
        .split(", seq ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(((src, sport, dst, dport), seq))
}

fn stop_tcpdump(lab: &mut Lab, index: usize) -> Vec<(Tuple, u32)> {
    let child = &mut lab.children[index];
    sh(&format!("kill -INT {}", child.id()));
    let stdout = child.stdout.take().expect("stdout");
    let _ = child.wait();
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| tcpdump_tuple(&l))
        .collect()
}

/// Opens a TCP connection from the client namespace and returns what the backend answered.
fn connect(lab: &Lab, ip: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}; timeout 5 cat <&3");
    let out = lab
        .exec("client", &["bash", "-c", &script])
        .output()
        .expect("bash /dev/tcp");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn probe_sees_what_tcpdump_sees_and_isn_survives_nat() {
    require_lab!();
    let mut lab = Lab::new("a");
    build_node(&lab);
    lab.echo("pod", "0.0.0.0:8080");
    lab.echo("node", "[2001:db8:1::1]:8081");

    let mut probe = lab
        .exec(
            "node",
            &[
                PROBE,
                "capture",
                "--node",
                "node-a",
                "--stats-interval",
                "1",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("probe");
    let events = lines_of(probe.stdout.take().expect("stdout"));
    let probe_pid = probe.id();
    lab.children.push(probe);
    let hello = wait_for(&events, "hello", |l| l.contains(r#""type":"hello""#));
    let Ok(Event::Hello(hello)) = decode_line(hello.last().expect("hello")) else {
        panic!("first event is not hello");
    };
    let kinds: HashMap<&str, IfaceKind> = hello
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    assert_eq!(kinds.get("eth0"), Some(&IfaceKind::Uplink), "{hello:?}");
    assert_eq!(kinds.get("cbr0"), Some(&IfaceKind::Bridge), "{hello:?}");
    assert_eq!(kinds.get("vethpod0"), Some(&IfaceKind::Veth), "{hello:?}");
    assert_eq!(kinds.get("lo"), Some(&IfaceKind::Loopback), "{hello:?}");
    assert_eq!(hello.node, "node-a");

    let ifaces = ["eth0", "cbr0", "vethpod0"];
    let dumps: Vec<usize> = ifaces.iter().map(|i| tcpdump(&mut lab, i)).collect();

    // Also a closed port: a SYN answered by a reset is still a SYN on the wire.
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(connect(&lab, "198.51.100.1", 31908));
    }
    answers.push(connect(&lab, "2001:db8:1::1", 8081));
    connect(&lab, "198.51.100.1", 9);
    for answer in &answers[..5] {
        // MASQUERADE out of cbr0 takes the bridge's address: the pod never sees the client.
        assert!(
            answer.contains(r#""remote_addr":"10.244.0.1""#),
            "{answers:?}"
        );
    }
    assert!(
        answers[5].contains(r#""remote_addr":"2001:db8:1::7""#),
        "{answers:?}"
    );

    // Let both tools catch up (ring blocks retire within 20 ms; tcpdump is line-buffered).
    thread::sleep(Duration::from_millis(700));
    let seen_by_tcpdump: Vec<Vec<(Tuple, u32)>> = dumps
        .into_iter()
        .map(|d| stop_tcpdump(&mut lab, d))
        .collect();
    sh(&format!("kill -TERM {probe_pid}"));
    let rest = wait_for(&events, "bye", |l| l.contains(r#""type":"bye""#));
    let status = lab.children[2].wait().expect("probe exit");
    assert!(status.success(), "probe exited with {status}");

    let all: Vec<Event> = rest
        .iter()
        .map(|l| decode_line(l).expect("valid line"))
        .collect();
    let syns: Vec<&Syn> = all
        .iter()
        .filter_map(|e| match e {
            Event::Syn(s) => Some(s),
            _ => None,
        })
        .collect();
    for (iface, dumped) in ifaces.iter().zip(&seen_by_tcpdump) {
        let probe_view: Vec<(Tuple, u32)> = syns
            .iter()
            .filter(|s| s.iface == *iface)
            .map(|s| ((s.src, s.sport, s.dst, s.dport), s.isn))
            .collect();
        assert!(!dumped.is_empty(), "tcpdump saw nothing on {iface}");
        assert_eq!(
            sorted(probe_view),
            sorted(dumped.clone()),
            "probe and tcpdump disagree on {iface}"
        );
    }

    // Every NodePort connection: same ISN on eth0 (in), cbr0 (out), vethpod0 (out); the tuple
    // changes from client → NodePort to cbr0 → pod.
    let mut by_isn: BTreeMap<u32, Vec<&Syn>> = BTreeMap::new();
    for syn in syns.iter().filter(|s| s.dport == 31908 || s.dport == 8080) {
        by_isn.entry(syn.isn).or_default().push(syn);
    }
    assert_eq!(by_isn.len(), 5, "{by_isn:#?}");
    for (isn, hops) in &by_isn {
        let at = |iface: &str| {
            hops.iter()
                .find(|s| s.iface == iface)
                .unwrap_or_else(|| panic!("ISN {isn} not seen on {iface}: {hops:#?}"))
        };
        let (up, bridge, veth) = (at("eth0"), at("cbr0"), at("vethpod0"));
        assert_eq!(hops.len(), 3, "{hops:#?}");
        assert_eq!(up.dir, Direction::In);
        assert_eq!((bridge.dir, veth.dir), (Direction::Out, Direction::Out));
        assert_eq!(up.src.to_string(), "198.51.100.7");
        assert_eq!(
            (up.dst.to_string().as_str(), up.dport),
            ("198.51.100.1", 31908)
        );
        assert_eq!(bridge.src.to_string(), "10.244.0.1");
        assert_eq!(
            (veth.dst.to_string().as_str(), veth.dport),
            ("10.244.0.5", 8080)
        );
        assert_eq!(up.tsval, veth.tsval);
        assert!(up.tsval.is_some());
        assert_eq!(up.ttl, veth.ttl + 1, "one routed hop");
    }

    let last_stats = all
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Stats(s) => Some(s),
            _ => None,
        })
        .expect("final stats");
    assert!(last_stats.last);
    for iface in ifaces {
        let s = last_stats
            .interfaces
            .iter()
            .find(|s| s.iface == iface)
            .expect("stats per interface");
        let syn_count = syns.iter().filter(|x| x.iface == iface).count() as u64;
        assert_eq!((s.syns, s.drops, s.malformed), (syn_count, 0, 0), "{s:?}");
        assert_eq!(s.packets, syn_count, "only SYNs left the kernel: {s:?}");
    }
    assert!(matches!(all.last(), Some(Event::Bye(b)) if b.reason == "signal"));
}

#[test]
fn pods_coming_and_going_are_followed() {
    require_lab!();
    let mut lab = Lab::new("b");
    build_node(&lab);
    let mut probe = lab
        .exec(
            "node",
            &[PROBE, "capture", "--node", "node-a", "--port", "8080"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("probe");
    let events = lines_of(probe.stdout.take().expect("stdout"));
    let probe_pid = probe.id();
    lab.children.push(probe);
    wait_for(&events, "hello", |l| l.contains(r#""type":"hello""#));

    // A new pod after the probe started.
    let (n, p2) = (lab.ns("node"), lab.ns("pod2"));
    sh(&format!(
        "ip netns add {p2}; ip -n {p2} link set lo up
         ip link add vethpod1 netns {n} type veth peer name eth0 netns {p2}
         ip -n {n} link set vethpod1 master cbr0; ip -n {n} link set vethpod1 up
         ip -n {p2} addr add 10.244.0.6/24 dev eth0; ip -n {p2} link set eth0 up"
    ));
    let started = Instant::now();
    let added = wait_for(
        &events,
        "the new veth",
        |l| matches!(decode_line(l), Ok(Event::Iface(c)) if c.change == Change::Added && c.interface.name == "vethpod1"),
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{added:?}");
    let Ok(Event::Iface(change)) = decode_line(added.last().expect("line")) else {
        unreachable!()
    };
    assert_eq!(change.interface.kind, IfaceKind::Veth);

    // Pod-to-pod SYN seen on the new interface; a SYN to another port is filtered in the kernel.
    let pod2 = lab.ns("pod2");
    let mut echo2 = Command::new("ip");
    echo2
        .args([
            "netns",
            "exec",
            &pod2,
            PROBE,
            "echo",
            "--listen",
            "0.0.0.0:8080",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.children.push(echo2.spawn().expect("echo in pod2"));
    thread::sleep(Duration::from_millis(300));
    let out = lab
        .exec(
            "pod",
            &["bash", "-c", "exec 3<>/dev/tcp/10.244.0.6/8080; timeout 5 cat <&3; (exec 4<>/dev/tcp/10.244.0.6/9) 2>/dev/null; true"],
        )
        .output()
        .expect("pod to pod");
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.244.0.5"));
    let syn = wait_for(
        &events,
        "a SYN on vethpod1",
        |l| matches!(decode_line(l), Ok(Event::Syn(s)) if s.iface == "vethpod1"),
    );
    let Ok(Event::Syn(syn)) = decode_line(syn.last().expect("line")) else {
        unreachable!()
    };
    assert_eq!((syn.dport, syn.dir), (8080, Direction::Out));

    // The pod goes away: its interface leaves cleanly and its counters stay in stats.
    sh(&format!("ip -n {n} link del vethpod1"));
    wait_for(
        &events,
        "the veth to leave",
        |l| matches!(decode_line(l), Ok(Event::Iface(c)) if c.change == Change::Removed && c.interface.name == "vethpod1"),
    );
    sh(&format!("kill -INT {probe_pid}"));
    let rest = wait_for(&events, "bye", |l| l.contains(r#""type":"bye""#));
    let stats = rest
        .iter()
        .filter_map(|l| match decode_line(l) {
            Ok(Event::Stats(s)) => Some(s),
            _ => None,
        })
        .next_back()
        .expect("final stats");
    let gone = stats
        .interfaces
        .iter()
        .find(|s| s.iface == "vethpod1")
        .expect("vanished interface still counted");
    assert!(gone.syns >= 1, "{gone:?}");
    assert!(
        rest.iter().all(|l| !l.contains(r#""dport":9,"#)),
        "port 9 passed the kernel filter"
    );
    assert!(lab.children[0].wait().expect("exit").success());
}

#[test]
fn l7_reports_forwarding_facts_of_first_segments_only() {
    require_lab!();
    let mut lab = Lab::new("c");
    build_node(&lab);
    lab.echo("pod", "0.0.0.0:8080");
    let mut probe = lab
        .exec(
            "node",
            &[
                PROBE,
                "capture",
                "--l7",
                "--port",
                "31908",
                "--port",
                "8080",
                "--host",
                "198.51.100.7",
                "--host",
                "10.244.0.5",
                "--duration",
                "4",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("probe");
    let events = lines_of(probe.stdout.take().expect("stdout"));
    lab.children.push(probe);
    wait_for(&events, "hello", |l| l.contains(r#""type":"hello""#));
    // One write, so the request head is one segment (bash's printf may write piecemeal).
    let head = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        head.path(),
        "GET /private HTTP/1.1\r\nHost: svc\r\nCookie: s=1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    )
    .expect("write request");
    let request = format!("cat {} >&3", head.path().display());
    let out = lab
        .exec(
            "client",
            &[
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/198.51.100.1/31908; {request}; timeout 5 cat <&3"),
            ],
        )
        .output()
        .expect("client request");
    assert!(String::from_utf8_lossy(&out.stdout).contains("203.0.113.9"));
    let rest = wait_for(&events, "bye", |l| l.contains(r#""type":"bye""#));
    assert!(lab.children[1].wait().expect("exit").success());
    let all: Vec<Event> = rest.iter().map(|l| decode_line(l).expect("line")).collect();
    let isn = all
        .iter()
        .find_map(|e| match e {
            Event::Syn(s) if s.iface == "eth0" => Some(s.isn),
            _ => None,
        })
        .expect("SYN on the uplink");
    let l7: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            Event::L7(l) => Some(l),
            _ => None,
        })
        .collect();
    let mut ifaces: Vec<&str> = l7.iter().map(|l| l.iface.as_str()).collect();
    ifaces.sort();
    assert_eq!(ifaces, ["cbr0", "eth0", "vethpod0"], "{l7:#?}");
    for event in &l7 {
        assert_eq!(event.seq, isn.wrapping_add(1));
        assert_eq!(
            event.x_forwarded_for.as_deref(),
            Some("203.0.113.9"),
            "{event:?}"
        );
        assert_eq!(
            event.dir,
            Some(if event.iface == "eth0" {
                Direction::In
            } else {
                Direction::Out
            })
        );
    }
    for line in &rest {
        assert!(
            !line.contains("private") && !line.contains("Cookie"),
            "{line}"
        );
    }
}

#[test]
fn raw_ip_devices_get_their_own_filter_program() {
    require_lab!();
    let lab = Lab::new("d");
    let n = lab.ns("node");
    // A tun device has no link header (ARPHRD_NONE): the kernel must accept the raw-IP program.
    sh(&format!(
        "ip netns add {n}; ip -n {n} link set lo up; ip -n {n} tuntap add dev tun9 mode tun"
    ));
    let out = lab
        .exec(
            "node",
            &[
                PROBE,
                "capture",
                "--duration",
                "1",
                "--iface",
                "tun9",
                "--iface",
                "lo",
            ],
        )
        .output()
        .expect("probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(Ok(Event::Hello(hello))) = stdout.lines().next().map(decode_line) else {
        panic!("no hello: {stdout}");
    };
    let tun = hello
        .interfaces
        .iter()
        .find(|i| i.name == "tun9")
        .expect("tun9 listed");
    assert_eq!(tun.link_type, realip_probe::wire::LinkType::RawIp);
    assert_eq!(tun.kind, IfaceKind::Tunnel);
    assert!(hello.filter.starts_with("tcp syn"), "{}", hello.filter);
}

#[test]
fn a_link_that_comes_up_later_is_captured_without_rescanning() {
    require_lab!();
    let mut lab = Lab::new("e");
    let n = lab.ns("node");
    sh(&format!("ip netns add {n}")); // loopback starts down
    let mut probe = lab
        .exec(
            "node",
            &[PROBE, "capture", "--iface", "lo", "--duration", "3"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("probe");
    let events = lines_of(probe.stdout.take().expect("stdout"));
    lab.children.push(probe);
    wait_for(&events, "hello", |l| l.contains(r#""type":"hello""#));
    sh(&format!(
        "ip -n {n} link set lo up; ip netns exec {n} bash -c '(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; true'"
    ));
    let rest = wait_for(&events, "bye", |l| l.contains(r#""type":"bye""#));
    let syns = rest
        .iter()
        .filter(|l| l.contains(r#""type":"syn""#))
        .count();
    assert_eq!(syns, 2, "SYN out and in on lo: {rest:#?}");
    let out = lab
        .children
        .remove(0)
        .wait_with_output()
        .expect("probe exit");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lo: Network is down"), "{stderr}");
}
