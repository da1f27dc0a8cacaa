//! Capture files (pcap, pcapng) → SYN sightings. The file is read by the probe crate's reader and
//! each frame parsed by its frame parser; this module only decides what a frame means for
//! analysis: which node and interface saw it, in which direction.

use super::input::{Item, Problem};
use super::sighting::{Names, Sighting};
use realip_probe::l7::forwarding_facts;
use realip_probe::parse::{parse, Framing, ParseError};
use realip_probe::pcapfile::{PcapError, PcapReader};
use realip_probe::wire::{Direction, Event, L7};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// What the capture file says about one frame besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta<'a> {
    pub ts_ns: u64,
    /// The pcapng interface name, when the file has one.
    pub iface: Option<&'a str>,
    /// Direction from pcapng packet flags, when recorded.
    pub dir: Option<Direction>,
}

/// The node a capture file stands for: its name without extension (`node-a.pcapng` → `node-a`).
pub fn node_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".into());
    let stem = stem
        .trim_end_matches(".pcapng")
        .trim_end_matches(".pcap")
        .trim_end_matches(".cap");
    if stem.is_empty() {
        "capture".into()
    } else {
        stem.to_string()
    }
}

/// What one frame means for analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A connection's opening SYN.
    Syn(Sighting),
    /// A data segment carrying forwarding headers or a PROXY protocol header.
    L7(Box<L7>),
    /// Anything else (SYN-ACK, ACK, data without forwarding facts).
    Other,
}

/// Reads one frame: its SYN sighting or the forwarding facts of its payload.
pub fn frame(
    names: &mut Names,
    node: &str,
    meta: FrameMeta<'_>,
    framing: Framing,
    bytes: &[u8],
) -> Result<Frame, ParseError> {
    let seg = parse(framing, bytes)?;
    let iface = match (meta.iface, seg.link_ifindex) {
        (Some(name), _) if !name.is_empty() && name != "any" => name.to_string(),
        (_, Some(index)) => format!("if{index}"),
        (Some(name), None) => name.to_string(),
        (None, None) => node.to_string(),
    };
    let dir = seg.link_dir.or(meta.dir);
    if seg.is_syn() {
        return Ok(Frame::Syn(Sighting {
            ts_ns: meta.ts_ns,
            node: names.id(node),
            iface: names.id(&iface),
            dir: dir.unwrap_or(Direction::In),
            dir_known: dir.is_some(),
            src: seg.src,
            sport: seg.sport,
            dst: seg.dst,
            dport: seg.dport,
            isn: seg.seq,
            tsval: seg.tsval,
            ttl: seg.ttl,
            ip_id: seg.ip_id,
        }));
    }
    if seg.payload.is_empty() || seg.syn || seg.rst {
        return Ok(Frame::Other);
    }
    let facts = forwarding_facts(seg.payload);
    if facts.is_empty() {
        return Ok(Frame::Other);
    }
    let l7 = facts.into_event(&seg, meta.ts_ns, node.to_string(), iface, dir);
    Ok(Frame::L7(Box::new(l7)))
}

/// One capture file, read a frame at a time: every SYN frame becomes a sighting of the node
/// the file stands for. Frames that are not TCP are skipped quietly; frames that should be but
/// cannot be parsed, and a file cut short, are reported with their byte offset.
pub struct CaptureSource {
    name: String,
    node: String,
    pcap: PcapReader<BufReader<File>>,
    problems: Vec<Problem>,
    bad_frames: u64,
    first_bad: Option<(u64, ParseError)>,
    unknown_links: u64,
    done: bool,
}

impl CaptureSource {
    pub fn new(path: &Path, name: String, reader: BufReader<File>) -> Result<Self, Problem> {
        let pcap = PcapReader::new(reader).map_err(|err| Problem::Format {
            file: name.clone(),
            message: err.to_string(),
        })?;
        Ok(CaptureSource {
            name,
            node: node_name(path),
            pcap,
            problems: Vec::new(),
            bad_frames: 0,
            first_bad: None,
            unknown_links: 0,
            done: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pcap.offset()
    }

    fn problem(&self, offset: u64, message: String) -> Problem {
        Problem::Capture {
            file: self.name.clone(),
            offset,
            message,
        }
    }

    /// The next SYN sighting or L7 event.
    pub fn next(&mut self, names: &mut Names) -> Option<Item> {
        while !self.done {
            let offset = self.pcap.offset();
            let record = match self.pcap.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(PcapError::UnknownLinkType { .. }) if self.unknown_links > 0 => {
                    self.unknown_links += 1;
                    continue;
                }
                Err(err @ PcapError::UnknownLinkType { .. }) => {
                    // The stream goes on after such a record; say it once.
                    self.unknown_links += 1;
                    let problem = self.problem(err.offset(), err.to_string());
                    self.problems.push(problem);
                    continue;
                }
                Err(err) => {
                    let problem = self.problem(
                        err.offset(),
                        format!("{err}; the frames before it were analyzed"),
                    );
                    self.problems.push(problem);
                    break;
                }
            };
            let meta = FrameMeta {
                ts_ns: record.ts_ns,
                iface: record.iface,
                dir: record.dir,
            };
            match frame(names, &self.node, meta, record.framing, record.data) {
                Ok(Frame::Syn(s)) => return Some(Item::Sighting(s)),
                Ok(Frame::L7(l7)) => return Some(Item::Event(Event::L7(*l7))),
                Ok(Frame::Other) => {}
                Err(ParseError::NotIp | ParseError::NotTcp | ParseError::Fragment) => {}
                Err(err) => {
                    self.bad_frames += 1;
                    self.first_bad.get_or_insert((offset, err));
                }
            }
        }
        self.done = true;
        None
    }

    /// The problems met, summed up.
    pub fn finish(mut self) -> Vec<Problem> {
        if self.unknown_links > 1 {
            let problem = self.problem(
                self.pcap.offset(),
                format!(
                    "{} records of link types this reader does not know were skipped",
                    self.unknown_links
                ),
            );
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
        self.problems
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

    fn syn_of(f: Result<Frame, ParseError>) -> Sighting {
        match f {
            Ok(Frame::Syn(s)) => s,
            other => panic!("not a SYN: {other:?}"),
        }
    }

    #[test]
    fn syn_frames_become_sightings_with_file_facts() {
        let mut names = Names::default();
        let meta = FrameMeta {
            ts_ns: 5,
            iface: Some("ens5"),
            dir: None,
        };
        let s = syn_of(frame(
            &mut names,
            "node-a",
            meta,
            Framing::Ethernet,
            &bytes(true, false),
        ));
        assert_eq!(
            (s.isn, s.tsval, s.ttl, s.ts_ns),
            (629_798_247, Some(2_657_712_186), 64, 5)
        );
        assert_eq!(names.get(s.iface), "ens5");
        assert_eq!(names.get(s.node), "node-a");
        assert!(!s.dir_known);
        let out = FrameMeta {
            dir: Some(Direction::Out),
            iface: None,
            ..meta
        };
        let s = syn_of(frame(
            &mut names,
            "node-a",
            out,
            Framing::Ethernet,
            &bytes(true, false),
        ));
        assert_eq!((s.dir, s.dir_known), (Direction::Out, true));
        assert_eq!(names.get(s.iface), "node-a");
    }

    #[test]
    fn syn_ack_and_plain_data_are_other_forwarding_data_is_l7_garbage_an_error() {
        let mut names = Names::default();
        let meta = FrameMeta {
            ts_ns: 0,
            iface: None,
            dir: None,
        };
        let mut read = |b: &[u8]| frame(&mut names, "n", meta, Framing::Ethernet, b);
        assert_eq!(read(&bytes(true, true)), Ok(Frame::Other));
        assert_eq!(read(&bytes(false, true)), Ok(Frame::Other));
        assert_eq!(
            read(&bytes_with(false, true, b"GET / HTTP/1.1\r\n\r\n")),
            Ok(Frame::Other)
        );
        let request =
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n\r\n";
        match read(&bytes_with(false, true, request)) {
            Ok(Frame::L7(l7)) => {
                assert_eq!(l7.seq, 629_798_247);
                assert_eq!(l7.x_forwarded_for.as_deref(), Some("203.0.113.9, 10.0.0.1"));
                assert_eq!(l7.iface, "n");
            }
            other => panic!("{other:?}"),
        }
        assert!(read(&[1, 2, 3]).is_err());
    }

    #[test]
    fn node_is_the_file_name_without_extension() {
        assert_eq!(node_name(Path::new("/tmp/node-a.pcapng")), "node-a");
        assert_eq!(node_name(Path::new("b.pcap")), "b");
        assert_eq!(node_name(Path::new(".pcap")), "capture");
    }
}
