//! Reading analyze's inputs: probe JSONL and capture files, from files or stdin, each told by
//! its first bytes. Streaming, line by line or frame by frame, each input through a [`Clock`]
//! that keeps a glitched timestamp from moving the analysis window; every problem names the file
//! and the line, frame or byte offset.

use super::capture::CaptureSource;
use super::clock::Clock;
use super::node_ifaces::NodeIfaces;
use super::sighting::{Names, Sighting};
use super::Analyzer;
use realip_probe::wire::{decode_line, DecodeError, Event};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest JSONL line accepted; a probe line is a few hundred bytes.
const MAX_LINE: usize = 1 << 20;
/// A file none of whose first this many lines is a probe event is not probe JSONL.
const PROBE_LINES: u64 = 16;
/// Skipped lines named one by one; the rest are counted.
const NAMED_LINES: usize = 5;
/// How far from its neighbours a timestamp must be to be taken as a glitch when no analysis
/// window says (the library's readers): the command's default window.
pub const DEFAULT_CLOCK_THRESHOLD: Duration = Duration::from_secs(180);
/// Read-ahead of file and stdin readers.
const READ_AHEAD: usize = 256 * 1024;

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
    fn ts_ns(&self) -> u64 {
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

/// One open input, read an item at a time.
enum Source {
    Jsonl(Jsonl),
    Capture(Box<CaptureSource>),
}

impl Source {
    fn next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<(Item, Pos)> {
        match self {
            Source::Jsonl(jsonl) => jsonl.next(names, ifaces),
            Source::Capture(capture) => capture.next(names, ifaces),
        }
    }

    fn name(&self) -> &str {
        match self {
            Source::Jsonl(jsonl) => &jsonl.name,
            Source::Capture(capture) => capture.name(),
        }
    }

    /// Bytes read so far.
    fn position(&self) -> u64 {
        match self {
            Source::Jsonl(jsonl) => jsonl.read,
            Source::Capture(capture) => capture.position(),
        }
    }

    fn finish(self, ifaces: &mut NodeIfaces) -> Vec<Problem> {
        match self {
            Source::Jsonl(jsonl) => jsonl.finish(),
            Source::Capture(capture) => capture.finish(ifaces),
        }
    }
}

/// An input read through its clock.
struct Reader {
    source: Source,
    clock: Clock,
    ended: bool,
}

impl Reader {
    fn new(source: Source, clock_threshold: Duration) -> Self {
        Reader {
            source,
            clock: Clock::new(clock_threshold),
            ended: false,
        }
    }

    fn next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<Item> {
        while !self.ended && self.clock.wants() {
            match self.source.next(names, ifaces) {
                Some((item, pos)) => self.clock.push(item, pos),
                None => self.ended = true,
            }
        }
        self.clock.pop()
    }

    fn finish(self, ifaces: &mut NodeIfaces) -> Vec<Problem> {
        let note = self.clock.problem(self.source.name());
        let mut problems = self.source.finish(ifaces);
        problems.extend(note);
        problems
    }
}

/// The magic numbers of pcap (both byte orders, micro- and nanosecond) and pcapng.
fn is_capture(head: &[u8]) -> bool {
    matches!(
        head,
        [0x0a, 0x0d, 0x0d, 0x0a]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1]
    )
}

/// Opens one input (`-` is stdin) as the node `node` names, if it is a capture: captures
/// announce themselves with a magic number, anything else is taken as JSONL.
fn open(path: &Path, node: &str) -> Result<Source, Problem> {
    let name = path.display().to_string();
    let raw: Box<dyn Read> = if name == "-" {
        Box::new(io::stdin())
    } else {
        let file = File::open(path).map_err(|source| Problem::Open {
            file: name.clone(),
            source,
        })?;
        Box::new(file)
    };
    let (head, input) = sniff(raw).map_err(|source| Problem::Read {
        file: name.clone(),
        line: 0,
        source,
    })?;
    if is_capture(&head) {
        let capture = CaptureSource::new(name, node.to_string(), input)?;
        return Ok(Source::Capture(Box::new(capture)));
    }
    let reader = BufReader::with_capacity(READ_AHEAD, input);
    Ok(Source::Jsonl(Jsonl::new(name, Box::new(reader))))
}

/// The first four bytes of `input` (fewer if it is shorter), and the whole input again.
fn sniff(mut input: Box<dyn Read>) -> io::Result<(Vec<u8>, Box<dyn Read>)> {
    let mut head = vec![0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    head.truncate(got);
    let again = io::Cursor::new(head.clone()).chain(input);
    Ok((head, Box::new(again)))
}

/// The node a capture file stands for: its name without extension (`node-a.pcapng` → `node-a`),
/// `stdin` for `-`.
pub fn node_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        return "stdin".into();
    }
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .trim_end_matches(".pcapng")
        .trim_end_matches(".pcap")
        .trim_end_matches(".cap");
    if stem.is_empty() {
        "capture".into()
    } else {
        stem.to_string()
    }
}

/// The folder a file is in, by name (`node-a` for `node-a/capture.pcap` and, run from inside
/// it, for `capture.pcap`).
fn folder_name(path: &Path) -> Option<String> {
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.to_path_buf(),
        None => std::fs::canonicalize(path).ok()?.parent()?.to_path_buf(),
    };
    let parent = std::fs::canonicalize(&parent).unwrap_or(parent);
    Some(parent.file_name()?.to_string_lossy().into_owned())
}

/// The node each input stands for if it is a capture, and the earlier input whose node it
/// would merge with if both are captures. Files of the same name in different folders
/// (`node-a/capture.pcap`, `node-b/capture.pcap`) are different nodes: each takes its folder's
/// name. Where that does not tell them apart either, the later capture is refused.
fn node_names(paths: &[PathBuf]) -> Vec<(String, Option<usize>)> {
    let same_file = |a: &Path, b: &Path| {
        a == b
            || matches!(
                (std::fs::canonicalize(a), std::fs::canonicalize(b)),
                (Ok(x), Ok(y)) if x == y
            )
    };
    let mut by_file_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, path) in paths.iter().enumerate() {
        if let Some(file_name) = path.file_name().filter(|_| path.as_os_str() != "-") {
            let key = file_name.to_string_lossy().into_owned();
            by_file_name.entry(key).or_default().push(i);
        }
    }
    let mut names: Vec<String> = paths.iter().map(|p| node_name(p)).collect();
    for same in by_file_name.values().filter(|same| same.len() > 1) {
        let first = same[0];
        if same.iter().all(|&i| same_file(&paths[i], &paths[first])) {
            continue;
        }
        for &i in same {
            if let Some(folder) = folder_name(&paths[i]) {
                names[i] = folder;
            }
        }
    }
    (0..paths.len())
        .map(|i| {
            let clash = (0..i).find(|&j| {
                names[j] == names[i]
                    && paths[i].file_name() == paths[j].file_name()
                    && !same_file(&paths[i], &paths[j])
            });
            (names[i].clone(), clash)
        })
        .collect()
}

/// Reads one input into `analyzer`, in its own order; returns what went wrong.
pub fn read(path: &Path, analyzer: &mut Analyzer) -> Vec<Problem> {
    let source = match open(path, &node_name(path)) {
        Ok(source) => source,
        Err(problem) => return vec![problem],
    };
    let mut reader = Reader::new(source, DEFAULT_CLOCK_THRESHOLD);
    loop {
        let (names, ifaces) = analyzer.reading();
        let Some(item) = reader.next(names, ifaces) else {
            break;
        };
        analyzer.push_item(item);
    }
    reader.finish(analyzer.reading().1)
}

/// All inputs at once, merged by time: each file is in its own node's time order, and a
/// connection's sightings on several nodes must meet while its group is open.
pub struct Inputs {
    open: Vec<Open>,
    /// Bytes in all inputs, when all are files.
    size: Option<u64>,
    /// Inputs that could not be opened, with their problem.
    failed: Vec<(usize, Problem)>,
}

struct Open {
    at: usize,
    reader: Reader,
    head: Option<Item>,
    late: u64,
}

impl Inputs {
    /// Opens every input; a timestamp further than `window` from its neighbours in its own
    /// input is taken as a glitch. Probe streams are read first, so that what their probes
    /// announce names the interfaces of capture files of the same nodes.
    pub fn open(
        paths: &[PathBuf],
        window: Duration,
        names: &mut Names,
        ifaces: &mut NodeIfaces,
    ) -> Inputs {
        let size = paths
            .iter()
            .map(|path| {
                std::fs::metadata(path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
            })
            .sum();
        let mut inputs = Inputs {
            size,
            open: Vec::with_capacity(paths.len()),
            failed: Vec::new(),
        };
        let mut captures = vec![false; paths.len()];
        for (at, (path, (node, clash))) in paths.iter().zip(node_names(paths)).enumerate() {
            let source = match open(path, &node) {
                Ok(source) => source,
                Err(problem) => {
                    inputs.failed.push((at, problem));
                    continue;
                }
            };
            captures[at] = matches!(source, Source::Capture(_));
            match clash.filter(|&j| captures[at] && captures[j]) {
                Some(j) => inputs.failed.push((
                    at,
                    Problem::SameNode {
                        file: path.display().to_string(),
                        other: paths[j].display().to_string(),
                        node,
                    },
                )),
                None => inputs.open.push(Open {
                    at,
                    reader: Reader::new(source, window),
                    head: None,
                    late: 0,
                }),
            }
        }
        let is_capture = |o: &Open| matches!(o.reader.source, Source::Capture(_));
        let mut order: Vec<usize> = (0..inputs.open.len()).collect();
        order.sort_by_key(|&i| is_capture(&inputs.open[i]));
        for i in order {
            let slot = &mut inputs.open[i];
            slot.head = slot.reader.next(names, ifaces);
        }
        inputs
    }

    /// The earliest next item of all inputs, with the index of the input it came from.
    pub fn next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<(usize, Item)> {
        let (i, _) = self
            .open
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.head.as_ref().map(|item| (i, item.ts_ns())))
            .min_by_key(|&(i, ts)| (ts, i))?;
        let slot = &mut self.open[i];
        let next = slot.reader.next(names, ifaces);
        let item = std::mem::replace(&mut slot.head, next)?;
        Some((i, item))
    }

    /// Bytes read so far, and in all, when every input is a file.
    pub fn progress(&self) -> (u64, Option<u64>) {
        let read = self.open.iter().map(|o| o.reader.source.position()).sum();
        (read, self.size)
    }

    /// The item just taken from input `i` came later than its connection's window allowed.
    pub fn late(&mut self, i: usize) {
        if let Some(slot) = self.open.get_mut(i) {
            slot.late += 1;
        }
    }

    /// Every problem met, in the order the inputs were given.
    pub fn finish(self, window: Duration, ifaces: &mut NodeIfaces) -> Vec<Problem> {
        let mut by_input: Vec<(usize, Vec<Problem>)> = self
            .failed
            .into_iter()
            .map(|(at, problem)| (at, vec![problem]))
            .collect();
        for slot in self.open {
            let name = slot.reader.source.name().to_string();
            let mut problems = slot.reader.finish(ifaces);
            if slot.late > 0 {
                problems.push(Problem::Order {
                    file: name,
                    late: slot.late,
                    window,
                });
            }
            by_input.push((slot.at, problems));
        }
        by_input.sort_by_key(|(at, _)| *at);
        by_input.into_iter().flat_map(|(_, p)| p).collect()
    }
}

/// Probe JSONL, a line at a time. A line that cannot be read is skipped and counted; a file
/// none of whose first [`PROBE_LINES`] lines is an event is not JSONL at all.
struct Jsonl {
    name: String,
    reader: Box<dyn BufRead>,
    /// Bytes read so far.
    read: u64,
    buf: Vec<u8>,
    line: u64,
    /// Some line was a probe event (or one of a newer schema): this is probe JSONL.
    recognized: bool,
    skipped: Skipped,
    done: bool,
    problems: Vec<Problem>,
}

/// Lines skipped: how many, the first few, and why the first was.
#[derive(Debug, Default)]
struct Skipped {
    count: u64,
    lines: Vec<u64>,
    first: Option<String>,
}

impl Jsonl {
    fn new(name: String, reader: Box<dyn BufRead>) -> Self {
        Jsonl {
            name,
            reader,
            read: 0,
            buf: Vec::new(),
            line: 0,
            recognized: false,
            skipped: Skipped::default(),
            done: false,
            problems: Vec::new(),
        }
    }

    fn skip(&mut self, line: u64, message: impl FnOnce() -> String) {
        let s = &mut self.skipped;
        s.count += 1;
        if s.lines.len() < NAMED_LINES {
            s.lines.push(line);
        }
        if s.first.is_none() {
            s.first = Some(message());
        }
    }

    /// Not JSONL at all: one problem says so instead of one per "line".
    fn not_jsonl(&mut self) {
        self.problems = vec![Problem::Format {
            file: self.name.clone(),
            message: "neither probe JSONL nor a pcap/pcapng capture".into(),
        }];
        self.skipped = Skipped::default();
        self.done = true;
    }

    fn next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<(Item, Pos)> {
        while !self.done {
            if !self.recognized && self.skipped.count >= PROBE_LINES {
                self.not_jsonl();
                break;
            }
            self.line += 1;
            let line = self.line;
            let too_long = match read_line(&mut self.reader, &mut self.buf, &mut self.read) {
                Ok(Some(too_long)) => too_long,
                Ok(None) => break,
                Err(source) => {
                    self.problems.push(Problem::Read {
                        file: self.name.clone(),
                        line: line - 1,
                        source,
                    });
                    break;
                }
            };
            if too_long {
                self.skip(line, || format!("line longer than {MAX_LINE} bytes"));
                continue;
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                self.skip(line, || "not UTF-8 text".into());
                continue;
            };
            // A byte order mark, as some Windows editors write, before the first line.
            let text = if line == 1 {
                text.trim_start_matches('\u{feff}')
            } else {
                text
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let event = match decode_line(text) {
                Ok(event) => event,
                Err(source @ DecodeError::NewerSchema { .. }) => {
                    self.recognized = true;
                    self.problems.push(Problem::Newer {
                        file: self.name.clone(),
                        line,
                        source,
                    });
                    break;
                }
                Err(err @ DecodeError::Json(_)) => {
                    self.skip(line, || err.to_string());
                    continue;
                }
            };
            self.recognized = true;
            let pos = Pos::Line(line);
            return Some(match event {
                Event::Syn(syn) => (Item::Sighting(Sighting::from_syn(&syn, names)), pos),
                event => {
                    match &event {
                        Event::Hello(hello) => ifaces.announce(&hello.node, &hello.interfaces),
                        Event::Iface(change) => {
                            ifaces.announce_one(&change.node, &change.interface)
                        }
                        _ => {}
                    }
                    (Item::Event(event), pos)
                }
            });
        }
        if !self.recognized && self.skipped.count > 0 {
            self.not_jsonl();
        }
        self.done = true;
        None
    }

    /// The problems met, skipped lines summed up.
    fn finish(mut self) -> Vec<Problem> {
        let s = std::mem::take(&mut self.skipped);
        let message = s.first.unwrap_or_default();
        match (s.count, s.lines.first()) {
            (0, _) | (_, None) => {}
            (1, Some(&line)) => self.problems.insert(
                0,
                Problem::Line {
                    file: self.name.clone(),
                    line,
                    message,
                },
            ),
            (count, Some(_)) => self.problems.insert(
                0,
                Problem::Lines {
                    file: self.name.clone(),
                    count,
                    lines: s.lines,
                    message,
                },
            ),
        }
        self.problems
    }
}

/// Reads one line without its newline into `buf`, refusing to hold more than [`MAX_LINE`]
/// bytes: `Some(true)` when the line was longer (its rest is skipped), `None` at the end.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    consumed: &mut u64,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > MAX_LINE {
            too_long = true;
        } else {
            buf.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        *consumed += used as u64;
        if done.is_some() {
            return Ok(Some(too_long));
        }
    }
}
