//! Probe JSONL as an input: one event a line, bad lines skipped and counted.

use super::node_ifaces::NodeIfaces;
use super::sighting::{Names, Sighting};
use super::source::{Item, Pos, Problem, Source};
use realip_probe::wire::{decode_line, DecodeError, Event};
use std::io::{self, BufRead};

/// Longest JSONL line accepted; a probe line is a few hundred bytes.
const MAX_LINE: usize = 1 << 20;
/// A file none of whose first this many lines is a probe event is not probe JSONL.
const PROBE_LINES: u64 = 16;
/// Skipped lines named one by one; the rest are counted.
const NAMED_LINES: usize = 5;

/// Probe JSONL, a line at a time. A line that cannot be read is skipped and counted; a file
/// none of whose first [`PROBE_LINES`] lines is an event is not JSONL at all.
pub struct Jsonl {
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
    pub fn new(name: String, reader: Box<dyn BufRead>) -> Self {
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
}

impl Source for Jsonl {
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

    fn name(&self) -> &str {
        &self.name
    }

    fn position(&self) -> u64 {
        self.read
    }

    fn is_capture(&self) -> bool {
        false
    }

    /// The problems met, skipped lines summed up.
    fn finish(mut self: Box<Self>, _ifaces: &mut NodeIfaces) -> Vec<Problem> {
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
