//! The classic BPF program the capture sockets run in the kernel. Pure: it builds instructions,
//! it never touches a socket.
//!
//! The program passes TCP segments with SYN set and ACK clear, over IPv4 and IPv6, behind zero,
//! one or two inline VLAN tags (802.1Q / 802.1ad / 0x9100), and returns the length of the link, IP and TCP
//! headers: that return value is the snap length, so no payload byte of a SYN leaves the kernel.
//! `--port` and `--host` become comparisons inside the program. With `l7`, data segments toward a
//! watched port whose payload begins like an HTTP request or a PROXY header also pass, capped at
//! [`L7_SNAP`] bytes.
//!
//! IPv6 extension headers (hop-by-hop, routing, fragment, destination options) are walked, up to
//! [`IPV6_EXT_WALK`] of them: a SYN behind them passes like any other, and MLD reports (ICMPv6
//! behind hop-by-hop) stay in the kernel. A longer chain is beyond a loop-free program: it passes
//! capped at [`EXT_SNAP`] bytes and userspace decides with [`FilterSpec::admits`].

use crate::parse::{Framing, Segment};
use std::fmt;
use std::net::IpAddr;

/// Bytes passed for a data segment in `l7` mode (headers + the start of the first segment).
pub const L7_SNAP: u32 = 16 * 1024;
/// Bytes passed for an IPv6 packet with extension headers, for userspace to decide on.
pub const EXT_SNAP: u32 = 512;
/// Most ports and hosts one program compares against.
pub const MAX_PORTS: usize = 64;
pub const MAX_HOSTS: usize = 16;

/// One classic BPF instruction, laid out like the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// What the capture watches; the same spec drives the kernel program and the userspace check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Ports to watch (either end of a SYN; destination of an `l7` data segment). Empty: all.
    pub ports: Vec<u16>,
    /// Addresses to watch (either end). Empty: all.
    pub hosts: Vec<IpAddr>,
    /// Also pass the start of data segments toward the watched ports.
    pub l7: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    #[error("too many ports for the kernel filter: {0} (at most {MAX_PORTS})")]
    TooManyPorts(usize),
    #[error("too many hosts for the kernel filter: {0} (at most {MAX_HOSTS})")]
    TooManyHosts(usize),
    #[error("no kernel filter for {0:?} framing (capture sockets see Ethernet or raw IP)")]
    Framing(Framing),
    #[error("the filter program does not fit: a jump spans {0} instructions")]
    JumpTooFar(usize),
}

/// What userspace does with a frame the kernel passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Syn,
    /// A data segment that may carry forwarding facts (`l7` mode only).
    Data,
    /// Outside the spec (only possible for frames the program cannot fully inspect).
    Skip,
}

impl FilterSpec {
    /// The userspace twin of the kernel program, for frames it passes without full inspection.
    pub fn admits(&self, seg: &Segment<'_>) -> Admit {
        let host_ok =
            self.hosts.is_empty() || self.hosts.contains(&seg.src) || self.hosts.contains(&seg.dst);
        let any_port = |port: u16| self.ports.is_empty() || self.ports.contains(&port);
        if !host_ok {
            Admit::Skip
        } else if seg.is_syn() && (any_port(seg.sport) || any_port(seg.dport)) {
            Admit::Syn
        } else if self.l7 && !seg.syn && !seg.payload.is_empty() && any_port(seg.dport) {
            Admit::Data
        } else {
            Admit::Skip
        }
    }
}

impl fmt::Display for FilterSpec {
    /// In words, for `hello.filter`: e.g. `tcp syn, ports 80,31908, hosts 192.0.2.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |items: Vec<String>| items.join(",");
        write!(f, "tcp syn")?;
        if self.l7 {
            write!(f, " + first data segment to watched ports")?;
        }
        if !self.ports.is_empty() {
            write!(
                f,
                ", ports {}",
                join(self.ports.iter().map(u16::to_string).collect())
            )?;
        }
        if !self.hosts.is_empty() {
            write!(
                f,
                ", hosts {}",
                join(self.hosts.iter().map(IpAddr::to_string).collect())
            )?;
        }
        Ok(())
    }
}

// Instruction classes and fields (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const RET_A: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_8021AD: u32 = 0x88a8;
/// Pre-standard QinQ outer tag, still emitted by some switches.
const ETH_P_QINQ: u32 = 0x9100;
const IPPROTO_TCP: u32 = 6;
/// IPv6 extension headers of the generic (next, length) shape: hop-by-hop, routing, destination.
const IPV6_EXT_GENERIC: [u32; 3] = [0, 43, 60];
const IPV6_FRAGMENT: u32 = 44;
/// Extension headers the program walks before handing a packet to userspace.
pub const IPV6_EXT_WALK: usize = 3;
/// First four payload bytes of the requests `l7` mode looks at: HTTP methods, PROXY v1 and v2.
const L7_STARTS: [&[u8; 4]; 10] = [
    b"GET ",
    b"POST",
    b"PUT ",
    b"HEAD",
    b"DELE",
    b"PATC",
    b"OPTI",
    b"CONN",
    b"PROX",
    b"\r\n\r\n",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Next {
    Fall,
    To(Label),
}

/// A tiny assembler: instructions with symbolic jump targets, resolved at the end.
#[derive(Default)]
struct Asm {
    code: Vec<(u16, u32, Next, Next)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn here(&mut self, label: Label) {
        self.labels[label.0] = Some(self.code.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((code, k, Next::Fall, Next::Fall));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Next, jf: Next) {
        self.code.push((code, k, jt, jf));
    }
    /// `if A == k goto to`.
    fn jeq(&mut self, k: u32, to: Label) {
        self.jump(JMP | JEQ | K, k, Next::To(to), Next::Fall);
    }
    /// `if A != k goto to`.
    fn jne(&mut self, k: u32, to: Label) {
        self.jump(JMP | JEQ | K, k, Next::Fall, Next::To(to));
    }
    /// `if A != k return 0`, local so that it never needs a long conditional jump.
    fn reject_unless(&mut self, k: u32) {
        let pass = self.label();
        self.jump(JMP | JEQ | K, k, Next::To(pass), Next::Fall);
        self.op(RET | K, 0);
        self.here(pass);
    }
    /// `if A & k != 0 return 0`.
    fn reject_if_set(&mut self, k: u32) {
        let pass = self.label();
        self.jump(JMP | JSET | K, k, Next::Fall, Next::To(pass));
        self.op(RET | K, 0);
        self.here(pass);
    }
    fn goto(&mut self, to: Label) {
        self.jump(JMP | JA, 0, Next::To(to), Next::Fall);
    }
    fn finish(self) -> Result<Vec<Insn>, BpfError> {
        let Asm { code, labels } = self;
        let offset = |at: usize, next: Next| -> Result<usize, BpfError> {
            match next {
                Next::Fall => Ok(0),
                // Every label is placed before finish; an unplaced one would be a builder bug,
                // so it resolves to "fall through" rather than panicking.
                Next::To(Label(l)) => Ok(labels[l].unwrap_or(at + 1) - (at + 1)),
            }
        };
        code.iter()
            .enumerate()
            .map(|(at, &(op, k, jt, jf))| {
                let t = offset(at, jt)?;
                let f = offset(at, jf)?;
                if op == JMP | JA {
                    return Ok(Insn {
                        code: op,
                        jt: 0,
                        jf: 0,
                        k: t as u32,
                    });
                }
                let short = |n: usize| u8::try_from(n).map_err(|_| BpfError::JumpTooFar(n));
                Ok(Insn {
                    code: op,
                    jt: short(t)?,
                    jf: short(f)?,
                    k,
                })
            })
            .collect()
    }
}

/// Builds the program for one interface's framing. The result is what `SO_ATTACH_FILTER` takes.
pub fn compile(framing: Framing, spec: &FilterSpec) -> Result<Vec<Insn>, BpfError> {
    if spec.ports.len() > MAX_PORTS {
        return Err(BpfError::TooManyPorts(spec.ports.len()));
    }
    if spec.hosts.len() > MAX_HOSTS {
        return Err(BpfError::TooManyHosts(spec.hosts.len()));
    }
    let mut a = Asm::default();
    let reject = a.label();
    let v4 = a.label();
    let v6 = a.label();
    let tcp = a.label();

    // Leave X = offset of the IP header, then dispatch on the IP version.
    match framing {
        Framing::Ethernet => {
            let dispatch = a.label();
            let mut offset = 14;
            for _ in 0..3 {
                let tagged = a.label();
                a.op(LD | H | ABS, offset - 2);
                a.op(LDX | W | IMM, offset);
                if offset < 22 {
                    a.jeq(ETH_P_8021Q, tagged);
                    a.jeq(ETH_P_8021AD, tagged);
                    a.jeq(ETH_P_QINQ, tagged);
                }
                a.goto(dispatch);
                a.here(tagged);
                offset += 4;
            }
            a.here(dispatch);
            a.jeq(ETH_P_IP, v4);
            a.jeq(ETH_P_IPV6, v6);
            a.goto(reject);
        }
        Framing::RawIp => {
            a.op(LDX | W | IMM, 0);
            a.op(LD | B | ABS, 0);
            a.op(ALU | AND | K, 0xf0);
            a.jeq(0x40, v4);
            a.jeq(0x60, v6);
            a.goto(reject);
        }
        other => return Err(BpfError::Framing(other)),
    }

    // IPv4: TCP, not a later fragment, hosts; then X = offset of the TCP header.
    a.here(v4);
    a.op(LD | B | IND, 9);
    a.reject_unless(IPPROTO_TCP);
    a.op(LD | H | IND, 6);
    a.reject_if_set(0x1fff);
    let v4_hosts: Vec<u32> = spec
        .hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V4(v4) => Some(u32::from(*v4)),
            IpAddr::V6(_) => None,
        })
        .collect();
    if !spec.hosts.is_empty() {
        let host_ok = a.label();
        for field in [12, 16] {
            a.op(LD | W | IND, field);
            for &host in &v4_hosts {
                a.jeq(host, host_ok);
            }
        }
        a.goto(reject);
        a.here(host_ok);
    }
    a.op(LD | B | IND, 0);
    a.op(ALU | AND | K, 0x0f);
    a.op(ALU | LSH | K, 2);
    a.op(ALU | ADD | X, 0);
    a.op(MISC | TAX, 0);
    a.goto(tcp);

    // IPv6: hosts on the fixed header; TCP directly, or extension headers for userspace.
    a.here(v6);
    if !spec.hosts.is_empty() {
        let host_ok = a.label();
        for host in &spec.hosts {
            let IpAddr::V6(v6) = host else { continue };
            let words = v6.octets();
            for field in [8u32, 24] {
                let next = a.label();
                for (i, word) in words.chunks_exact(4).enumerate() {
                    let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
                    a.op(LD | W | IND, field + 4 * i as u32);
                    a.jne(word, next);
                }
                a.goto(host_ok);
                a.here(next);
            }
        }
        a.goto(reject);
        a.here(host_ok);
    }
    // Walk up to IPV6_EXT_WALK extension headers (M[0] = next header, X = its offset); a
    // longer chain goes to userspace capped at EXT_SNAP.
    a.op(LD | B | IND, 6);
    a.op(ST, 0);
    a.op(MISC | TXA, 0);
    a.op(ALU | ADD | K, 40);
    a.op(MISC | TAX, 0);
    for _ in 0..IPV6_EXT_WALK {
        let generic = a.label();
        let fragment = a.label();
        let next = a.label();
        a.op(LD | MEM, 0);
        a.jeq(IPPROTO_TCP, tcp);
        a.jeq(IPV6_FRAGMENT, fragment);
        for kind in IPV6_EXT_GENERIC {
            a.jeq(kind, generic);
        }
        a.op(RET | K, 0);
        // Hop-by-hop, routing, destination options: (next, length in 8-octet units - 1).
        a.here(generic);
        a.op(LD | B | IND, 0);
        a.op(ST, 0);
        a.op(LD | B | IND, 1);
        a.op(ALU | LSH | K, 3);
        a.op(ALU | ADD | K, 8);
        a.op(ALU | ADD | X, 0);
        a.op(MISC | TAX, 0);
        a.goto(next);
        // Fragment header: 8 bytes; only the first fragment carries the TCP header.
        a.here(fragment);
        a.op(LD | H | IND, 2);
        a.reject_if_set(0xfff8);
        a.op(LD | B | IND, 0);
        a.op(ST, 0);
        a.op(MISC | TXA, 0);
        a.op(ALU | ADD | K, 8);
        a.op(MISC | TAX, 0);
        a.here(next);
    }
    a.op(LD | MEM, 0);
    a.jeq(IPPROTO_TCP, tcp);
    a.op(RET | K, EXT_SNAP);

    // TCP (X = its offset): SYN without ACK passes with the headers only.
    a.here(tcp);
    let not_syn = a.label();
    a.op(LD | B | IND, 13);
    a.op(ALU | AND | K, 0x12);
    a.jne(0x02, not_syn);
    if !spec.ports.is_empty() {
        let port_ok = a.label();
        for field in [0, 2] {
            a.op(LD | H | IND, field);
            for &port in &spec.ports {
                a.jeq(u32::from(port), port_ok);
            }
        }
        a.goto(reject);
        a.here(port_ok);
    }
    // A = TCP data offset * 4 + X = every header byte from the start of the frame.
    a.op(LD | B | IND, 12);
    a.op(ALU | AND | K, 0xf0);
    a.op(ALU | RSH | K, 2);
    a.op(ALU | ADD | X, 0);
    a.op(RET | RET_A, 0);

    a.here(not_syn);
    if spec.l7 {
        // Data segments toward a watched port whose payload starts like a request head. A load
        // past the end of the frame ends the program with 0, so empty segments never pass.
        a.op(LD | B | IND, 13);
        a.reject_if_set(0x02);
        if !spec.ports.is_empty() {
            let port_ok = a.label();
            a.op(LD | H | IND, 2);
            for &port in &spec.ports {
                a.jeq(u32::from(port), port_ok);
            }
            a.goto(reject);
            a.here(port_ok);
        }
        let data_ok = a.label();
        a.op(LD | B | IND, 12);
        a.op(ALU | AND | K, 0xf0);
        a.op(ALU | RSH | K, 2);
        a.op(ALU | ADD | X, 0);
        a.op(MISC | TAX, 0);
        a.op(LD | W | IND, 0);
        for start in L7_STARTS {
            a.jeq(u32::from_be_bytes(*start), data_ok);
        }
        a.goto(reject);
        a.here(data_ok);
        a.op(RET | K, L7_SNAP);
    }
    a.here(reject);
    a.op(RET | K, 0);
    a.finish()
}

#[cfg(test)]
mod interp {
    //! A classic BPF interpreter with the kernel's semantics for the opcodes [`compile`] emits:
    //! big-endian loads, and a load past the end of the packet ends the program returning 0.
    use super::*;

    pub fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let mut mem = [0u32; 16];
        let load = |at: u32, size: usize| -> Option<u32> {
            let at = at as usize;
            let bytes = pkt.get(at..at.checked_add(size)?)?;
            Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        };
        for _ in 0..4096 {
            let Some(insn) = prog.get(pc) else {
                panic!("ran off the end of the program at {pc}");
            };
            pc += 1;
            let size = match insn.code & 0x18 {
                W => 4,
                H => 2,
                _ => 1,
            };
            match insn.code & 0x07 {
                LD if insn.code & 0xe0 == MEM => a = mem[insn.k as usize],
                LD => {
                    let at = match insn.code & 0xe0 {
                        ABS => insn.k,
                        IND => x.wrapping_add(insn.k),
                        mode => panic!("ld mode {mode:#x}"),
                    };
                    match load(at, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                LDX => {
                    assert_eq!(insn.code, LDX | W | IMM);
                    x = insn.k;
                }
                ST => mem[insn.k as usize] = a,
                ALU => {
                    let operand = if insn.code & X != 0 { x } else { insn.k };
                    a = match insn.code & 0xf0 {
                        ADD => a.wrapping_add(operand),
                        AND => a & operand,
                        LSH => a << operand,
                        RSH => a >> operand,
                        op => panic!("alu op {op:#x}"),
                    };
                }
                JMP => {
                    let taken = match insn.code & 0xf0 {
                        JA => {
                            pc += insn.k as usize;
                            continue;
                        }
                        JEQ => a == insn.k,
                        JSET => a & insn.k != 0,
                        op => panic!("jmp op {op:#x}"),
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                RET => return if insn.code & RET_A != 0 { a } else { insn.k },
                MISC => match insn.code & 0xf8 {
                    TAX => x = a,
                    TXA => a = x,
                    op => panic!("misc op {op:#x}"),
                },
                class => panic!("class {class:#x}"),
            }
        }
        panic!("program did not end")
    }
}

#[cfg(test)]
mod tests {
    use super::interp::run;
    use super::*;
    use etherparse::{PacketBuilder, PacketBuilderStep, TcpHeader, TcpOptionElement};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT: [u8; 4] = [198, 51, 100, 7];
    const NODE: [u8; 4] = [198, 51, 100, 1];
    const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    const NODE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    #[derive(Clone, Copy)]
    enum Flags {
        Syn,
        SynAck,
        Ack,
    }

    fn tcp(
        step: PacketBuilderStep<etherparse::IpHeaders>,
        flags: Flags,
    ) -> PacketBuilderStep<TcpHeader> {
        let b = step.tcp(41770, 31908, 629798247, 64240);
        let b = match flags {
            Flags::Syn => b.syn(),
            Flags::SynAck => b.syn().ack(1),
            Flags::Ack => b.ack(1),
        };
        b.options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::Timestamp(2657712186, 0),
        ])
        .unwrap()
    }

    fn write(b: PacketBuilderStep<TcpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn eth_v4(flags: Flags, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(CLIENT, NODE, 64);
        write(tcp(b, flags), payload)
    }

    fn eth_v6(flags: Flags, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(CLIENT6, NODE6, 64);
        write(tcp(b, flags), payload)
    }

    fn raw_v4(flags: Flags) -> Vec<u8> {
        write(tcp(PacketBuilder::ipv4(CLIENT, NODE, 64), flags), &[])
    }

    fn raw_v6(flags: Flags) -> Vec<u8> {
        write(tcp(PacketBuilder::ipv6(CLIENT6, NODE6, 64), flags), &[])
    }

    /// Inserts one 802.1Q (or 802.1ad) tag after the MAC addresses.
    fn tagged(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
        let mut out = frame[..12].to_vec();
        out.extend(tpid.to_be_bytes());
        out.extend(vid.to_be_bytes());
        out.extend(&frame[12..]);
        out
    }

    fn headers_len(frame: &[u8], link: usize) -> u32 {
        let framing = if link == 0 {
            Framing::RawIp
        } else {
            Framing::Ethernet
        };
        let seg = crate::parse::parse(framing, frame).unwrap();
        (frame.len() - seg.payload.len()) as u32
    }

    fn all() -> FilterSpec {
        FilterSpec::default()
    }

    #[test]
    fn syn_passes_with_headers_only() {
        let prog = compile(Framing::Ethernet, &all()).unwrap();
        for frame in [eth_v4(Flags::Syn, b""), eth_v6(Flags::Syn, b"")] {
            let snap = run(&prog, &frame);
            assert_eq!(snap, headers_len(&frame, 14));
            assert_eq!(snap as usize, frame.len());
        }
        // A SYN carrying data (TCP Fast Open): the payload stays in the kernel.
        let tfo = eth_v4(Flags::Syn, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(run(&prog, &tfo) as usize, tfo.len() - 18);
        // 14 Ethernet + 20 IPv4 + 36 TCP (MSS, timestamps, padding).
        assert_eq!(run(&prog, &eth_v4(Flags::Syn, b"")), 14 + 20 + 36);
        assert_eq!(run(&prog, &eth_v6(Flags::Syn, b"")), 14 + 40 + 36);
    }

    #[test]
    fn syn_behind_vlan_tags_passes() {
        let prog = compile(Framing::Ethernet, &all()).unwrap();
        for base in [eth_v4(Flags::Syn, b""), eth_v6(Flags::Syn, b"")] {
            let one = tagged(&base, 0x8100, 42);
            assert_eq!(run(&prog, &one) as usize, one.len());
            let two = tagged(&tagged(&base, 0x8100, 42), 0x88a8, 7);
            assert_eq!(run(&prog, &two) as usize, two.len());
            let three = tagged(&two, 0x8100, 9);
            assert_eq!(run(&prog, &three), 0, "three tags are not looked into");
        }
    }

    #[test]
    fn raw_ip_links_start_at_the_ip_header() {
        let prog = compile(Framing::RawIp, &all()).unwrap();
        for frame in [raw_v4(Flags::Syn), raw_v6(Flags::Syn)] {
            assert_eq!(run(&prog, &frame), headers_len(&frame, 0));
        }
        assert_eq!(run(&prog, &raw_v4(Flags::SynAck)), 0);
        assert_eq!(run(&prog, &raw_v6(Flags::Ack)), 0);
        // An Ethernet frame on a raw-IP program, and vice versa, is not mistaken for a SYN.
        assert_eq!(run(&prog, &eth_v4(Flags::Syn, b"")), 0);
        let eth = compile(Framing::Ethernet, &all()).unwrap();
        assert_eq!(run(&eth, &raw_v4(Flags::Syn)), 0);
    }

    #[test]
    fn everything_but_a_syn_is_rejected() {
        let prog = compile(Framing::Ethernet, &all()).unwrap();
        for frame in [
            eth_v4(Flags::SynAck, b""),
            eth_v4(Flags::Ack, b""),
            eth_v4(Flags::Ack, b"GET / HTTP/1.1\r\n\r\n"),
            eth_v6(Flags::SynAck, b""),
            eth_v6(Flags::Ack, b"data"),
        ] {
            assert_eq!(run(&prog, &frame), 0);
        }
        let mut udp = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT, NODE, 64)
            .udp(53, 53)
            .write(&mut udp, &[0x12; 20])
            .unwrap();
        assert_eq!(run(&prog, &udp), 0);
        // ARP request: Ethernet type 0x0806.
        let mut arp = [MAC_B.as_slice(), MAC_A.as_slice(), &[0x08, 0x06]].concat();
        arp.extend([0u8; 28]);
        assert_eq!(run(&prog, &arp), 0);
        // Truncated frames end the program with 0 instead of reading past them.
        let syn = eth_v4(Flags::Syn, b"");
        for len in 0..40 {
            assert_eq!(run(&prog, &syn[..len]), 0, "prefix {len}");
        }
    }

    #[test]
    fn later_ipv4_fragments_are_rejected() {
        let prog = compile(Framing::Ethernet, &all()).unwrap();
        let mut frame = eth_v4(Flags::Syn, b"");
        frame[14 + 6] = 0x00;
        frame[14 + 7] = 0x10; // fragment offset 16 (x8 bytes)
        assert_eq!(run(&prog, &frame), 0);
        frame[14 + 6] = 0x20; // more fragments, offset 0: the TCP header is here
        frame[14 + 7] = 0x00;
        assert_eq!(run(&prog, &frame) as usize, frame.len());
    }

    /// An IPv6 frame whose TCP header sits behind the given extension headers
    /// (next-header codes; each generic header 8 bytes, a fragment header with `frag_off`).
    fn eth_v6_ext(chain: &[u8], frag_off: u16, flags: Flags) -> Vec<u8> {
        let plain = eth_v6(flags, b"");
        let (eth, ip, tcp) = (&plain[..14], &plain[14..54], &plain[54..]);
        let mut ip = ip.to_vec();
        let mut exts = Vec::new();
        for (i, &kind) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(6);
            if kind == 44 {
                exts.extend([next, 0]);
                exts.extend(frag_off.to_be_bytes());
                exts.extend([0, 0, 0, 1]);
            } else {
                exts.extend([next, 0, 0, 0, 0, 0, 0, 0]);
            }
        }
        ip[6] = chain.first().copied().unwrap_or(6);
        let payload_len = (exts.len() + tcp.len()) as u16;
        ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
        [eth, &ip, &exts, tcp].concat()
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let prog = compile(Framing::Ethernet, &all()).unwrap();
        for chain in [&[0u8][..], &[0, 60], &[0, 43, 44], &[44]] {
            let frame = eth_v6_ext(chain, 0, Flags::Syn);
            assert_eq!(run(&prog, &frame) as usize, frame.len(), "{chain:?}");
            assert_eq!(run(&prog, &eth_v6_ext(chain, 0, Flags::SynAck)), 0);
            assert!(crate::parse::parse(Framing::Ethernet, &frame)
                .unwrap()
                .is_syn());
        }
        // A later fragment carries no TCP header.
        assert_eq!(run(&prog, &eth_v6_ext(&[44], 8 << 3, Flags::Syn)), 0);
        // MLD: ICMPv6 behind hop-by-hop stays in the kernel.
        let mut mld = eth_v6_ext(&[0], 0, Flags::Syn);
        mld[54] = 58;
        assert_eq!(run(&prog, &mld), 0);
        // Four extension headers: past the walk, userspace decides.
        assert_eq!(
            run(&prog, &eth_v6_ext(&[0, 60, 43, 60], 0, Flags::Ack)),
            EXT_SNAP
        );
        let mut udp = eth_v6(Flags::Syn, b"");
        udp[14 + 6] = 17;
        assert_eq!(run(&prog, &udp), 0);
    }

    #[test]
    fn ports_narrow_in_the_kernel() {
        let spec = FilterSpec {
            ports: vec![80, 31908],
            ..all()
        };
        let prog = compile(Framing::Ethernet, &spec).unwrap();
        assert!(run(&prog, &eth_v4(Flags::Syn, b"")) > 0);
        assert!(run(&prog, &eth_v6(Flags::Syn, b"")) > 0);
        let other = FilterSpec {
            ports: vec![443],
            ..all()
        };
        let prog = compile(Framing::Ethernet, &other).unwrap();
        assert_eq!(run(&prog, &eth_v4(Flags::Syn, b"")), 0);
        // Either end matches, like tcpdump's `port`: 41770 is the source port.
        let source = FilterSpec {
            ports: vec![41770],
            ..all()
        };
        let prog = compile(Framing::Ethernet, &source).unwrap();
        assert!(run(&prog, &eth_v4(Flags::Syn, b"")) > 0);
    }

    #[test]
    fn hosts_narrow_in_the_kernel_per_family() {
        let v4_only = FilterSpec {
            hosts: vec![IpAddr::from(NODE)],
            ..all()
        };
        let prog = compile(Framing::Ethernet, &v4_only).unwrap();
        assert!(run(&prog, &eth_v4(Flags::Syn, b"")) > 0);
        assert_eq!(run(&prog, &eth_v6(Flags::Syn, b"")), 0);
        let v6 = FilterSpec {
            hosts: vec![
                IpAddr::from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
                IpAddr::from(CLIENT6),
            ],
            ..all()
        };
        let prog = compile(Framing::Ethernet, &v6).unwrap();
        assert!(run(&prog, &eth_v6(Flags::Syn, b"")) > 0);
        assert_eq!(run(&prog, &eth_v4(Flags::Syn, b"")), 0);
        let elsewhere = FilterSpec {
            hosts: vec![IpAddr::from([192, 0, 2, 1])],
            ..all()
        };
        let prog = compile(Framing::RawIp, &elsewhere).unwrap();
        assert_eq!(run(&prog, &raw_v4(Flags::Syn)), 0);
    }

    #[test]
    fn l7_passes_request_heads_to_watched_ports_only() {
        let spec = FilterSpec {
            ports: vec![31908],
            l7: true,
            ..all()
        };
        let prog = compile(Framing::Ethernet, &spec).unwrap();
        let get = eth_v4(Flags::Ack, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(run(&prog, &get), L7_SNAP);
        let proxy = eth_v6(Flags::Ack, b"PROXY TCP4 192.0.2.1 198.51.100.1 1 2\r\n");
        assert_eq!(run(&prog, &proxy), L7_SNAP);
        let v2 = eth_v4(Flags::Ack, b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c");
        assert_eq!(run(&prog, &v2), L7_SNAP);
        assert_eq!(run(&prog, &eth_v4(Flags::Ack, b"")), 0, "pure ACK");
        assert_eq!(run(&prog, &eth_v4(Flags::Ack, b"body bytes")), 0);
        assert_eq!(
            run(&prog, &eth_v4(Flags::SynAck, b"GET / HTTP/1.1\r\n\r\n")),
            0
        );
        // SYNs still pass with their headers only.
        assert_eq!(run(&prog, &eth_v4(Flags::Syn, b"")), 14 + 20 + 36);
        let elsewhere = FilterSpec {
            ports: vec![80],
            l7: true,
            ..all()
        };
        let prog = compile(Framing::Ethernet, &elsewhere).unwrap();
        assert_eq!(run(&prog, &get), 0);
        // Without l7 no data segment ever passes.
        let prog = compile(Framing::Ethernet, &all()).unwrap();
        assert_eq!(run(&prog, &get), 0);
    }

    #[test]
    fn largest_specs_still_assemble() {
        let spec = FilterSpec {
            ports: (1..=MAX_PORTS as u16).collect(),
            hosts: (0..MAX_HOSTS as u16)
                .map(|i| {
                    if i % 2 == 0 {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i])
                    } else {
                        IpAddr::from([192, 0, 2, i as u8])
                    }
                })
                .collect(),
            l7: true,
        };
        for framing in [Framing::Ethernet, Framing::RawIp] {
            let prog = compile(framing, &spec).unwrap();
            assert!(prog.len() < 4096);
        }
        let too_many = FilterSpec {
            ports: vec![1; MAX_PORTS + 1],
            ..all()
        };
        assert_eq!(
            compile(Framing::Ethernet, &too_many),
            Err(BpfError::TooManyPorts(MAX_PORTS + 1))
        );
    }

    #[test]
    fn userspace_twin_agrees_on_what_it_decides() {
        let spec = FilterSpec {
            ports: vec![31908],
            hosts: vec![IpAddr::from(NODE6)],
            l7: true,
        };
        let frame = eth_v6(Flags::Syn, b"");
        let seg = crate::parse::parse(Framing::Ethernet, &frame).unwrap();
        assert_eq!(spec.admits(&seg), Admit::Syn);
        let frame = eth_v6(Flags::Ack, b"GET / HTTP/1.1\r\n\r\n");
        let seg = crate::parse::parse(Framing::Ethernet, &frame).unwrap();
        assert_eq!(spec.admits(&seg), Admit::Data);
        let frame = eth_v4(Flags::Syn, b"");
        let seg = crate::parse::parse(Framing::Ethernet, &frame).unwrap();
        assert_eq!(spec.admits(&seg), Admit::Skip);
        assert_eq!(
            spec.to_string(),
            "tcp syn + first data segment to watched ports, ports 31908, hosts 2001:db8::1"
        );
    }

    proptest::proptest! {
        /// The kernel program and its userspace twin decide alike on any TCP segment.
        #[test]
        fn program_and_twin_agree(
            sport in 1u16..4, dport in 1u16..4, flags in 0u8..64, v6 in proptest::bool::ANY,
            src in 1u8..4, ports in proptest::collection::vec(1u16..4, 0..3),
            hosts in proptest::collection::vec(1u8..4, 0..2), l7 in proptest::bool::ANY,
            payload in proptest::sample::select(vec![&b""[..], b"GET /", b"xyz1"]),
        ) {
            let to_ip = |last: u8| if v6 {
                IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(last)])
            } else {
                IpAddr::from([192, 0, 2, last])
            };
            let spec = FilterSpec { ports, hosts: hosts.into_iter().map(to_ip).collect(), l7 };
            let ip = match (to_ip(src), to_ip(9)) {
                (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(s.octets(), d.octets(), 64),
                (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(s.octets(), d.octets(), 64),
                _ => unreachable!(),
            };
            let mut frame = write(ip.tcp(sport, dport, 7, 1000), payload);
            frame[14 + if v6 { 40 } else { 20 } + 13] = flags;
            let seg = crate::parse::parse(Framing::Ethernet, &frame).unwrap();
            let prog = compile(Framing::Ethernet, &spec).unwrap();
            let verdict = run(&prog, &frame);
            let twin = spec.admits(&seg);
            // The program's payload test is narrower than the twin's (request heads only).
            let twin_passes = match twin {
                Admit::Syn => true,
                Admit::Data => payload == b"GET /",
                Admit::Skip => false,
            };
            proptest::prop_assert_eq!(verdict > 0, twin_passes, "{:?} {:?}", spec, twin);
        }
    }
}
