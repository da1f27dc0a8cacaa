//! nf_tables netlink replies (`NFT_MSG_NEWTABLE`, `NEWCHAIN`, `NEWRULE`, `NEWSET`, `NEWSETELEM`)
//! → plain tables, chains, rules with typed expressions, and set elements. Pure: the bytes come
//! from a dump the capture makes; anything malformed is skipped, never a panic.
//!
//! nf_tables attributes are big-endian; register data is the raw bytes the kernel compares.

use super::nl::{self, attr, attrs, text as string, u32_be, u64_be};

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFT_MSG_NEWTABLE: u16 = 0;
pub const NFT_MSG_GETTABLE: u16 = 1;
pub const NFT_MSG_NEWCHAIN: u16 = 3;
pub const NFT_MSG_GETCHAIN: u16 = 4;
pub const NFT_MSG_NEWRULE: u16 = 6;
pub const NFT_MSG_GETRULE: u16 = 7;
pub const NFT_MSG_NEWSET: u16 = 9;
pub const NFT_MSG_GETSET: u16 = 10;
pub const NFT_MSG_NEWSETELEM: u16 = 12;
pub const NFT_MSG_GETSETELEM: u16 = 13;

/// The netlink message type of an nf_tables message.
pub fn msg_type(msg: u16) -> u16 {
    NFNL_SUBSYS_NFTABLES << 8 | msg
}

/// `NFPROTO_*` → the family word nft prints.
pub fn family_name(family: u8) -> String {
    match family {
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        other => format!("family-{other}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftTable {
    pub family: u8,
    pub name: String,
    pub handle: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftHook {
    /// NF_INET_* hook number.
    pub num: u32,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftChain {
    pub family: u8,
    pub table: String,
    pub name: String,
    pub handle: u64,
    pub hook: Option<NftHook>,
    /// `nat`, `filter`, `route`.
    pub kind: Option<String>,
    /// NF_ACCEPT (1) or NF_DROP (0).
    pub policy: Option<u32>,
    /// (packets, bytes) of a base chain.
    pub counters: Option<(u64, u64)>,
}

/// A verdict: accept, drop, jump to a chain, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: i32,
    pub chain: Option<String>,
}

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NF_QUEUE: i32 = 3;
pub const NFT_CONTINUE: i32 = -1;
pub const NFT_BREAK: i32 = -2;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;
pub const NFT_RETURN: i32 = -5;

/// Register contents an expression carries: bytes or a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

impl Data {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::Value(v) => v,
            Data::Verdict(_) => &[],
        }
    }
}

/// One expression of a rule. Registers are normalised to 4-byte word indexes (see [`word`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        dreg: Option<u32>,
        sreg: Option<u32>,
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        sreg: u32,
        dreg: u32,
        len: u32,
        op: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
        shift: Vec<u8>,
    },
    Meta {
        key: u32,
        dreg: Option<u32>,
        sreg: Option<u32>,
    },
    Ct {
        key: u32,
        dreg: Option<u32>,
        sreg: Option<u32>,
        dir: Option<u8>,
    },
    Immediate {
        dreg: u32,
        data: Data,
    },
    Counter {
        packets: u64,
        bytes: u64,
    },
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    Range {
        sreg: u32,
        op: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Nat {
        dnat: bool,
        family: u8,
        addr_min: Option<u32>,
        addr_max: Option<u32>,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
        flags: u32,
    },
    Masq {
        flags: u32,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
    },
    Redir {
        flags: u32,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
    },
    Fib {
        dreg: u32,
        result: u32,
        flags: u32,
    },
    Numgen {
        dreg: u32,
        modulus: u32,
        random: bool,
        offset: u32,
    },
    /// An x_tables match (iptables-nft).
    Match {
        name: String,
        rev: u8,
        info: Vec<u8>,
    },
    /// An x_tables target (iptables-nft).
    Target {
        name: String,
        rev: u8,
        info: Vec<u8>,
    },
    Log {
        prefix: Option<String>,
        group: Option<u16>,
        level: Option<u32>,
    },
    Limit {
        rate: u64,
        unit: u64,
        burst: u32,
        bytes: bool,
        over: bool,
    },
    Reject {
        kind: u32,
        code: u8,
    },
    Notrack,
    Objref {
        kind: u32,
        name: String,
    },
    /// Any other expression, by name (rendered as such, never guessed at).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    pub family: u8,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub exprs: Vec<Expr>,
    /// `comment "…"` from the rule's user data.
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    pub family: u8,
    pub table: String,
    pub name: String,
    pub flags: u32,
    pub key_len: u32,
    /// NFT_DATA_VERDICT (0xffffff00) for verdict maps.
    pub data_type: Option<u32>,
}

impl NftSet {
    /// Anonymous sets (`{ 80, 443 }` written inline) are printed with their elements.
    pub fn anonymous(&self) -> bool {
        self.flags & 0x1 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftElem {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    pub data: Option<Data>,
    /// NFT_SET_ELEM_INTERVAL_END: the closing bound of an interval set.
    pub interval_end: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSetElems {
    pub family: u8,
    pub table: String,
    pub set: String,
    pub elems: Vec<NftElem>,
}

/// A register number as the kernel reads it, in 4-byte words: NFT_REG_1..4 (16 bytes each)
/// overlap NFT_REG32_00..15, so `reg 1` and `reg 8` are the same word.
pub fn word(reg: u32) -> u32 {
    if reg <= 4 {
        reg * 4
    } else {
        reg.saturating_sub(8) + 4
    }
}

/// The nfgenmsg family and the attributes of an nf_tables message of type `msg`.
fn split<'a>(m: &nl::Message<'a>, msg: u16) -> Option<(u8, &'a [u8])> {
    if m.kind != msg_type(msg) {
        return None;
    }
    Some((*m.payload.first()?, m.payload.get(4..)?))
}

fn be32(b: &[u8]) -> Option<u32> {
    u32_be(b)
}

fn reg(b: &[u8]) -> Option<u32> {
    be32(b).map(word)
}

pub fn parse_table(m: &nl::Message<'_>) -> Option<NftTable> {
    let (family, a) = split(m, NFT_MSG_NEWTABLE)?;
    Some(NftTable {
        family,
        name: string(attr(a, 1)?),
        handle: attr(a, 4).and_then(u64_be).unwrap_or(0),
    })
}

pub fn parse_chain(m: &nl::Message<'_>) -> Option<NftChain> {
    let (family, a) = split(m, NFT_MSG_NEWCHAIN)?;
    let hook = attr(a, 4).and_then(|h| {
        Some(NftHook {
            num: be32(attr(h, 1)?)?,
            priority: be32(attr(h, 2)?)? as i32,
        })
    });
    let counters = attr(a, 8).and_then(|c| Some((u64_be(attr(c, 2)?)?, u64_be(attr(c, 1)?)?)));
    Some(NftChain {
        family,
        table: string(attr(a, 1)?),
        name: string(attr(a, 3)?),
        handle: attr(a, 2).and_then(u64_be).unwrap_or(0),
        hook,
        kind: attr(a, 7).map(string),
        policy: attr(a, 5).and_then(be32),
        counters,
    })
}

pub fn parse_rule(m: &nl::Message<'_>) -> Option<NftRule> {
    let (family, a) = split(m, NFT_MSG_NEWRULE)?;
    let exprs = attr(a, 4)
        .map(|list| {
            attrs(list)
                .filter(|(k, _)| *k == 1)
                .map(|(_, e)| parse_expr(e))
                .collect()
        })
        .unwrap_or_default();
    Some(NftRule {
        family,
        table: string(attr(a, 1)?),
        chain: string(attr(a, 2)?),
        handle: attr(a, 3).and_then(u64_be).unwrap_or(0),
        exprs,
        comment: attr(a, 7).and_then(rule_comment),
    })
}

/// NFTNL_UDATA_RULE_COMMENT (type 0) of a rule's user data: TLVs of one-byte type and length.
fn rule_comment(mut udata: &[u8]) -> Option<String> {
    while let (Some(&kind), Some(&len)) = (udata.first(), udata.get(1)) {
        let value = udata.get(2..2 + usize::from(len))?;
        if kind == 0 {
            return Some(string(value));
        }
        udata = &udata[2 + usize::from(len)..];
    }
    None
}

fn data(b: &[u8]) -> Option<Data> {
    if let Some(v) = attr(b, 1) {
        return Some(Data::Value(v.to_vec()));
    }
    let v = attr(b, 2)?;
    Some(Data::Verdict(Verdict {
        code: be32(attr(v, 1)?)? as i32,
        chain: attr(v, 2).map(string),
    }))
}

fn value(b: Option<&[u8]>) -> Vec<u8> {
    b.and_then(data)
        .map(|d| d.bytes().to_vec())
        .unwrap_or_default()
}

/// One `NFTA_LIST_ELEM` of a rule's expressions.
pub fn parse_expr(e: &[u8]) -> Expr {
    let Some(name) = attr(e, 1).map(string) else {
        return Expr::Other(String::new());
    };
    let d = attr(e, 2).unwrap_or_default();
    parse_expr_data(&name, d).unwrap_or(Expr::Other(name))
}

fn parse_expr_data(name: &str, d: &[u8]) -> Option<Expr> {
    let u = |k: u16| attr(d, k).and_then(be32);
    let r = |k: u16| attr(d, k).and_then(reg);
    Some(match name {
        "payload" => Expr::Payload {
            dreg: r(1),
            sreg: r(5),
            base: u(2)?,
            offset: u(3)?,
            len: u(4)?,
        },
        "cmp" => Expr::Cmp {
            sreg: r(1)?,
            op: u(2)?,
            data: value(attr(d, 3)),
        },
        "bitwise" => Expr::Bitwise {
            sreg: r(1)?,
            dreg: r(2)?,
            len: u(3)?,
            op: u(6).unwrap_or(0),
            mask: value(attr(d, 4)),
            xor: value(attr(d, 5)),
            shift: value(attr(d, 7)),
        },
        "meta" => Expr::Meta {
            key: u(2)?,
            dreg: r(1),
            sreg: r(3),
        },
        "ct" => Expr::Ct {
            key: u(2)?,
            dreg: r(1),
            sreg: r(4),
            dir: attr(d, 3).and_then(|b| b.first().copied()),
        },
        "immediate" => Expr::Immediate {
            dreg: r(1)?,
            data: data(attr(d, 2)?)?,
        },
        "counter" => Expr::Counter {
            bytes: attr(d, 1).and_then(u64_be).unwrap_or(0),
            packets: attr(d, 2).and_then(u64_be).unwrap_or(0),
        },
        "lookup" => Expr::Lookup {
            set: string(attr(d, 1)?),
            sreg: r(2)?,
            dreg: r(3),
            invert: u(5).unwrap_or(0) & 1 != 0,
        },
        "range" => Expr::Range {
            sreg: r(1)?,
            op: u(2)?,
            from: value(attr(d, 3)),
            to: value(attr(d, 4)),
        },
        "nat" => Expr::Nat {
            dnat: u(1)? == 1,
            family: u(2).unwrap_or(0) as u8,
            addr_min: r(3),
            addr_max: r(4),
            proto_min: r(5),
            proto_max: r(6),
            flags: u(7).unwrap_or(0),
        },
        "masq" => Expr::Masq {
            flags: u(1).unwrap_or(0),
            proto_min: r(2),
            proto_max: r(3),
        },
        "redir" => Expr::Redir {
            proto_min: r(1),
            proto_max: r(2),
            flags: u(3).unwrap_or(0),
        },
        "fib" => Expr::Fib {
            dreg: r(1)?,
            result: u(2)?,
            flags: u(3).unwrap_or(0),
        },
        "numgen" => Expr::Numgen {
            dreg: r(1)?,
            modulus: u(2)?,
            random: u(3).unwrap_or(0) == 1,
            offset: u(4).unwrap_or(0),
        },
        "match" | "target" => {
            let name_ = string(attr(d, 1)?);
            let rev = u(2).unwrap_or(0) as u8;
            let info = attr(d, 3).unwrap_or_default().to_vec();
            if name == "match" {
                Expr::Match {
                    name: name_,
                    rev,
                    info,
                }
            } else {
                Expr::Target {
                    name: name_,
                    rev,
                    info,
                }
            }
        }
        "log" => Expr::Log {
            prefix: attr(d, 2).map(string),
            group: attr(d, 1).and_then(nl::u16_be),
            level: u(5),
        },
        "limit" => Expr::Limit {
            rate: attr(d, 1).and_then(u64_be)?,
            unit: attr(d, 2).and_then(u64_be)?,
            burst: u(3).unwrap_or(0),
            bytes: u(4).unwrap_or(0) == 1,
            over: u(5).unwrap_or(0) & 1 != 0,
        },
        "reject" => Expr::Reject {
            kind: u(1)?,
            code: attr(d, 2).and_then(|b| b.first().copied()).unwrap_or(0),
        },
        "notrack" => Expr::Notrack,
        "objref" => Expr::Objref {
            kind: u(1)?,
            name: string(attr(d, 2)?),
        },
        _ => return None,
    })
}

pub fn parse_set(m: &nl::Message<'_>) -> Option<NftSet> {
    let (family, a) = split(m, NFT_MSG_NEWSET)?;
    Some(NftSet {
        family,
        table: string(attr(a, 1)?),
        name: string(attr(a, 2)?),
        flags: attr(a, 3).and_then(be32).unwrap_or(0),
        key_len: attr(a, 5).and_then(be32).unwrap_or(0),
        data_type: attr(a, 6).and_then(be32),
    })
}

pub fn parse_set_elems(m: &nl::Message<'_>) -> Option<NftSetElems> {
    let (family, a) = split(m, NFT_MSG_NEWSETELEM)?;
    let elems = attr(a, 3)
        .map(|list| {
            attrs(list)
                .filter(|(k, _)| *k == 1)
                .map(|(_, e)| NftElem {
                    key: value(attr(e, 1)),
                    key_end: attr(e, 10).map(|k| value(Some(k))),
                    data: attr(e, 2).and_then(data),
                    interval_end: attr(e, 3).and_then(be32).unwrap_or(0) & 1 != 0,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(NftSetElems {
        family,
        table: string(attr(a, 1)?),
        set: string(attr(a, 2)?),
        elems,
    })
}

/// A dump request for every object of one kind (`NFT_MSG_GET*`), all families.
pub fn dump_request(msg: u16, seq: u32) -> Vec<u8> {
    nl::Request::new(msg_type(msg), nl::NLM_F_DUMP, &[0, 0, 0, 0]).finish(seq)
}

/// A dump request for the rules of one chain: the kernel walks only that chain (a dump of every
/// rule resumes each batch by skipping over all rules already sent, quadratic on big rulesets).
pub fn chain_rules_request(family: u8, table: &str, chain: &str, seq: u32) -> Vec<u8> {
    let mut t = table.as_bytes().to_vec();
    t.push(0);
    let mut c = chain.as_bytes().to_vec();
    c.push(0);
    nl::Request::new(
        msg_type(NFT_MSG_GETRULE),
        nl::NLM_F_DUMP,
        &[family, 0, 0, 0],
    )
    .attr(1, &t)
    .attr(2, &c)
    .finish(seq)
}

/// A dump request for the elements of one set.
pub fn set_elems_request(family: u8, table: &str, set: &str, seq: u32) -> Vec<u8> {
    let mut t = table.as_bytes().to_vec();
    t.push(0);
    let mut s = set.as_bytes().to_vec();
    s.push(0);
    nl::Request::new(
        msg_type(NFT_MSG_GETSETELEM),
        nl::NLM_F_DUMP,
        &[family, 0, 0, 0],
    )
    .attr(1, &t)
    .attr(2, &s)
    .finish(seq)
}

#[cfg(test)]
pub(crate) mod build {
    //! nf_tables messages as the kernel writes them, for tests.
    use super::super::nl::Request;

    pub fn be(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    pub fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// An expression: its name and data attributes (type, encoded payload).
    pub type ExprSpec = (String, Vec<(u16, Vec<u8>)>);

    /// An expression list element: `name` with its data attributes already encoded.
    pub fn expr(name: &str, data: &[(u16, Vec<u8>)]) -> ExprSpec {
        (name.to_string(), data.to_vec())
    }

    pub fn chain(
        family: u8,
        table: &str,
        name: &str,
        hook: Option<(u32, i32)>,
        kind: Option<&str>,
    ) -> Vec<u8> {
        let mut r = Request::new(super::msg_type(3), 0, &[family, 0, 0, 0])
            .attr(1, &cstr(table))
            .attr(3, &cstr(name));
        if let Some((num, prio)) = hook {
            r = r.nest(4).attr(1, &be(num)).attr(2, &be(prio as u32)).end();
            r = r.attr(5, &be(1));
        }
        if let Some(kind) = kind {
            r = r.attr(7, &cstr(kind));
        }
        r.finish(1)
    }

    /// A nested data attribute holding a verdict.
    pub fn verdict(code: i32, chain: Option<&str>) -> Vec<u8> {
        let mut r = Request::new(0, 0, &[]).nest(2).attr(1, &be(code as u32));
        if let Some(chain) = chain {
            r = r.attr(2, &cstr(chain));
        }
        r.end().finish(0)[16..].to_vec()
    }

    pub fn rule(
        family: u8,
        table: &str,
        chain: &str,
        handle: u64,
        exprs: &[ExprSpec],
        comment: Option<&str>,
    ) -> Vec<u8> {
        let mut r = Request::new(super::msg_type(6), 0, &[family, 0, 0, 0])
            .attr(1, &cstr(table))
            .attr(2, &cstr(chain))
            .attr(3, &handle.to_be_bytes())
            .nest(4);
        for (name, data) in exprs {
            r = r.nest(1).attr(1, &cstr(name)).nest(2);
            for (k, v) in data {
                // Nested data attributes arrive pre-encoded (value/verdict); flag them nested.
                r = r.attr(*k, v);
            }
            r = r.end().end();
        }
        r = r.end();
        if let Some(c) = comment {
            let mut udata = vec![0u8, (c.len() + 1) as u8];
            udata.extend(cstr(c));
            r = r.attr(7, &udata);
        }
        r.finish(1)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn registers_overlap_as_the_kernel_reads_them() {
        assert_eq!(word(1), word(8));
        assert_eq!(word(9), word(1) + 1);
        assert_eq!(word(2), word(12));
    }

    #[test]
    fn a_rule_reads_back_with_its_expressions_and_comment() {
        let msg = rule(
            2,
            "kube-proxy",
            "masquerading",
            20,
            &[
                expr("masq", &[(1, be(0x10))]),
                expr(
                    "counter",
                    &[
                        (1, 99u64.to_be_bytes().to_vec()),
                        (2, 3u64.to_be_bytes().to_vec()),
                    ],
                ),
                expr("immediate", &[(1, be(0)), (2, verdict(-3, Some("KUBE-X")))]),
                expr("weird", &[]),
            ],
            Some("hi"),
        );
        let m = nl::messages(&msg).next().unwrap();
        let r = parse_rule(&m).unwrap();
        assert_eq!(
            (r.table.as_str(), r.chain.as_str(), r.handle),
            ("kube-proxy", "masquerading", 20)
        );
        assert_eq!(r.comment.as_deref(), Some("hi"));
        assert_eq!(
            r.exprs,
            vec![
                Expr::Masq {
                    flags: 0x10,
                    proto_min: None,
                    proto_max: None
                },
                Expr::Counter {
                    packets: 3,
                    bytes: 99
                },
                Expr::Immediate {
                    dreg: 0,
                    data: Data::Verdict(Verdict {
                        code: -3,
                        chain: Some("KUBE-X".into())
                    })
                },
                Expr::Other("weird".into()),
            ]
        );
    }

    #[test]
    fn chains_read_hook_and_type() {
        let msg = chain(2, "nat", "POSTROUTING", Some((4, 100)), Some("nat"));
        let c = parse_chain(&nl::messages(&msg).next().unwrap()).unwrap();
        assert_eq!(
            c.hook,
            Some(NftHook {
                num: 4,
                priority: 100
            })
        );
        assert_eq!((c.kind.as_deref(), c.policy), (Some("nat"), Some(1)));
        assert!(parse_rule(&nl::messages(&msg).next().unwrap()).is_none());
    }
}
