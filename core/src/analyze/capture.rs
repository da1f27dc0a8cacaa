//! Capture files (pcap, pcapng) → SYN sightings. The file is read by the probe crate's reader and
//! each frame parsed by its capture-file parser; this module only decides what a frame means
//! for analysis: which node and interface saw it, in which direction.
//!
//! - The interface: the pcapng interface name; else a Linux cooked v2 header's interface index,
//!   named by the `hello` of the same node when there is one (`if3` otherwise); else the node.
//!   A SYN found inside a tunnel is seen on `IFACE+vxlan` (geneve, gre, ipip, sit, ip6tnl).
//! - The direction: as the capture recorded it (cooked packet type, pcapng flags); else, for
//!   Ethernet, by who owns the frame's addresses: the node's announced hardware addresses, then
//!   what the file's own frames prove ([`HostMacs`]). A frame waits (until [`MAX_PENDING`]
//!   SYNs and data segments wait) until its direction is known, so that evidence found a little
//!   later in the file still counts; what stays unknown is guessed later from the path and
//!   marked so.

use super::host_macs::HostMacs;
use super::node_ifaces::{NodeIfaces, TUNNEL_SEPARATOR};
use super::sighting::{Names, Sighting};
use super::source::{Item, Pos, Problem, Source};
use realip_probe::l7::forwarding_facts;
use realip_probe::parse::{self, parse_captured, Framing, Macs, ParseError, Tunnel};
use realip_probe::pcapfile::{PcapError, PcapReader};
use realip_probe::wire::{Direction, Event, IfaceKind, L7};
use std::collections::{HashSet, VecDeque};
use std::io::Read;

/// What an interface name is derived from: interface id, cooked index, tunnel, and the
/// announcements seen so far.
type NameKey = (u32, Option<u32>, Option<Tunnel>, u64);

/// SYNs and data segments held at most while the direction of the oldest is unknown.
pub const MAX_PENDING: usize = 4096;

/// What the capture file says about one frame besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    pub ts_ns: u64,
    pub pos: Pos,
    /// The interface's id within the file (its pcapng interface block; 0 in pcap files).
    pub iface_id: u32,
    /// Direction from pcapng packet flags, when recorded.
    pub dir: Option<Direction>,
}

/// A frame that matters, before its interface is named and its direction settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pos: Pos,
    iface_id: u32,
    /// Interface index of a Linux cooked v2 header.
    ifindex: Option<u32>,
    tunnel: Option<Tunnel>,
    macs: Option<Macs>,
    /// As the capture recorded it.
    dir: Option<Direction>,
    /// The snap length cut the TCP options, TSval included.
    options_cut: bool,
    what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    /// A connection's opening SYN; its interface and direction are filled in on release.
    Syn(Sighting),
    /// A data segment carrying forwarding headers or a PROXY protocol header.
    L7(Box<L7>),
}

/// Reads one frame of node `node` (an interned name): its SYN or the forwarding facts of its
/// payload; `None` for anything else (SYN-ACK, ACK, data without forwarding facts).
pub fn frame(
    node: u32,
    meta: FrameMeta,
    framing: Framing,
    bytes: &[u8],
) -> Result<Option<Pending>, ParseError> {
    let c = parse_captured(framing, bytes)?;
    let seg = c.segment;
    let dir = seg.link_dir.or(meta.dir);
    let what = if seg.is_syn() {
        What::Syn(Sighting {
            ts_ns: meta.ts_ns,
            node,
            iface: 0,
            dir: Direction::In,
            dir_known: false,
            src: seg.src,
            sport: seg.sport,
            dst: seg.dst,
            dport: seg.dport,
            isn: seg.seq,
            tsval: seg.tsval,
            ttl: seg.ttl,
            ip_id: seg.ip_id,
        })
    } else {
        if seg.payload.is_empty() || seg.syn || seg.rst {
            return Ok(None);
        }
        let facts = forwarding_facts(seg.payload);
        if facts.is_empty() {
            return Ok(None);
        }
        // Node and interface are named on release.
        What::L7(Box::new(facts.into_event(
            &seg,
            meta.ts_ns,
            String::new(),
            String::new(),
            dir,
        )))
    };
    Ok(Some(Pending {
        pos: meta.pos,
        iface_id: meta.iface_id,
        ifindex: seg.link_ifindex,
        tunnel: c.tunnel,
        macs: c.macs,
        dir,
        options_cut: c.options_cut,
        what,
    }))
}

/// One capture file, read a frame at a time: every SYN frame becomes a sighting of the node
/// the file stands for. Frames that are not TCP are skipped quietly; frames that should be but
/// cannot be parsed, and a file cut short, are reported with their byte offset.
pub struct CaptureSource {
    name: String,
    node: String,
    /// `node`, interned.
    node_id: Option<u32>,
    pcap: PcapReader<Box<dyn Read>>,
    frames: u64,
    problems: Vec<Problem>,
    bad_frames: u64,
    first_bad: Option<(u64, ParseError)>,
    unknown_links: u64,
    /// Where the first record of an unknown link type was, and that type.
    first_unknown_link: Option<(u64, String)>,
    /// SYNs whose TSval the snap length cut, and where the first was.
    cut: u64,
    first_cut: Option<Pos>,
    /// Interface names by id within the file, as its frames named them.
    iface_names: Vec<Option<String>>,
    /// Interface names given to sightings, recorded as captured.
    named: HashSet<String>,
    /// The last interface name given, interned, with what it was derived from.
    last_name: Option<(NameKey, u32)>,
    /// Linux cooked frames: a capture of every interface (`-i any`).
    all: bool,
    host: HostMacs,
    pending: VecDeque<Pending>,
    done: bool,
}

impl CaptureSource {
    /// A capture of node `node`, read from `input` (the file named `name`, or stdin).
    pub fn new(name: String, node: String, input: Box<dyn Read>) -> Result<Self, Problem> {
        let pcap = PcapReader::new(input).map_err(|err| Problem::Format {
            file: name.clone(),
            message: err.to_string(),
        })?;
        Ok(CaptureSource {
            name,
            node,
            node_id: None,
            pcap,
            frames: 0,
            problems: Vec::new(),
            bad_frames: 0,
            first_bad: None,
            unknown_links: 0,
            first_unknown_link: None,
            cut: 0,
            first_cut: None,
            iface_names: Vec::new(),
            named: HashSet::new(),
            last_name: None,
            all: false,
            host: HostMacs::default(),
            pending: VecDeque::new(),
            done: false,
        })
    }

    fn problem(&self, offset: u64, message: String) -> Problem {
        Problem::Capture {
            file: self.name.clone(),
            offset,
            message,
        }
    }

    /// The next SYN sighting or L7 event, in the file's order.
    fn read_next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<(Item, Pos)> {
        loop {
            match self.pending.front() {
                Some(head) if self.ready(head, ifaces) => {
                    let head = self.pending.pop_front()?;
                    return Some(self.release(head, names, ifaces));
                }
                None if self.done => return None,
                _ => self.read_frame(names, ifaces),
            }
        }
    }

    /// Whether the oldest frame held can leave: its direction is known or cannot be learnt
    /// from what is still to come within reach.
    fn ready(&self, p: &Pending, ifaces: &NodeIfaces) -> bool {
        self.done
            || self.pending.len() > MAX_PENDING
            || p.dir.is_some()
            || p.macs
                .is_none_or(|m| self.direction_by_macs(p.iface_id, &m, ifaces).is_some())
    }

    /// An Ethernet frame's direction: by the addresses the node's probe announced, then by
    /// what this file proved.
    fn direction_by_macs(
        &self,
        iface_id: u32,
        macs: &Macs,
        ifaces: &NodeIfaces,
    ) -> Option<Direction> {
        ifaces
            .direction(&self.node, macs)
            .or_else(|| self.host.direction(iface_id, macs))
    }

    /// The interface a frame was seen on: the file's name for it, else the announced name of
    /// its cooked header's index (`if3` when nothing names it), else the node's; the tunnel it
    /// was carried in after a `+`.
    fn iface_name(&self, p: &Pending, ifaces: &NodeIfaces) -> String {
        let file_name = self
            .iface_names
            .get(p.iface_id as usize)
            .and_then(Option::as_deref);
        let base = match (file_name, p.ifindex) {
            (Some(name), _) if !name.is_empty() && name != "any" => name.to_string(),
            (_, Some(index)) => ifaces
                .name_of_index(&self.node, index)
                .map_or_else(|| format!("if{index}"), str::to_string),
            (Some(name), None) if !name.is_empty() => name.to_string(),
            _ => self.node.clone(),
        };
        match p.tunnel {
            Some(tunnel) => format!("{base}{TUNNEL_SEPARATOR}{}", tunnel.name()),
            None => base,
        }
    }

    fn release(&mut self, p: Pending, names: &mut Names, ifaces: &mut NodeIfaces) -> (Item, Pos) {
        let dir = p.dir.or_else(|| {
            p.macs
                .and_then(|m| self.direction_by_macs(p.iface_id, &m, ifaces))
        });
        let key = (p.iface_id, p.ifindex, p.tunnel, ifaces.generation());
        let id = match self.last_name {
            Some((last, id)) if last == key => id,
            _ => {
                let name = self.iface_name(&p, ifaces);
                if !self.named.contains(&name) {
                    ifaces.captured(&self.node, &name);
                    self.named.insert(name.clone());
                }
                let id = names.id(&name);
                self.last_name = Some((key, id));
                id
            }
        };
        let item = match p.what {
            What::Syn(mut s) => {
                s.iface = id;
                s.dir = dir.unwrap_or(Direction::In);
                s.dir_known = dir.is_some();
                Item::Sighting(s)
            }
            What::L7(mut l7) => {
                l7.node = self.node.clone();
                l7.iface = names.get(id).to_string();
                l7.dir = dir;
                Item::Event(Event::L7(*l7))
            }
        };
        (item, p.pos)
    }

    /// Reads one record: what it proves about the host's addresses, and the frame to hold if
    /// it matters.
    fn read_frame(&mut self, names: &mut Names, ifaces: &NodeIfaces) {
        let offset = self.pcap.offset();
        let record = match self.pcap.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.done = true;
                return;
            }
            Err(PcapError::UnknownLinkType {
                linktype,
                name,
                offset,
            }) => {
                // The stream goes on after such a record; it is summed up at the end.
                self.unknown_links += 1;
                self.first_unknown_link
                    .get_or_insert((offset, format!("link type {linktype} ({name})")));
                return;
            }
            Err(err) => {
                let problem = self.problem(
                    err.offset(),
                    format!("{err}; the frames before it were analyzed"),
                );
                self.problems.push(problem);
                self.done = true;
                return;
            }
        };
        self.frames += 1;
        let meta = FrameMeta {
            ts_ns: record.ts_ns,
            pos: Pos::Frame {
                number: self.frames,
                offset,
            },
            iface_id: record.iface_id,
            dir: record.dir,
        };
        let id = record.iface_id as usize;
        if self.iface_names.len() <= id {
            self.iface_names.resize(id + 1, None);
        }
        if self.iface_names[id].is_none() {
            self.iface_names[id] = record.iface.map(str::to_string);
        }
        self.all |= matches!(record.framing, Framing::LinuxSll | Framing::LinuxSll2);
        // Evidence of whose addresses are whose serves frames whose direction was not recorded.
        let macs = record
            .dir
            .is_none()
            .then(|| parse::macs(record.framing, record.data))
            .flatten();
        if let Some(macs) = macs {
            let name = self.iface_names[id].as_deref();
            let node = &self.node;
            self.host.frame(record.iface_id, &macs, || {
                name.and_then(|n| ifaces.kind(node, n))
                    .is_some_and(|k| matches!(k, IfaceKind::Veth | IfaceKind::Eni))
            });
        }
        let node = *self.node_id.get_or_insert_with(|| names.id(&self.node));
        match frame(node, meta, record.framing, record.data) {
            Ok(Some(p)) => {
                if let (What::Syn(s), Some(macs), None) = (&p.what, &p.macs, p.dir) {
                    self.host
                        .syn(s.ts_ns, macs, (s.isn, s.tsval, s.ip_id), s.ttl);
                }
                if p.options_cut && matches!(p.what, What::Syn(_)) {
                    self.cut += 1;
                    self.first_cut.get_or_insert(p.pos);
                }
                self.pending.push_back(p);
            }
            Ok(None) | Err(ParseError::NotIp | ParseError::NotTcp | ParseError::Fragment) => {}
            Err(err) => {
                self.bad_frames += 1;
                self.first_bad.get_or_insert((offset, err));
            }
        }
    }

    /// The problems met, summed up; what the file captured of its node is recorded.
    fn finish_reading(mut self, ifaces: &mut NodeIfaces) -> Vec<Problem> {
        for (name, _) in self.pcap.interfaces() {
            match name {
                Some("any") => self.all = true,
                Some(name) if !name.is_empty() => ifaces.captured(&self.node, name),
                _ => {}
            }
        }
        if self.all {
            ifaces.captured_all(&self.node);
        }
        if let Some((offset, link)) = self.first_unknown_link.take() {
            let known = "this reader knows Ethernet, raw IP and Linux cooked v1 and v2";
            let problem = if self.frames == 0 {
                // Nothing in the file could be read: unusable, as an unknown pcap header is.
                Problem::Format {
                    file: self.name.clone(),
                    message: format!(
                        "every record is of a link type without Ethernet, IP or Linux cooked                          frames ({link} from byte {offset}); {known}"
                    ),
                }
            } else {
                self.problem(
                    offset,
                    format!(
                        "{} record(s) of a link type without Ethernet, IP or Linux cooked frames                          skipped, the first {link}; {known}",
                        self.unknown_links
                    ),
                )
            };
            self.problems.push(problem);
        }
        if let Some((offset, err)) = self.first_bad.take() {
            let problem = self.problem(
                offset,
                format!(
                    "{} frame(s) skipped, the first because: {err}",
                    self.bad_frames
                ),
            );
            self.problems.push(problem);
        }
        if let Some(first) = self.first_cut {
            self.problems.push(Problem::Note {
                file: self.name.clone(),
                message: format!(
                    "the snap length cut the TCP timestamp of {} SYN(s), the first at {first}: \
                     they are joined without their TSval (ISN, addresses, TTL and IPv4 id)",
                    self.cut
                ),
            });
        }
        self.problems
    }
}

impl Source for CaptureSource {
    fn next(&mut self, names: &mut Names, ifaces: &mut NodeIfaces) -> Option<(Item, Pos)> {
        self.read_next(names, ifaces)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn position(&self) -> u64 {
        self.pcap.offset()
    }

    fn is_capture(&self) -> bool {
        true
    }

    fn finish(self: Box<Self>, ifaces: &mut NodeIfaces) -> Vec<Problem> {
        (*self).finish_reading(ifaces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};

    fn bytes(syn: bool, ack: bool) -> Vec<u8> {
        bytes_with(syn, ack, b"")
    }

    fn bytes_with(syn: bool, ack: bool, payload: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 51, 100, 7], [192, 0, 2, 10], 64)
            .tcp(41770, 31908, 629_798_247, 64240);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(1);
        }
        let b = b
            .options(&[TcpOptionElement::Timestamp(2_657_712_186, 0)])
            .unwrap();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn meta(dir: Option<Direction>) -> FrameMeta {
        FrameMeta {
            ts_ns: 5,
            pos: Pos::Frame {
                number: 1,
                offset: 24,
            },
            iface_id: 0,
            dir,
        }
    }

    #[test]
    fn syn_frames_carry_their_facts_and_recorded_direction() {
        let p = frame(3, meta(None), Framing::Ethernet, &bytes(true, false))
            .unwrap()
            .unwrap();
        let What::Syn(s) = &p.what else {
            panic!("{p:?}")
        };
        assert_eq!(
            (s.isn, s.tsval, s.ttl, s.ts_ns, s.node),
            (629_798_247, Some(2_657_712_186), 64, 5, 3)
        );
        assert_eq!(p.dir, None);
        assert_eq!(
            p.macs.map(|m| (m.src, m.dst)),
            Some(([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]))
        );
        let out = frame(
            3,
            meta(Some(Direction::Out)),
            Framing::Ethernet,
            &bytes(true, false),
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.dir, Some(Direction::Out));
    }

    #[test]
    fn syn_ack_and_plain_data_are_nothing_forwarding_data_is_l7_garbage_an_error() {
        let read = |b: &[u8]| frame(0, meta(None), Framing::Ethernet, b);
        assert_eq!(read(&bytes(true, true)), Ok(None));
        assert_eq!(read(&bytes(false, true)), Ok(None));
        assert_eq!(
            read(&bytes_with(false, true, b"GET / HTTP/1.1\r\n\r\n")),
            Ok(None)
        );
        let request =
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n\r\n";
        match read(&bytes_with(false, true, request)) {
            Ok(Some(Pending {
                what: What::L7(l7), ..
            })) => {
                assert_eq!(l7.seq, 629_798_247);
                assert_eq!(l7.x_forwarded_for.as_deref(), Some("203.0.113.9, 10.0.0.1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(read(&[1, 2, 3]).is_err());
    }

    /// A pcapng block: type, length, body padded to 32 bits, length again.
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().div_ceil(4) * 4, 0);
        let len = (12 + body.len()) as u32;
        let mut out = [kind.to_le_bytes(), len.to_le_bytes()].concat();
        out.extend(body);
        out.extend(len.to_le_bytes());
        out
    }

    /// A pcapng of one packet on each interface, one interface per link type given.
    fn pcapng(links: &[u16]) -> Vec<u8> {
        let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
        shb.extend([1, 0, 0, 0]);
        shb.extend((-1i64).to_le_bytes());
        let mut out = block(0x0A0D_0D0A, &shb);
        for link in links {
            let mut idb = link.to_le_bytes().to_vec();
            idb.extend([0, 0]);
            idb.extend(65_535u32.to_le_bytes());
            out.extend(block(1, &idb));
        }
        let frame = bytes(true, false);
        for iface in 0..links.len() as u32 {
            let mut epb = [iface, 0, 0, frame.len() as u32, frame.len() as u32]
                .map(u32::to_le_bytes)
                .concat();
            epb.extend(&frame);
            out.extend(block(6, &epb));
        }
        out
    }

    fn read_all(input: Vec<u8>) -> (usize, Vec<Problem>) {
        let source = CaptureSource::new(
            "n.pcapng".into(),
            "n".into(),
            Box::new(std::io::Cursor::new(input)),
        );
        let mut source = Box::new(source.unwrap());
        let (mut names, mut ifaces) = (Names::default(), NodeIfaces::default());
        let mut items = 0;
        while source.next(&mut names, &mut ifaces).is_some() {
            items += 1;
        }
        (items, source.finish(&mut ifaces))
    }

    #[test]
    fn a_pcapng_of_only_unknown_link_types_is_unusable_a_mixed_one_partial() {
        let (items, problems) = read_all(pcapng(&[147]));
        assert_eq!(items, 0);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].unusable(), "{}", problems[0]);
        let text = problems[0].to_string();
        assert!(text.contains("link type 147 (user-defined)"), "{text}");
        assert_eq!(text.matches("byte").count(), 1, "{text}");

        let (items, problems) = read_all(pcapng(&[1, 147, 147]));
        assert_eq!(items, 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(!problems[0].unusable(), "{}", problems[0]);
        let text = problems[0].to_string();
        assert!(text.contains("2 record(s)"), "{text}");
        assert_eq!(text.matches("byte").count(), 1, "{text}");
    }
}
