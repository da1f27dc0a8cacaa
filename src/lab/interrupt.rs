//! Ctrl-C and SIGTERM become a flag the lab checks between steps, so that it always unwinds
//! through its cleanup (kill what it started, delete its namespaces) instead of dying mid-way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Starts listening for SIGINT and SIGTERM (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build();
        let Ok(runtime) = runtime else {
            tracing::warn!("cannot watch for Ctrl-C: an interrupted lab may leave namespaces behind; `kubectl realip lab --down` removes them");
            return;
        };
        // Register the handlers before returning, so a signal right after is already caught.
        let signals = runtime.block_on(async {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
            (term, int)
        });
        let (Ok(mut term), Ok(mut int)) = signals else {
            tracing::warn!("cannot watch for Ctrl-C or SIGTERM");
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("lab-signals".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                });
                INTERRUPTED.store(true, Ordering::SeqCst);
                eprintln!("interrupted: cleaning up the lab…");
            });
        if spawned.is_err() {
            tracing::warn!("cannot watch for Ctrl-C or SIGTERM");
        }
    });
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
