//! realip-probe: the node side of kubectl realip.
//!
//! The library always builds without sockets: the wire format ([`wire`]), the frame parser
//! ([`parse`]). The capture and echo code behind the `capture` feature is what the node binary
//! runs.

pub mod bpf;
#[cfg(feature = "capture")]
pub mod echo;
pub mod parse;
pub mod wire;
