//! Reading analyze's inputs: probe JSONL (file or stdin) and capture files. Streaming, line by
//! line or frame by frame; every problem names the file and the line or byte offset.

use super::sighting::{Names, Sighting};
use super::Analyzer;
use realip_probe::wire::{decode_line, DecodeError, Event};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest JSONL line accepted; a probe line is a few hundred bytes.
const MAX_LINE: usize = 1 << 20;

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
}

impl Problem {
    /// Whether the file could not be used at all (exit code 2) rather than read in part.
    pub fn unusable(&self) -> bool {
        matches!(
            self,
            Problem::Open { .. } | Problem::Format { .. } | Problem::Read { line: 0, .. }
        )
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
        match self {
            Item::Sighting(s) => s.ts_ns,
            Item::Event(Event::L7(l7)) => l7.ts_ns,
            Item::Event(_) => 0,
        }
    }
}

/// One open input, read an item at a time.
enum Source {
    Jsonl(Jsonl),
    Capture(Box<super::capture::CaptureSource>),
}

impl Source {
    fn next(&mut self, names: &mut Names) -> Option<Item> {
        match self {
            Source::Jsonl(jsonl) => jsonl.next(names),
            Source::Capture(capture) => capture.next(names),
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

    fn finish(self) -> Vec<Problem> {
        match self {
            Source::Jsonl(jsonl) => jsonl.problems,
            Source::Capture(capture) => capture.finish(),
        }
    }
}

/// Opens one input (`-` is JSONL on stdin); capture files announce themselves with a magic
/// number, anything else is taken as JSONL.
fn open(path: &Path) -> Result<Source, Problem> {
    let name = path.display().to_string();
    if name == "-" {
        let stdin: Box<dyn BufRead> = Box::new(BufReader::new(io::stdin()));
        return Ok(Source::Jsonl(Jsonl::new(name, stdin)));
    }
    let file = File::open(path).map_err(|source| Problem::Open {
        file: name.clone(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(|source| Problem::Read {
        file: name.clone(),
        line: 0,
        source,
    })?;
    let magic = head.get(..4).map(|m| [m[0], m[1], m[2], m[3]]);
    match magic {
        Some([0x0a, 0x0d, 0x0d, 0x0a])
        | Some([0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0xd4, 0xc3, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0x3c, 0x4d])
        | Some([0x4d, 0x3c, 0xb2, 0xa1]) => super::capture::CaptureSource::new(path, name, reader)
            .map(|capture| Source::Capture(Box::new(capture))),
        _ => Ok(Source::Jsonl(Jsonl::new(name, Box::new(reader)))),
    }
}

/// Reads one input into `analyzer`, in its own order; returns what went wrong.
pub fn read(path: &Path, analyzer: &mut Analyzer) -> Vec<Problem> {
    let mut source = match open(path) {
        Ok(source) => source,
        Err(problem) => return vec![problem],
    };
    while let Some(item) = source.next(analyzer.names_mut()) {
        analyzer.push_item(item);
    }
    source.finish()
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
    source: Source,
    head: Option<Item>,
    late: u64,
}

impl Inputs {
    pub fn open(paths: &[PathBuf], names: &mut Names) -> Inputs {
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
        for (at, path) in paths.iter().enumerate() {
            match open(path) {
                Ok(mut source) => {
                    let head = source.next(names);
                    inputs.open.push(Open {
                        at,
                        source,
                        head,
                        late: 0,
                    });
                }
                Err(problem) => inputs.failed.push((at, problem)),
            }
        }
        inputs
    }

    /// The earliest next item of all inputs, with the index of the input it came from.
    pub fn next(&mut self, names: &mut Names) -> Option<(usize, Item)> {
        let (i, _) = self
            .open
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.head.as_ref().map(|item| (i, item.ts_ns())))
            .min_by_key(|&(i, ts)| (ts, i))?;
        let slot = &mut self.open[i];
        let next = slot.source.next(names);
        let item = std::mem::replace(&mut slot.head, next)?;
        Some((i, item))
    }

    /// Bytes read so far, and in all, when every input is a file.
    pub fn progress(&self) -> (u64, Option<u64>) {
        let read = self.open.iter().map(|o| o.source.position()).sum();
        (read, self.size)
    }

    /// The item just taken from input `i` came later than its connection's window allowed.
    pub fn late(&mut self, i: usize) {
        if let Some(slot) = self.open.get_mut(i) {
            slot.late += 1;
        }
    }

    /// Every problem met, in the order the inputs were given.
    pub fn finish(self, window: Duration) -> Vec<Problem> {
        let mut by_input: Vec<(usize, Vec<Problem>)> = self
            .failed
            .into_iter()
            .map(|(at, problem)| (at, vec![problem]))
            .collect();
        for slot in self.open {
            let name = slot.source.name().to_string();
            let mut problems = slot.source.finish();
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

/// Probe JSONL, a line at a time.
struct Jsonl {
    name: String,
    reader: Box<dyn BufRead>,
    /// Bytes read so far.
    read: u64,
    buf: Vec<u8>,
    line: u64,
    skipped_binary: bool,
    /// An event came out: the file is JSONL, whatever else it holds.
    yielded: bool,
    done: bool,
    problems: Vec<Problem>,
}

impl Jsonl {
    fn new(name: String, reader: Box<dyn BufRead>) -> Self {
        Jsonl {
            name,
            reader,
            read: 0,
            buf: Vec::new(),
            line: 0,
            skipped_binary: false,
            yielded: false,
            done: false,
            problems: Vec::new(),
        }
    }

    /// Not JSONL at all: one problem says so instead of one per "line".
    fn not_jsonl(&mut self) -> Option<Item> {
        self.problems = vec![Problem::Format {
            file: self.name.clone(),
            message: "neither probe JSONL nor a pcap/pcapng capture".into(),
        }];
        self.done = true;
        None
    }

    fn next(&mut self, names: &mut Names) -> Option<Item> {
        while !self.done {
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
            let skip = |message: String| Problem::Line {
                file: self.name.clone(),
                line,
                message,
            };
            if too_long {
                self.problems
                    .push(skip(format!("line longer than {MAX_LINE} bytes")));
                continue;
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                self.problems.push(skip("not UTF-8 text".into()));
                if line == 1 {
                    self.skipped_binary = true;
                }
                if self.skipped_binary && self.problems.len() >= 3 {
                    return self.not_jsonl();
                }
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            match decode_line(text) {
                Ok(Event::Syn(syn)) => {
                    self.yielded = true;
                    return Some(Item::Sighting(Sighting::from_syn(&syn, names)));
                }
                Ok(event) => {
                    self.yielded = true;
                    return Some(Item::Event(event));
                }
                Err(source @ DecodeError::NewerSchema { .. }) => {
                    self.problems.push(Problem::Newer {
                        file: self.name.clone(),
                        line,
                        source,
                    });
                    break;
                }
                Err(err @ DecodeError::Json(_)) => {
                    if line == 1 && !text.starts_with('{') {
                        return self.not_jsonl();
                    }
                    let problem = skip(err.to_string());
                    self.problems.push(problem);
                }
            }
        }
        // A short binary file ends before three lines could tell: binary from its first byte
        // and not one event is not JSONL at all.
        if self.skipped_binary && !self.yielded && !self.done {
            return self.not_jsonl();
        }
        self.done = true;
        None
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
