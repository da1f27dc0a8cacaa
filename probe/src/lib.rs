//! realip-probe: the node side of kubectl realip.
//!
//! The library always builds without sockets: the wire format ([`wire`]), the frame parser
//! ([`parse`]), forwarding facts of first data segments ([`l7`]), a capture file reader
//! ([`pcapfile`]), what interface names suggest ([`ifname`]), the in-kernel filter program
//! ([`bpf`]), the readers and renderers of the node's netfilter evidence ([`evidence`]). The
//! capture and echo code behind the `capture` feature is what the node binary runs.

pub mod bpf;
#[cfg(feature = "capture")]
pub mod capture;
#[cfg(feature = "capture")]
pub mod echo;
pub mod evidence;
pub mod ifname;
pub mod l7;
pub mod parse;
pub mod pcapfile;
pub mod wire;
