//! `realip-probe`: capture TCP SYNs on a node's interfaces, or answer as a test backend.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "realip-probe", version, about = "Node probe of kubectl realip")]
enum Cli {
    /// Capture TCP SYNs on this node's interfaces and write JSON lines to stdout.
    Capture,
    /// Answer TCP and HTTP/1.1 with JSON naming the peer address and forwarding headers.
    Echo,
}

fn main() {
    match Cli::parse() {
        Cli::Capture | Cli::Echo => {
            eprintln!("realip-probe: not built yet");
            std::process::exit(2);
        }
    }
}
