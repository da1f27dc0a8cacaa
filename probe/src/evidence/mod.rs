//! Netfilter evidence for `realip-probe capture --evidence`: which rule rewrote a connection,
//! proved by its counters, its conntrack entry and the route that chose the address.
//!
//! Everything here is pure and always built: parsers of the kernel's replies (nf_tables and
//! conntrack netlink, route netlink, the iptables-legacy `getsockopt` blob), the renderers that
//! print a rule as `iptables-save` or `nft list ruleset` would, and the bounded snapshots that
//! become wire events. The sockets that fetch the bytes live in `capture::kernel` (behind the
//! `capture` feature); the parsers never panic on any input (property tests feed them arbitrary
//! bytes).

pub mod conntrack;
pub mod ipt;
pub mod legacy;
pub mod nft;
pub mod nft_ipt;
pub mod nft_text;
pub mod nl;
pub mod owner;
pub mod route;
pub mod ruleset;
pub mod snapshot;
pub mod xt;

use crate::wire::{Backend, NatTarget, Syntax};

/// Packet and byte counters of a rule or a chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// One table of NAT rules, whichever front-end holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub backend: Backend,
    /// `ip`, `ip6`, `inet`, …
    pub family: String,
    pub name: String,
    pub chains: Vec<Chain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    /// The policy's counters (iptables-legacy built-in chains, nftables base chains).
    pub counters: Option<Counters>,
    pub rules: Vec<Rule>,
}

/// Where a base chain hangs: the hook, its priority, the chain type, the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`, `ingress`, …
    pub hook: String,
    pub priority: i32,
    /// `nat`, `filter`, `route`.
    pub kind: String,
    /// `accept` or `drop`.
    pub policy: String,
}

/// One rule, already rendered, with the facts the report needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// nftables handle; `None` for iptables-legacy.
    pub handle: Option<u64>,
    pub syntax: Syntax,
    pub text: String,
    /// `None` when the rule has no counter.
    pub counters: Option<Counters>,
    pub nat: Option<NatTarget>,
    /// Chain jumped to (or gone to, with `goto`).
    pub jump: Option<String>,
    pub goto: bool,
    pub comment: Option<String>,
    /// Interfaces the rule matches on.
    pub ifaces: Vec<String>,
}

/// Names of the netfilter hooks by number (NF_INET_*).
pub fn hook_name(num: u32) -> String {
    match num {
        0 => "prerouting".into(),
        1 => "input".into(),
        2 => "forward".into(),
        3 => "output".into(),
        4 => "postrouting".into(),
        5 => "ingress".into(),
        n => format!("hook-{n}"),
    }
}
