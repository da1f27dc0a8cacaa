//! Reading analyze's inputs: probe JSONL and capture files, from files or stdin, each told by
//! its first bytes. Streaming, line by line or frame by frame, each input through a [`Clock`]
//! that keeps a glitched timestamp from moving the analysis window; every problem names the file
//! and the line, frame or byte offset.

use super::capture::CaptureSource;
use super::clock::Clock;
use super::files::Files;
use super::jsonl::Jsonl;
use super::node_ifaces::NodeIfaces;
use super::sighting::Names;
use super::source::Source;
pub use super::source::{Item, Problem};
use super::Analyzer;
use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Read-ahead of file and stdin readers.
const READ_AHEAD: usize = 256 * 1024;

/// An input read through its clock.
struct Reader {
    source: Box<dyn Source>,
    clock: Clock,
    ended: bool,
}

impl Reader {
    fn new(source: Box<dyn Source>, clock_threshold: Duration) -> Self {
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

/// Opens one input (`-` is stdin) as the node `node` names, if it is a capture: captures
/// announce themselves with a magic number, anything else is taken as JSONL.
fn open(path: &Path, node: &str, files: &dyn Files) -> Result<Box<dyn Source>, Problem> {
    let name = path.display().to_string();
    let raw = files.open(path).map_err(|source| Problem::Open {
        file: name.clone(),
        source,
    })?;
    let (head, input) = sniff(raw).map_err(|source| Problem::Read {
        file: name.clone(),
        line: 0,
        source,
    })?;
    if realip_probe::pcapfile::is_capture(&head) {
        let capture = CaptureSource::new(name, node.to_string(), input)?;
        return Ok(Box::new(capture));
    }
    let reader = BufReader::with_capacity(READ_AHEAD, input);
    Ok(Box::new(Jsonl::new(name, Box::new(reader))))
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
fn folder_name(path: &Path, files: &dyn Files) -> Option<String> {
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.to_path_buf(),
        None => files.canonical(path)?.parent()?.to_path_buf(),
    };
    let parent = files.canonical(&parent).unwrap_or(parent);
    Some(parent.file_name()?.to_string_lossy().into_owned())
}

/// The node each input stands for if it is a capture, and the earlier input whose node it
/// would merge with if both are captures. Files of the same name in different folders
/// (`node-a/capture.pcap`, `node-b/capture.pcap`) are different nodes: each takes its folder's
/// name. Where that does not tell them apart either, the later capture is refused.
fn node_names(paths: &[PathBuf], files: &dyn Files) -> Vec<(String, Option<usize>)> {
    let same_file = |a: &Path, b: &Path| {
        a == b
            || matches!(
                (files.canonical(a), files.canonical(b)),
                (Some(x), Some(y)) if x == y
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
            if let Some(folder) = folder_name(&paths[i], files) {
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
pub fn read(path: &Path, files: &dyn Files, analyzer: &mut Analyzer) -> Vec<Problem> {
    let source = match open(path, &node_name(path), files) {
        Ok(source) => source,
        Err(problem) => return vec![problem],
    };
    // No window is given here: a timestamp is a glitch past the default window.
    let mut reader = Reader::new(source, super::WINDOW);
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
        files: &dyn Files,
        names: &mut Names,
        ifaces: &mut NodeIfaces,
    ) -> Inputs {
        let size = paths.iter().map(|path| files.size(path)).sum();
        let mut inputs = Inputs {
            size,
            open: Vec::with_capacity(paths.len()),
            failed: Vec::new(),
        };
        let mut captures = vec![false; paths.len()];
        for (at, (path, (node, clash))) in paths.iter().zip(node_names(paths, files)).enumerate() {
            let source = match open(path, &node, files) {
                Ok(source) => source,
                Err(problem) => {
                    inputs.failed.push((at, problem));
                    continue;
                }
            };
            captures[at] = source.is_capture();
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
        let mut order: Vec<usize> = (0..inputs.open.len()).collect();
        order.sort_by_key(|&i| inputs.open[i].reader.source.is_capture());
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
