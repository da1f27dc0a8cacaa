//! Times the `--evidence` readers on the rules of the network namespace it runs in: a full read
//! of the NAT tables (what the probe does at the start and at the end of a capture), the start
//! and end `ruleset` events built from it, and their size. Run by `bench/evidence/run.sh` inside
//! a namespace holding the generated rules.
//!
//! usage: evidence-bench [ROUNDS]       (prints one JSON object)

use realip_probe::capture::evidence::read_snapshot;
use realip_probe::evidence::snapshot::{self, Baseline};
use realip_probe::wire::{encode_line, Event};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let ifnames = HashMap::new();
    let mut reads = vec![];
    let mut events = vec![];
    let (mut start_bytes, mut end_bytes, mut rules, mut listed) = (0, 0, 0, 0);
    let first = Baseline::of(&read_snapshot(&ifnames).0);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let (snap, _) = read_snapshot(&ifnames);
        let t1 = Instant::now();
        let start = snapshot::start_event(&snap, "bench", 0);
        let end = snapshot::end_event(&first, &snap, &HashSet::new(), "bench", 0);
        listed = end.rules.len();
        start_bytes = encode_line(&Event::Ruleset(start)).len();
        end_bytes = encode_line(&Event::Ruleset(end)).len();
        let t2 = Instant::now();
        rules = snap
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum();
        reads.push((t1 - t0).as_secs_f64() * 1e3);
        events.push((t2 - t1).as_secs_f64() * 1e3);
    }
    println!(
        "{{\"rules\":{rules},\"read_ms\":{:.1},\"events_ms\":{:.1},\"start_event_bytes\":{start_bytes},\"end_event_bytes\":{end_bytes},\"end_rules_listed\":{listed},\"peak_rss_kb\":{}}}",
        median(reads),
        median(events),
        peak_rss_kb()
    );
}
