//! `kubectl realip analyze FILE...`: the core's streamed analysis of local files, its progress
//! on stderr and its exit code.
//!
//! Exit codes: 0 every input read and at least one connection found; 1 the report is partial
//! (some lines, frames or files skipped, input out of time order, or no connection found); 2 an
//! input could not be used at all (missing, unreadable, not a known format, a capture file that
//! would name the same node as another), or a bad flag. Notes on input used whole (a glitched
//! timestamp, a TSval cut by the snap length) change no exit code.

use crate::analyze::{self, render, Files};
use crate::cli::AnalyzeArgs;
use crate::error::{Failure, Kind, Result};
use crate::output::{self, OutputFormat};
use crate::progress;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The local file system, and stdin as `-`.
#[derive(Debug, Clone, Copy)]
pub struct LocalFiles;

impl Files for LocalFiles {
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read>> {
        if path.as_os_str() == "-" {
            return Ok(Box::new(io::stdin()));
        }
        Ok(Box::new(File::open(path)?))
    }

    fn size(&self, path: &Path) -> Option<u64> {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

pub fn run(args: &AnalyzeArgs) -> Result<()> {
    if args.window < Duration::from_secs(1) {
        return Err(Failure::new(
            Kind::Usage,
            format!("--window {:?} is too short", args.window),
        )
        .hint("the window must cover SYN retransmissions and clock skew between nodes: at least 1s, 3m by default"));
    }
    // Text carries styles, stripped unless stdout wants colour; JSON and Mermaid carry none.
    let out: Box<dyn Write> = match args.output {
        OutputFormat::Text => Box::new(output::stdout()),
        OutputFormat::Json | OutputFormat::Mermaid => Box::new(io::stdout()),
    };
    let mut sink = render::sink(args.output, out);
    // Text on a terminal shows itself as it comes; the problems are in its summary too.
    let on_screen = args.output == OutputFormat::Text
        && io::stdout().is_terminal()
        && io::stderr().is_terminal();
    let bar = progress::Reading::new(on_screen);
    let streamed =
        analyze::analyze_files(&args.files, args.window, &LocalFiles, sink.as_mut(), |at| {
            bar.update(at)
        });
    bar.finish();
    let problems = &streamed.problems;
    let mut worst: Option<Kind> = None;
    for problem in problems {
        if !on_screen {
            eprintln!("warning: {problem}");
        }
        if problem.is_note() {
            continue;
        }
        if problem.unusable() {
            worst = Some(Kind::Usage);
        } else {
            worst.get_or_insert(Kind::NoAnswer);
        }
    }
    match streamed.written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
        Err(err) => {
            return Err(Failure::new(
                Kind::Usage,
                format!("writing the report: {err}"),
            ))
        }
        Ok(()) => {}
    }
    match worst {
        Some(kind) => Err(Failure::new(
            kind,
            format!("{} input problem(s); the report covers only what could be read", problems.iter().filter(|p| !p.is_note()).count()),
        )
        .hint("fix or remove the named files and lines, then run analyze again")),
        None if streamed.connections == 0 => Err(Failure::new(
            Kind::NoAnswer,
            "no TCP SYN found in the input",
        )
        .hint("capture while connections are opened, e.g. `realip-probe capture` or `tcpdump -w`, with SYNs included in the filter")),
        None => Ok(()),
    }
}
