//! Progress on stderr: per node readiness, then live SYN counts. Silent unless stderr is a
//! terminal and the report is not JSON.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct Progress {
    multi: MultiProgress,
    status: ProgressBar,
    nodes: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let enabled = enabled && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        status.enable_steady_tick(Duration::from_millis(120));
        Progress {
            multi,
            status,
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The overall step.
    pub fn step(&self, text: impl Into<String>) {
        self.status.set_message(text.into());
    }

    /// One node's line.
    pub fn node(&self, node: &str, text: impl Into<String>) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        let bar = nodes.entry(node.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {prefix:20} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(node.to_string());
            bar
        });
        bar.set_message(text.into());
    }

    /// Prints a line above the bars (warnings that must stay visible).
    pub fn println(&self, text: &str) {
        if self.multi.is_hidden() {
            eprintln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    pub fn finish(&self) {
        if let Ok(nodes) = self.nodes.lock() {
            for bar in nodes.values() {
                bar.finish_and_clear();
            }
        }
        self.status.finish_and_clear();
    }
}

/// Per-node lines that redraw only when their text changes.
pub struct NodeLines<'a> {
    progress: &'a Progress,
    last: BTreeMap<String, String>,
}

impl NodeLines<'_> {
    pub fn set(&mut self, node: &str, text: &str) {
        if self.last.get(node).map(String::as_str) != Some(text) {
            self.last.insert(node.to_string(), text.to_string());
            self.progress.node(node, text.to_string());
        }
    }
}

impl Progress {
    pub fn node_lines(&self) -> NodeLines<'_> {
        NodeLines {
            progress: self,
            last: BTreeMap::new(),
        }
    }
}
