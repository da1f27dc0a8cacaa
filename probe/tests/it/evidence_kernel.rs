//! The evidence readers against real kernel state, in network namespaces made here (`rpe-…`):
//!
//! - rules loaded with `nft`, `iptables-nft-restore` and `iptables-legacy-restore` (IPv4 and
//!   IPv6) are read back through netlink and `getsockopt` and must render exactly as
//!   `nft list table` / `iptables-save` print them, rule for rule;
//! - real connections cross kube-proxy-shaped DNAT + MASQUERADE (iptables-legacy, iptables-nft,
//!   kube-proxy's nftables mode) and a CNI natOutgoing on a second uplink, while the probe runs
//!   with `--evidence`: its events must name the rule that rewrote each one, its counter delta,
//!   the conntrack entry with its NAT bits and the route that chose the address;
//! - without CAP_NET_ADMIN the probe still captures and says the evidence was not available.
//!
//! Reading happens inside the namespace: the test re-runs itself there (`ip netns exec … <this
//! test binary> --exact NAME`) with `REALIP_EVIDENCE_CHILD` set, and the child prints what the
//! readers returned. Needs root, iproute2, nft, iptables-legacy, iptables-nft, ipset, bash and
//! setpriv; skips with a reason otherwise (and fails under `CI=true`).

use realip_probe::capture::evidence::read_snapshot;
use realip_probe::wire::{
    decode_line, Backend, Conntrack, Event, EvidenceStatus, NatKind, Owner, Phase, Route,
    RuleEntry, Ruleset, Syntax, Why,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common;

use common::listing::{nft_listing, save_listing};

const PROBE: &str = env!("CARGO_BIN_EXE_realip-probe");
const CHILD: &str = "REALIP_EVIDENCE_CHILD";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/evidence");

fn missing() -> Option<String> {
    common::missing_root_or(&[
        "ip",
        "nft",
        "iptables-legacy-restore",
        "iptables-nft-restore",
        "ip6tables-legacy-restore",
        "ipset",
        "bash",
        "setpriv",
    ])
    .or_else(|| common::missing_netns("rpe-"))
}

macro_rules! require {
    () => {
        if std::env::var(CHILD).is_err() && !common::runnable(&common::current_test(), missing()) {
            return;
        }
    };
}

/// What the test harness calls `test` of this file (`evidence_kernel::NAME`: the module path
/// without the crate), for `--exact`.
fn harness_name(test: &str) -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    format!("{module}::{test}")
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Network namespaces `rpe-<role>-<pid><tag>`, deleted (with what runs in them) on drop.
struct Lab {
    id: String,
    roles: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str, roles: &[&str]) -> Lab {
        let lab = Lab {
            id: format!("{}{tag}", std::process::id()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            children: Vec::new(),
        };
        for role in roles {
            let ns = lab.ns(role);
            sh(&format!("ip netns add {ns}; ip -n {ns} link set lo up"));
        }
        lab
    }
    fn ns(&self, role: &str) -> String {
        format!("rpe-{role}-{}", self.id)
    }
    fn exec(&self, role: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)]).args(args);
        cmd
    }
    fn run(&self, role: &str, args: &[&str]) -> String {
        let out = self.exec(role, args).output().expect("ip netns exec");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn feed(&self, role: &str, args: &[&str], input: &str) {
        let mut child = self
            .exec(role, args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// A probe echo backend in `role`, stopped with the lab.
    fn echo(&mut self, role: &str, listen: &str) {
        let child = self
            .exec(role, &[PROBE, "echo", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo");
        self.children.push(child);
    }
    /// Every NAT rule the probe's readers see in `role`, as (backend, family, table, chain) →
    /// rule texts in order.
    fn read_rules(
        &self,
        role: &str,
        test: &str,
    ) -> BTreeMap<(String, String, String, String), Vec<String>> {
        let exe = std::env::current_exe().expect("test binary");
        let out = self
            .exec(
                role,
                &[
                    exe.to_str().expect("utf-8 path"),
                    "--exact",
                    &harness_name(test),
                    "--nocapture",
                    "--test-threads=1",
                ],
            )
            .env(CHILD, "1")
            .output()
            .expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rules: BTreeMap<_, Vec<String>> = BTreeMap::new();
        for line in stdout.lines() {
            let Some(rest) = line.strip_prefix("RULE\t") else {
                continue;
            };
            let f: Vec<&str> = rest.splitn(5, '\t').collect();
            let key = (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
            );
            rules.entry(key).or_default().push(f[4].to_string());
        }
        assert!(!rules.is_empty(), "the child read no rule: {stdout}");
        rules
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for role in &self.roles {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// In the child: prints every rule the readers return (or, as `record`, writes the raw
/// replies as golden fixtures), then the test returns.
fn child_prints_rules() -> bool {
    let Ok(mode) = std::env::var(CHILD) else {
        return false;
    };
    if mode == "record" {
        record_raw();
        return true;
    }
    let (snap, sources) = read_snapshot(&HashMap::new());
    for s in &sources {
        println!("SOURCE\t{}\t{:?}\t{:?}", s.name, s.state, s.detail);
    }
    for t in &snap.tables {
        let backend = serde_json::to_string(&t.backend).unwrap_or_default();
        for c in &t.chains {
            for r in &c.rules {
                println!(
                    "RULE\t{}\t{}\t{}\t{}\t{}",
                    backend.trim_matches('"'),
                    t.family,
                    t.name,
                    c.name,
                    r.text
                );
            }
        }
    }
    true
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/evidence/golden"
);

/// Writes what the kernel answered, byte for byte: the nf_tables replies (each message padded
/// to 4 bytes, as netlink lays them out, the sender's port id zeroed), the iptables-legacy `ipt_getinfo` + entries of both
/// families, and the ipset names by index.
fn record_raw() {
    let mut messages = vec![];
    realip_probe::capture::evidence::nft_read(&HashMap::new(), Some(&mut messages))
        .expect("nft dump");
    let mut bytes = vec![];
    for mut m in messages {
        // The sender's port id differs from run to run; the parsers never read it.
        m[12..16].fill(0);
        bytes.extend_from_slice(&m);
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    }
    std::fs::write(format!("{GOLDEN}/nft-dump.bin"), bytes).expect("write");
    for (v6, name) in [(false, "legacy-ip.bin"), (true, "legacy-ip6.bin")] {
        let (info, blob) =
            realip_probe::capture::kernel::iptables_table(v6, "nat").expect("legacy");
        std::fs::write(format!("{GOLDEN}/{name}"), [info, blob].concat()).expect("write");
    }
    let names = realip_probe::capture::kernel::ipset_names(&[0, 1, 2]).expect("ipsets");
    let text: String = names.iter().map(|(i, n)| format!("{i} {n}\n")).collect();
    std::fs::write(format!("{GOLDEN}/ipsets.txt"), text).expect("write");
}

/// Regenerates `tests/fixtures/evidence/golden/`: one namespace holding every fixture's rules
/// (native nftables, iptables-nft, iptables-legacy for IPv4 and IPv6), its raw replies, and what
/// `nft list ruleset` and the `*-save` tools print for them. Run it after changing the rule
/// fixtures: `cargo test -p realip-probe --test it -- --ignored evidence_kernel::record_golden`.
#[test]
#[ignore = "rewrites the golden fixtures"]
fn record_golden_fixtures() {
    if child_prints_rules() {
        return;
    }
    require!();
    let lab = Lab::new("rec", &["node"]);
    lab.run(
        "node",
        &["nft", "-f", &format!("{FIXTURES}/kube-proxy.nft")],
    );
    load_iptables(&lab, "node", "iptables-nft-restore");
    lab.feed(
        "node",
        &["iptables-legacy-restore"],
        &fixture("kube-proxy.rules"),
    );
    lab.feed(
        "node",
        &["ip6tables-legacy-restore"],
        &fixture("kube-proxy6.rules"),
    );
    std::fs::create_dir_all(GOLDEN).expect("golden dir");
    let exe = std::env::current_exe().expect("test binary");
    let out = lab
        .exec(
            "node",
            &[
                exe.to_str().expect("utf-8"),
                "--exact",
                &harness_name("record_golden_fixtures"),
                "--ignored",
            ],
        )
        .env(CHILD, "record")
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (file, cmd) in [
        ("nft-list-ruleset.txt", vec!["nft", "list", "ruleset"]),
        (
            "iptables-nft-save.txt",
            vec!["iptables-nft-save", "-t", "nat"],
        ),
        (
            "iptables-legacy-save.txt",
            vec!["iptables-legacy-save", "-t", "nat"],
        ),
        (
            "ip6tables-legacy-save.txt",
            vec!["ip6tables-legacy-save", "-t", "nat"],
        ),
    ] {
        let text = lab.run("node", &cmd);
        // Drop the date lines so regenerating changes nothing that matters.
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("# Generated") && !l.starts_with("# Completed"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(format!("{GOLDEN}/{file}"), kept).expect("write");
    }
}

/// The readers' rules of one table, by chain, empty chains left out (listings omit them too).
fn table_rules(
    read: &BTreeMap<(String, String, String, String), Vec<String>>,
    backend: &str,
    family: &str,
    table: &str,
) -> BTreeMap<String, Vec<String>> {
    read.iter()
        .filter(|((b, f, t, _), _)| b == backend && f == family && t == table)
        .map(|((_, _, _, c), rules)| (c.clone(), rules.clone()))
        .collect()
}

fn nonempty(m: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    m.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Loads the kube-proxy-shaped iptables rules (and the ipsets Calico's rules match on) with
/// `restore` (iptables-legacy-restore or iptables-nft-restore).
fn load_iptables(lab: &Lab, role: &str, restore: &str) {
    for set in ["cali40masq-ipam-pools", "cali40all-ipam-pools"] {
        lab.run(role, &["ipset", "create", set, "hash:net"]);
        lab.run(role, &["ipset", "add", set, "10.244.0.0/16"]);
    }
    lab.feed(role, &[restore], &fixture("kube-proxy.rules"));
}

#[test]
fn nft_rules_render_as_nft_lists_them() {
    if child_prints_rules() {
        return;
    }
    require!();
    let lab = Lab::new("nft", &["node"]);
    lab.run(
        "node",
        &["nft", "-f", &format!("{FIXTURES}/kube-proxy.nft")],
    );
    let read = lab.read_rules("node", "nft_rules_render_as_nft_lists_them");
    for (family, table) in [("ip", "kube-proxy"), ("inet", "calico")] {
        let listed = nft_listing(&lab.run("node", &["nft", "list", "table", family, table]));
        assert_eq!(
            nonempty(table_rules(&read, "nftables", family, table)),
            nonempty(listed),
            "table {family} {table}"
        );
    }
}

#[test]
fn iptables_nft_rules_render_as_iptables_save_prints_them() {
    if child_prints_rules() {
        return;
    }
    require!();
    let lab = Lab::new("ipn", &["node"]);
    load_iptables(&lab, "node", "iptables-nft-restore");
    let read = lab.read_rules(
        "node",
        "iptables_nft_rules_render_as_iptables_save_prints_them",
    );
    let saved = save_listing(&lab.run("node", &["iptables-nft-save", "-t", "nat"]));
    assert_eq!(table_rules(&read, "iptables-nft", "ip", "nat"), saved);
}

#[test]
fn iptables_legacy_rules_render_as_iptables_save_prints_them() {
    if child_prints_rules() {
        return;
    }
    require!();
    let lab = Lab::new("ipl", &["node"]);
    load_iptables(&lab, "node", "iptables-legacy-restore");
    lab.feed(
        "node",
        &["ip6tables-legacy-restore"],
        &fixture("kube-proxy6.rules"),
    );
    let read = lab.read_rules(
        "node",
        "iptables_legacy_rules_render_as_iptables_save_prints_them",
    );
    let saved = save_listing(&lab.run("node", &["iptables-legacy-save", "-t", "nat"]));
    assert_eq!(table_rules(&read, "iptables-legacy", "ip", "nat"), saved);
    let saved6 = save_listing(&lab.run("node", &["ip6tables-legacy-save", "-t", "nat"]));
    assert_eq!(table_rules(&read, "iptables-legacy", "ip6", "nat"), saved6);
}

/// Reads a child's stdout lines on a thread, so waiting for one has a deadline.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
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
    let deadline = Instant::now() + Duration::from_secs(20);
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

/// What the probe wrote, sorted by kind.
#[derive(Debug, Default)]
struct Stream {
    syns: Vec<realip_probe::wire::Syn>,
    status: Vec<EvidenceStatus>,
    rulesets: Vec<Ruleset>,
    conntrack: Vec<Conntrack>,
    routes: Vec<Route>,
    ended: bool,
}

impl Stream {
    fn end(&self) -> &Ruleset {
        self.rulesets
            .iter()
            .find(|r| r.phase == Phase::End)
            .expect("an end ruleset")
    }
    fn rule(&self, chain: &str, pred: impl Fn(&RuleEntry) -> bool) -> &RuleEntry {
        let end = self.end();
        end.rules
            .iter()
            .find(|r| r.chain == chain && pred(r))
            .unwrap_or_else(|| panic!("no such rule in {chain}: {:#?}", end.rules))
    }
}

/// Starts the probe in `role` with `--evidence`, runs `traffic` once its start snapshot is out,
/// and returns everything it wrote after `--duration` ends.
fn capture(lab: &mut Lab, role: &str, args: &[&str], traffic: impl FnOnce(&Lab)) -> Stream {
    let mut argv = vec![
        PROBE,
        "capture",
        "--evidence",
        "--node",
        "node-a",
        "--duration",
        "4",
    ];
    argv.extend_from_slice(args);
    let mut probe = lab
        .exec(role, &argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("probe");
    let rx = lines_of(&mut probe);
    lab.children.push(probe);
    let mut lines = wait_for(&rx, "the start ruleset", |l| {
        l.contains(r#""type":"ruleset""#)
    });
    traffic(lab);
    lines.extend(wait_for(&rx, "bye", |l| l.contains(r#""type":"bye""#)));
    let mut s = Stream::default();
    for line in &lines {
        match decode_line(line).expect("event line") {
            Event::Evidence(e) => s.status.push(e),
            Event::Ruleset(r) => s.rulesets.push(r),
            Event::Conntrack(c) => s.conntrack.push(c),
            Event::Route(r) => s.routes.push(r),
            Event::Syn(syn) => s.syns.push(syn),
            Event::Bye(_) => s.ended = true,
            _ => {}
        }
    }
    s
}

/// client 198.51.100.7 — eth0 198.51.100.1 [node] cbr0 10.244.0.1 — vethpod0 — pod 10.244.0.5.
fn build_node(lab: &Lab) {
    let (c, n, p) = (lab.ns("client"), lab.ns("node"), lab.ns("pod"));
    sh(&format!(
        "ip link add eth0 netns {c} type veth peer name eth0 netns {n}
         ip -n {c} addr add 198.51.100.7/24 dev eth0; ip -n {n} addr add 198.51.100.1/24 dev eth0
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
}

/// A connection from the client namespace; what the echo backend answered.
fn connect(lab: &Lab, from: &str, ip: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}; timeout 5 cat <&3");
    let out = lab
        .exec(from, &["bash", "-c", &script])
        .output()
        .expect("bash /dev/tcp");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The checks every NodePort backend shares: one connection, DNATed to the pod and
/// masqueraded to the bridge; its conntrack entry and the route toward the pod.
fn nodeport_connection(s: &Stream) -> &Conntrack {
    assert!(s.ended, "the capture ended with bye");
    let first = s.status.first().expect("an evidence status");
    assert!(first.available, "{first:?}");
    let syn = s
        .syns
        .iter()
        .find(|x| x.iface == "eth0" && x.dport == 31908)
        .expect("the client's SYN on eth0");
    let ct: Vec<&Conntrack> = s.conntrack.iter().filter(|c| c.isn == syn.isn).collect();
    assert_eq!(
        ct.len(),
        1,
        "one conntrack event per connection: {:#?}",
        s.conntrack
    );
    let ct = ct[0];
    assert_eq!(
        (
            ct.orig.src.to_string(),
            ct.orig.dst.to_string(),
            ct.orig.dport
        ),
        ("198.51.100.7".into(), "198.51.100.1".into(), 31908)
    );
    assert_eq!(
        (
            ct.reply.src.to_string(),
            ct.reply.sport,
            ct.reply.dst.to_string()
        ),
        ("10.244.0.5".into(), 8080, "10.244.0.1".into())
    );
    assert!(ct.src_nat && ct.dst_nat, "{ct:?}");
    assert!(ct.status.iter().any(|s| s == "src-nat") && ct.status.iter().any(|s| s == "dst-nat"));
    let route = s
        .routes
        .iter()
        .find(|r| r.dst.to_string() == "10.244.0.5")
        .unwrap_or_else(|| panic!("a route toward the pod: {:#?}", s.routes));
    assert_eq!(route.oif.as_deref(), Some("cbr0"), "{route:?}");
    assert_eq!(
        route.prefsrc.map(|a| a.to_string()).as_deref(),
        Some("10.244.0.1")
    );
    assert_eq!(route.masquerade_source, route.snat_to, "{route:?}");
    let last = s.status.last().expect("a last status");
    assert!(last.last && last.conntrack_found >= 1, "{last:?}");
    ct
}

fn iptables_nodeport(tag: &str, restore: &str, save: &str, backend: Backend) {
    let mut lab = Lab::new(tag, &["client", "node", "pod"]);
    build_node(&lab);
    load_iptables(&lab, "node", restore);
    lab.echo("pod", "0.0.0.0:8080");
    thread::sleep(Duration::from_millis(300));
    let s = capture(
        &mut lab,
        "node",
        &["--port", "31908", "--port", "8080"],
        |lab| {
            let answer = connect(lab, "client", "198.51.100.1", 31908);
            assert!(
                answer.contains("10.244.0.1"),
                "the pod saw the bridge: {answer}"
            );
        },
    );
    nodeport_connection(&s);
    let saved = lab.run("node", &[save, "-t", "nat"]);
    let in_save = |r: &RuleEntry| saved.lines().any(|l| l == r.text);

    let dnat = s.rule("KUBE-SEP-ECHO", |r| {
        r.nat.as_ref().is_some_and(|n| n.kind == NatKind::Dnat)
    });
    assert_eq!(dnat.text, "-A KUBE-SEP-ECHO -p tcp -m comment --comment \"default/echo\" -m tcp -j DNAT --to-destination 10.244.0.5:8080");
    assert!(in_save(dnat), "{saved}");
    assert_eq!(
        (dnat.backend, dnat.syntax, dnat.owner),
        (backend, Syntax::Iptables, Owner::KubeProxy)
    );
    assert_eq!(
        (dnat.position, dnat.delta_packets),
        (2, Some(1)),
        "{dnat:?}"
    );
    assert!(
        dnat.why.contains(&Why::Moved) && dnat.why.contains(&Why::DnatSeen),
        "{dnat:?}"
    );

    let masq = s.rule("KUBE-POSTROUTING", |r| {
        r.nat
            .as_ref()
            .is_some_and(|n| n.kind == NatKind::Masquerade)
    });
    assert_eq!(masq.text, "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully");
    assert!(in_save(masq));
    assert_eq!(
        (masq.position, masq.delta_packets, masq.owner),
        (3, Some(1), Owner::KubeProxy)
    );
    assert!(masq.why.contains(&Why::SourceNat) && masq.why.contains(&Why::Moved));

    // The other masquerades are listed as suspects, with their owners. (Their counters are not
    // checked: the node's own multicast from 10.244.0.1 may cross cali-nat-outgoing.)
    let cali = s.rule("cali-nat-outgoing", |r| r.position == 1);
    assert_eq!(cali.owner, Owner::Calico);
    assert!(cali.why.contains(&Why::SourceNat));
    // The hook's entry rule into KUBE-POSTROUTING is listed, owned through its jump.
    let hook = s.rule("POSTROUTING", |r| {
        r.jump.as_deref() == Some("KUBE-POSTROUTING")
    });
    assert_eq!(
        (hook.owner, hook.why.contains(&Why::Hook)),
        (Owner::KubeProxy, true)
    );
    let end = s.end();
    assert!(
        end.summarised > 0 && end.left_out == 0,
        "{}",
        end.summarised
    );
}

#[test]
fn a_nodeport_syn_names_its_iptables_legacy_rules() {
    require!();
    iptables_nodeport(
        "npl",
        "iptables-legacy-restore",
        "iptables-legacy-save",
        Backend::IptablesLegacy,
    );
}

#[test]
fn a_nodeport_syn_names_its_iptables_nft_rules() {
    require!();
    iptables_nodeport(
        "npn",
        "iptables-nft-restore",
        "iptables-nft-save",
        Backend::IptablesNft,
    );
}

#[test]
fn a_nodeport_syn_names_its_kube_proxy_nftables_rules() {
    require!();
    let mut lab = Lab::new("npk", &["client", "node", "pod"]);
    build_node(&lab);
    lab.run(
        "node",
        &["nft", "-f", &format!("{FIXTURES}/kube-proxy-nodeport.nft")],
    );
    lab.echo("pod", "0.0.0.0:8080");
    thread::sleep(Duration::from_millis(300));
    let s = capture(
        &mut lab,
        "node",
        &["--port", "31908", "--port", "8080"],
        |lab| {
            let answer = connect(lab, "client", "198.51.100.1", 31908);
            assert!(
                answer.contains("10.244.0.1"),
                "the pod saw the bridge: {answer}"
            );
        },
    );
    nodeport_connection(&s);
    let listed = nft_listing(&lab.run("node", &["nft", "list", "table", "ip", "kube-proxy"]));
    let chain = "endpoint-5OJB2KTY-default/echo/tcp/p31908__10.244.0.5/8080";
    let dnat = s.rule(chain, |r| r.nat.is_some());
    assert_eq!(dnat.text, "meta l4proto tcp dnat to 10.244.0.5:8080");
    assert_eq!(
        listed.get(chain).map(|r| r.contains(&dnat.text)),
        Some(true)
    );
    assert_eq!(
        (dnat.backend, dnat.syntax, dnat.owner),
        (Backend::Nftables, Syntax::Nft, Owner::KubeProxy)
    );
    // kube-proxy's nftables rules carry no counter: the conntrack entry's DNAT target names it.
    assert_eq!(
        (dnat.delta_packets, dnat.why.clone()),
        (None, vec![Why::DnatSeen])
    );
    let masq = s.rule("masquerading", |r| r.nat.is_some());
    assert!(
        masq.text.starts_with("counter packets 1 bytes ")
            && masq.text.ends_with(" masquerade fully-random"),
        "{masq:?}"
    );
    assert_eq!(
        listed.get("masquerading").map(|r| r.contains(&masq.text)),
        Some(true)
    );
    assert_eq!(masq.delta_packets, Some(1), "{masq:?}");
    assert!(masq.why.contains(&Why::SourceNat) && masq.why.contains(&Why::Moved));
    let hook = s.rule("nat-postrouting", |r| {
        r.jump.as_deref() == Some("masquerading")
    });
    assert_eq!(
        (hook.text.as_str(), hook.why.clone()),
        ("jump masquerading", vec![Why::Hook])
    );
}

/// client — eth0 [node] eth1 203.0.113.1 — server 203.0.113.9, a pod behind cbr0. The pod
/// reaches the server through eth1, the second uplink, where a CNI's natOutgoing masquerade
/// (not kube-proxy's) picks eth1's address.
#[test]
fn a_natoutgoing_masquerade_on_a_second_nic_is_named_with_its_route() {
    require!();
    let mut lab = Lab::new("nic", &["client", "node", "pod", "server"]);
    build_node(&lab);
    let (n, srv) = (lab.ns("node"), lab.ns("server"));
    sh(&format!(
        "ip link add eth1 netns {n} type veth peer name eth0 netns {srv}
         ip -n {n} addr add 203.0.113.1/24 dev eth1; ip -n {n} link set eth1 up
         ip -n {srv} addr add 203.0.113.9/24 dev eth0; ip -n {srv} link set eth0 up
         ip -n {srv} route add default via 203.0.113.1"
    ));
    load_iptables(&lab, "node", "iptables-legacy-restore");
    lab.echo("server", "0.0.0.0:9000");
    thread::sleep(Duration::from_millis(300));
    let s = capture(&mut lab, "node", &["--port", "9000"], |lab| {
        let answer = connect(lab, "pod", "203.0.113.9", 9000);
        assert!(
            answer.contains("203.0.113.1"),
            "the server saw eth1's address: {answer}"
        );
    });
    let syn = s
        .syns
        .iter()
        .find(|x| x.iface == "vethpod0")
        .expect("the pod's SYN on its veth");
    let ct = s
        .conntrack
        .iter()
        .find(|c| c.isn == syn.isn)
        .expect("its conntrack entry");
    assert!(ct.src_nat && !ct.dst_nat, "{ct:?}");
    assert_eq!(ct.reply.dst.to_string(), "203.0.113.1");
    let route = s
        .routes
        .iter()
        .find(|r| r.dst.to_string() == "203.0.113.9")
        .expect("the route toward the server");
    assert_eq!(route.oif.as_deref(), Some("eth1"), "{route:?}");
    assert_eq!(
        route.snat_to.map(|a| a.to_string()).as_deref(),
        Some("203.0.113.1")
    );
    assert_eq!(route.masquerade_source, route.snat_to);
    let cali = s.rule("cali-nat-outgoing", |r| r.position == 1);
    assert_eq!(cali.text, "-A cali-nat-outgoing -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment \"cali:natOutgoing\" -j MASQUERADE --random-fully");
    assert_eq!(cali.owner, Owner::Calico);
    assert!(
        cali.delta_packets >= Some(1) && cali.why.contains(&Why::Moved),
        "{cali:?}"
    );
    // kube-proxy's masquerade only takes connections it marked: it did not do this one.
    let kube = s.rule("KUBE-POSTROUTING", |r| r.nat.is_some());
    assert_eq!(kube.delta_packets, Some(0), "{kube:?}");
}

#[test]
fn without_net_admin_the_probe_captures_and_says_why_there_is_no_evidence() {
    require!();
    let lab = Lab::new("cap", &["node"]);
    load_iptables(&lab, "node", "iptables-legacy-restore");
    let out = lab
        .exec(
            "node",
            &[
                "setpriv",
                "--inh-caps=-all,+net_raw",
                "--ambient-caps=-all,+net_raw",
                "--bounding-set=-all,+net_raw",
                "--",
                PROBE,
                "capture",
                "--evidence",
                "--duration",
                "1",
            ],
        )
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        matches!(decode_line(lines[0]), Ok(Event::Hello(_))),
        "{stdout}"
    );
    assert!(
        matches!(decode_line(lines[lines.len() - 1]), Ok(Event::Bye(_))),
        "{stdout}"
    );
    let status: Vec<EvidenceStatus> = lines
        .iter()
        .filter_map(|l| match decode_line(l) {
            Ok(Event::Evidence(e)) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(
        status.len(),
        2,
        "once after hello, once at the end: {stdout}"
    );
    assert!(!status[0].available);
    assert!(status[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("CAP_NET_ADMIN"));
    assert!(!stdout.contains(r#""type":"ruleset""#), "{stdout}");
}

/// IPv6: a connection to the node itself (no NAT) finds its conntrack entry by its IPv6 tuple,
/// and no route is reported for it (nothing was source-NATed). The IPv6 nat table is loaded
/// because a namespace tracks connections only once some rule needs conntrack.
#[test]
fn an_ipv6_connection_finds_its_conntrack_entry() {
    require!();
    let mut lab = Lab::new("v6", &["client", "node"]);
    let (c, n) = (lab.ns("client"), lab.ns("node"));
    sh(&format!(
        "ip link add eth0 netns {c} type veth peer name eth0 netns {n}
         ip -n {c} addr add 2001:db8:1::7/64 dev eth0 nodad; ip -n {n} addr add 2001:db8:1::1/64 dev eth0 nodad
         ip -n {c} link set eth0 up; ip -n {n} link set eth0 up"
    ));
    lab.feed(
        "node",
        &["ip6tables-legacy-restore"],
        &fixture("kube-proxy6.rules"),
    );
    lab.echo("node", "[2001:db8:1::1]:8081");
    thread::sleep(Duration::from_millis(300));
    let s = capture(&mut lab, "node", &["--port", "8081"], |lab| {
        let answer = connect(lab, "client", "2001:db8:1::1", 8081);
        assert!(answer.contains("2001:db8:1::7"), "{answer}");
    });
    let syn = s
        .syns
        .iter()
        .find(|x| x.iface == "eth0")
        .expect("the SYN on eth0");
    let ct = s
        .conntrack
        .iter()
        .find(|c| c.isn == syn.isn)
        .unwrap_or_else(|| panic!("its conntrack entry: {:#?}", s.status));
    assert_eq!(
        (
            ct.orig.src.to_string(),
            ct.orig.dst.to_string(),
            ct.orig.dport
        ),
        ("2001:db8:1::7".into(), "2001:db8:1::1".into(), 8081)
    );
    assert_eq!(ct.reply.src.to_string(), "2001:db8:1::1");
    assert!(!ct.src_nat && !ct.dst_nat, "{ct:?}");
    assert!(s.routes.is_empty(), "{:?}", s.routes);
}
