//! Progress of a long analysis on stderr: bytes read, SYNs and connections so far. Only on a
//! terminal, only when the report itself is not scrolling by on the same one, and only once
//! the analysis has taken long enough to be worth it (no flash on a quick run).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long an analysis runs before it shows progress.
const SHOW_AFTER: Duration = Duration::from_millis(300);

pub struct Reading {
    bar: Option<ProgressBar>,
    started: Instant,
    shown: Cell<bool>,
}

impl Reading {
    /// `streams_to_screen`: the report goes to the same terminal as it is made (text on a tty);
    /// it shows the progress itself. `total`: bytes of all inputs, when known.
    pub fn new(streams_to_screen: bool, total: Option<u64>) -> Reading {
        let started = Instant::now();
        let shown = Cell::new(false);
        if streams_to_screen || !std::io::stderr().is_terminal() {
            return Reading {
                bar: None,
                started,
                shown,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
                .with_style(
                    ProgressStyle::with_template(
                        "{spinner} analyzing [{bar:30}] {bytes}/{total_bytes} · {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()).with_style(
                ProgressStyle::with_template("{spinner} analyzing {bytes} · {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        Reading {
            bar: Some(bar),
            started,
            shown,
        }
    }

    /// Where reading is: bytes read, SYN sightings taken, connections written.
    pub fn update(&self, read: u64, syns: u64, connections: usize) {
        if let Some(bar) = &self.bar {
            if !self.shown.get() && self.started.elapsed() >= SHOW_AFTER {
                self.shown.set(true);
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            bar.set_position(read);
            bar.set_message(format!("{syns} SYNs · {connections} connections"));
        }
    }

    /// Removes the bar: what stays on screen is the report and the warnings.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
