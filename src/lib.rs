//! kubectl realip: find where SNAT rewrote the client's address on the way to a pod.
//!
//! The decisions are pure (correlation in [`analyze`], rules in [`explain`], rendering);
//! what touches the world is thin: the cluster adapter in [`cluster`], the netns driver in [`lab`].
#![forbid(unsafe_code)]

pub mod analyze;
pub mod cli;
pub mod cluster;
pub mod complete;
pub mod embedded;
pub mod error;
pub mod explain;
pub mod lab;
pub mod output;
pub mod probe_bin;
pub mod trace;

use cli::{Cli, Command};
use error::{Failure, Kind, Result};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Analyze(args) => analyze::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::LabNet(args) => lab::net::run(&args),
        Command::Explain(args) => runtime()?.block_on(explain::run(&args)),
        Command::Trace(args) => runtime()?.block_on(trace::run(&args)),
        Command::Cleanup(args) => runtime()?.block_on(trace::cleanup(&args)),
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
