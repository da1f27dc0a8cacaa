//! Reading analyze's inputs: probe JSONL (file or stdin) and capture files. Streaming, line by
//! line or frame by frame; every problem names the file and the line or byte offset.

use super::Analyzer;
use realip_probe::wire::{decode_line, DecodeError};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    /// pcap or pcapng.
    Capture,
}

/// Reads one input (`-` is JSONL on stdin) into `analyzer`; returns what went wrong.
pub fn read(path: &Path, analyzer: &mut Analyzer) -> Vec<Problem> {
    let name = path.display().to_string();
    if name == "-" {
        return read_jsonl(&name, BufReader::new(io::stdin().lock()), analyzer);
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(source) => return vec![Problem::Open { file: name, source }],
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let format = match sniff(&mut reader) {
        Ok(format) => format,
        Err(source) => {
            return vec![Problem::Read {
                file: name,
                line: 0,
                source,
            }]
        }
    };
    match format {
        Format::Jsonl => read_jsonl(&name, reader, analyzer),
        Format::Capture => super::capture::read(path, &name, reader, analyzer),
    }
}

/// Capture files announce themselves with a magic number; anything else is taken as JSONL.
fn sniff(reader: &mut impl BufRead) -> io::Result<Format> {
    let head = reader.fill_buf()?;
    let magic = head.get(..4).map(|m| [m[0], m[1], m[2], m[3]]);
    Ok(match magic {
        Some([0x0a, 0x0d, 0x0d, 0x0a])
        | Some([0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0xd4, 0xc3, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0x3c, 0x4d])
        | Some([0x4d, 0x3c, 0xb2, 0xa1]) => Format::Capture,
        _ => Format::Jsonl,
    })
}

fn read_jsonl(name: &str, mut reader: impl BufRead, analyzer: &mut Analyzer) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut skipped_binary = false;
    loop {
        line += 1;
        let too_long = match read_line(&mut reader, &mut buf) {
            Ok(Some(too_long)) => too_long,
            Ok(None) => break,
            Err(source) => {
                problems.push(Problem::Read {
                    file: name.to_string(),
                    line: line - 1,
                    source,
                });
                break;
            }
        };
        let skip = |message: String| Problem::Line {
            file: name.to_string(),
            line,
            message,
        };
        if too_long {
            problems.push(skip(format!("line longer than {MAX_LINE} bytes")));
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            problems.push(skip("not UTF-8 text".into()));
            if line == 1 {
                skipped_binary = true;
            }
            if skipped_binary && problems.len() >= 3 {
                // A binary file of no known format: say so once instead of per "line".
                return vec![Problem::Format {
                    file: name.to_string(),
                    message: "neither probe JSONL nor a pcap/pcapng capture".into(),
                }];
            }
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match decode_line(text) {
            Ok(event) => analyzer.push(event),
            Err(source @ DecodeError::NewerSchema { .. }) => {
                problems.push(Problem::Newer {
                    file: name.to_string(),
                    line,
                    source,
                });
                break;
            }
            Err(err @ DecodeError::Json(_)) => {
                if line == 1 && !text.starts_with('{') {
                    return vec![Problem::Format {
                        file: name.to_string(),
                        message: "neither probe JSONL nor a pcap/pcapng capture".into(),
                    }];
                }
                problems.push(skip(err.to_string()));
            }
        }
    }
    problems
}

/// Reads one line without its newline into `buf`, refusing to hold more than [`MAX_LINE`]
/// bytes: `Some(true)` when the line was longer (its rest is skipped), `None` at the end.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
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
        if done.is_some() {
            return Ok(Some(too_long));
        }
    }
}
