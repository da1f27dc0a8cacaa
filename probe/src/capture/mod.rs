//! `realip-probe capture`: one filtered AF_PACKET ring per interface, events as JSON lines.
//!
//! The stream is `hello`, then `syn` / `l7` / `iface` events as they happen and `stats` every
//! few seconds, then a last `stats` and `bye`. Interfaces are rescanned every couple of seconds:
//! new pods' interfaces join, vanished ones leave with their counters kept in `stats`.
//!
//! With `--evidence` ([`evidence`]), `hello` is followed by an `evidence` status and the start
//! `ruleset`; `conntrack` and `route` events follow the SYNs they explain; the end `ruleset`
//! and the last `evidence` status come before the last `stats`.

pub mod discover;
pub mod emit;
pub mod evidence;
pub mod flows;
pub mod kernel;
pub mod netlink;
pub mod socket;

use crate::bpf::{self, Admit, FilterSpec};
use crate::l7;
use crate::parse::{self, Framing, ParseError};
use crate::wire::{
    Bye, Change, Direction, Event, Hello, IfaceChange, IfaceKind, IfaceStats, Interface, Stats,
};
use emit::{Batch, SynWriter};
use evidence::Evidence;
use flows::{FirstSegments, FlowKey};
use socket::{PacketRing, Poller, RingSize, SocketError};
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to capture and how often to report.
#[derive(Debug, Clone)]
pub struct Options {
    /// Capture only these interfaces (by name); empty: every interface the probe can read.
    pub ifaces: Vec<String>,
    pub node: String,
    pub duration: Option<Duration>,
    pub spec: FilterSpec,
    pub stats_every: Duration,
    pub rescan_every: Duration,
    /// Bytes of receive rings all interfaces may use together.
    pub ring_budget: usize,
    /// Also read the node's NAT rules, conntrack entries and routes (`--evidence`).
    pub evidence: bool,
}

impl Options {
    pub fn new(node: String) -> Self {
        Options {
            ifaces: Vec::new(),
            node,
            duration: None,
            spec: FilterSpec::default(),
            stats_every: Duration::from_secs(5),
            rescan_every: Duration::from_secs(2),
            ring_budget: 12 << 20,
            evidence: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capturing packets needs the CAP_NET_RAW capability, which this process lacks ({0})")]
    NoCapability(#[source] io::Error),
    #[error("no interface named {name} on this node (it has: {have})")]
    UnknownIface { name: String, have: String },
    #[error("interface {name} has a link type the probe cannot read ({link:?})")]
    Unreadable {
        name: String,
        link: crate::wire::LinkType,
    },
    #[error("cannot list the node's interfaces: {0}")]
    Discover(#[source] io::Error),
    #[error("cannot build the kernel filter: {0}")]
    Filter(#[from] bpf::BpfError),
    #[error("cannot capture on {iface}: {source}")]
    Open {
        iface: String,
        #[source]
        source: SocketError,
    },
    #[error("waiting for packets failed: {0}")]
    Poll(#[source] io::Error),
    #[error("cannot write events: {0}")]
    Output(#[source] io::Error),
}

/// Flows remembered while waiting for their first data segment (`--l7`): about 4 MiB at most,
/// so a SYN flood to a watched port cannot grow the probe past its memory bound.
const L7_PENDING_FLOWS: usize = 16_384;

/// Why the capture ended, as `bye.reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Duration,
    Signal,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    packets: u64,
    drops: u64,
    syns: u64,
    malformed: u64,
}

/// One captured interface.
struct Tap {
    iface: Interface,
    framing: Framing,
    ring: PacketRing,
    writer: SynWriter,
    counters: Counters,
    /// Last socket error reported, so a down interface is logged once, not every poll.
    reported_error: bool,
}

/// How long the kernel may hold a partly filled ring block: the most a quiet interface's SYN
/// waits before it is reported. Longer means fewer wake-ups on a busy node (a block then
/// retires because it is full, not on the timer).
const RETIRE_MS: u32 = 100;

/// Lines are written out whenever this many bytes are waiting, and after every drain: large
/// enough that a write moves many lines, small enough to stay in cache.
const FLUSH_AT: usize = 256 << 10;

/// Ring size by what the interface carries: uplinks, bridges and tunnels see the whole node's
/// traffic; a pod's veth sees one pod's. Beyond the budget every ring gets the minimum.
fn ring_size(kind: IfaceKind, used: usize, budget: usize) -> RingSize {
    let big = RingSize {
        block_size: 512 << 10,
        block_nr: 4,
        retire_ms: RETIRE_MS,
    };
    let small = RingSize {
        block_size: 16 << 10,
        block_nr: 4,
        retire_ms: RETIRE_MS,
    };
    let tiny = RingSize {
        block_size: 4 << 10,
        block_nr: 2,
        retire_ms: RETIRE_MS,
    };
    let wanted = match kind {
        IfaceKind::Uplink | IfaceKind::Bridge | IfaceKind::Tunnel | IfaceKind::Eni => big,
        IfaceKind::Veth | IfaceKind::Loopback | IfaceKind::Other => small,
    };
    [wanted, small]
        .into_iter()
        .find(|s| used + s.bytes() <= budget)
        .unwrap_or(tiny)
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Event writer: JSON lines, flushed once per loop round. Give it an unbuffered or line-buffered
/// writer: the capture batches lines itself.
struct Out<W: Write> {
    w: W,
}

impl<W: Write> Out<W> {
    fn emit(&mut self, event: &Event) -> Result<(), CaptureError> {
        let line = crate::wire::encode_line(event);
        self.w
            .write_all(line.as_bytes())
            .and_then(|()| self.w.write_all(b"\n"))
            .map_err(CaptureError::Output)
    }
    fn flush(&mut self) -> Result<(), CaptureError> {
        self.w.flush().map_err(CaptureError::Output)
    }
}

struct Capture<'a, W: Write> {
    opts: &'a Options,
    out: Out<W>,
    taps: Vec<Tap>,
    /// Counters of interfaces that vanished, kept so drops are never hidden.
    retired: Vec<IfaceStats>,
    flows: FirstSegments,
    ring_bytes: usize,
    /// Lines waiting to be written: out in one piece per [`FLUSH_AT`] bytes and after a drain.
    batch: Batch,
    evidence: Option<Evidence>,
}

/// Runs the capture until `stop` is set or the duration ends. Writes the whole stream to `out`.
pub fn run<W: Write>(opts: &Options, stop: &AtomicBool, out: W) -> Result<End, CaptureError> {
    let started = Instant::now();
    let inventory = discover::scan().map_err(CaptureError::Discover)?;
    let all = discover::classify(&inventory);
    let wanted = select(opts, &all)?;
    // The start snapshot is read before any ring opens: rings are not drained meanwhile, and a
    // large ruleset takes a while to read.
    let evidence = opts
        .evidence
        .then(|| Evidence::start(&opts.node, &all, now_ns()));
    let mut cap = Capture {
        opts,
        out: Out { w: out },
        taps: Vec::new(),
        retired: Vec::new(),
        flows: FirstSegments::new(L7_PENDING_FLOWS),
        ring_bytes: 0,
        batch: Batch::with_capacity(FLUSH_AT + (16 << 10)),
        evidence: None,
    };
    for iface in wanted {
        match cap.open(iface) {
            Ok(()) => {}
            // An interface that vanished between listing and opening is no error.
            Err(CaptureError::Open {
                source: SocketError::Io { ref source, .. },
                ..
            }) if source.raw_os_error() == Some(libc::ENODEV) => {}
            Err(err) => return Err(err),
        }
    }
    cap.out.emit(&Event::Hello(Hello {
        ts_ns: now_ns(),
        node: opts.node.clone(),
        probe_version: env!("CARGO_PKG_VERSION").to_string(),
        interfaces: cap.taps.iter().map(|t| t.iface.clone()).collect(),
        filter: opts.spec.to_string(),
        l7: opts.spec.l7,
    }))?;
    if let Some((ev, events)) = evidence {
        if let Some(reason) = ev.reason() {
            eprintln!("realip-probe: --evidence: {reason}");
        }
        for e in &events {
            cap.out.emit(e)?;
        }
        cap.evidence = Some(ev);
    }
    cap.out.flush()?;

    let mut poller = Poller::default();
    let mut next_stats = started + opts.stats_every;
    let mut next_scan = started + opts.rescan_every;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break End::Signal;
        }
        let now = Instant::now();
        if opts.duration.is_some_and(|d| now >= started + d) {
            break End::Duration;
        }
        let mut wake = next_stats.min(next_scan);
        if let Some(d) = opts.duration {
            wake = wake.min(started + d);
        }
        if let Some(due) = cap.evidence.as_ref().and_then(Evidence::next_due) {
            wake = wake.min(due);
        }
        // Rounded up to whole milliseconds: a zero timeout just before a deadline would spin.
        let timeout_ms = wake
            .saturating_duration_since(now)
            .min(Duration::from_millis(250))
            .as_micros()
            .div_ceil(1000) as i32;
        let ready = poller
            .wait(cap.taps.iter().map(|t| t.ring.as_fd()), timeout_ms)
            .map_err(CaptureError::Poll)?;
        for (tap, ready) in cap.taps.iter_mut().zip(ready) {
            if ready.error {
                if let Some(err) = socket::take_error(tap.ring.as_fd()) {
                    if !tap.reported_error {
                        // ENETDOWN: the socket stays bound and resumes when the link comes up.
                        eprintln!(
                            "realip-probe: {}: {err} (capture resumes if it comes back)",
                            tap.iface.name
                        );
                        tap.reported_error = true;
                    }
                }
                // The interface went down or away: look again soon, not on every wakeup.
                next_scan = next_scan.min(Instant::now() + Duration::from_millis(200));
            }
        }
        cap.drain_all()?;
        if let Some(ev) = cap.evidence.as_mut() {
            for e in ev.poll(Instant::now(), now_ns()) {
                cap.out.emit(&e)?;
            }
        }
        cap.out.flush()?;
        let now = Instant::now();
        if now >= next_scan {
            cap.rescan()?;
            next_scan = now + opts.rescan_every;
        }
        if now >= next_stats {
            cap.stats(false)?;
            next_stats = now + opts.stats_every;
        }
    };
    cap.drain_all()?;
    // Counters as the capture ends, before the end snapshot (which takes a while on a large
    // ruleset and is no part of the capture).
    let last = cap.collect_stats();
    if let Some(ev) = cap.evidence.as_mut() {
        for e in ev.finish(now_ns) {
            cap.out.emit(&e)?;
        }
    }
    cap.emit_stats(last, true)?;
    cap.out.emit(&Event::Bye(Bye {
        ts_ns: now_ns(),
        node: opts.node.clone(),
        reason: match end {
            End::Duration => "duration",
            End::Signal => "signal",
        }
        .to_string(),
        error: None,
    }))?;
    cap.out.flush()?;
    Ok(end)
}

/// The interfaces to capture: those named by `--iface` (each must exist and be readable), or
/// every readable one.
fn select(opts: &Options, all: &[Interface]) -> Result<Vec<Interface>, CaptureError> {
    if opts.ifaces.is_empty() {
        return Ok(all
            .iter()
            .filter(|i| discover::framing(i.link_type).is_some())
            .cloned()
            .collect());
    }
    opts.ifaces
        .iter()
        .map(|name| {
            let iface =
                all.iter()
                    .find(|i| &i.name == name)
                    .ok_or_else(|| CaptureError::UnknownIface {
                        name: name.clone(),
                        have: all
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
            match discover::framing(iface.link_type) {
                Some(_) => Ok(iface.clone()),
                None => Err(CaptureError::Unreadable {
                    name: name.clone(),
                    link: iface.link_type,
                }),
            }
        })
        .collect()
}

impl<W: Write> Capture<'_, W> {
    fn open(&mut self, iface: Interface) -> Result<(), CaptureError> {
        let Some(framing) = discover::framing(iface.link_type) else {
            return Ok(());
        };
        let program = bpf::compile(framing, &self.opts.spec)?;
        let size = ring_size(iface.kind, self.ring_bytes, self.opts.ring_budget);
        let ring =
            PacketRing::open(iface.index, &program, size).map_err(|source| match source {
                SocketError::NotPermitted(err) => CaptureError::NoCapability(err),
                source => CaptureError::Open {
                    iface: iface.name.clone(),
                    source,
                },
            })?;
        self.ring_bytes += size.bytes();
        self.taps.push(Tap {
            writer: SynWriter::new(&self.opts.node, &iface.name),
            iface,
            framing,
            ring,
            counters: Counters::default(),
            reported_error: false,
        });
        Ok(())
    }

    fn drain_all(&mut self) -> Result<(), CaptureError> {
        let Capture {
            opts,
            out,
            taps,
            flows,
            batch,
            evidence,
            ..
        } = self;
        for tap in taps.iter_mut() {
            let Tap {
                iface,
                framing,
                ring,
                writer,
                counters,
                ..
            } = tap;
            let mut frames = FrameSink {
                opts,
                flows,
                iface,
                framing: *framing,
                writer,
                counters,
                batch,
                evidence: evidence.as_mut(),
            };
            // A failed write ends the capture once this ring is drained (its blocks still go
            // back to the kernel); the lines after it are dropped with the rest.
            let mut failed = None;
            ring.drain(|frame| {
                let dir = if frame.outgoing {
                    Direction::Out
                } else {
                    Direction::In
                };
                frames.on_frame(frame.ts_ns, dir, frame.data);
                if frames.batch.len() >= FLUSH_AT {
                    if let Err(err) = out.w.write_all(frames.batch.as_bytes()) {
                        failed.get_or_insert(err);
                    }
                    frames.batch.clear();
                }
            });
            if let Some(err) = failed {
                return Err(CaptureError::Output(err));
            }
        }
        if !batch.is_empty() {
            out.w
                .write_all(batch.as_bytes())
                .map_err(CaptureError::Output)?;
            batch.clear();
        }
        Ok(())
    }

    fn collect_stats(&mut self) -> Vec<IfaceStats> {
        let mut list = self.retired.clone();
        for tap in &mut self.taps {
            // A vanished interface's socket may refuse: keep the counters read so far.
            if let Ok((packets, drops)) = tap.ring.take_stats() {
                tap.counters.packets += packets;
                tap.counters.drops += drops;
            }
            list.push(iface_stats(tap));
        }
        list
    }

    fn stats(&mut self, last: bool) -> Result<(), CaptureError> {
        let interfaces = self.collect_stats();
        self.emit_stats(interfaces, last)
    }

    fn emit_stats(&mut self, interfaces: Vec<IfaceStats>, last: bool) -> Result<(), CaptureError> {
        self.out.emit(&Event::Stats(Stats {
            ts_ns: now_ns(),
            node: self.opts.node.clone(),
            interfaces,
            last,
        }))?;
        self.out.flush()
    }

    /// Joins new interfaces and lets vanished (or renamed) ones go, announcing each change.
    fn rescan(&mut self) -> Result<(), CaptureError> {
        // What the rings hold now is reported before any of them closes.
        self.drain_all()?;
        let inventory = match discover::scan() {
            Ok(inv) => inv,
            Err(err) => {
                // A failed rescan keeps the current set; the next one may succeed.
                eprintln!("realip-probe: rescanning interfaces: {err}");
                return Ok(());
            }
        };
        let all = discover::classify(&inventory);
        if let Some(ev) = self.evidence.as_mut() {
            ev.set_interfaces(&all);
        }
        let wanted: Vec<Interface> = all
            .into_iter()
            .filter(|i| discover::framing(i.link_type).is_some())
            .filter(|i| self.opts.ifaces.is_empty() || self.opts.ifaces.contains(&i.name))
            .collect();
        let present: HashMap<u32, &Interface> = wanted.iter().map(|i| (i.index, i)).collect();
        let mut i = 0;
        while i < self.taps.len() {
            let tap = &self.taps[i];
            let same = present
                .get(&tap.iface.index)
                .is_some_and(|now| now.name == tap.iface.name);
            if same {
                i += 1;
                continue;
            }
            let mut tap = self.taps.remove(i);
            if let Ok((packets, drops)) = tap.ring.take_stats() {
                tap.counters.packets += packets;
                tap.counters.drops += drops;
            }
            self.ring_bytes = self.ring_bytes.saturating_sub(tap.ring.size().bytes());
            self.retired.push(iface_stats(&tap));
            self.out.emit(&Event::Iface(IfaceChange {
                ts_ns: now_ns(),
                node: self.opts.node.clone(),
                change: Change::Removed,
                interface: tap.iface,
            }))?;
        }
        for iface in wanted {
            if self.taps.iter().any(|t| t.iface.index == iface.index) {
                continue;
            }
            let announce = iface.clone();
            match self.open(iface) {
                Ok(()) => self.out.emit(&Event::Iface(IfaceChange {
                    ts_ns: now_ns(),
                    node: self.opts.node.clone(),
                    change: Change::Added,
                    interface: announce,
                }))?,
                Err(err @ CaptureError::NoCapability(_)) => return Err(err),
                // Gone again before it could be opened, or a transient failure: next rescan.
                Err(err) => eprintln!("realip-probe: {err}"),
            }
        }
        self.out.flush()
    }
}

fn iface_stats(tap: &Tap) -> IfaceStats {
    IfaceStats {
        iface: tap.iface.name.clone(),
        packets: tap.counters.packets,
        drops: tap.counters.drops,
        syns: tap.counters.syns,
        malformed: tap.counters.malformed,
    }
}

/// Everything one captured frame is handled with.
struct FrameSink<'a> {
    opts: &'a Options,
    flows: &'a mut FirstSegments,
    iface: &'a Interface,
    framing: Framing,
    writer: &'a SynWriter,
    counters: &'a mut Counters,
    batch: &'a mut Batch,
    evidence: Option<&'a mut Evidence>,
}

impl FrameSink<'_> {
    /// Renders at most one event line for a frame, counting what it could not use.
    fn on_frame(&mut self, ts_ns: u64, dir: Direction, data: &[u8]) {
        let seg = match parse::parse(self.framing, data) {
            Ok(seg) => seg,
            Err(ParseError::Truncated | ParseError::Malformed) => {
                self.counters.malformed += 1;
                return;
            }
            // IPv6 behind a long extension chain that turned out not to be TCP: outside the spec.
            Err(_) => return,
        };
        let key = || FlowKey {
            ifindex: self.iface.index,
            src: seg.src,
            sport: seg.sport,
            dst: seg.dst,
            dport: seg.dport,
        };
        match self.opts.spec.admits(&seg) {
            Admit::Syn => {
                self.counters.syns += 1;
                if self.opts.spec.l7 {
                    self.flows.on_syn(key(), seg.seq);
                }
                if let Some(ev) = self.evidence.as_deref_mut() {
                    ev.on_syn(Instant::now(), &self.iface.name, dir, &seg);
                }
                self.writer.write(self.batch, ts_ns, dir, &seg);
            }
            Admit::Data if self.flows.on_data(key(), seg.seq) => {
                let event = l7::forwarding_facts(seg.payload).into_event(
                    &seg,
                    ts_ns,
                    self.opts.node.clone(),
                    self.iface.name.clone(),
                    Some(dir),
                );
                let mut line = crate::wire::encode_line(&Event::L7(event));
                line.push('\n');
                self.batch.extend(line.as_bytes());
            }
            Admit::Data | Admit::Skip => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::LinkType;
    use etherparse::PacketBuilder;

    fn iface() -> Interface {
        Interface {
            index: 2,
            name: "eth0".into(),
            kind: IfaceKind::Uplink,
            link_type: LinkType::Ethernet,
            addresses: vec![],
            mtu: 1500,
            mac: None,
        }
    }

    fn frame(syn: bool, seq: u32, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 51, 100, 7], [198, 51, 100, 1], 64)
            .tcp(41770, 80, seq, 64240);
        let b = if syn { b.syn() } else { b.ack(1) };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn syn_then_first_data_segment_yield_syn_and_l7_events() {
        let mut opts = Options::new("node-a".into());
        opts.spec = FilterSpec {
            ports: vec![80],
            l7: true,
            ..FilterSpec::default()
        };
        let mut flows = FirstSegments::new(16);
        let mut counters = Counters::default();
        let iface = iface();
        let writer = SynWriter::new("node-a", "eth0");
        let mut batch = Batch::default();
        let mut feed = |data: &[u8]| -> Option<Event> {
            batch.clear();
            FrameSink {
                opts: &opts,
                flows: &mut flows,
                iface: &iface,
                framing: Framing::Ethernet,
                writer: &writer,
                counters: &mut counters,
                batch: &mut batch,
                evidence: None,
            }
            .on_frame(1, Direction::In, data);
            let line = std::str::from_utf8(batch.as_bytes())
                .ok()?
                .strip_suffix('\n')?;
            crate::wire::decode_line(line).ok()
        };
        let Some(Event::Syn(syn)) = feed(&frame(true, 1000, b"")) else {
            panic!("no syn event");
        };
        assert_eq!(
            (syn.isn, syn.dir, syn.ip_id.is_some(), syn.node.as_str()),
            (1000, Direction::In, true, "node-a")
        );
        let head = b"GET /secret HTTP/1.1\r\nCookie: a\r\nX-Real-IP: 203.0.113.5\r\n\r\n";
        let Some(Event::L7(l7)) = feed(&frame(false, 1001, head)) else {
            panic!("no l7 event");
        };
        assert_eq!(l7.x_real_ip.as_deref(), Some("203.0.113.5"));
        assert_eq!(l7.seq, 1001);
        let line = crate::wire::encode_line(&Event::L7(l7));
        assert!(
            !line.contains("secret") && !line.contains("Cookie"),
            "{line}"
        );
        assert!(feed(&frame(false, 1001, head)).is_none(), "only once");
        assert!(feed(&[0u8; 20]).is_none(), "not IP: skipped, not malformed");
        assert!(feed(&frame(true, 1, b"")[..30]).is_none());
        assert_eq!((counters.syns, counters.malformed), (1, 1));
    }

    #[test]
    fn rings_shrink_when_the_budget_is_spent() {
        let big = ring_size(IfaceKind::Uplink, 0, 12 << 20);
        assert_eq!(big.bytes(), 2 << 20);
        assert_eq!(ring_size(IfaceKind::Veth, 0, 12 << 20).bytes(), 64 << 10);
        assert_eq!(
            ring_size(IfaceKind::Uplink, 11 << 20, 12 << 20).bytes(),
            64 << 10
        );
        assert_eq!(
            ring_size(IfaceKind::Veth, 12 << 20, 12 << 20).bytes(),
            8 << 10
        );
    }

    #[test]
    fn unknown_iface_names_what_exists() {
        let mut opts = Options::new("n".into());
        opts.ifaces = vec!["eth9".into()];
        let err = select(&opts, &[iface()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no interface named eth9 on this node (it has: eth0)"
        );
    }
}
