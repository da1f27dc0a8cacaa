//! `kubectl realip analyze` on the captures people actually take: plain `tcpdump -i eth0 -w` of
//! each node (no direction, no interface name), `-i any` next to the probe's JSONL, per-node
//! folders of files named alike, a short snap length, a clock that glitched, stdin, Windows
//! text, and SYNs inside overlay tunnels. The captures are real (tests/fixtures/analyze/lan,
//! overlay and netns, made by their make.sh); what a test changes in them (a timestamp, the snap
//! length, a tunnel around each frame) it changes the way the tool or the network would.

use proptest::prelude::*;
use realip_probe::parse::{parse, Framing};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze")
        .join(name)
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-realip"))
        .arg("analyze")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `analyze -o json FILES`: exit code, report, stderr.
fn json(files: &[&Path]) -> (i32, Value, String) {
    let mut args = vec!["-o".to_string(), "json".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, None);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, report, err)
}

fn flows(report: &Value) -> &Vec<Value> {
    report["flows"].as_array().unwrap()
}

fn warnings(report: &Value) -> Vec<String> {
    report["summary"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// Each flow as its path: `node iface dir` per hop, `*` after a guessed direction.
fn paths(report: &Value) -> Vec<String> {
    flows(report)
        .iter()
        .map(|f| {
            let hops: Vec<String> = f["hops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let guess = if h["dir_inferred"] == true { "*" } else { "" };
                    format!(
                        "{} {} {}{guess}",
                        h["node"].as_str().unwrap(),
                        h["iface"].as_str().unwrap(),
                        h["dir"].as_str().unwrap()
                    )
                })
                .collect();
            format!("{}: {}", f["entry"].as_str().unwrap(), hops.join(", "))
        })
        .collect()
}

/// A little-endian microsecond pcap, as tcpdump writes it on x86, record by record.
#[derive(Clone)]
struct Pcap {
    header: Vec<u8>,
    records: Vec<Record>,
}

#[derive(Clone)]
struct Record {
    sec: u32,
    usec: u32,
    orig_len: u32,
    data: Vec<u8>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Pcap {
    fn read(path: &Path) -> Pcap {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(le32(&bytes, 0), 0xA1B2_C3D4, "{path:?}: a LE µs pcap");
        let mut records = Vec::new();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let caplen = le32(&bytes, at + 8) as usize;
            records.push(Record {
                sec: le32(&bytes, at),
                usec: le32(&bytes, at + 4),
                orig_len: le32(&bytes, at + 12),
                data: bytes[at + 16..at + 16 + caplen].to_vec(),
            });
            at += 16 + caplen;
        }
        Pcap {
            header: bytes[..24].to_vec(),
            records,
        }
    }

    fn write(&self, path: &Path) {
        let mut out = self.header.clone();
        for r in &self.records {
            for v in [r.sec, r.usec, r.data.len() as u32, r.orig_len] {
                out.extend(v.to_le_bytes());
            }
            out.extend(&r.data);
        }
        std::fs::write(path, out).unwrap();
    }

    /// Cuts every frame to `snaplen` bytes, as `tcpdump -s SNAPLEN` would have.
    fn snap(mut self, snaplen: usize) -> Pcap {
        self.header[16..20].copy_from_slice(&(snaplen as u32).to_le_bytes());
        for r in &mut self.records {
            r.data.truncate(snaplen);
        }
        self
    }

    /// Indexes of the SYN frames.
    fn syns(&self) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| parse(Framing::Ethernet, &self.records[i].data).is_ok_and(|s| s.is_syn()))
            .collect()
    }

    /// Byte offset of record `i` in the file.
    fn offset(&self, i: usize) -> usize {
        24 + self.records[..i]
            .iter()
            .map(|r| 16 + r.data.len())
            .sum::<usize>()
    }
}

fn lan() -> (PathBuf, PathBuf) {
    (fixture("lan/node-a.pcap"), fixture("lan/node-b.pcap"))
}

/// `tcpdump -i eth0 -w` on each node records no direction. Who owns the Ethernet addresses
/// tells it: node-a's outgoing SYN after the egress SNAT is `out`, not a guessed `in`.
#[test]
fn plain_ethernet_directions_come_from_who_owns_the_addresses() {
    let (a, b) = lan();
    let (code, report, err) = json(&[&a, &b]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["summary"]["connections"], 20);
    let paths = paths(&report);
    let count = |want: &str| paths.iter().filter(|p| *p == want).count();
    assert_eq!(
        count("192.0.2.10:31908: node-a node-a in, node-a node-a out, node-b node-b in"),
        8,
        "{paths:#?}"
    );
    assert_eq!(count("192.0.2.7:8081: node-a node-a out"), 6, "{paths:#?}");
    assert_eq!(count("192.0.2.11:31909: node-b node-b in"), 6, "{paths:#?}");
    // Nothing was left to a guess, and nothing is said about coverage: a plain pcap names no
    // interface, so nothing tells what kind it is.
    assert!(!paths.iter().any(|p| p.contains('*')), "{paths:#?}");
    assert!(warnings(&report).is_empty(), "{:?}", warnings(&report));
}

/// When nothing in the file tells (one SYN between two hosts), the direction stays a guess and
/// is marked as one.
#[test]
fn a_direction_nothing_tells_stays_marked_as_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::read(&fixture("lan/node-a.pcap"));
    let egress = pcap
        .syns()
        .into_iter()
        .find(|&i| parse(Framing::Ethernet, &pcap.records[i].data).is_ok_and(|s| s.dport == 8081))
        .unwrap();
    pcap.records = vec![pcap.records[egress].clone()];
    let path = dir.path().join("node-a.pcap");
    pcap.write(&path);
    let (code, report, err) = json(&[&path]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(paths(&report), ["192.0.2.7:8081: node-a node-a in*"]);
}

/// The probe's hello gives node-a's hardware address: its pcap needs no evidence of its own.
#[test]
fn the_nodes_hello_tells_a_pcaps_directions() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::read(&fixture("lan/node-a.pcap"));
    let syns = pcap.syns();
    let egress: Vec<usize> = syns
        .into_iter()
        .filter(|&i| parse(Framing::Ethernet, &pcap.records[i].data).is_ok_and(|s| s.dport == 8081))
        .collect();
    pcap.records = egress.iter().map(|&i| pcap.records[i].clone()).collect();
    let path = dir.path().join("node-a.pcap");
    pcap.write(&path);
    // Only the hello of the probe's stream.
    let hello: String = std::fs::read_to_string(fixture("lan/probe/node-a.jsonl"))
        .unwrap()
        .lines()
        .take(1)
        .collect();
    assert!(hello.contains("\"type\":\"hello\""));
    let hello_path = dir.path().join("hello.jsonl");
    std::fs::write(&hello_path, hello + "\n").unwrap();
    let (code, report, err) = json(&[&hello_path, &path]);
    assert_eq!(code, 0, "{err}");
    let paths = paths(&report);
    assert_eq!(paths.len(), 6);
    assert!(
        paths
            .iter()
            .all(|p| p == "192.0.2.7:8081: node-a node-a out"),
        "{paths:#?}"
    );
}

/// What a capture set lacks is said per node: only the uplink (the probe with `--iface eth0`,
/// dumpcap of eth0) where connections end; only the pod side where they start. A cooked
/// `-i any` capture lacks nothing.
#[test]
fn each_node_is_told_what_its_capture_lacks() {
    let (code, report, err) = json(&[
        &fixture("lan/probe/node-a.jsonl"),
        &fixture("lan/dumpcap/node-b.pcapng"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["summary"]["connections"], 20);
    assert_eq!(
        warnings(&report),
        [
            "node-a: only eth0 was captured; the pod side (veth/bridge) was not, where 6 \
             connection(s) were seen last",
            "node-b: only eth0 was captured; the pod side (veth/bridge) was not, where 14 \
             connection(s) were seen last"
        ]
    );

    // node-b's probe without its uplink: hello and sightings of cbr0 and veth1 only.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for line in std::fs::read_to_string(fixture("netns/node-b.jsonl"))
        .unwrap()
        .lines()
    {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "hello" {
            let kept: Vec<Value> = v["interfaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["name"] == "cbr0" || i["name"] == "veth1")
                .cloned()
                .collect();
            v["interfaces"] = kept.into();
        }
        if v["iface"] == "ens5" {
            continue;
        }
        text += &(v.to_string() + "\n");
    }
    let path = dir.path().join("node-b.jsonl");
    std::fs::write(&path, text).unwrap();
    let (code, report, err) = json(&[&path]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        warnings(&report),
        [
            "node-b: no uplink captured; the entry was not seen (3 connection(s) first seen on \
          cbr0)"
        ]
    );
    // tcpdump -i any of the same node.
    let (code, report, err) = json(&[&fixture("netns/cooked/node-b.pcap")]);
    assert_eq!(code, 0, "{err}");
    assert!(warnings(&report).is_empty(), "{:?}", warnings(&report));
}

/// One frame of 2100 (a clock that jumped) or of 1970 (one that reset) leaves the report as it
/// was, but for that SYN's time, and a note names file and frame.
#[test]
fn a_glitched_timestamp_splits_no_connection() {
    let (a, b) = lan();
    let (_, whole, _) = json(&[&a, &b]);
    let dir = tempfile::tempdir().unwrap();
    let pcap = Pcap::read(&a);
    let syns = pcap.syns();
    for (glitched, date) in [
        (vec![syns[5]], 4_102_444_800u32),
        (vec![syns[3], syns[9], syns[12]], 0),
    ] {
        let mut bad = pcap.clone();
        for &i in &glitched {
            bad.records[i].sec = date;
        }
        let path = dir.path().join("node-a.pcap");
        bad.write(&path);
        let (code, report, err) = json(&[&path, &b]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(paths(&report), paths(&whole));
        let first = glitched[0];
        let named = format!(
            "frame {} (byte {}) dated {}",
            first + 1,
            pcap.offset(first),
            if date == 0 {
                "1970-01-01T00:00:00Z"
            } else {
                "2100-01-01T00:00:00Z"
            }
        );
        let note = warnings(&report)
            .into_iter()
            .find(|w| w.contains("a glitching clock"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(note.starts_with(&format!("{}: ", path.display())), "{note}");
        assert!(note.contains(&named), "{note}");
        assert!(note.contains("split"), "{note}");
        assert!(!err.contains("not in time order"), "{err}");
        if glitched.len() > 1 {
            assert!(note.contains("3 frames more than 180s away"), "{note}");
        }
    }
    // In probe JSONL a line names the glitch.
    let mut lines: Vec<String> = std::fs::read_to_string(fixture("netns/node-a.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let syn = lines.iter().position(|l| l.contains("\"syn\"")).unwrap();
    let mut v: Value = serde_json::from_str(&lines[syn]).unwrap();
    v["ts_ns"] = 4_102_444_800_000_000_000u64.into();
    lines[syn] = v.to_string();
    let path = dir.path().join("node-a.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (code, report, err) = json(&[&path, &fixture("netns/node-b.jsonl")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["summary"]["connections"], 3);
    let note = format!("node-a.jsonl: line {} dated 2100-01-01T00:00:00Z", syn + 1);
    assert!(warnings(&report).iter().any(|w| w.contains(&note)), "{err}");
}

/// The probe's JSONL and `tcpdump -i any` of the same node name the same packets: the cooked
/// header's interface index is named by the probe's hello, and each hop is counted once.
#[test]
fn a_cooked_capture_next_to_the_probe_counts_each_hop_once() {
    let (code, report, err) = json(&[
        &fixture("netns/node-a.jsonl"),
        &fixture("netns/node-b.jsonl"),
        &fixture("netns/cooked/node-b.pcap"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, probes, _) = json(&[
        &fixture("netns/node-a.jsonl"),
        &fixture("netns/node-b.jsonl"),
    ]);
    assert_eq!(paths(&report), paths(&probes));
    for flow in flows(&report) {
        assert_eq!(flow["hops"].as_array().unwrap().len(), 5, "{flow}");
    }
    // Without a hello the index is all there is.
    let (code, report, err) = json(&[&fixture("netns/cooked/node-b.pcap")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        paths(&report)[0].contains("node-b if2 in"),
        "{:?}",
        paths(&report)
    );
}

/// `node-a/capture.pcap` and `node-b/capture.pcap` are two nodes, named after their folders;
/// folders that do not tell them apart either are refused, not merged.
#[test]
fn files_named_alike_in_per_node_folders_stay_apart() {
    let (a, b) = lan();
    let (_, by_name, _) = json(&[&a, &b]);
    let dir = tempfile::tempdir().unwrap();
    for (node, from) in [("node-a", &a), ("node-b", &b)] {
        std::fs::create_dir(dir.path().join(node)).unwrap();
        std::fs::copy(from, dir.path().join(node).join("capture.pcap")).unwrap();
    }
    let (code, report, err) = json(&[
        &dir.path().join("node-a/capture.pcap"),
        &dir.path().join("node-b/capture.pcap"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(paths(&report), paths(&by_name));
    // The same file twice is one node, as before.
    let (code, report, err) = json(&[&a, &a]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["summary"]["connections"], 14);
    // x/a/capture.pcap and y/a/capture.pcap: refused with a clear message (exit 2).
    for (sub, from) in [("x/a", &a), ("y/a", &b)] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        std::fs::copy(from, dir.path().join(sub).join("capture.pcap")).unwrap();
    }
    let (code, out, err) = run(
        &[
            dir.path().join("x/a/capture.pcap").to_str().unwrap(),
            dir.path().join("y/a/capture.pcap").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("y/a/capture.pcap: its node would be named a, as ")
            && err.contains(
                "x/a/capture.pcap's: name each node's capture file (or its folder) after the node"
            ),
        "{err}"
    );
    // Probe streams name their nodes themselves: files named alike are no problem.
    for (sub, from) in [("x/a", "netns/node-a.jsonl"), ("y/a", "netns/node-b.jsonl")] {
        std::fs::copy(fixture(from), dir.path().join(sub).join("probe.jsonl")).unwrap();
    }
    let (code, report, err) = json(&[
        &dir.path().join("x/a/probe.jsonl"),
        &dir.path().join("y/a/probe.jsonl"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["summary"]["connections"], 3);
}

/// A classic snap length of 68 bytes keeps a Linux IPv4 SYN's TSval (option bytes 8 to 12);
/// 64 bytes cut it: the SYNs are still found and joined, and each file says so once.
#[test]
fn a_short_snap_length_keeps_every_syn() {
    let (a, b) = lan();
    let (_, whole, _) = json(&[&a, &b]);
    let dir = tempfile::tempdir().unwrap();
    let cut = |snaplen: usize, name: &str| {
        let path = dir.path().join(name);
        Pcap::read(&fixture(&format!("lan/{name}")))
            .snap(snaplen)
            .write(&path);
        path
    };
    let (a68, b68) = (cut(68, "node-a.pcap"), cut(68, "node-b.pcap"));
    let (code, report, err) = json(&[&a68, &b68]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(paths(&report), paths(&whole));
    assert!(warnings(&report).is_empty(), "{:?}", warnings(&report));
    let (a64, b64) = (cut(64, "node-a.pcap"), cut(64, "node-b.pcap"));
    let (code, report, err) = json(&[&a64, &b64]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(paths(&report), paths(&whole));
    let notes: Vec<String> = warnings(&report)
        .into_iter()
        .filter(|w| w.contains("the snap length cut the TCP timestamp"))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let syns_a = Pcap::read(&a).syns();
    assert!(
        notes[0].starts_with(&format!(
            "{}: the snap length cut the TCP timestamp of {} SYN(s), the first at frame {}",
            a64.display(),
            syns_a.len(),
            syns_a[0] + 1
        )),
        "{notes:?}"
    );
    // One side cut, the other whole: joined all the same.
    let (code, report, err) = json(&[&a64, &b]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(paths(&report), paths(&whole));
}

/// A capture piped on stdin is told by its magic number like a file.
#[test]
fn a_capture_on_stdin() {
    for path in [fixture("lan/node-a.pcap"), fixture("netns/node-b.pcapng")] {
        let bytes = std::fs::read(&path).unwrap();
        let (code, out, err) = run(&["-o", "json", "-"], Some(&bytes));
        assert_eq!(code, 0, "{path:?}: {err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert!(report["summary"]["connections"].as_u64().unwrap() >= 3);
        // The node has no file name to come from.
        assert_eq!(flows(&report)[0]["hops"][0]["node"], "stdin");
    }
}

/// A byte order mark, and a few lines that are not UTF-8, do not reject a probe stream; a file
/// with no probe event in its first lines still is not one.
#[test]
fn jsonl_with_a_bom_and_bad_lines() {
    let good = std::fs::read(fixture("hand/two-nodes.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let bom = write("bom.jsonl", &[b"\xEF\xBB\xBF".as_slice(), &good].concat());
    let (code, report, err) = json(&[&bom]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["summary"]["connections"], 2);

    let mut lines: Vec<&[u8]> = good.split(|&b| b == b'\n').collect();
    let garbage: &[u8] = b"\xFF\xFE\x00garbage \x80";
    for at in [0, 1, 5] {
        lines.insert(at, garbage);
    }
    let bad = write("bad.jsonl", &lines.join(&b'\n'));
    let (code, report, err) = json(&[&bad]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(report["summary"]["connections"], 2);
    assert!(
        err.contains(
            "bad.jsonl: 3 lines skipped (lines 1, 2, 6), the first because: not UTF-8 text"
        ),
        "{err}"
    );

    // Text that is not JSONL, and binary noise longer than the lines looked at.
    let text = write(
        "notes.txt",
        b"tcpdump: listening on eth0\n12:00:01 IP a > b: Flags [S]\n",
    );
    let noise = write("noise.bin", &[0x80u8, 0x81, 0x0a].repeat(100));
    for path in [text, noise] {
        let (code, _, err) = run(&[path.to_str().unwrap()], None);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("neither probe JSONL nor a pcap/pcapng capture"),
            "{err}"
        );
    }
}

/// Real overlay traffic (tests/fixtures/analyze/overlay: VXLAN on UDP 8472, Geneve, gretap and
/// IPIP between two nodes) captured on node-a's underlay with `tcpdump -i eth0`: each inner SYN
/// is a sighting on `node-a+TUNNEL` with the inner TTL, joined by ISN with node-b's probe
/// sightings on its tunnel device, cbr0 and the pod's veth. node-a's hello tells the direction.
#[test]
fn syns_inside_real_tunnels_are_joined_with_the_other_nodes_sightings() {
    let underlay = fixture("overlay/node-a.pcap");
    let node_b = fixture("overlay/node-b.jsonl");
    let (code, report, err) = json(&[&underlay, &node_b]);
    assert_eq!(code, 0, "{err}");
    let mut want = Vec::new();
    for (tunnel, device) in [
        ("vxlan", "vx0"),
        ("geneve", "gnv0"),
        ("gre", "gtap0"),
        ("ipip", "tun0"),
    ] {
        for _ in 0..2 {
            want.push(format!(
                "10.244.1.5:8080: node-a node-a+{tunnel} in*, node-b {device} in, node-b cbr0 \
                 out, node-b veth1 out"
            ));
        }
    }
    assert_eq!(paths(&report), want);
    for flow in flows(&report) {
        assert_eq!(flow["hops"][0]["src"], "10.244.0.5");
        assert_eq!(flow["pod_sees"], "10.244.0.5");
    }
    let (code, report, err) = json(&[&fixture("overlay/hello/node-a.jsonl"), &underlay, &node_b]);
    assert_eq!(code, 0, "{err}");
    let want: Vec<String> = want.iter().map(|p| p.replace(" in*,", " out,")).collect();
    assert_eq!(paths(&report), want);
    assert!(warnings(&report).is_empty(), "{:?}", warnings(&report));
}

/// What the real overlay fixture does not hold: each frame of the LAN capture of node-a inside
/// VXLAN (flannel's port and the standard one), Geneve, GRE (IP and Ethernet) or IPIP, as
/// node-a's NIC would carry it. The inner SYNs are sightings on `IFACE+TUNNEL`, joined with node-b's by ISN,
/// with the inner TTL.
#[test]
fn syns_inside_tunnels_are_found_and_joined() {
    let (a, b) = lan();
    let (_, plain, _) = json(&[&a, &b]);
    let pcap = Pcap::read(&a);
    let dir = tempfile::tempdir().unwrap();
    for (tunnel, name) in [
        (Tunnel::Vxlan(8472), "vxlan"),
        (Tunnel::Vxlan(4789), "vxlan"),
        (Tunnel::Geneve, "geneve"),
        (Tunnel::Gre, "gre"),
        (Tunnel::GreTap, "gre"),
        (Tunnel::Ipip, "ipip"),
    ] {
        let mut wrapped = pcap.clone();
        for r in &mut wrapped.records {
            r.data = encapsulate(&r.data, tunnel);
            r.orig_len = r.data.len() as u32;
        }
        let path = dir.path().join("node-a.pcap");
        wrapped.write(&path);
        let (code, report, err) = json(&[&path, &b]);
        assert_eq!(code, 0, "{name}: {err}");
        let want: Vec<String> = paths(&plain)
            .iter()
            .map(|p| p.replace("node-a node-a", &format!("node-a node-a+{name}")))
            .collect();
        assert_eq!(paths(&report), want, "{name}");
        // The inner TTL: 64 as the client sent it, 63 after node-a routed it.
        let hops = flows(&report)[0]["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 3, "{name}");
    }
}

#[derive(Clone, Copy)]
enum Tunnel {
    Vxlan(u16),
    Geneve,
    Gre,
    GreTap,
    Ipip,
}

/// `frame` inside a tunnel between node-a and node-b (192.0.2.10 → 192.0.2.11), keeping its
/// Ethernet addresses on the outer frame. Frames other than IPv4 pass as they are.
fn encapsulate(frame: &[u8], tunnel: Tunnel) -> Vec<u8> {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return frame.to_vec();
    }
    let (proto, payload) = match tunnel {
        Tunnel::Vxlan(port) => {
            let mut v = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
            v.extend(frame);
            (17, udp(port, &v))
        }
        Tunnel::Geneve => {
            let mut g = vec![0, 0, 0x65, 0x58, 0, 0, 1, 0];
            g.extend(frame);
            (17, udp(6081, &g))
        }
        Tunnel::Gre => {
            let mut g = vec![0, 0, 0x08, 0x00];
            g.extend(&frame[14..]);
            (47, g)
        }
        Tunnel::GreTap => {
            let mut g = vec![0x20, 0, 0x65, 0x58, 0, 0, 0, 1];
            g.extend(frame);
            (47, g)
        }
        Tunnel::Ipip => (4, frame[14..].to_vec()),
    };
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 10, 192, 0, 2, 11,
    ];
    let total = (20 + payload.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let mut out = frame[..14].to_vec();
    out.extend(ip);
    out.extend(payload);
    out
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = 40000u16.to_be_bytes().to_vec();
    u.extend(dport.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever bytes a file holds, reading it names problems and never panics: JSONL-ish
    /// text, a BOM, and captures with a valid header and garbage after it.
    #[test]
    fn reading_any_bytes_never_panics(
        prefix in prop::sample::select(vec![
            b"".to_vec(),
            b"\xEF\xBB\xBF".to_vec(),
            b"{\"v\":1,\"type\":\"syn\",".to_vec(),
            std::fs::read(fixture("lan/node-a.pcap")).unwrap()[..24].to_vec(),
            std::fs::read(fixture("netns/node-b.pcapng")).unwrap()[..200].to_vec(),
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        use kubectl_realip::analyze::{read_file, Analyzer};
        use kubectl_realip::cmd::analyze::LocalFiles;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any");
        std::fs::write(&path, [prefix, tail].concat()).unwrap();
        let mut analyzer = Analyzer::new();
        let problems = read_file(&path, &LocalFiles, &mut analyzer);
        for p in &problems {
            prop_assert!(p.to_string().starts_with(&path.display().to_string()));
        }
        let _ = analyzer.finish();
    }
}
