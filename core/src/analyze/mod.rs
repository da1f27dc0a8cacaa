//! From SYN sightings to the hop-by-hop story of each connection.
//!
//! [`Analyzer`] takes probe events in any order from any number of nodes and
//! [`Analyzer::finish`] returns the [`model::Report`]; trace and the lab feed it the events of
//! a run that way. [`analyze_files`] (what the `analyze` command runs) streams instead: its
//! inputs are merged by time into a windowed analyzer, and each connection is written as soon
//! as it is complete, so a capture of any length is read in memory bounded by the window. The
//! three renderers turn a report, or flows as they come, into text, the JSON contract or a
//! Mermaid diagram. What an input problem means for the exit code is
//! [`InputProblem::unusable`] and [`InputProblem::is_note`].

mod attribution;
mod capture;
mod chain;
mod clock;
mod correlate;
mod coverage;
mod evidence;
mod files;
mod flow;
mod groups;
mod host_macs;
mod input;
mod jsonl;
mod l7;
pub mod model;
mod node_ifaces;
mod owners;
mod reach;
pub mod render;
mod sighting;
mod source;
mod summary;
mod verdict;
pub mod view;

pub use correlate::{RETRY_WINDOW_NS, SAME_NODE_WINDOW_NS};
pub use files::Files;
pub use input::Problem as InputProblem;
pub use owners::{Owners, Role};
pub use render::Sink;
pub use render::{
    json::render_json,
    mermaid::{render_mermaid, render_mermaid_sections},
    text::{render_text, render_text_at},
};

use chain::Chains;
use coverage::Coverage;
use groups::Groups;
use input::{Inputs, Item};
use model::{Flow, Report, Summary};
use node_ifaces::NodeIfaces;
use realip_probe::wire::Event;
use sighting::{Names, Sighting};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How far apart one connection's sightings may be unless told otherwise: `analyze --window`'s
/// default, and the window `trace` streams its events through. It covers SYN retransmissions
/// and the clock skew between nodes.
pub const WINDOW: Duration = Duration::from_secs(180);

/// Connections held at most while a node's end snapshot of its rules is awaited (see
/// [`Analyzer::next_flow`]); past it the oldest is reported without the counters' verdict.
const MAX_HELD: usize = 50_000;

/// Streaming correlation of probe events. Sightings are held per ISN until their connection
/// can have no more (see [`Analyzer::windowed`]); L7 events only when they name a client.
#[derive(Debug)]
pub struct Analyzer {
    names: Names,
    groups: Groups,
    /// Connections correlated and judged, waiting for the proxy legs that may continue them.
    chains: Chains,
    /// Who owns an address, and each node's interfaces: announced, and captured.
    owners: Owners,
    /// Capture points (node, interface ids) already told to `owners`.
    captured: HashSet<(u32, u32)>,
    /// What the captures lacked, per node, by the connections found.
    coverage: Coverage,
    /// Latest cumulative drop counter per (node, interface).
    drops: HashMap<(String, String), u64>,
    warnings: Vec<String>,
    /// The nodes' netfilter evidence, for the attribution of each rewrite.
    evidence: evidence::Evidence,
    /// Connections complete, in output order, waiting for the end of a node's evidence.
    held: VecDeque<Flow>,
    /// Connections reported before the evidence they waited for came (over [`MAX_HELD`]).
    released_early: usize,
    /// The input has ended.
    closed: bool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

impl Analyzer {
    /// Events in any order from any number of nodes; every connection is held until
    /// [`Analyzer::finish`]. For short inputs such as a trace or a lab run.
    pub fn new() -> Self {
        Analyzer::with_window(None)
    }

    /// Events in time order (each node's own clock; nodes merged by time), for captures of any
    /// length: a connection is closed, and can be reported and forgotten, once the input has
    /// moved `window` past its newest sighting. The window must cover SYN retransmissions and
    /// the clock skew between nodes; memory grows with the SYNs inside it.
    pub fn windowed(window: Duration) -> Self {
        let ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Analyzer::with_window(Some(ns))
    }

    fn with_window(window: Option<u64>) -> Self {
        Analyzer {
            names: Names::default(),
            groups: Groups::new(window),
            chains: Chains::default(),
            owners: Owners::default(),
            captured: HashSet::new(),
            coverage: Coverage::default(),
            drops: HashMap::new(),
            warnings: Vec::new(),
            evidence: evidence::Evidence::default(),
            held: VecDeque::new(),
            released_early: 0,
            closed: false,
        }
    }

    /// What the caller knows of the cluster (trace, the lab): the verdicts rest on it beside the
    /// probes' `hello`. Give it before the events.
    pub fn set_view(&mut self, view: view::ClusterView) {
        self.owners.set_view(view);
    }

    /// Adds addresses test connections were opened from, once they are known
    /// ([`view::ClusterView::senders`]); before the connections they concern are taken.
    pub fn add_senders(&mut self, senders: impl IntoIterator<Item = std::net::IpAddr>) {
        let mut view = self.owners.view().clone();
        view.senders.extend(senders);
        self.owners.set_view(view);
    }

    /// Takes one event.
    pub fn push(&mut self, event: Event) {
        match event {
            Event::Syn(syn) => {
                let sighting = Sighting::from_syn(&syn, &mut self.names);
                self.push_sighting(sighting);
            }
            Event::Hello(hello) => self.owners.add_node(&hello.node, &hello.interfaces),
            Event::Iface(change) => self.owners.add_interface(&change.node, &change.interface),
            Event::L7(l7) => {
                if let Some((isn, fact)) = l7::Fact::of(&l7, &mut self.names) {
                    self.groups.add_l7(isn, l7.ts_ns, fact);
                }
            }
            Event::Stats(stats) => {
                for iface in stats.interfaces {
                    let slot = self
                        .drops
                        .entry((stats.node.clone(), iface.iface))
                        .or_default();
                    *slot = (*slot).max(iface.drops);
                }
            }
            Event::Bye(bye) => {
                if let Some(error) = bye.error {
                    self.warn(format!("the probe on {} stopped: {error}", bye.node));
                }
            }
            Event::Evidence(status) => self.evidence.status(status),
            Event::Ruleset(ruleset) => self.evidence.ruleset(ruleset),
            Event::Conntrack(entry) => {
                self.evidence.conntrack(entry);
            }
            Event::Route(route) => self.evidence.route(route),
            Event::Unknown => {}
        }
    }

    /// Records a problem met while reading input; it appears in the summary.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    fn push_sighting(&mut self, sighting: Sighting) {
        if self.captured.insert((sighting.node, sighting.iface)) {
            self.owners.ifaces_mut().captured(
                self.names.get(sighting.node),
                self.names.get(sighting.iface),
            );
        }
        self.groups.add(sighting, &self.names);
    }

    pub(crate) fn push_item(&mut self, item: Item) {
        match item {
            Item::Sighting(sighting) => self.push_sighting(sighting),
            Item::Event(event) => self.push(event),
        }
    }

    /// What readers of input update: interned names, and what each node's interfaces are.
    pub(crate) fn reading(&mut self) -> (&mut Names, &mut NodeIfaces) {
        (&mut self.names, self.owners.ifaces_mut())
    }

    /// The next connection whose story is complete, in output order: with a window, while
    /// input is still coming; otherwise once [`Analyzer::close`] has been called. A connection
    /// rewritten on a node whose probe reads evidence waits for that probe's end snapshot of
    /// its rules (the counters over the capture name the rule), up to `MAX_HELD` (50,000) of them.
    pub fn next_flow(&mut self) -> Option<Flow> {
        loop {
            if let Some(front) = self.held.front() {
                let over = self.held.len() > MAX_HELD;
                if self.closed || over || !self.evidence.waits_for(front) {
                    let mut flow = self.held.pop_front()?;
                    if over && self.evidence.waits_for(&flow) {
                        self.released_early += 1;
                    }
                    attribution::attribute_flow(&self.evidence, &mut flow);
                    self.evidence.done(&flow);
                    return Some(flow);
                }
            }
            match self.next_judged() {
                Some(flow) => self.held.push_back(flow),
                None if self.closed && !self.held.is_empty() => {}
                None => return None,
            }
        }
    }

    /// The next connection correlated and judged, in output order.
    fn next_judged(&mut self) -> Option<Flow> {
        loop {
            if let Some(flow) = self.chains.pop() {
                return Some(flow);
            }
            match self.groups.next(&self.names) {
                Some(ready) => {
                    let mut flow =
                        flow::build(&ready.hops, ready.retries, &self.names, &mut self.owners);
                    flow.l7_client_ip = ready.l7_client;
                    self.coverage.flow(&flow, self.owners.ifaces());
                    verdict::judge(&mut flow, &mut self.owners);
                    self.chains.push(flow, &mut self.owners);
                }
                None if self.groups.is_drained() => {
                    self.chains.close(&mut self.owners);
                    return self.chains.pop();
                }
                None => return None,
            }
        }
    }

    /// The input has ended: every connection still open is complete.
    pub fn close(&mut self) {
        self.groups.close_all();
        self.closed = true;
    }

    /// Closes the input and gives the whole report.
    pub fn finish(self) -> Report {
        self.finish_after(Vec::new())
    }

    /// Closes the input and gives the whole report: `earlier` holds the connections already
    /// taken with [`Analyzer::next_flow`], in the order they came.
    pub fn finish_after(mut self, earlier: Vec<Flow>) -> Report {
        self.close();
        let mut flows = earlier;
        flows.extend(std::iter::from_fn(|| self.next_flow()));
        let mut tally = summary::Tally::default();
        for flow in &flows {
            tally.add(flow);
        }
        let summary = self.summary(tally);
        Report::new(flows, summary)
    }

    /// The summary of the flows counted in `tally`, with the drops and warnings seen.
    fn summary(&mut self, tally: summary::Tally) -> Summary {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.append(&mut self.groups.warnings);
        warnings.extend(self.coverage.warnings(self.owners.ifaces()));
        let hurried = self.chains.hurried();
        if hurried > 0 {
            warnings.push(format!(
                "{hurried} connection(s) were written before the {} s in which a proxy's next leg \
                 is joined to them were up ({} connections at once at most): a proxy's leg after \
                 them may stand alone",
                chain::JOIN_NS / 1_000_000_000,
                chain::MAX_HELD
            ));
        }
        let (evidence, notes) = self.evidence.summary();
        warnings.extend(notes);
        if self.released_early > 0 {
            warnings.push(format!(
                "{} connection(s) were reported before their node's end snapshot of its NAT \
                 rules came (more than {MAX_HELD} waited): their rules' counters over the \
                 capture were not used",
                self.released_early
            ));
        }
        let mut summary = tally.finish(self.drops.values().sum(), warnings);
        summary.evidence = evidence;
        summary
    }
}

/// Reads one input file (probe JSONL, pcap or pcapng; `-` is stdin, any of them) into `analyzer`,
/// returning the problems met; what could be read safely has been pushed.
pub fn read_file(path: &Path, files: &dyn Files, analyzer: &mut Analyzer) -> Vec<InputProblem> {
    input::read(path, files, analyzer)
}

/// Correlates a finite set of events.
pub fn analyze_events(events: impl IntoIterator<Item = Event>) -> Report {
    let mut analyzer = Analyzer::new();
    for event in events {
        analyzer.push(event);
    }
    analyzer.finish()
}

/// Where a streamed analysis is, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bytes of input read so far, and in all when every input is a file.
    pub read: u64,
    pub total: Option<u64>,
    /// SYN sightings taken, connections written.
    pub syns: u64,
    pub connections: usize,
}

/// What a streamed analysis met besides the report it wrote.
#[derive(Debug)]
pub struct Streamed {
    /// Every input problem, in the order the inputs were given (notes included).
    pub problems: Vec<InputProblem>,
    /// Client connections reported.
    pub connections: usize,
    /// How writing the report went (a closed pipe ends the work early).
    pub written: io::Result<()>,
}

/// Analyzes the inputs at `paths` (probe JSONL, pcap or pcapng; `-` is stdin), merged by time,
/// handing each connection to `sink` as soon as it is complete, so that a capture of any length
/// is read in memory bounded by `window`. `progress` hears where reading is now and then.
pub fn analyze_files(
    paths: &[PathBuf],
    window: Duration,
    files: &dyn Files,
    sink: &mut dyn Sink,
    mut progress: impl FnMut(Progress),
) -> Streamed {
    let mut analyzer = Analyzer::windowed(window);
    let (names, ifaces) = analyzer.reading();
    let mut inputs = Inputs::open(paths, window, files, names, ifaces);
    let mut tally = summary::Tally::default();
    let written = stream(&mut analyzer, &mut inputs, &mut progress, |flow| {
        tally.add(flow);
        sink.flow(flow)
    });
    let problems = inputs.finish(window, analyzer.owners.ifaces_mut());
    // Input problems first in the summary, then what correlation met.
    let mut warnings: Vec<String> = problems.iter().map(ToString::to_string).collect();
    warnings.append(&mut analyzer.warnings);
    analyzer.warnings = warnings;
    let connections = tally.connections();
    let summary = analyzer.summary(tally);
    Streamed {
        problems,
        connections,
        written: written.and_then(|()| sink.finish(&summary)),
    }
}

/// Feeds every input item to `analyzer`, handing each complete connection to `out` as soon as
/// it is; stops at the first write error.
fn stream(
    analyzer: &mut Analyzer,
    inputs: &mut Inputs,
    progress: &mut impl FnMut(Progress),
    mut out: impl FnMut(&Flow) -> io::Result<()>,
) -> io::Result<()> {
    let mut at = Progress {
        total: inputs.progress().1,
        ..Progress::default()
    };
    let mut items = 0u64;
    loop {
        let (names, ifaces) = analyzer.reading();
        let Some((source, item)) = inputs.next(names, ifaces) else {
            break;
        };
        items += 1;
        if matches!(item, Item::Sighting(_)) {
            at.syns += 1;
        }
        if items.is_multiple_of(65_536) {
            at.read = inputs.progress().0;
            progress(at);
        }
        let late = analyzer.groups.late();
        analyzer.push_item(item);
        if analyzer.groups.late() > late {
            inputs.late(source);
        }
        while let Some(flow) = analyzer.next_flow() {
            at.connections += 1;
            out(&flow)?;
        }
    }
    analyzer.close();
    at.read = inputs.progress().0;
    while let Some(flow) = analyzer.next_flow() {
        if at.connections.is_multiple_of(65_536) {
            progress(at);
        }
        at.connections += 1;
        out(&flow)?;
    }
    Ok(())
}
