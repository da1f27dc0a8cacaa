//! Proxy legs joined into client connections.
//!
//! A proxy (an L7 load balancer, an ingress controller, any TCP-terminating hop) accepts the
//! client's connection and opens a new one, with a new ISN, from its own address: the SYN chain
//! breaks there. A leg continues an earlier one when it starts where that one ended (the pod or
//! the node that accepted it opens the new one, from the address it was reached at, after it),
//! and the forwarding headers it carries can confirm it (X-Forwarded-For ending with the
//! address the proxy received the earlier leg from, or naming its client). The joined legs tell
//! one story: where the client's address was lost, what the app sees at L4 and in headers.
//!
//! Legs arrive in output order (by their first sighting). A leg is held until no later one can
//! continue it ([`JOIN_NS`] after the newest leg of its connection), then its whole client
//! connection leaves at once, legs in path order.

use super::model::{ClientKind, EndsAt, Flow, Loss, LossKind, ProxyLink, Verdict};
use super::owners::Owners;
use super::verdict::{self, header_words};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// How long after the leg it continues a proxy's new connection may start. Proxies connect
/// upstream as soon as a request's headers are in: milliseconds; the rest is room for a slow
/// client and for clock skew between nodes.
pub const JOIN_NS: u64 = 10_000_000_000;

/// Legs held at most: beyond, the oldest client connection leaves before its joining time is
/// up, so that a burst of connections costs bounded memory (counted in [`Chains::hurried`]).
pub const MAX_HELD: usize = 4096;

/// Clock skew tolerated between the node where a leg ended and the node where the next was
/// first seen (the same node's clock needs none).
const SKEW_NS: u64 = 1_000_000_000;

#[derive(Debug)]
struct Held {
    flow: Flow,
    /// First sighting of this leg.
    start: u64,
    /// Last sighting of this leg.
    end: u64,
    next: Option<u64>,
    prev: Option<u64>,
    link: Option<ProxyLink>,
    /// What the other legs the proxy received, that this one could continue as well, meant.
    rivals: Vec<Outcome>,
}

/// The joining stage: legs in, client connections out.
#[derive(Debug, Default)]
pub struct Chains {
    held: HashMap<u64, Held>,
    /// Ids in arrival order; ids already gone are skipped.
    order: VecDeque<u64>,
    next_id: u64,
    /// Start of the newest leg taken.
    newest: u64,
    closed: bool,
    out: VecDeque<Flow>,
    connections: usize,
    /// Connections that left before no later leg could continue them, to bound memory.
    hurried: usize,
}

impl Chains {
    /// Takes the next leg in output order.
    pub fn push(&mut self, flow: Flow, owners: &mut Owners) {
        let start = flow.hops.first().map_or(0, |h| h.ts_ns);
        let end = flow.hops.iter().map(|h| h.ts_ns).max().unwrap_or(start);
        let id = self.next_id;
        self.next_id += 1;
        self.newest = self.newest.max(start);
        let mut held = Held {
            flow,
            start,
            end,
            next: None,
            prev: None,
            link: None,
            rivals: Vec::new(),
        };
        if let Some((prev, link, rivals)) = self.predecessor(&held, owners) {
            held.prev = Some(prev);
            held.link = Some(link);
            held.rivals = rivals;
            if let Some(p) = self.held.get_mut(&prev) {
                p.next = Some(id);
            }
        }
        self.held.insert(id, held);
        self.order.push_back(id);
        self.release(owners);
    }

    /// No more legs: every connection held is complete.
    pub fn close(&mut self, owners: &mut Owners) {
        self.closed = true;
        self.release(owners);
    }

    /// Client connections that had to leave before their joining time was up (more than
    /// [`MAX_HELD`] legs waiting): a proxy's leg after them may have gone unjoined.
    pub fn hurried(&self) -> usize {
        self.hurried
    }

    /// The next leg ready to be written, connections whole and in order.
    pub fn pop(&mut self) -> Option<Flow> {
        self.out.pop_front()
    }

    /// The held leg `leg` continues, the facts that say so, and the other candidates.
    fn predecessor(
        &self,
        leg: &Held,
        owners: &mut Owners,
    ) -> Option<(u64, ProxyLink, Vec<Outcome>)> {
        let first = leg.flow.hops.first()?;
        let src = first.src;
        let mut candidates: Vec<(u64, i64, bool)> = Vec::new();
        for (&id, held) in &self.held {
            if held.next.is_some() {
                continue;
            }
            let Some(last) = held.flow.hops.last() else {
                continue;
            };
            let proxy_here = match held.flow.ends_at {
                EndsAt::Host => {
                    last.dst == src
                        || (owners.is_node_address(&last.node, src) && first.node == last.node)
                }
                EndsAt::Pod | EndsAt::Unseen => held.flow.reached_pod && last.dst == src,
                EndsAt::Unknown => false,
            };
            if !proxy_here {
                continue;
            }
            // The proxy opens the next leg after it took this one: strictly on one clock,
            // within the skew across two.
            let slack = if first.node == last.node { 0 } else { SKEW_NS };
            if leg.start.saturating_add(slack) < held.end
                || leg.start > held.end.saturating_add(JOIN_NS)
            {
                continue;
            }
            let gap = i64::try_from(leg.start.abs_diff(held.end)).unwrap_or(i64::MAX);
            candidates.push((id, gap, headers_confirm(&held.flow, &leg.flow)));
        }
        // Header evidence first, then the nearest in time; ids break ties in arrival order.
        candidates.sort_by_key(|&(id, gap, confirmed)| (!confirmed, gap, id));
        let &(best, gap, confirmed) = candidates.first()?;
        let held = &self.held[&best];
        let owner = proxy_owner(&held.flow, src, owners);
        let mut link = ProxyLink {
            address: src,
            owner,
            from_isn: held.flow.isn,
            evidence: Vec::new(),
        };
        let mut evidence = vec![format!(
            "{} received leg ISN {} and opened this one from the address it was reached at, {} later",
            link.describe(),
            held.flow.isn,
            duration(gap)
        )];
        if confirmed {
            evidence.push(header_evidence(&held.flow, &leg.flow));
        }
        let rivals: Vec<Outcome> = candidates[1..]
            .iter()
            .filter(|c| !confirmed || c.2)
            .map(|c| Outcome::of(&self.held[&c.0].flow))
            .collect();
        if !rivals.is_empty() {
            evidence.push(format!(
                "{} other connection(s) reached the proxy in that time{}: the nearest is taken",
                rivals.len(),
                if confirmed {
                    " with matching headers"
                } else {
                    "; nothing but timing joins them"
                }
            ));
        }
        link.evidence = evidence;
        Some((best, link, rivals))
    }

    /// Moves every connection that nothing can continue any more to the output, in order.
    fn release(&mut self, owners: &mut Owners) {
        while let Some(&front) = self.order.front() {
            let Some(head) = self.held.get(&front) else {
                self.order.pop_front();
                continue;
            };
            // A head's predecessor left already only if it was released: then this is its own.
            let mut ids = vec![front];
            let mut newest = head.start;
            let mut cursor = head.next;
            while let Some(id) = cursor {
                let Some(h) = self.held.get(&id) else { break };
                newest = newest.max(h.start);
                ids.push(id);
                cursor = h.next;
            }
            let due = self.closed || self.newest > newest.saturating_add(JOIN_NS);
            if !due && self.held.len() <= MAX_HELD {
                return;
            }
            if !due {
                self.hurried += 1;
            }
            self.order.pop_front();
            self.emit(&ids, owners);
        }
    }

    fn emit(&mut self, ids: &[u64], owners: &mut Owners) {
        let mut legs: Vec<Held> = ids.iter().filter_map(|id| self.held.remove(id)).collect();
        self.connections += 1;
        let count = legs.len();
        for (i, held) in legs.iter_mut().enumerate() {
            held.flow.connection = self.connections;
            held.flow.leg = i + 1;
            held.flow.legs = count;
            held.flow.proxied_by = held.link.take();
            if let Some(lost) = held.flow.lost.as_mut() {
                lost.leg = i + 1;
            }
        }
        for (i, held) in legs.iter_mut().take(count.saturating_sub(1)).enumerate() {
            // Not the end of the story: the proxy it reached went on.
            let flow = &mut held.flow;
            let next = i + 2;
            if flow.verdict == Verdict::AtHost {
                let node = flow
                    .last_seen
                    .as_ref()
                    .map_or("a node", |l| l.node.as_str());
                flow.reason = format!("ended at the proxy on {node}, which opened leg {next}");
            } else {
                flow.reason = format!("{}; this pod is a proxy: it opened leg {next}", flow.reason);
            }
        }
        for i in 1..legs.len() {
            let (before, after) = legs.split_at_mut(i);
            let prev = &before[i - 1].flow;
            let origin = &before[0].flow;
            // An ambiguous join matters only when the other candidates tell another story.
            let ambiguous = after[0].rivals.iter().any(|o| *o != Outcome::of(prev));
            judge_proxied(&mut after[0].flow, prev, origin, ambiguous, owners);
        }
        self.out.extend(legs.into_iter().map(|h| h.flow));
    }
}

/// What a candidate predecessor means for the client connection: two that mean the same make
/// an ambiguous join harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    verdict: Verdict,
    client: Option<IpAddr>,
    lost_at: Option<String>,
}

impl Outcome {
    fn of(flow: &Flow) -> Self {
        Outcome {
            verdict: flow.verdict,
            client: (flow.verdict == Verdict::Kept)
                .then_some(flow.client)
                .flatten(),
            lost_at: flow.lost.as_ref().map(|l| l.at.clone()),
        }
    }
}

/// Whether `next`'s forwarding facts name `prev`: the proxy appended the address it received
/// `prev` from, or passed `prev`'s client on.
fn headers_confirm(prev: &Flow, next: &Flow) -> bool {
    let Some(l7) = &next.l7_client_ip else {
        return false;
    };
    let value: Option<IpAddr> = l7.value.parse().ok();
    value.is_some() && (value == prev.pod_sees || value == prev.client)
}

fn header_evidence(prev: &Flow, next: &Flow) -> String {
    let l7 = next.l7_client_ip.as_ref();
    let header = l7.map_or("a forwarding header", header_words);
    let value = l7.map_or("", |l| l.value.as_str());
    if value.parse::<IpAddr>().ok() == prev.client {
        format!("{header} carries {value}, the source of the leg before")
    } else {
        format!("{header} carries {value}, the address the proxy received the leg before from")
    }
}

/// What the proxy is: "on clb" (a node's own socket), "pod ingress-nginx/…", "a pod behind
/// cbr0 of node-a".
fn proxy_owner(prev: &Flow, addr: IpAddr, owners: &mut Owners) -> String {
    if prev.ends_at == EndsAt::Host {
        if let Some(last) = prev.hops.last() {
            return format!("on {}", last.node);
        }
    }
    owners
        .owner(addr)
        .unwrap_or_else(|| "at that address".into())
}

fn duration(ns: i64) -> String {
    let ns = u64::try_from(ns).unwrap_or(0);
    if ns < 1_000_000 {
        format!("{} µs", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{} ms", ns / 1_000_000)
    } else {
        format!("{:.1} s", ns as f64 / 1e9)
    }
}

/// The verdict of a leg a proxy opened for `prev`: the client connection's story so far plus
/// this leg. `origin` is the connection's first leg; `ambiguous`: another leg the proxy took at
/// that time would tell a different story.
fn judge_proxied(leg: &mut Flow, prev: &Flow, origin: &Flow, ambiguous: bool, owners: &mut Owners) {
    let proxy = leg
        .proxied_by
        .as_ref()
        .map_or_else(|| "the proxy".to_string(), ProxyLink::describe);
    leg.client_kind = ClientKind::Proxy;
    leg.client_established = false;
    leg.evidence = vec![format!(
        "{} is {proxy}",
        leg.client.map_or_else(String::new, |ip| ip.to_string())
    )];
    let client = origin.client_established.then_some(origin.client).flatten();
    // The proxy received the client itself: nothing was lost before it.
    let received_client = matches!(
        prev.verdict,
        Verdict::Kept | Verdict::AtHost | Verdict::KeptInHeader
    ) && prev.lost.is_none()
        && prev.client_established
        || prev.verdict == Verdict::Kept;
    let proxy_loss = || {
        leg.client.map(|to| Loss {
            by: LossKind::Proxy,
            leg: leg.leg,
            hop: None,
            at: proxy.clone(),
            to,
            to_owner: leg
                .proxied_by
                .as_ref()
                .map_or_else(|| "a proxy".into(), |l| l.owner.clone()),
        })
    };
    let (verdict, reason, lost) = if ambiguous {
        (
            Verdict::Unknown,
            format!("{proxy} received several connections at that time whose stories differ; which one this leg continues is not evidenced"),
            None,
        )
    } else if received_client {
        let lost = proxy_loss();
        match leg_end(leg) {
            Some((verdict, reason)) => (verdict, reason, lost),
            None => (
                Verdict::Rewritten,
                format!("{proxy} received the client and opened this leg from its own address"),
                lost,
            ),
        }
    } else if let Some(before) = prev.lost.clone() {
        let at = match before.hop {
            Some(hop) => format!(
                "on leg {} at hop {hop} ({} {})",
                before.leg,
                loss_words(before.by),
                super::flow::place(&before.at)
            ),
            None => format!("on leg {} ({})", before.leg, before.at),
        };
        let what = if before.by == LossKind::BeforeCapture {
            Verdict::LostBeforeCapture
        } else {
            Verdict::Rewritten
        };
        let who = client.map_or_else(|| "the client".to_string(), |ip| format!("client {ip}"));
        let reason = format!("{who} lost {at}, before {proxy}");
        match leg_end(leg) {
            Some((verdict, end)) => (verdict, format!("{reason}; {end}"), Some(before)),
            None => (what, reason, Some(before)),
        }
    } else {
        (
            Verdict::Unknown,
            format!(
                "behind {proxy}; whether the proxy received the client is not settled: {}",
                prev.reason
            ),
            None,
        )
    };
    leg.verdict = verdict;
    leg.reason = reason;
    leg.lost = lost;
    leg.client_ip_preserved = verdict::preserved(verdict);
    verdict::apply_l7(leg, client, true, owners);
}

/// The verdict of a proxied leg that reached no pod, or went on unseen.
fn leg_end(leg: &Flow) -> Option<(Verdict, String)> {
    let node = leg.last_seen.as_ref().map_or("a node", |l| l.node.as_str());
    match leg.ends_at {
        EndsAt::Host => Some((
            Verdict::AtHost,
            format!("this leg ended at a local socket on {node}; no onward connection was joined"),
        )),
        _ if !leg.reached_pod => Some((
            Verdict::Unreached,
            format!("this leg did not reach a pod: last seen on {node} (dropped or not captured)"),
        )),
        _ => None,
    }
}

fn loss_words(kind: LossKind) -> &'static str {
    match kind {
        LossKind::Snat => "SNAT",
        LossKind::Proxy => "proxy",
        LossKind::BeforeCapture => "before capture",
    }
}
