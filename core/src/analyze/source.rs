//! What every input of analyze is read through: a [`Source`] yields items (SYN sightings and
//! other events) with where each was in its input, and the [`Problem`]s met. Probe JSONL
//! ([`super::jsonl`]) and capture files ([`super::capture`]) are sources; [`super::input`]
//! opens them and merges them by time.

use super::node_ifaces::NodeIfaces;
use super::sighting::{Names, Sighting};
use realip_probe::wire::{DecodeError, Event};
use std::fmt;
use std::io;
use std::time::Duration;

/// One open input, read an item at a time.
pub trait Source {
    /// The next item and where it was; `None` at the end (or after a problem that stops it).
    fn next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<(Item, Pos)>;
    /// The input's name in messages: its path, or `-`.
    fn name(&self) -> &str;
    /// Bytes read so far.
    fn position(&self) -> u64;
    /// A capture file (it holds frames of the interfaces it names) rather than probe JSONL
    /// (whose probes name their nodes and interfaces themselves).
    fn is_capture(&self) -> bool;
    /// The problems met, once the input has been read.
    fn finish(self: Box<Self>, ifaces: &mut NodeIfaces) -> Vec<Problem>;
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{file}: cannot open: {source}")]
    Open { file: String, source: io::Error },
    #[error("{file}: read error after line {line}: {source}")]
    Read {
        file: String,
        line: u64,
        source: io::Error,
    },
    #[error("{file}:{line}: skipped: {message}")]
    Line {
        file: String,
        line: u64,
        message: String,
    },
    #[error(
        "{file}: {count} lines skipped (lines {}{}), the first because: {message}",
        join(lines),
        if *count > lines.len() as u64 { ", …" } else { "" }
    )]
    Lines {
        file: String,
        count: u64,
        /// The first few.
        lines: Vec<u64>,
        message: String,
    },
    #[error("{file}:{line}: {source}; the rest of this file was not read")]
    Newer {
        file: String,
        line: u64,
        source: DecodeError,
    },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("{file}: byte {offset}: {message}")]
    Capture {
        file: String,
        offset: u64,
        message: String,
    },
    #[error(
        "{file}: {late} SYN(s) came after connections of their time had been reported, so \
         theirs may be split: the input is not in time order (several nodes' streams one after \
         another?); give each node's stream as its own file, or a --window (now {window:?}) \
         longer than the capture"
    )]
    Order {
        file: String,
        late: u64,
        window: Duration,
    },
    #[error(
        "{file}: its node would be named {node}, as {other}'s: name each node's capture file \
         (or its folder) after the node"
    )]
    SameNode {
        file: String,
        other: String,
        node: String,
    },
    /// Something the reader did about the input that the report should mention; all of it was
    /// used.
    #[error("{file}: {message}")]
    Note { file: String, message: String },
}

fn join(numbers: &[u64]) -> String {
    let text: Vec<String> = numbers.iter().map(u64::to_string).collect();
    text.join(", ")
}

impl Problem {
    /// Whether the file could not be used at all (exit code 2) rather than read in part.
    pub fn unusable(&self) -> bool {
        matches!(
            self,
            Problem::Open { .. }
                | Problem::Format { .. }
                | Problem::Read { line: 0, .. }
                | Problem::SameNode { .. }
        )
    }

    /// Whether it only tells what was done with input that was used whole (no exit code).
    pub fn is_note(&self) -> bool {
        matches!(self, Problem::Note { .. })
    }
}

/// Where an item was in its input, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pos {
    Line(u64),
    Frame { number: u64, offset: u64 },
}

impl Pos {
    /// What the input is made of: lines or frames.
    pub fn unit(&self) -> &'static str {
        match self {
            Pos::Line(_) => "line",
            Pos::Frame { .. } => "frame",
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pos::Line(line) => write!(f, "line {line}"),
            Pos::Frame { number, offset } => write!(f, "frame {number} (byte {offset})"),
        }
    }
}

/// What a source yields: a SYN sighting (the bulk of any input, kept compact), or another event.
#[derive(Debug)]
pub enum Item {
    Sighting(Sighting),
    Event(Event),
}

impl Item {
    /// When it was seen; events that are not observations (hello, stats) take no part in the
    /// time order and go first.
    pub fn ts_ns(&self) -> u64 {
        self.observed_at().unwrap_or(0)
    }

    /// When it was seen, for an observation of the network (a SYN, a data segment).
    pub fn observed_at(&self) -> Option<u64> {
        match self {
            Item::Sighting(s) => Some(s.ts_ns),
            Item::Event(Event::L7(l7)) => Some(l7.ts_ns),
            Item::Event(_) => None,
        }
    }

    /// Dates an observation anew (a glitched timestamp); other items have no time to set.
    pub fn observed_at_set(&mut self, ts_ns: u64) {
        match self {
            Item::Sighting(s) => s.ts_ns = ts_ns,
            Item::Event(Event::L7(l7)) => l7.ts_ns = ts_ns,
            Item::Event(_) => {}
        }
    }
}
