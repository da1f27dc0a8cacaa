//! One input's own time order, kept against a clock that glitched. A frame or line dated far
//! from those around it (one frame of 2100 from a clock that jumped, one of 1970 from one that
//! reset) would move the analysis window by years: every connection open then would be closed
//! early and split. Each item is compared, before it leaves, with the one before it and with the
//! median of the [`AHEAD`] after it: an item further than the threshold (the analysis window)
//! from both, while they agree with each other, and with fewer than [`MAX_RUN`] items after it
//! near its own time, is an outlier. It is taken at the time of the item before it (at the start
//! of a file, of the earliest after it) and named in a note.
//!
//! A real jump (a pause in the capture, or several nodes' streams one after another) is not an
//! outlier: the items after it stay where it went, or come back only after more than a few.

use super::source::{Item, Pos, Problem};
use std::collections::VecDeque;
use std::time::Duration;

/// Items looked at after the one about to leave.
pub const AHEAD: usize = 32;
/// More items than this near one another in time, however far from the rest, are a real stream
/// (a short one given before another), not a glitch.
pub const MAX_RUN: usize = 3;
/// Outliers named one by one in the note; the rest are counted.
const NAMED: usize = 3;

#[derive(Debug)]
pub struct Clock {
    threshold: Duration,
    ahead: VecDeque<(Item, Pos)>,
    /// Time of the last item let through.
    last: Option<u64>,
    /// Items moved, and the first few with their original time.
    moved: u64,
    named: Vec<(Pos, u64)>,
}

impl Clock {
    /// Outliers are items further than `threshold` from the items around them.
    pub fn new(threshold: Duration) -> Self {
        Clock {
            threshold,
            ahead: VecDeque::with_capacity(AHEAD + 1),
            last: None,
            moved: 0,
            named: Vec::new(),
        }
    }

    /// Whether another item should be read before the next one leaves.
    pub fn wants(&self) -> bool {
        self.ahead.len() <= AHEAD
    }

    pub fn push(&mut self, item: Item, pos: Pos) {
        self.ahead.push_back((item, pos));
    }

    /// The next item, in time by its neighbours; call when [`Clock::wants`] no more or at the
    /// end of the input.
    pub fn pop(&mut self) -> Option<Item> {
        let (mut item, pos) = self.ahead.pop_front()?;
        let Some(t) = item.observed_at() else {
            return Some(item);
        };
        let limit = u64::try_from(self.threshold.as_nanos()).unwrap_or(u64::MAX);
        let far = |a: u64, b: u64| a.abs_diff(b) > limit;
        // Near the item before it: no outlier (and no need to look further).
        if self.last.is_some_and(|p| !far(t, p)) {
            self.last = Some(t);
            return Some(item);
        }
        let mut after = [0u64; AHEAD];
        let mut n = 0;
        for ts in self.ahead.iter().filter_map(|(i, _)| i.observed_at()) {
            after[n] = ts;
            n += 1;
        }
        if n == 0 {
            self.last = Some(t);
            return Some(item);
        }
        let after = &mut after[..n];
        after.sort_unstable();
        let median = after[n / 2];
        // The earliest after it that is not itself an outlier.
        let earliest = after
            .iter()
            .copied()
            .find(|&ts| !far(ts, median))
            .unwrap_or(median);
        if after.iter().filter(|&&ts| !far(ts, t)).count() >= MAX_RUN {
            self.last = Some(t);
            return Some(item);
        }
        // Ahead of everything around it: the window would jump. At the start of a file only
        // this is told: an early item followed by a pause is a real capture.
        let ahead = t > median && far(t, median) && self.last.is_none_or(|p| t > p && far(t, p));
        let behind = t < median && far(t, median) && self.last.is_some_and(|p| t < p && far(t, p));
        if ahead || behind {
            // Between its neighbours: after the one before, or no later than any after it.
            let to = self.last.unwrap_or(earliest);
            item.observed_at_set(to);
            self.moved += 1;
            if self.named.len() < NAMED {
                self.named.push((pos, t));
            }
        }
        self.last = item.observed_at();
        Some(item)
    }

    /// The note naming what was moved, if anything was.
    pub fn problem(&self, file: &str) -> Option<Problem> {
        let (first, _) = self.named.first()?;
        let unit = first.unit();
        let dated = |(pos, ts): &(Pos, u64)| format!("{pos} dated {}", date(*ts));
        let list: Vec<String> = self.named.iter().map(dated).collect();
        let more = self.moved - self.named.len() as u64;
        let message = if self.moved == 1 {
            format!(
                "{} is more than {:?} away from the {unit}s around it (a glitching clock?): \
                 taken at the time of the {unit} before it, so that it splits no connection",
                list.join(""),
                self.threshold
            )
        } else {
            format!(
                "{} {unit}s more than {:?} away from the {unit}s around them (a glitching \
                 clock?) were taken at the time of the {unit} before each, so that they split \
                 no connection: {}{}",
                self.moved,
                self.threshold,
                list.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        Some(Problem::Note {
            file: file.to_string(),
            message,
        })
    }
}

/// A capture time as people read it, in UTC.
fn date(ts_ns: u64) -> String {
    let secs = i64::try_from(ts_ns / 1_000_000_000).unwrap_or(i64::MAX);
    match k8s_openapi::jiff::Timestamp::from_second(secs) {
        Ok(at) => at.to_string(),
        Err(_) => format!("{ts_ns} ns after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::sighting::Sighting;
    use realip_probe::wire::Direction;

    const S: u64 = 1_000_000_000;
    const START: u64 = 1_795_363_364 * S;

    fn item(ts_ns: u64) -> Item {
        Item::Sighting(Sighting {
            ts_ns,
            node: 0,
            iface: 0,
            dir: Direction::In,
            dir_known: true,
            src: "198.51.100.7".parse().unwrap(),
            sport: 1,
            dst: "192.0.2.10".parse().unwrap(),
            dport: 80,
            isn: 1,
            tsval: None,
            ttl: 64,
            ip_id: None,
        })
    }

    /// Runs times through a clock of a 3-minute threshold: what leaves, and the note.
    fn run(times: &[u64]) -> (Vec<u64>, Option<String>) {
        let mut clock = Clock::new(Duration::from_secs(180));
        let mut out = Vec::new();
        for (i, &ts) in times.iter().enumerate() {
            clock.push(
                item(ts),
                Pos::Frame {
                    number: i as u64 + 1,
                    offset: 24 + 100 * i as u64,
                },
            );
            if !clock.wants() {
                out.extend(clock.pop().and_then(|i| i.observed_at()));
            }
        }
        out.extend(std::iter::from_fn(|| clock.pop()).filter_map(|i| i.observed_at()));
        (out, clock.problem("x.pcap").map(|p| p.to_string()))
    }

    fn steady(n: u64) -> Vec<u64> {
        (0..n).map(|i| START + i * S).collect()
    }

    #[test]
    fn one_frame_dated_2100_is_taken_at_the_time_before_it() {
        let mut times = steady(50);
        times[20] = 4_102_444_800 * S; // 2100-01-01
        let (out, note) = run(&times);
        let mut want = steady(50);
        want[20] = want[19];
        assert_eq!(out, want);
        let note = note.unwrap();
        assert!(
            note.starts_with(
                "x.pcap: frame 21 (byte 2024) dated 2100-01-01T00:00:00Z is more than 180s away"
            ),
            "{note}"
        );
    }

    #[test]
    fn a_few_glitches_forward_back_and_first_are_all_moved() {
        let mut times = steady(80);
        times[0] = START + 400_000 * S; // the very first frame, days ahead
        times[30] = 0; // a reset clock
        times[31] = 0;
        times[60] = u64::MAX / 2;
        let (out, note) = run(&times);
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        assert_eq!(
            out[0],
            START + S,
            "the first takes the time of the earliest after it"
        );
        let note = note.unwrap();
        assert!(
            note.contains("x.pcap: 4 frames more than 180s away"),
            "{note}"
        );
        assert!(note.contains("frame 1 (byte 24) dated"), "{note}");
        assert!(
            note.contains("frame 31 (byte 3024) dated 1970-01-01T00:00:00Z"),
            "{note}"
        );
        assert!(note.ends_with(" and 1 more"), "{note}");
    }

    #[test]
    fn real_jumps_are_kept() {
        // A pause of an hour, a file that starts with one early SYN, and two streams one after
        // another (the second starts earlier): nothing is moved.
        let mut pause = steady(40);
        for t in &mut pause[20..] {
            *t += 3600 * S;
        }
        let mut early = steady(40);
        early[0] = START - 3600 * S;
        let mut two = steady(40);
        two.extend(steady(40));
        // A stream of four lines given before one that starts ten minutes earlier.
        let mut short = steady(4);
        for t in &mut short {
            *t += 600 * S;
        }
        short.extend(steady(40));
        for times in [pause, early, two, short, steady(3), vec![]] {
            let (out, note) = run(&times);
            assert_eq!(out, times);
            assert_eq!(note, None);
        }
    }

    #[test]
    fn the_last_item_and_timeless_items_pass_as_they_are() {
        let mut times = steady(10);
        times[9] = 4_102_444_800 * S;
        let (out, note) = run(&times);
        assert_eq!(out, times);
        assert_eq!(note, None);
    }
}
