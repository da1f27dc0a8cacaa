//! `realip-probe`: capture TCP SYNs on a node's interfaces, or answer as a test backend.

use clap::Parser;
use realip_probe::echo;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "realip-probe", version, about = "Node probe of kubectl realip")]
enum Cli {
    /// Capture TCP SYNs on this node's interfaces and write JSON lines to stdout.
    Capture,
    /// Answer TCP and HTTP/1.1 with JSON naming the peer address and forwarding headers.
    Echo(EchoArgs),
}

#[derive(clap::Args, Debug)]
struct EchoArgs {
    /// Address to listen on (repeatable, IPv4 or IPv6, e.g. `[::]:8080`).
    #[arg(long = "listen", value_name = "ADDR", default_value = "0.0.0.0:8080")]
    listen: Vec<SocketAddr>,
    /// Connections served at once; more are closed on accept.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
}

/// A failure the user can act on: the message, what to do, the exit code.
struct Failure {
    message: String,
    hint: Option<String>,
    code: u8,
}

fn main() -> ExitCode {
    let result = match Cli::parse() {
        Cli::Capture => Err(Failure {
            message: "capture is not available in this build".into(),
            hint: None,
            code: 4,
        }),
        Cli::Echo(args) => run_echo(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("realip-probe: error: {}", failure.message);
            if let Some(hint) = failure.hint {
                eprintln!("  hint: {hint}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn run_echo(args: &EchoArgs) -> Result<(), Failure> {
    let limits = echo::Limits {
        max_connections: args.max_connections.max(1),
        ..echo::Limits::default()
    };
    echo::serve(&args.listen, limits).map_err(|err| Failure {
        hint: Some(match &err {
            echo::EchoError::Bind { .. } => {
                "choose a free address with --listen ADDR (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into()
            }
            echo::EchoError::Thread(_) => "raise the process or thread limit (ulimit -u)".into(),
        }),
        message: err.to_string(),
        code: 4,
    })
}
