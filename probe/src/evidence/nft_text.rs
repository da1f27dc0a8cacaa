//! A native nftables rule rendered as `nft list ruleset` prints its line: the register-level
//! expressions (`payload load → cmp`, `meta load → bitwise → meta set`, `immediate → nat`, …)
//! folded back into statements, protocol dependencies (`meta l4proto tcp` before `tcp dport`)
//! dropped as nft drops them, values printed in their types (addresses, ports, marks, ct state
//! names, interface names).
//!
//! Covers what kube-proxy's nftables mode, Calico, Cilium, flannel and Docker write; an
//! expression it cannot fold is printed as `[unsupported: NAME]` rather than guessed at.

use super::nft::{Data, Expr, NftElem, NftSet, Verdict};
use super::nft::{
    NFT_BREAK, NFT_CONTINUE, NFT_GOTO, NFT_JUMP, NFT_RETURN, NF_ACCEPT, NF_DROP, NF_QUEUE,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Sets of the rule's table, by name, with the elements of anonymous ones.
#[derive(Debug, Clone, Default)]
pub struct Sets {
    pub sets: HashMap<String, (NftSet, Vec<NftElem>)>,
}

/// What rendering needs besides the rule.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The table's family (NFPROTO_*).
    pub family: u8,
    pub sets: Sets,
    /// Interface names by index (`iif "eth0"`).
    pub ifnames: HashMap<u32, String>,
}

const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// How a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Ipv4,
    Ipv6,
    /// inet_service: a big-endian port.
    Port,
    /// inet_proto: a protocol number by name.
    Proto,
    /// A host-order 32-bit mark, `0x%08x`.
    Mark,
    Ifname,
    Ifindex,
    CtState,
    CtStatus,
    CtDir,
    Nfproto,
    EtherType,
    Pkttype,
    FibType,
    Verdict,
    /// A big-endian integer (payload fields).
    BeInt,
    /// A host-order integer (meta, ct, numgen).
    HostInt,
    /// Raw bytes (`0x…`).
    Hex,
}

impl Ty {
    /// nft's datatype ids (for set key types).
    fn from_id(id: u32) -> Ty {
        match id {
            1 => Ty::Verdict,
            2 => Ty::Nfproto,
            7 => Ty::Ipv4,
            8 => Ty::Ipv6,
            10 => Ty::EtherType,
            12 => Ty::Proto,
            13 => Ty::Port,
            19 => Ty::Mark,
            20 => Ty::Ifindex,
            5 | 41 => Ty::Ifname,
            26 => Ty::CtState,
            27 => Ty::CtDir,
            28 => Ty::CtStatus,
            _ => Ty::HostInt,
        }
    }
    /// Bytes a value of this type takes in a register.
    fn width(self) -> usize {
        match self {
            Ty::Ipv4 | Ty::Mark | Ty::Ifindex | Ty::CtState | Ty::CtStatus | Ty::FibType => 4,
            Ty::Ipv6 | Ty::Ifname => 16,
            Ty::Port | Ty::EtherType => 2,
            Ty::Proto | Ty::Nfproto | Ty::Pkttype | Ty::CtDir => 1,
            Ty::Verdict | Ty::BeInt | Ty::HostInt | Ty::Hex => 4,
        }
    }
}

/// What a register holds while the rule is folded.
#[derive(Debug, Clone, PartialEq)]
enum Sym {
    /// A packet field, resolved to a name when printed.
    Field(Field),
    Meta(u32),
    Ct {
        key: u32,
        dir: Option<u8>,
    },
    Fib {
        flags: u32,
        result: u32,
    },
    Numgen {
        random: bool,
        modulus: u32,
        offset: u32,
    },
    Masked {
        inner: Box<Sym>,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Value(Vec<u8>),
    /// Already printed (a map lookup's result, a concatenation).
    Text(String, Ty),
}

/// A payload load: where, and which protocol the dependency before it named.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    ty: Ty,
    /// Bytes loaded; less than the field's width for a byte-aligned prefix.
    len: usize,
    width: usize,
}

/// A statement as it will be printed, and whether a later one may drop it as a dependency.
#[derive(Debug, Clone)]
struct Stmt {
    text: String,
    dep: Option<Dep>,
}

/// A protocol match nft writes only as a dependency of the payload statement after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dep {
    /// `meta l4proto P` / `ip protocol P` / `ip6 nexthdr P`.
    L4(u8),
    /// `meta nfproto ipv4|ipv6`.
    L3(u8),
}

struct Folder<'a> {
    cx: &'a Context,
    regs: HashMap<u32, (Sym, usize)>,
    out: Vec<Stmt>,
    /// The last dependency still standing, by index in `out`.
    l4: Option<(usize, u8)>,
    l3: Option<(usize, u8)>,
    /// The protocols established so far: later payloads of the rule refer to them.
    l4_ctx: Option<u8>,
    l3_ctx: Option<u8>,
}

/// Renders `exprs` (and the rule's comment) as the line `nft list ruleset` prints.
pub fn render(exprs: &[Expr], comment: Option<&str>, cx: &Context) -> String {
    let mut f = Folder {
        cx,
        regs: HashMap::new(),
        out: Vec::new(),
        l4: None,
        l3: None,
        l4_ctx: None,
        l3_ctx: None,
    };
    let mut i = 0;
    while i < exprs.len() {
        i += f.step(&exprs[i], exprs.get(i + 1));
    }
    let mut line = f
        .out
        .iter()
        .map(|s| s.text.as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(c) = comment {
        let _ = write!(line, " comment \"{c}\"");
    }
    line.trim_start().to_string()
}

impl Folder<'_> {
    fn family(&self) -> u8 {
        self.cx.family
    }

    /// Adds a printed statement; the registers it read are forgotten.
    fn push(&mut self, text: String, dep: Option<Dep>) {
        self.forget();
        let at = self.out.len();
        match dep {
            Some(Dep::L4(p)) => {
                self.l4 = Some((at, p));
                self.l4_ctx = Some(p);
            }
            Some(Dep::L3(p)) => {
                self.l3 = Some((at, p));
                self.l3_ctx = Some(p);
            }
            None => {}
        }
        self.out.push(Stmt { text, dep });
    }

    /// Drops a standing dependency statement: the payload statement now printed implies it.
    fn consume(&mut self, which: Option<(usize, u8)>) {
        if let Some((at, _)) = which {
            if let Some(s) = self.out.get_mut(at) {
                if s.dep.is_some() {
                    s.text.clear();
                }
            }
        }
    }

    /// The network-layer protocol payload at the network header refers to.
    fn l3_proto(&mut self) -> Option<u8> {
        match self.family() {
            NFPROTO_IPV4 => Some(NFPROTO_IPV4),
            NFPROTO_IPV6 => Some(NFPROTO_IPV6),
            _ => {
                let dep = self.l3.take();
                self.consume(dep);
                self.l3_ctx
            }
        }
    }

    fn field(&mut self, base: u32, offset: u32, len: u32) -> Field {
        let (off, len) = (offset as usize, len as usize);
        let known = match base {
            1 => match self.l3_proto() {
                Some(NFPROTO_IPV4) => {
                    ipv4_field(off, len).map(|(n, ty, w)| (format!("ip {n}"), ty, w))
                }
                Some(NFPROTO_IPV6) => {
                    ipv6_field(off, len).map(|(n, ty, w)| (format!("ip6 {n}"), ty, w))
                }
                _ => None,
            },
            2 => {
                let dep = self.l4.take();
                let proto = self.l4_ctx;
                let named = match proto {
                    Some(6) => tcp_field(off, len).map(|(n, ty, w)| (format!("tcp {n}"), ty, w)),
                    Some(17) => udp_field(off, len).map(|(n, ty, w)| (format!("udp {n}"), ty, w)),
                    Some(132) => {
                        port_field(off, len).map(|(n, ty, w)| (format!("sctp {n}"), ty, w))
                    }
                    Some(136) => {
                        udp_field(off, len).map(|(n, ty, w)| (format!("udplite {n}"), ty, w))
                    }
                    _ => None,
                };
                if named.is_some() {
                    self.consume(dep);
                } else if let Some((at, p)) = dep {
                    // Not this payload's dependency after all: it stays printed.
                    self.l4 = Some((at, p));
                }
                named.or_else(|| port_field(off, len).map(|(n, ty, w)| (format!("th {n}"), ty, w)))
            }
            _ => None,
        };
        match known {
            Some((name, ty, width)) => Field {
                name,
                ty,
                len,
                width,
            },
            None => {
                let base = match base {
                    0 => "ll",
                    1 => "nh",
                    2 => "th",
                    _ => "ih",
                };
                Field {
                    name: format!("@{base},{},{}", off * 8, len * 8),
                    ty: Ty::BeInt,
                    len,
                    width: len,
                }
            }
        }
    }

    fn load(&mut self, dreg: u32, sym: Sym, len: usize) {
        self.regs.insert(dreg, (sym, len.div_ceil(4).max(1)));
    }

    /// The symbols from `reg` on that one operand spans: a single register, or the parts of
    /// a concatenation (nft places them in consecutive registers). With the set's key length
    /// known the parts are counted exactly; otherwise every consecutive loaded register joins.
    fn parts(&self, reg: u32, key_len: Option<usize>) -> Vec<(Sym, usize)> {
        let mut parts = vec![];
        let mut next = reg;
        let mut bytes = 0;
        while let Some((sym, words)) = self.regs.get(&next) {
            if key_len.is_some_and(|k| bytes >= k) {
                break;
            }
            parts.push((sym.clone(), *words));
            bytes += words * 4;
            next += *words as u32;
        }
        parts
    }

    /// One operand as a symbol: a register, or a concatenation printed `a . b . c`.
    fn operand_of(&self, parts: &[(Sym, usize)]) -> Sym {
        match parts {
            [] => Sym::Text("[register]".into(), Ty::Hex),
            [(one, _)] => one.clone(),
            many => Sym::Text(
                many.iter()
                    .map(|(p, _)| self.sym_text(p))
                    .collect::<Vec<_>>()
                    .join(" . "),
                Ty::Hex,
            ),
        }
    }

    fn operand(&self, reg: u32) -> Sym {
        self.regs
            .get(&reg)
            .map(|(s, _)| s.clone())
            .unwrap_or(Sym::Text("[register]".into(), Ty::Hex))
    }

    /// Registers are loaded afresh for every statement: once one is printed, what they held is
    /// forgotten, so a later concatenation cannot pick up a stale part.
    fn forget(&mut self) {
        self.regs.clear();
    }

    /// One expression; returns how many it consumed (a `gte` + `lte` pair is one range).
    fn step(&mut self, e: &Expr, next: Option<&Expr>) -> usize {
        match e {
            Expr::Payload {
                dreg: Some(dreg),
                base,
                offset,
                len,
                ..
            } => {
                let f = self.field(*base, *offset, *len);
                let l = f.len;
                self.load(*dreg, Sym::Field(f), l);
            }
            Expr::Payload {
                sreg: Some(sreg),
                base,
                offset,
                len,
                ..
            } => {
                let f = self.field(*base, *offset, *len);
                let value = self.operand(*sreg);
                let rhs = self.value_text(&value, f.ty, f.len);
                self.push(format!("{} set {rhs}", f.name), None);
            }
            Expr::Meta {
                key,
                dreg: Some(dreg),
                ..
            } => {
                let (ty, len) = meta_type(*key);
                let _ = ty;
                self.load(*dreg, Sym::Meta(*key), len);
            }
            Expr::Meta {
                key,
                sreg: Some(sreg),
                ..
            } => {
                let (ty, len) = meta_type(*key);
                let value = self.operand(*sreg);
                let rhs = self.value_text(&value, ty, len);
                self.push(format!("meta {} set {rhs}", meta_name(*key)), None);
            }
            Expr::Ct {
                key,
                dreg: Some(dreg),
                dir,
                ..
            } => {
                let (_, len) = ct_type(*key);
                self.load(
                    *dreg,
                    Sym::Ct {
                        key: *key,
                        dir: *dir,
                    },
                    len,
                );
            }
            Expr::Ct {
                key,
                sreg: Some(sreg),
                dir,
                ..
            } => {
                let (ty, len) = ct_type(*key);
                let value = self.operand(*sreg);
                let rhs = self.value_text(&value, ty, len);
                let lhs = self.sym_text(&Sym::Ct {
                    key: *key,
                    dir: *dir,
                });
                self.push(format!("{lhs} set {rhs}"), None);
            }
            Expr::Fib {
                dreg,
                result,
                flags,
            } => self.load(
                *dreg,
                Sym::Fib {
                    flags: *flags,
                    result: *result,
                },
                4,
            ),
            Expr::Numgen {
                dreg,
                modulus,
                random,
                offset,
            } => self.load(
                *dreg,
                Sym::Numgen {
                    random: *random,
                    modulus: *modulus,
                    offset: *offset,
                },
                4,
            ),
            Expr::Bitwise {
                sreg,
                dreg,
                op: 0,
                mask,
                xor,
                len,
                ..
            } => {
                let inner = self.operand(*sreg);
                self.load(
                    *dreg,
                    Sym::Masked {
                        inner: Box::new(inner),
                        mask: mask.clone(),
                        xor: xor.clone(),
                    },
                    *len as usize,
                );
            }
            Expr::Immediate { dreg: 0, data } => {
                if let Data::Verdict(v) = data {
                    let text = verdict_text(v);
                    self.push(text, None);
                }
            }
            Expr::Immediate { dreg, data } => {
                let bytes = data.bytes().to_vec();
                let len = bytes.len();
                self.load(*dreg, Sym::Value(bytes), len);
            }
            Expr::Cmp { sreg, op, data } => {
                if let (
                    5,
                    Some(Expr::Cmp {
                        sreg: s2,
                        op: 3,
                        data: hi,
                    }),
                ) = (*op, next)
                {
                    if s2 == sreg {
                        let lhs = self.operand(*sreg);
                        let (ty, len) = sym_type(&lhs);
                        let text = format!(
                            "{} {}-{}",
                            self.sym_text(&lhs),
                            self.bytes_text(data, ty, len),
                            self.bytes_text(hi, ty, len)
                        );
                        self.push(text, None);
                        return 2;
                    }
                }
                let lhs = self.operand(*sreg);
                let (text, dep) = self.relation(&lhs, *op, data);
                self.push(text, dep);
            }
            Expr::Range { sreg, op, from, to } => {
                let lhs = self.operand(*sreg);
                let (ty, len) = sym_type(&lhs);
                let neg = if *op == 1 { "!= " } else { "" };
                let text = format!(
                    "{} {neg}{}-{}",
                    self.sym_text(&lhs),
                    self.bytes_text(from, ty, len),
                    self.bytes_text(to, ty, len)
                );
                self.push(text, None);
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                let key_len = self
                    .cx
                    .sets
                    .sets
                    .get(set)
                    .map(|(s, _)| s.key_len as usize)
                    .filter(|k| *k > 0);
                let parts = self.parts(*sreg, key_len);
                let types: Vec<(Ty, usize)> = parts.iter().map(|(p, _)| sym_type(p)).collect();
                let lhs = self.sym_text(&self.operand_of(&parts));
                let rhs = self.set_ref(set, &types);
                self.forget();
                match dreg {
                    None => {
                        let neg = if *invert { "!= " } else { "" };
                        self.push(format!("{lhs} {neg}{rhs}"), None);
                    }
                    Some(0) => self.push(format!("{lhs} vmap {rhs}"), None),
                    Some(d) => {
                        let data_ty = self
                            .cx
                            .sets
                            .sets
                            .get(set)
                            .and_then(|(s, _)| s.data_type)
                            .map_or(Ty::Hex, Ty::from_id);
                        self.regs
                            .insert(*d, (Sym::Text(format!("{lhs} map {rhs}"), data_ty), 1));
                    }
                }
            }
            Expr::Counter { packets, bytes } => {
                self.push(format!("counter packets {packets} bytes {bytes}"), None)
            }
            Expr::Nat {
                dnat,
                family,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
                flags,
            } => {
                let text = self.nat_text(
                    *dnat, *family, *addr_min, *addr_max, *proto_min, *proto_max, *flags,
                );
                self.push(text, None);
            }
            Expr::Masq {
                flags,
                proto_min,
                proto_max,
            } => {
                let text = self.ports_stmt("masquerade", *proto_min, *proto_max, *flags);
                self.push(text, None);
            }
            Expr::Redir {
                flags,
                proto_min,
                proto_max,
            } => {
                let text = self.ports_stmt("redirect", *proto_min, *proto_max, *flags);
                self.push(text, None);
            }
            Expr::Log {
                prefix,
                group,
                level,
            } => {
                let mut t = String::from("log");
                if let Some(p) = prefix {
                    let _ = write!(t, " prefix \"{p}\"");
                }
                if let Some(g) = group {
                    let _ = write!(t, " group {g}");
                }
                const LEVELS: [&str; 8] = [
                    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
                ];
                if let Some(l) = level.filter(|l| *l != 4) {
                    let name = LEVELS
                        .get(l as usize)
                        .map_or("audit".to_string(), |s| s.to_string());
                    let _ = write!(t, " level {name}");
                }
                self.push(t, None);
            }
            Expr::Limit {
                rate,
                unit,
                burst,
                bytes,
                over,
            } => {
                let unit = match unit {
                    1 => "second",
                    60 => "minute",
                    3600 => "hour",
                    86400 => "day",
                    604800 => "week",
                    _ => "?",
                };
                let over = if *over { "over " } else { "" };
                let mut t = if *bytes {
                    format!("limit rate {over}{rate} bytes/{unit}")
                } else {
                    format!("limit rate {over}{rate}/{unit}")
                };
                if *burst != 0 && (*bytes || *burst != 5) {
                    let what = if *bytes { "bytes" } else { "packets" };
                    let _ = write!(t, " burst {burst} {what}");
                }
                self.push(t, None);
            }
            Expr::Reject { kind, code } => {
                let t = match (*kind, self.family()) {
                    (1, _) => "reject with tcp reset".to_string(),
                    (0, NFPROTO_IPV4) if *code == 3 => "reject".to_string(),
                    (0, NFPROTO_IPV6) if *code == 4 => "reject".to_string(),
                    (2, _) if *code == 1 => "reject".to_string(),
                    (0, NFPROTO_IPV6) => format!("reject with icmpv6 {}", icmpv6_code(*code)),
                    (0, _) => format!("reject with icmp {}", icmp_code(*code)),
                    (_, _) => format!("reject with icmpx {}", icmpx_code(*code)),
                };
                self.push(t, None);
            }
            Expr::Notrack => self.push("notrack".into(), None),
            Expr::Objref { kind, name } => {
                let what = match kind {
                    1 => "counter",
                    2 => "quota",
                    3 => "ct helper",
                    4 => "limit",
                    7 => "ct timeout",
                    9 => "ct expectation",
                    _ => "object",
                };
                self.push(format!("{what} name \"{name}\""), None);
            }
            Expr::Match { name, .. } => self.push(format!("xt match \"{name}\""), None),
            Expr::Target { name, .. } => self.push(format!("xt target \"{name}\""), None),
            Expr::Other(name) => self.push(format!("[unsupported: {name}]"), None),
            Expr::Payload { .. } | Expr::Meta { .. } | Expr::Ct { .. } | Expr::Bitwise { .. } => {
                self.push("[unsupported: register operation]".into(), None)
            }
        }
        1
    }

    /// `lhs [op] rhs` for a cmp, with nft's special forms: flag tests (`ct state new`),
    /// prefixes (`ip saddr 10.0.0.0/8`), masks (`meta mark & 0x… == 0x…`).
    fn relation(&mut self, lhs: &Sym, op: u32, data: &[u8]) -> (String, Option<Dep>) {
        let ops = ["", "!= ", "< ", "<= ", "> ", ">= "];
        let op_text = ops.get(op as usize).copied().unwrap_or("? ");
        if let Sym::Masked { inner, mask, xor } = lhs {
            if xor.iter().all(|&b| b == 0) {
                let (ty, len) = sym_type(inner);
                let zero = data.iter().all(|&b| b == 0);
                // A flag test: (flags & mask) != 0.
                if matches!(ty, Ty::CtState | Ty::CtStatus) && zero && op == 1 {
                    return (
                        format!(
                            "{} {}",
                            self.sym_text(inner),
                            self.bytes_text(mask, ty, len)
                        ),
                        None,
                    );
                }
                // A prefix of an address.
                if let (Ty::Ipv4 | Ty::Ipv6, Some(bits)) = (ty, prefix_len(mask)) {
                    return (
                        format!(
                            "{} {op_text}{}/{bits}",
                            self.sym_text(inner),
                            self.addr_text(data, ty)
                        ),
                        None,
                    );
                }
                let eq = if op == 0 { "== " } else { op_text };
                return (
                    format!(
                        "{} & {} {eq}{}",
                        self.sym_text(inner),
                        self.bytes_text(mask, ty, len),
                        self.bytes_text(data, ty, len)
                    ),
                    None,
                );
            }
        }
        if let Sym::Field(f) = lhs {
            // A byte-aligned prefix: fewer bytes loaded than the field has.
            if matches!(f.ty, Ty::Ipv4 | Ty::Ipv6) && f.len < f.width {
                return (
                    format!(
                        "{} {op_text}{}/{}",
                        f.name,
                        self.addr_text(data, f.ty),
                        f.len * 8
                    ),
                    None,
                );
            }
        }
        let (ty, len) = sym_type(lhs);
        let dep = match (lhs, op) {
            (Sym::Meta(16), 0) => data.first().map(|p| Dep::L4(*p)),
            (Sym::Field(f), 0) if f.name == "ip protocol" || f.name == "ip6 nexthdr" => {
                data.first().map(|p| Dep::L4(*p))
            }
            (Sym::Meta(15), 0) if !matches!(self.family(), NFPROTO_IPV4 | NFPROTO_IPV6) => {
                data.first().map(|p| Dep::L3(*p))
            }
            _ => None,
        };
        let text = format!(
            "{} {op_text}{}",
            self.sym_text(lhs),
            self.bytes_text(data, ty, len)
        );
        (text, dep)
    }

    fn sym_text(&self, s: &Sym) -> String {
        match s {
            Sym::Field(f) => f.name.clone(),
            Sym::Meta(key) => {
                let name = meta_name(*key);
                if matches!(key, 4 | 5 | 6 | 7 | 21 | 22) {
                    name.to_string()
                } else {
                    format!("meta {name}")
                }
            }
            Sym::Ct { key, dir } => {
                let d = match dir {
                    Some(0) => "original ",
                    Some(1) => "reply ",
                    _ => "",
                };
                format!("ct {d}{}", ct_name(*key))
            }
            Sym::Fib { flags, result } => {
                let mut parts = vec![];
                if flags & 1 != 0 {
                    parts.push("saddr");
                }
                if flags & 2 != 0 {
                    parts.push("daddr");
                }
                if flags & 4 != 0 {
                    parts.push("mark");
                }
                if flags & 8 != 0 {
                    parts.push("iif");
                }
                if flags & 16 != 0 {
                    parts.push("oif");
                }
                let result = match result {
                    1 => "oif",
                    2 => "oifname",
                    _ => "type",
                };
                format!("fib {} {result}", parts.join(" . "))
            }
            Sym::Numgen {
                random,
                modulus,
                offset,
            } => {
                let kind = if *random { "random" } else { "inc" };
                let mut t = format!("numgen {kind} mod {modulus}");
                if *offset != 0 {
                    let _ = write!(t, " offset {offset}");
                }
                t
            }
            Sym::Masked { inner, mask, xor } => {
                let (ty, len) = sym_type(inner);
                let base = self.sym_text(inner);
                let all_ones = |v: &[u8]| v.iter().all(|&b| b == 0xff);
                let inverse =
                    mask.len() == xor.len() && mask.iter().zip(xor).all(|(m, x)| *m == !*x);
                if inverse {
                    format!("{base} | {}", self.bytes_text(xor, ty, len))
                } else if all_ones(mask) {
                    format!("{base} ^ {}", self.bytes_text(xor, ty, len))
                } else if xor.iter().all(|&b| b == 0) {
                    format!("{base} & {}", self.bytes_text(mask, ty, len))
                } else {
                    format!(
                        "({base} & {}) ^ {}",
                        self.bytes_text(mask, ty, len),
                        self.bytes_text(xor, ty, len)
                    )
                }
            }
            Sym::Value(v) => self.bytes_text(v, Ty::Hex, v.len()),
            Sym::Text(t, _) => t.clone(),
        }
    }

    /// The right-hand side of a `set` statement or a NAT address: a value in `ty`, or the
    /// expression the register holds.
    fn value_text(&self, s: &Sym, ty: Ty, len: usize) -> String {
        match s {
            Sym::Value(v) => self.bytes_text(v, ty, len),
            other => self.sym_text(other),
        }
    }

    fn addr_text(&self, data: &[u8], ty: Ty) -> String {
        let mut full = data.to_vec();
        let width = ty.width();
        full.resize(width, 0);
        match ty {
            Ty::Ipv4 => <[u8; 4]>::try_from(&full[..4])
                .map(|b| Ipv4Addr::from(b).to_string())
                .unwrap_or_default(),
            _ => <[u8; 16]>::try_from(&full[..16])
                .map(|b| Ipv6Addr::from(b).to_string())
                .unwrap_or_default(),
        }
    }

    /// A value as nft prints a constant of type `ty`.
    fn bytes_text(&self, data: &[u8], ty: Ty, len: usize) -> String {
        let host_u32 = || -> u32 {
            let mut b = [0u8; 4];
            for (i, v) in data.iter().take(4).enumerate() {
                b[i] = *v;
            }
            u32::from_ne_bytes(b)
        };
        let be = || {
            data.iter()
                .take(8)
                .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
        };
        match ty {
            Ty::Ipv4 | Ty::Ipv6 => self.addr_text(data, ty),
            Ty::Port => be().to_string(),
            Ty::Proto => data
                .first()
                .map(|p| proto_name(*p).map_or(p.to_string(), str::to_string))
                .unwrap_or_default(),
            Ty::Mark => format!("0x{:08x}", host_u32()),
            Ty::Ifname => {
                let end = data.iter().position(|&c| c == 0);
                let name = super::nl::text(&data[..end.unwrap_or(data.len())]);
                if end.is_some() {
                    format!("\"{name}\"")
                } else {
                    format!("\"{name}*\"")
                }
            }
            Ty::Ifindex => {
                let idx = host_u32();
                match self.cx.ifnames.get(&idx) {
                    Some(name) => format!("\"{name}\""),
                    None => idx.to_string(),
                }
            }
            Ty::CtState => flag_names(
                host_u32(),
                &[
                    (1, "invalid"),
                    (2, "established"),
                    (4, "related"),
                    (8, "new"),
                    (64, "untracked"),
                ],
            ),
            Ty::CtStatus => flag_names(
                host_u32(),
                &[
                    (1, "expected"),
                    (2, "seen-reply"),
                    (4, "assured"),
                    (8, "confirmed"),
                    (16, "snat"),
                    (32, "dnat"),
                    (512, "dying"),
                ],
            ),
            Ty::CtDir => match data.first() {
                Some(0) => "original".into(),
                Some(1) => "reply".into(),
                other => format!("{}", other.copied().unwrap_or(0)),
            },
            Ty::Nfproto => match data.first() {
                Some(2) => "ipv4".into(),
                Some(10) => "ipv6".into(),
                other => format!("{}", other.copied().unwrap_or(0)),
            },
            Ty::EtherType => match be() {
                0x0800 => "ip".into(),
                0x86dd => "ip6".into(),
                0x0806 => "arp".into(),
                0x8100 => "vlan".into(),
                v => format!("0x{v:04x}"),
            },
            Ty::Pkttype => match data.first() {
                Some(0) => "host".into(),
                Some(1) => "broadcast".into(),
                Some(2) => "multicast".into(),
                Some(3) => "other".into(),
                other => format!("{}", other.copied().unwrap_or(0)),
            },
            Ty::FibType => {
                // nft names the route types up to `prohibit`, numbers the rest.
                let v = host_u32();
                super::route::RTN_NAMES[..9]
                    .get(v as usize)
                    .map_or(v.to_string(), |s| s.to_string())
            }
            Ty::Verdict => "[verdict]".into(),
            Ty::BeInt => be().to_string(),
            Ty::HostInt => {
                if len >= 4 || data.len() >= 4 {
                    host_u32().to_string()
                } else {
                    data.iter()
                        .rev()
                        .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
                        .to_string()
                }
            }
            Ty::Hex => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                format!("0x{hex}")
            }
        }
    }

    /// `@name`, or the elements of an anonymous set written inline as nft does.
    fn set_ref(&self, name: &str, types: &[(Ty, usize)]) -> String {
        let Some((set, elems)) = self.cx.sets.sets.get(name) else {
            return format!("@{name}");
        };
        if !set.anonymous() {
            return format!("@{name}");
        }
        let interval = set.flags & 0x4 != 0;
        let mut keyed: Vec<&NftElem> = elems.iter().collect();
        keyed.sort_by(|a, b| a.key.cmp(&b.key));
        let mut items = vec![];
        let mut i = 0;
        while i < keyed.len() {
            let e = keyed[i];
            if interval && e.interval_end {
                i += 1;
                continue;
            }
            let mut key = self.key_text(&e.key, types);
            if interval {
                // The interval closes at the next element's key, exclusive; or at key_end.
                let end = e.key_end.clone().or_else(|| {
                    keyed
                        .get(i + 1)
                        .filter(|n| n.interval_end)
                        .map(|n| minus_one(&n.key))
                });
                if let Some(end) = end.filter(|end| *end != e.key) {
                    key = self.range_text(&e.key, &end, types);
                }
            }
            match &e.data {
                Some(Data::Verdict(v)) => items.push(format!("{key} : {}", verdict_text(v))),
                Some(Data::Value(v)) => {
                    let ty = set.data_type.map_or(Ty::Hex, Ty::from_id);
                    items.push(format!("{key} : {}", self.bytes_text(v, ty, v.len())))
                }
                None => items.push(key),
            }
            i += 1;
        }
        format!("{{ {} }}", items.join(", "))
    }

    fn key_text(&self, key: &[u8], types: &[(Ty, usize)]) -> String {
        if types.len() <= 1 {
            let (ty, len) = types.first().copied().unwrap_or((Ty::Hex, key.len()));
            return self.bytes_text(key, ty, len);
        }
        // Concatenated keys keep each part on a 4-byte boundary.
        let mut parts = vec![];
        let mut at = 0;
        for (ty, len) in types {
            let part = key.get(at..at + len).unwrap_or_default();
            parts.push(self.bytes_text(part, *ty, *len));
            at += len.div_ceil(4) * 4;
        }
        parts.join(" . ")
    }

    fn range_text(&self, lo: &[u8], hi: &[u8], types: &[(Ty, usize)]) -> String {
        if let [(ty @ (Ty::Ipv4 | Ty::Ipv6), _)] = types {
            if let Some(bits) = prefix_of_range(lo, hi) {
                return format!("{}/{bits}", self.addr_text(lo, *ty));
            }
        }
        format!("{}-{}", self.key_text(lo, types), self.key_text(hi, types))
    }

    #[allow(clippy::too_many_arguments)]
    fn nat_text(
        &mut self,
        dnat: bool,
        family: u8,
        addr_min: Option<u32>,
        addr_max: Option<u32>,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
        flags: u32,
    ) -> String {
        let mut t = String::from(if dnat { "dnat" } else { "snat" });
        if self.family() == NFPROTO_INET {
            t.push_str(if family == NFPROTO_IPV6 {
                " ip6"
            } else {
                " ip"
            });
        }
        let ty = if family == NFPROTO_IPV6 {
            Ty::Ipv6
        } else {
            Ty::Ipv4
        };
        let reg_text = |f: &Self, reg: Option<u32>, ty: Ty, len: usize| -> Option<String> {
            let (sym, _) = f.regs.get(&reg?)?;
            Some(f.value_text(sym, ty, len))
        };
        let lo = reg_text(self, addr_min, ty, ty.width());
        let hi = reg_text(self, addr_max, ty, ty.width());
        let plo = reg_text(self, proto_min, Ty::Port, 2);
        let phi = reg_text(self, proto_max, Ty::Port, 2);
        let mut target = String::new();
        if let Some(lo) = &lo {
            let brackets = ty == Ty::Ipv6 && plo.is_some();
            if brackets {
                target.push('[');
            }
            target.push_str(lo);
            if let Some(hi) = hi.as_ref().filter(|hi| *hi != lo) {
                let _ = write!(target, "-{hi}");
            }
            if brackets {
                target.push(']');
            }
        }
        if let Some(plo) = &plo {
            let _ = write!(target, ":{plo}");
            if let Some(phi) = phi.as_ref().filter(|phi| *phi != plo) {
                let _ = write!(target, "-{phi}");
            }
        }
        if !target.is_empty() {
            let _ = write!(t, " to {target}");
        }
        nat_flags(&mut t, flags);
        t
    }

    fn ports_stmt(
        &self,
        what: &str,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
        flags: u32,
    ) -> String {
        let mut t = what.to_string();
        let port = |reg: Option<u32>| -> Option<String> {
            let (sym, _) = self.regs.get(&reg?)?;
            Some(self.value_text(sym, Ty::Port, 2))
        };
        if let Some(lo) = port(proto_min) {
            let _ = write!(t, " to :{lo}");
            if let Some(hi) = port(proto_max).filter(|hi| *hi != lo) {
                let _ = write!(t, "-{hi}");
            }
        }
        nat_flags(&mut t, flags);
        t
    }
}

fn nat_flags(t: &mut String, flags: u32) {
    let mut names = vec![];
    if flags & 4 != 0 {
        names.push("random");
    }
    if flags & 16 != 0 {
        names.push("fully-random");
    }
    if flags & 8 != 0 {
        names.push("persistent");
    }
    if !names.is_empty() {
        let _ = write!(t, " {}", names.join(","));
    }
}

pub fn verdict_text(v: &Verdict) -> String {
    let chain = v.chain.clone().unwrap_or_default();
    match v.code {
        NF_ACCEPT => "accept".into(),
        NF_DROP => "drop".into(),
        NFT_RETURN => "return".into(),
        NFT_JUMP => format!("jump {chain}"),
        NFT_GOTO => format!("goto {chain}"),
        NFT_CONTINUE => "continue".into(),
        NFT_BREAK => "break".into(),
        c if c & 0xff == NF_QUEUE => "queue".into(),
        c => format!("verdict {c}"),
    }
}

fn flag_names(v: u32, names: &[(u32, &str)]) -> String {
    let picked: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| v & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if picked.is_empty() {
        format!("0x{v:x}")
    } else {
        picked.join(",")
    }
}

/// Bits of a contiguous mask, `None` if it is not a prefix.
fn prefix_len(mask: &[u8]) -> Option<u32> {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let contiguous = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1))
        .skip(ones as usize)
        .all(|bit| bit == 0);
    contiguous.then_some(ones)
}

/// The prefix length when `lo..=hi` is exactly one prefix.
fn prefix_of_range(lo: &[u8], hi: &[u8]) -> Option<u32> {
    if lo.len() != hi.len() {
        return None;
    }
    let diff: Vec<u8> = lo.iter().zip(hi).map(|(a, b)| a ^ b).collect();
    let bits = prefix_len(&diff.iter().map(|b| !b).collect::<Vec<_>>())?;
    let host_ok = lo
        .iter()
        .zip(hi)
        .zip(&diff)
        .all(|((l, h), d)| l & d == 0 && h & d == *d);
    (host_ok && bits < (lo.len() * 8) as u32).then_some(bits)
}

fn minus_one(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    for b in k.iter_mut().rev() {
        let (v, borrow) = b.overflowing_sub(1);
        *b = v;
        if !borrow {
            break;
        }
    }
    k
}

fn sym_type(s: &Sym) -> (Ty, usize) {
    match s {
        Sym::Field(f) => (f.ty, f.len),
        Sym::Meta(key) => meta_type(*key),
        Sym::Ct { key, .. } => ct_type(*key),
        Sym::Fib { result, .. } => match result {
            1 => (Ty::Ifindex, 4),
            2 => (Ty::Ifname, 16),
            _ => (Ty::FibType, 4),
        },
        Sym::Numgen { .. } => (Ty::HostInt, 4),
        Sym::Masked { inner, .. } => sym_type(inner),
        Sym::Value(v) => (Ty::Hex, v.len()),
        Sym::Text(_, ty) => (*ty, ty.width()),
    }
}

fn meta_name(key: u32) -> &'static str {
    const NAMES: [&str; 36] = [
        "length",
        "protocol",
        "priority",
        "mark",
        "iif",
        "oif",
        "iifname",
        "oifname",
        "iiftype",
        "oiftype",
        "skuid",
        "skgid",
        "nftrace",
        "rtclassid",
        "secmark",
        "nfproto",
        "l4proto",
        "ibrname",
        "obrname",
        "pkttype",
        "cpu",
        "iifgroup",
        "oifgroup",
        "cgroup",
        "random",
        "ipsec",
        "iifkind",
        "oifkind",
        "ibrpvid",
        "ibrvproto",
        "time",
        "day",
        "hour",
        "sdif",
        "sdifname",
        "broute",
    ];
    NAMES.get(key as usize).copied().unwrap_or("unknown")
}

fn meta_type(key: u32) -> (Ty, usize) {
    match key {
        1 => (Ty::EtherType, 2),
        3 => (Ty::Mark, 4),
        4 | 5 => (Ty::Ifindex, 4),
        6 | 7 | 17 | 18 | 26 | 27 | 34 => (Ty::Ifname, 16),
        15 => (Ty::Nfproto, 1),
        16 => (Ty::Proto, 1),
        19 => (Ty::Pkttype, 1),
        _ => (Ty::HostInt, 4),
    }
}

fn ct_name(key: u32) -> &'static str {
    const NAMES: [&str; 24] = [
        "state",
        "direction",
        "status",
        "mark",
        "secmark",
        "expiration",
        "helper",
        "l3proto",
        "saddr",
        "daddr",
        "protocol",
        "proto-src",
        "proto-dst",
        "label",
        "packets",
        "bytes",
        "avgpkt",
        "zone",
        "event",
        "ip saddr",
        "ip daddr",
        "ip6 saddr",
        "ip6 daddr",
        "id",
    ];
    NAMES.get(key as usize).copied().unwrap_or("unknown")
}

fn ct_type(key: u32) -> (Ty, usize) {
    match key {
        0 => (Ty::CtState, 4),
        1 => (Ty::CtDir, 1),
        2 => (Ty::CtStatus, 4),
        3 => (Ty::Mark, 4),
        7 => (Ty::Nfproto, 1),
        10 => (Ty::Proto, 1),
        11 | 12 => (Ty::Port, 2),
        19 | 20 => (Ty::Ipv4, 4),
        21 | 22 => (Ty::Ipv6, 16),
        _ => (Ty::HostInt, 4),
    }
}

type FieldInfo = (&'static str, Ty, usize);

/// IPv4 header fields by byte offset; `len` may be a prefix of the field.
fn ipv4_field(off: usize, len: usize) -> Option<FieldInfo> {
    let f = match off {
        2 => ("length", Ty::BeInt, 2),
        4 => ("id", Ty::BeInt, 2),
        8 => ("ttl", Ty::BeInt, 1),
        9 => ("protocol", Ty::Proto, 1),
        12 => ("saddr", Ty::Ipv4, 4),
        16 => ("daddr", Ty::Ipv4, 4),
        _ => return None,
    };
    (len == f.2 || (matches!(f.1, Ty::Ipv4) && len < f.2)).then_some(f)
}

fn ipv6_field(off: usize, len: usize) -> Option<FieldInfo> {
    let f = match off {
        4 => ("length", Ty::BeInt, 2),
        6 => ("nexthdr", Ty::Proto, 1),
        7 => ("hoplimit", Ty::BeInt, 1),
        8 => ("saddr", Ty::Ipv6, 16),
        24 => ("daddr", Ty::Ipv6, 16),
        _ => return None,
    };
    (len == f.2 || (matches!(f.1, Ty::Ipv6) && len < f.2)).then_some(f)
}

fn port_field(off: usize, len: usize) -> Option<FieldInfo> {
    match (off, len) {
        (0, 2) => Some(("sport", Ty::Port, 2)),
        (2, 2) => Some(("dport", Ty::Port, 2)),
        _ => None,
    }
}

fn tcp_field(off: usize, len: usize) -> Option<FieldInfo> {
    port_field(off, len).or(match (off, len) {
        (4, 4) => Some(("sequence", Ty::BeInt, 4)),
        (8, 4) => Some(("ackseq", Ty::BeInt, 4)),
        (14, 2) => Some(("window", Ty::BeInt, 2)),
        _ => None,
    })
}

fn udp_field(off: usize, len: usize) -> Option<FieldInfo> {
    port_field(off, len).or(match (off, len) {
        (4, 2) => Some(("length", Ty::BeInt, 2)),
        _ => None,
    })
}

/// nft's names for IP protocols (those of /etc/protocols it shows for the common ones).
fn proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        41 => "ipv6",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

fn icmp_code(code: u8) -> String {
    match code {
        0 => "net-unreachable".into(),
        1 => "host-unreachable".into(),
        2 => "prot-unreachable".into(),
        3 => "port-unreachable".into(),
        9 => "net-prohibited".into(),
        10 => "host-prohibited".into(),
        13 => "admin-prohibited".into(),
        c => c.to_string(),
    }
}

fn icmpv6_code(code: u8) -> String {
    match code {
        0 => "no-route".into(),
        1 => "admin-prohibited".into(),
        3 => "addr-unreachable".into(),
        4 => "port-unreachable".into(),
        5 => "policy-fail".into(),
        6 => "reject-route".into(),
        c => c.to_string(),
    }
}

fn icmpx_code(code: u8) -> String {
    match code {
        0 => "no-route".into(),
        1 => "port-unreachable".into(),
        2 => "host-unreachable".into(),
        3 => "admin-prohibited".into(),
        c => c.to_string(),
    }
}
