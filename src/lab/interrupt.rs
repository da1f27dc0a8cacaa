//! Ctrl-C and SIGTERM become a flag the lab checks between steps, so that it always unwinds
//! through its cleanup (kill what it started, delete its namespaces) instead of dying mid-way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Whether the first notice of the signal was printed.
static SAID: AtomicBool = AtomicBool::new(false);

fn flag() -> &'static Arc<AtomicBool> {
    INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Starts listening for SIGINT and SIGTERM (once per process): the handler only sets the flag.
pub fn install() {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if signal_hook::flag::register(signal, Arc::clone(flag())).is_err() {
            tracing::warn!("cannot watch for Ctrl-C or SIGTERM: an interrupted lab may leave namespaces behind; `kubectl realip lab --down` removes them");
        }
    }
}

/// Whether a signal came; the first time it is seen, says that the lab is cleaning up.
pub fn interrupted() -> bool {
    let interrupted = flag().load(Ordering::SeqCst);
    if interrupted && !SAID.swap(true, Ordering::SeqCst) {
        eprintln!("interrupted: cleaning up the lab…");
    }
    interrupted
}
