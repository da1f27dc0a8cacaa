//! `capture --evidence`: the node's NAT rules at the start and the end of the capture, the
//! conntrack entry of every connection whose SYN the probe saw (looked up shortly after the
//! SYN), and the route toward each destination a connection was source-NATed to. Read-only:
//! dumps and GET requests through [`super::kernel`]; parsing and rendering in
//! [`crate::evidence`].
//!
//! Bounded: at most [`MAX_PENDING`] connections wait for a lookup, at most
//! [`LOOKUPS_PER_SEC`] lookups a second, one `conntrack` event per connection, one `route`
//! event per destination (at most [`MAX_ROUTES`]), and `ruleset` events bounded by
//! [`crate::evidence::snapshot::MAX_RULES`].

use super::kernel::{self, NlSocket, NETLINK_NETFILTER, NETLINK_ROUTE};
use crate::evidence::conntrack::{self, Side, IPS_DST_NAT, IPS_SRC_NAT};
use crate::evidence::nft;
use crate::evidence::ruleset::{self, NftDump};
use crate::evidence::snapshot::{self, Baseline, Snapshot};
use crate::evidence::{legacy, nl, route, xt, Table};
use crate::parse::Segment;
use crate::wire::{
    Conntrack, CtTuple, Direction, Event, EvidenceSource, EvidenceStatus, Interface, Route,
    SourceState,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long after a SYN its conntrack entry is looked up: the entry exists once the SYN has
/// passed the node's hooks; an `in` sighting is captured before that.
pub const LOOKUP_DELAY: Duration = Duration::from_millis(100);
/// Connections waiting for their lookup; beyond this, new ones are counted as skipped.
pub const MAX_PENDING: usize = 16_384;
/// Lookups a second at most (each is one netlink round trip).
pub const LOOKUPS_PER_SEC: u32 = 5_000;
/// Destinations whose route is reported at most.
pub const MAX_ROUTES: usize = 4_096;
/// Anonymous sets whose elements are read (for printing them inline) at most.
pub const MAX_ANONYMOUS_SETS: usize = 4_096;
/// Connections remembered as looked up, so a retransmitted SYN is not looked up again.
const MAX_DONE: usize = 65_536;
/// Sightings of one connection kept for its lookup.
const MAX_SIGHTINGS: usize = 8;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// Whether the effective capabilities in a `/proc/PID/status` text include `bit`.
fn has_capability(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps >> bit & 1 == 1)
}

fn source(name: &str, state: SourceState, detail: Option<String>) -> EvidenceSource {
    EvidenceSource {
        name: name.into(),
        state,
        detail,
    }
}

/// How a failed read is reported: refused (no capability), absent (the kernel has no such
/// thing here), or failed.
fn failure(name: &str, err: &io::Error) -> EvidenceSource {
    let state = match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => SourceState::Refused,
        Some(libc::EPROTONOSUPPORT)
        | Some(libc::EOPNOTSUPP)
        | Some(libc::ENOPROTOOPT)
        | Some(libc::ENOENT) => SourceState::Absent,
        _ => SourceState::Failed,
    };
    source(name, state, Some(err.to_string()))
}

/// Reads the NAT tables of nf_tables, rendered: tables, chains and sets first (and the
/// elements of anonymous sets, printed inline), then the rules chain by chain — only in tables a
/// NAT hook enters, each chain's rules rendered and let go before the next is fetched. With
/// `raw`, each reply message is also kept as the kernel sent it. Returns a note when the bound
/// on anonymous sets was reached.
pub fn nft_read(
    ifnames: &HashMap<u32, String>,
    mut raw: Option<&mut Vec<Vec<u8>>>,
) -> io::Result<(Vec<Table>, Option<String>)> {
    let mut sock = NlSocket::open(NETLINK_NETFILTER, 5000)?;
    let mut keep = |m: &[u8]| {
        if let Some(raw) = raw.as_deref_mut() {
            raw.push(m.to_vec());
        }
    };
    let mut dump = NftDump::default();
    for msg in [
        nft::NFT_MSG_GETTABLE,
        nft::NFT_MSG_GETCHAIN,
        nft::NFT_MSG_GETSET,
    ] {
        let seq = sock.next_seq();
        sock.dump_each(&nft::dump_request(msg, seq), seq, |m| {
            dump.add_messages([m]);
            keep(m);
        })?;
    }
    let anonymous: Vec<(u8, String, String)> = dump
        .anonymous_sets()
        .iter()
        .map(|s| (s.family, s.table.clone(), s.name.clone()))
        .collect();
    let mut note = None;
    if anonymous.len() > MAX_ANONYMOUS_SETS {
        note = Some(format!(
            "elements of {} anonymous sets not read (bound {MAX_ANONYMOUS_SETS}): they print as @name",
            anonymous.len() - MAX_ANONYMOUS_SETS
        ));
    }
    for (family, table, set) in anonymous.iter().take(MAX_ANONYMOUS_SETS) {
        let seq = sock.next_seq();
        sock.dump_each(
            &nft::set_elems_request(*family, table, set, seq),
            seq,
            |m| {
                dump.add_messages([m]);
                keep(m);
            },
        )?;
    }
    let mut tables = vec![];
    for plan in ruleset::nat_plans(&dump, ifnames) {
        let mut chains = vec![];
        for c in plan.chains() {
            let mut rules = vec![];
            let seq = sock.next_seq();
            let request = nft::chain_rules_request(c.family, &c.table, &c.name, seq);
            sock.dump_each(&request, seq, |m| {
                rules.extend(nl::messages(m).filter_map(|msg| nft::parse_rule(&msg)));
                keep(m);
            })?;
            chains.push(plan.chain(c, &rules, &xt::Context::default()));
        }
        tables.push(plan.into_table(chains));
    }
    Ok((tables, note))
}

/// Reads the node's NAT tables from every front-end in use, and how each reader fared.
pub fn read_snapshot(ifnames: &HashMap<u32, String>) -> (Snapshot, Vec<EvidenceSource>) {
    let mut sources = vec![];
    let mut errors = vec![];
    let mut tables = match nft_read(ifnames, None) {
        Ok((tables, note)) => {
            sources.push(source("nftables", SourceState::Read, note.clone()));
            errors.extend(note);
            tables
        }
        Err(err) => {
            errors.push(format!("nftables: {err}"));
            sources.push(failure("nftables", &err));
            vec![]
        }
    };
    for (v6, names, name) in [
        (false, "/proc/net/ip_tables_names", "iptables-legacy"),
        (true, "/proc/net/ip6_tables_names", "ip6tables-legacy"),
    ] {
        // Only a table the kernel already holds is read: asking for another would create it.
        let present = std::fs::read_to_string(names)
            .map(|t| t.lines().any(|l| l.trim() == "nat"))
            .unwrap_or(false);
        if !present {
            sources.push(source(
                name,
                SourceState::Absent,
                Some("no nat table".into()),
            ));
            continue;
        }
        match kernel::iptables_table(v6, "nat") {
            Ok((info, blob)) => match legacy::parse_info(&info) {
                Some(info) => {
                    sources.push(source(name, SourceState::Read, None));
                    tables.push(ruleset::legacy_table(
                        v6,
                        &info,
                        &blob,
                        &xt::Context::default(),
                    ));
                }
                None => sources.push(source(
                    name,
                    SourceState::Failed,
                    Some("short ipt_getinfo reply".into()),
                )),
            },
            Err(err) => {
                errors.push(format!("{name}: {err}"));
                sources.push(failure(name, &err));
            }
        }
    }
    // `-m set` matches name their ipsets by index; the names are asked for afterwards.
    let indexes = ruleset::unnamed_ipsets(&tables);
    if !indexes.is_empty() {
        match kernel::ipset_names(&indexes) {
            Ok(names) => ruleset::name_ipsets(&mut tables, &names.into_iter().collect()),
            Err(err) => errors.push(format!("ipset names: {err}")),
        }
    }
    (Snapshot { tables, errors }, sources)
}

/// One sighting of a connection's SYN, as a conntrack tuple.
#[derive(Debug, Clone)]
struct Sighting {
    tuple: CtTuple,
    iface: String,
    dir: Direction,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    lookups: u64,
    found: u64,
    missed: u64,
    skipped: u64,
    routes: u64,
}

/// The evidence side of a capture.
#[derive(Debug)]
pub struct Evidence {
    node: String,
    available: bool,
    reason: Option<String>,
    sources: Vec<EvidenceSource>,
    ifaces: HashMap<u32, Interface>,
    /// The start snapshot's counters, for the end's deltas.
    start: Baseline,
    ct: Option<NlSocket>,
    route: Option<NlSocket>,
    /// Connections (by ISN) waiting for their lookup, and when each is due.
    pending: HashMap<u32, Vec<Sighting>>,
    due: VecDeque<(Instant, u32)>,
    done: HashSet<u32>,
    done_order: VecDeque<u32>,
    routes_done: HashSet<IpAddr>,
    dnat_seen: HashSet<IpAddr>,
    /// Lookups made in the current second.
    window: (Instant, u32),
    totals: Totals,
}

impl Evidence {
    /// Checks the capability, takes the start snapshot and opens the lookup sockets. Returns
    /// the `evidence` status and the start `ruleset` (or only the status when unavailable).
    pub fn start(node: &str, ifaces: &[Interface], now_ns: u64) -> (Evidence, Vec<Event>) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mut ev = Evidence {
            node: node.to_string(),
            available: false,
            reason: None,
            sources: vec![],
            ifaces: HashMap::new(),
            start: Baseline::default(),
            ct: None,
            route: None,
            pending: HashMap::new(),
            due: VecDeque::new(),
            done: HashSet::new(),
            done_order: VecDeque::new(),
            routes_done: HashSet::new(),
            dnat_seen: HashSet::new(),
            window: (Instant::now(), 0),
            totals: Totals::default(),
        };
        ev.set_interfaces(ifaces);
        if !has_capability(&status, CAP_NET_ADMIN) {
            ev.reason = Some(
                "CAP_NET_ADMIN is missing: reading netfilter rules and conntrack entries needs it \
                 (the capture itself goes on with CAP_NET_RAW)"
                    .into(),
            );
            let events = vec![Event::Evidence(ev.status(now_ns, false))];
            return (ev, events);
        }
        let (snap, mut sources) = read_snapshot(&ev.ifnames());
        match NlSocket::open(NETLINK_NETFILTER, 1000) {
            Ok(s) => {
                ev.ct = Some(s);
                sources.push(source("conntrack", SourceState::Read, None));
            }
            Err(err) => sources.push(failure("conntrack", &err)),
        }
        match NlSocket::open(NETLINK_ROUTE, 1000) {
            Ok(s) => {
                ev.route = Some(s);
                sources.push(source("route", SourceState::Read, None));
            }
            Err(err) => sources.push(failure("route", &err)),
        }
        let refused: Vec<&str> = sources
            .iter()
            .filter(|s| s.state == SourceState::Refused)
            .map(|s| s.name.as_str())
            .collect();
        ev.available = refused.is_empty();
        if !refused.is_empty() {
            ev.reason = Some(format!(
                "the kernel refused to let the probe read {} (in a user namespace without \
                 CAP_NET_ADMIN over the node's network namespace?)",
                refused.join(", ")
            ));
        }
        ev.sources = sources;
        let mut events = vec![Event::Evidence(ev.status(now_ns, false))];
        if ev.available {
            events.push(Event::Ruleset(snapshot::start_event(&snap, node, now_ns)));
        }
        ev.start = Baseline::of(&snap);
        (ev, events)
    }

    /// Whether evidence is being gathered; when not, [`Evidence::reason`] says why.
    pub fn available(&self) -> bool {
        self.available
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The interfaces known now (for route events and interface names in rules).
    pub fn set_interfaces(&mut self, ifaces: &[Interface]) {
        for i in ifaces {
            self.ifaces.insert(i.index, i.clone());
        }
    }

    fn ifnames(&self) -> HashMap<u32, String> {
        self.ifaces
            .iter()
            .map(|(k, v)| (*k, v.name.clone()))
            .collect()
    }

    fn status(&self, ts_ns: u64, last: bool) -> EvidenceStatus {
        EvidenceStatus {
            ts_ns,
            node: self.node.clone(),
            available: self.available,
            reason: self.reason.clone(),
            sources: self.sources.clone(),
            last,
            conntrack_lookups: self.totals.lookups,
            conntrack_found: self.totals.found,
            conntrack_missed: self.totals.missed,
            conntrack_skipped: self.totals.skipped,
            routes: self.totals.routes,
        }
    }

    /// Notes a SYN sighting; its connection is looked up [`LOOKUP_DELAY`] after the first.
    pub fn on_syn(&mut self, now: Instant, iface: &str, dir: Direction, seg: &Segment<'_>) {
        if !self.available || self.ct.is_none() || self.done.contains(&seg.seq) {
            return;
        }
        let sighting = Sighting {
            tuple: CtTuple {
                src: seg.src,
                sport: seg.sport,
                dst: seg.dst,
                dport: seg.dport,
                proto: 6,
            },
            iface: iface.to_string(),
            dir,
        };
        if let Some(list) = self.pending.get_mut(&seg.seq) {
            if list.len() < MAX_SIGHTINGS && !list.iter().any(|s| s.tuple == sighting.tuple) {
                list.push(sighting);
            }
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.totals.skipped += 1;
            return;
        }
        self.pending.insert(seg.seq, vec![sighting]);
        self.due.push_back((now + LOOKUP_DELAY, seg.seq));
    }

    /// When the next lookup is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, _)| *at)
    }

    /// Looks up every connection that is due; returns the events to write.
    pub fn poll(&mut self, now: Instant, ts_ns: u64) -> Vec<Event> {
        let mut events = vec![];
        while let Some(&(at, isn)) = self.due.front() {
            if at > now {
                break;
            }
            self.due.pop_front();
            let Some(sightings) = self.pending.remove(&isn) else {
                continue;
            };
            if !self.admit(now) {
                self.totals.skipped += 1;
                continue;
            }
            self.remember(isn);
            events.extend(self.lookup(isn, &sightings, ts_ns));
        }
        events
    }

    /// The per-second lookup budget.
    fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        self.window.1 <= LOOKUPS_PER_SEC
    }

    fn remember(&mut self, isn: u32) {
        if self.done.insert(isn) {
            self.done_order.push_back(isn);
        }
        while self.done_order.len() > MAX_DONE {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    /// Finds the entry by any sighting's tuple — as the original direction for what was seen
    /// coming in, as the reply direction (reversed) for what was seen leaving after NAT.
    fn lookup(&mut self, isn: u32, sightings: &[Sighting], ts_ns: u64) -> Vec<Event> {
        let Some(sock) = self.ct.as_mut() else {
            return vec![];
        };
        self.totals.lookups += 1;
        let mut found = None;
        'search: for s in sightings {
            let tries = match s.dir {
                Direction::In => [
                    (s.tuple, Side::Orig),
                    (conntrack::reversed(&s.tuple), Side::Reply),
                ],
                Direction::Out => [
                    (conntrack::reversed(&s.tuple), Side::Reply),
                    (s.tuple, Side::Orig),
                ],
            };
            for (tuple, side) in tries {
                let seq = sock.next_seq();
                match sock.get(&conntrack::get_request(&tuple, side, seq), seq) {
                    Ok(Some(reply)) => {
                        if let Some(entry) = conntrack::parse_entry(&reply) {
                            found = Some((s.clone(), entry));
                            break 'search;
                        }
                    }
                    Ok(None) => {}
                    // A timeout or a transient error: this connection goes without.
                    Err(_) => break 'search,
                }
            }
        }
        let Some((s, e)) = found else {
            self.totals.missed += 1;
            return vec![];
        };
        self.totals.found += 1;
        let mut events = vec![Event::Conntrack(Conntrack {
            ts_ns,
            node: self.node.clone(),
            isn,
            iface: s.iface,
            dir: s.dir,
            orig: e.orig,
            reply: e.reply,
            status: conntrack::status_names(e.status),
            status_bits: e.status,
            mark: e.mark,
            zone: e.zone,
            src_nat: e.status & IPS_SRC_NAT != 0,
            dst_nat: e.status & IPS_DST_NAT != 0,
            id: e.id,
            tcp_state: e.tcp_state.map(conntrack::tcp_state_name),
        })];
        if e.status & IPS_DST_NAT != 0 {
            self.dnat_seen.insert(e.reply.src);
        }
        if e.status & IPS_SRC_NAT != 0 {
            // Replies go to the address SNAT chose; the connection itself went to reply.src.
            events.extend(self.route(e.reply.src, e.reply.dst, ts_ns));
        }
        events
    }

    fn route(&mut self, dst: IpAddr, snat_to: IpAddr, ts_ns: u64) -> Option<Event> {
        if self.routes_done.contains(&dst) || self.routes_done.len() >= MAX_ROUTES {
            return None;
        }
        self.routes_done.insert(dst);
        let sock = self.route.as_mut()?;
        let seq = sock.next_seq();
        let reply = sock.get(&route::get_request(dst, seq), seq).ok()??;
        let r = route::parse_route(&reply)?;
        let oif = r.oif.and_then(|i| self.ifaces.get(&i));
        let addresses = oif.map(|i| i.addresses.clone()).unwrap_or_default();
        self.totals.routes += 1;
        Some(Event::Route(Route {
            ts_ns,
            node: self.node.clone(),
            dst,
            snat_to: Some(snat_to),
            oif: oif.map(|i| i.name.clone()),
            oif_index: r.oif,
            gateway: r.gateway,
            prefsrc: r.prefsrc,
            masquerade_source: route::masquerade_source(&addresses, r.gateway.unwrap_or(dst)),
            table: r.table,
            kind: route::kind_name(r.kind),
            oif_addresses: addresses,
        }))
    }

    /// The end of the capture: the lookups still waiting (after their delay), the end
    /// snapshot, the last status.
    pub fn finish(&mut self, now_ns: impl Fn() -> u64) -> Vec<Event> {
        let mut events = vec![];
        if let Some(&(last, _)) = self.due.back() {
            let wait = last.saturating_duration_since(Instant::now());
            std::thread::sleep(wait.min(LOOKUP_DELAY));
        }
        let far = Instant::now() + LOOKUP_DELAY;
        events.extend(self.poll(far, now_ns()));
        if self.available {
            let (end, _) = read_snapshot(&self.ifnames());
            events.push(Event::Ruleset(snapshot::end_event(
                &self.start,
                &end,
                &self.dnat_seen,
                &self.node,
                now_ns(),
            )));
        }
        events.push(Event::Evidence(self.status(now_ns(), true)));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_admin_is_read_from_the_effective_set() {
        assert!(has_capability(
            "Name:\tx\nCapEff:\t0000000000003000\n",
            CAP_NET_ADMIN
        ));
        assert!(!has_capability(
            "CapEff:\t0000000000002000\n",
            CAP_NET_ADMIN
        ));
        assert!(!has_capability("garbage", CAP_NET_ADMIN));
    }
}
