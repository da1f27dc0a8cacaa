//! `realip-probe`: capture TCP SYNs on a node's interfaces, or answer as a test backend.

use clap::Parser;
use realip_probe::bpf::FilterSpec;
use realip_probe::capture::{self, CaptureError};
use realip_probe::echo;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(name = "realip-probe", version, about = "Node probe of kubectl realip")]
enum Cli {
    /// Capture TCP SYNs on this node's interfaces and write JSON lines to stdout.
    Capture(CaptureArgs),
    /// Answer TCP and HTTP/1.1 with JSON naming the peer address and forwarding headers.
    Echo(EchoArgs),
}

#[derive(clap::Args, Debug)]
struct CaptureArgs {
    /// Capture only this interface (repeatable); default: discover every interface.
    #[arg(long = "iface", value_name = "NAME")]
    iface: Vec<String>,
    /// Node name written in every event; default: the hostname.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Stop after this many seconds; default: run until SIGINT or SIGTERM.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Stop at this time, in seconds since the epoch, however often the probe is restarted:
    /// a restart captures only what is left. Once it has passed (a capture that reached it, or
    /// a restart after it) the probe captures nothing and waits for SIGTERM: a DaemonSet would
    /// restart a probe that exits, again and again.
    #[arg(long, value_name = "UNIX_SECS")]
    until: Option<u64>,
    /// Watch only this TCP port, either end (repeatable; compiled into the kernel filter).
    #[arg(long = "port", value_name = "PORT")]
    port: Vec<u16>,
    /// Watch only this address, either end (repeatable; compiled into the kernel filter).
    #[arg(long = "host", value_name = "ADDR")]
    host: Vec<IpAddr>,
    /// Also read the first data segment of flows to the watched ports and report only its
    /// forwarding facts (X-Forwarded-For, X-Real-IP, Forwarded, PROXY protocol source).
    #[arg(long)]
    l7: bool,
    /// Also read the node's NAT evidence, read-only: the NAT rules with their counters at the
    /// start and the end, the conntrack entry of each connection whose SYN was seen, and the
    /// route of each source-NATed one. Needs CAP_NET_ADMIN besides CAP_NET_RAW; without it the
    /// capture goes on and says the evidence was not available.
    #[arg(long)]
    evidence: bool,
    /// Seconds between stats events.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    stats_interval: u64,
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
        Cli::Capture(args) => run_capture(args),
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn run_capture(args: CaptureArgs) -> Result<(), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|err| Failure {
            message: format!("cannot handle signal {signal}: {err}"),
            hint: None,
            code: 4,
        })?;
    }
    let left = args
        .until
        .map(|until| Duration::from_secs(until.saturating_sub(unix_now())));
    if left == Some(Duration::ZERO) {
        eprintln!("realip-probe: the deadline (--until) has passed: not capturing");
        idle(&stop);
        return Ok(());
    }
    let mut opts = capture::Options::new(args.node.unwrap_or_else(hostname));
    opts.ifaces = args.iface;
    opts.duration = match (args.duration.map(Duration::from_secs), left) {
        (Some(d), Some(l)) => Some(d.min(l)),
        (d, l) => d.or(l),
    };
    opts.stats_every = Duration::from_secs(args.stats_interval);
    opts.spec = FilterSpec {
        ports: args.port,
        hosts: args.host,
        l7: args.l7,
    };
    opts.evidence = args.evidence;
    // Line-buffered stdout: the capture hands it whole batches of lines, written without a copy.
    match capture::run(&opts, &stop, io::stdout().lock()) {
        Ok(_) => {
            // Ended by the deadline (not by a signal or a shorter --duration): stay, quietly.
            if args.until.is_some_and(|until| unix_now() >= until) {
                idle(&stop);
            }
            Ok(())
        }
        // The reader went away (`| head`): nothing left to tell anyone.
        Err(CaptureError::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(capture_failure(err)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits for SIGINT or SIGTERM, capturing nothing.
fn idle(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn capture_failure(err: CaptureError) -> Failure {
    let (hint, code) = match &err {
        CaptureError::NoCapability(_) => (
            "grant CAP_NET_RAW: run as root, or add NET_RAW to the container's securityContext.capabilities.add (no other capability is needed)",
            4,
        ),
        CaptureError::UnknownIface { .. } => ("pick names from `ip link`, or omit --iface to capture on every interface", 2),
        CaptureError::Unreadable { .. } => ("capture on the Ethernet, raw-IP or loopback interfaces instead", 2),
        CaptureError::Filter(_) => ("narrow with fewer --port/--host values", 2),
        CaptureError::Discover(_) => (
            "check that the probe runs in the node's network namespace (hostNetwork: true)",
            4,
        ),
        CaptureError::Open { .. } => (
            "the interface may be going away, or the node short of memory for a receive ring; retry, or name interfaces with --iface",
            4,
        ),
        CaptureError::Poll(_) => ("retry; if it persists, report it with the kernel version", 4),
        CaptureError::Output(_) => ("check where stdout goes", 4),
    };
    Failure {
        message: err.to_string(),
        hint: Some(hint.into()),
        code,
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
