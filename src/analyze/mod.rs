//! From SYN sightings to the hop-by-hop story of each connection.
//!
//! A library first: [`Analyzer`] takes probe events in any order from any number of nodes and
//! [`Analyzer::finish`] returns the [`model::Report`]; `trace` and `lab` feed it live events,
//! [`run`] (the `analyze` command) feeds it files. The three renderers turn a report into text,
//! the JSON contract or a Mermaid diagram.
//!
//! Exit codes of `kubectl realip analyze`: 0 every input read and at least one connection found;
//! 1 the report is partial (some lines, frames or files skipped, or no connection found);
//! 2 an input could not be used at all (missing, unreadable, not a known format).

mod capture;
mod correlate;
mod flow;
mod input;
mod l7;
pub mod model;
mod owners;
mod reach;
mod render;
mod sighting;
mod summary;

pub use correlate::{RETRY_WINDOW_NS, SAME_NODE_WINDOW_NS};
pub use input::Problem as InputProblem;
pub use render::{mermaid::render_mermaid, text::render_text};

use crate::cli::AnalyzeArgs;
use crate::error::{Failure, Kind, Result};
use crate::output::{self, OutputFormat};
use model::{L7ClientIp, Report};
use owners::Owners;
use realip_probe::wire::{Event, L7};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use sighting::{Names, Sighting};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;

/// Streaming correlation of probe events. Memory grows with the number of SYN sightings
/// (a few dozen bytes each); L7 events are kept only when they name a client.
#[derive(Debug, Default)]
pub struct Analyzer {
    names: Names,
    sightings: Vec<Sighting>,
    owners: Owners,
    /// L7 facts by the ISN they belong to (their first segment's seq − 1).
    l7: HashMap<u32, Vec<L7Fact>>,
    /// Latest cumulative drop counter per (node, interface).
    drops: HashMap<(String, String), u64>,
    warnings: Vec<String>,
}

#[derive(Debug)]
struct L7Fact {
    node: u32,
    iface: u32,
    src: Option<IpAddr>,
    sport: u16,
    dst: Option<IpAddr>,
    dport: u16,
    client: L7ClientIp,
}

impl Analyzer {
    pub fn new() -> Self {
        Analyzer::default()
    }

    /// Takes one event; events of many nodes may come interleaved in any order.
    pub fn push(&mut self, event: Event) {
        match event {
            Event::Syn(syn) => {
                let sighting = Sighting::from_syn(&syn, &mut self.names);
                self.sightings.push(sighting);
            }
            Event::Hello(hello) => self.owners.add_node(&hello.node, &hello.interfaces),
            Event::Iface(change) => self.owners.add_interface(&change.node, &change.interface),
            Event::L7(l7) => self.push_l7(&l7),
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
            Event::Unknown => {}
        }
    }

    /// Records a problem met while reading input; it appears in the summary.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    pub(crate) fn push_sighting(&mut self, sighting: Sighting) {
        self.sightings.push(sighting);
    }

    pub(crate) fn names_mut(&mut self) -> &mut Names {
        &mut self.names
    }

    fn push_l7(&mut self, l7: &L7) {
        if let Some(client) = l7::client_ip(l7) {
            let fact = L7Fact {
                node: self.names.id(&l7.node),
                iface: self.names.id(&l7.iface),
                src: l7.src,
                sport: l7.sport,
                dst: l7.dst,
                dport: l7.dport,
                client,
            };
            self.l7
                .entry(l7.seq.wrapping_sub(1))
                .or_default()
                .push(fact);
        }
    }

    /// Correlates everything pushed so far into the report.
    pub fn finish(self) -> Report {
        let mut correlated = self.correlate();
        let flows: Vec<model::Flow> = (0..correlated.len()).map(|i| correlated.flow(i)).collect();
        let summary = summary::summarize(&flows, correlated.drops(), correlated.take_warnings());
        Report { flows, summary }
    }

    /// Groups the sightings into connections, in output order; their flows are built on demand.
    fn correlate(mut self) -> Correlated {
        let correlation = correlate::correlate(&self.sightings);
        self.warnings.extend(correlation.warnings);
        // Independent of input order: by the first capture point's node, its clock, then the
        // rest; names compared by rank so that sorting stays cheap for large captures.
        let rank = self.names.ranks();
        let mut chains = correlation.chains;
        chains.sort_by_cached_key(|chain| {
            let h = &self.sightings[chain.hops[0]];
            (
                rank[h.node as usize],
                h.ts_ns,
                rank[h.iface as usize],
                h.isn,
                h.src,
                h.sport,
            )
        });
        Correlated {
            analyzer: self,
            chains,
        }
    }

    /// The L7 client of a flow: an l7 event of the same ISN seen at one of its hops.
    fn l7_for(&self, hops: &[usize]) -> Option<L7ClientIp> {
        let isn = self.sightings[*hops.first()?].isn;
        let facts = self.l7.get(&isn)?;
        hops.iter().find_map(|&i| {
            let s = &self.sightings[i];
            facts
                .iter()
                .find(|f| {
                    f.node == s.node
                        && f.iface == s.iface
                        && f.sport == s.sport
                        && f.dport == s.dport
                        && f.src.is_none_or(|ip| ip == s.src)
                        && f.dst.is_none_or(|ip| ip == s.dst)
                })
                .map(|f| f.client.clone())
        })
    }
}

/// Correlated connections whose flows are built one at a time: a large capture's report can
/// then be written without holding every flow (most of the memory a full [`Report`] takes).
struct Correlated {
    analyzer: Analyzer,
    chains: Vec<correlate::Chain>,
}

impl Correlated {
    fn len(&self) -> usize {
        self.chains.len()
    }

    /// The flow of the `i`-th connection in output order.
    fn flow(&mut self, i: usize) -> model::Flow {
        let chain = &self.chains[i];
        let a = &mut self.analyzer;
        let mut flow = flow::build(&a.sightings, chain, &a.names, &mut a.owners);
        flow.l7_client_ip = a.l7_for(&chain.hops);
        flow
    }

    fn drops(&self) -> u64 {
        self.analyzer.drops.values().sum()
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.analyzer.warnings)
    }
}

/// Serializes exactly as [`Report`] does, building each flow as it is written and counting the
/// summary on the way (flows come first in the JSON).
struct StreamedReport {
    correlated: RefCell<Correlated>,
    tally: RefCell<summary::Tally>,
}

struct StreamedFlows<'a>(&'a StreamedReport);

impl Serialize for StreamedReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut report = serializer.serialize_struct("Report", 2)?;
        report.serialize_field("flows", &StreamedFlows(self))?;
        let mut correlated = self.correlated.borrow_mut();
        let summary = self
            .tally
            .take()
            .finish(correlated.drops(), correlated.take_warnings());
        report.serialize_field("summary", &summary)?;
        report.end()
    }
}

impl Serialize for StreamedFlows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut correlated = self.0.correlated.borrow_mut();
        let mut flows = serializer.serialize_seq(Some(correlated.len()))?;
        for i in 0..correlated.len() {
            let flow = correlated.flow(i);
            self.0.tally.borrow_mut().add(&flow);
            flows.serialize_element(&flow)?;
        }
        flows.end()
    }
}

/// Reads one input file (probe JSONL, pcap or pcapng; `-` is JSONL on stdin) into `analyzer`,
/// returning the problems met; what could be read safely has been pushed.
pub fn read_file(path: &std::path::Path, analyzer: &mut Analyzer) -> Vec<InputProblem> {
    input::read(path, analyzer)
}

/// Correlates a finite set of events.
pub fn analyze_events(events: impl IntoIterator<Item = Event>) -> Report {
    let mut analyzer = Analyzer::new();
    for event in events {
        analyzer.push(event);
    }
    analyzer.finish()
}

/// The JSON contract, pretty-printed, with a trailing newline.
pub fn render_json(report: &Report) -> String {
    // Plain data with string keys: serialization cannot fail.
    let mut out = serde_json::to_string_pretty(report).unwrap_or_default();
    out.push('\n');
    out
}

/// Writes JSON to stdout as it is built: a large capture makes a large report.
fn write_json(report: &impl Serialize) -> std::io::Result<()> {
    // JSON carries no styles: skip the colour-stripping adapter.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, report)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Correlates and prints the report on stdout; returns how many connections it holds.
fn write_report(analyzer: Analyzer, format: OutputFormat) -> std::io::Result<usize> {
    let render = match format {
        OutputFormat::Text => render_text,
        OutputFormat::Mermaid => render_mermaid,
        OutputFormat::Json => {
            let correlated = analyzer.correlate();
            let connections = correlated.len();
            write_json(&StreamedReport {
                correlated: RefCell::new(correlated),
                tally: RefCell::default(),
            })?;
            return Ok(connections);
        }
    };
    let report = analyzer.finish();
    output::emit(&render(&report))?;
    Ok(report.flows.len())
}

/// `kubectl realip analyze FILE...`
pub fn run(args: &AnalyzeArgs) -> Result<()> {
    let mut analyzer = Analyzer::new();
    let mut worst: Option<Kind> = None;
    let mut problems = 0usize;
    for path in &args.files {
        for problem in read_file(path, &mut analyzer) {
            problems += 1;
            eprintln!("warning: {problem}");
            if problem.unusable() {
                worst = Some(Kind::Usage);
            } else {
                worst.get_or_insert(Kind::NoAnswer);
            }
            analyzer.warn(problem.to_string());
        }
    }
    let connections = write_report(analyzer, args.output)
        .map_err(|err| Failure::new(Kind::Usage, format!("writing the report: {err}")))?;
    match worst {
        Some(kind) => Err(Failure::new(
            kind,
            format!("{problems} input problem(s); the report covers only what could be read"),
        )
        .hint("fix or remove the named files and lines, then run analyze again")),
        None if connections == 0 => Err(Failure::new(
            Kind::NoAnswer,
            "no TCP SYN found in the input",
        )
        .hint("capture while connections are opened, e.g. `realip-probe capture` or `tcpdump -w`, with SYNs included in the filter")),
        None => Ok(()),
    }
}
