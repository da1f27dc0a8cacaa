//! `kubectl-realip`: parse, set up logging, run, map the error to an exit code.

use clap::{CommandFactory, Parser};
use kubectl_realip::cli::Cli;
use kubectl_realip::{complete, output};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let exe = args.next().unwrap_or_default();
    let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    // kubectl's plugin completion runs us as `kubectl_complete-realip WORDS...`; a shell script
    // may also call `kubectl-realip __complete WORDS...`.
    let invoked_as = Path::new(&exe).file_name().and_then(|n| n.to_str());
    if invoked_as == Some(complete::COMPLETE_EXE)
        || words.first().is_some_and(|w| w == "__complete")
    {
        let skip = usize::from(invoked_as != Some(complete::COMPLETE_EXE));
        let answer = complete::complete(&Cli::command(), &words[skip..], &complete::Live);
        return match output::emit(&answer) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match kubectl_realip::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.kind.exit_code())
        }
    }
}

/// Logs go to stderr, quiet by default (`warn`); `-v` or RUST_LOG open them up.
///
/// By default kube's HTTP layer stays silent: every failed request it would log becomes the
/// command's own error message, said once. Colour only when stderr is a terminal that wants it
/// (the same choice as for reports: NO_COLOR, CLICOLOR, TERM=dumb).
fn init_logging(verbose: u8) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(verbose)));
    let colour = anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

/// The log filter for `-v` repeated `verbose` times.
fn default_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,kube_client::client=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}
