//! kubectl realip: find where SNAT rewrote the client's address on the way to a pod.
//!
//! The decisions are pure and live in the `realip-core` crate: correlation and its reports
//! ([`analyze`]), the explain rules ([`explain`]), the layout of text ([`output`]). What touches
//! the world is here: the commands ([`cmd`]), the cluster adapter ([`cluster`]), trace's
//! orchestration ([`trace`]), the netns lab ([`lab`]).
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod complete;
pub mod embedded;
pub mod error;
pub mod lab;
pub mod output;
pub mod probe_bin;
mod progress;
pub mod trace;

pub use realip_core::{analyze, explain};

use cli::{Cli, Command};
use error::{Failure, Kind, Result};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Analyze(args) => cmd::analyze::run(&args),
        Command::Lab(args) => cmd::lab::run(&args),
        Command::LabNet(args) => cmd::lab::run_net(&args),
        Command::Explain(args) => runtime()?.block_on(cmd::explain::run(&args)),
        Command::Trace(args) => runtime()?.block_on(cmd::trace::run(&args)),
        Command::Cleanup(args) => runtime()?.block_on(cmd::trace::cleanup(&args)),
        Command::Completion { shell } => {
            complete::script(shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Version => output::emit(&embedded::version_text())
            .map_err(|err| Failure::new(Kind::Usage, format!("writing to stdout: {err}"))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            Failure::new(
                Kind::Probe,
                format!("cannot start the async runtime: {err}"),
            )
        })
}
