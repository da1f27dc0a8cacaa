//! Progress of a long analysis on stderr: bytes read, SYNs and connections so far. Only on a
//! terminal, only when the report itself is not scrolling by on the same one, and only once
//! the analysis has taken long enough to be worth it (no flash on a quick run).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use realip_core::analyze::Progress;
use std::cell::OnceCell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long an analysis runs before it shows progress.
const SHOW_AFTER: Duration = Duration::from_millis(300);

pub struct Reading {
    /// Whether progress may be shown at all.
    wanted: bool,
    started: Instant,
    /// Made when first shown, sized by the inputs' bytes when known.
    bar: OnceCell<ProgressBar>,
}

impl Reading {
    /// `streams_to_screen`: the report goes to the same terminal as it is made (text on a tty);
    /// it shows the progress itself.
    pub fn new(streams_to_screen: bool) -> Reading {
        Reading {
            wanted: !streams_to_screen && std::io::stderr().is_terminal(),
            started: Instant::now(),
            bar: OnceCell::new(),
        }
    }

    /// Where reading is: bytes read (of all), SYN sightings taken, connections written.
    pub fn update(&self, at: Progress) {
        if !self.wanted || self.started.elapsed() < SHOW_AFTER {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let bar = ProgressBar::with_draw_target(at.total, ProgressDrawTarget::stderr());
            bar.set_style(style(at.total.is_some()));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_position(at.read);
        bar.set_message(format!("{} SYNs · {} connections", at.syns, at.connections));
    }

    /// Removes the bar: what stays on screen is the report and the warnings.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// A bar over the bytes when their total is known, a spinner otherwise.
fn style(sized: bool) -> ProgressStyle {
    if sized {
        ProgressStyle::with_template(
            "{spinner} analyzing [{wide_bar}] {bytes}/{total_bytes} · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    } else {
        ProgressStyle::with_template("{spinner} analyzing {bytes} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }
}
