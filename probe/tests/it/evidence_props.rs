//! Properties of the evidence readers, which read kernel messages: on arbitrary bytes, on real
//! replies with bytes changed or cut short (the golden fixtures, so the walk goes deep), and on
//! arbitrary expression lists, no parser or renderer panics, and what they return stays within
//! what they were given.

use proptest::prelude::*;
use realip_probe::evidence::nft::{self, Data, Expr, Verdict};
use realip_probe::evidence::ruleset::{self, NftDump};
use realip_probe::evidence::{conntrack, legacy, nft_ipt, nft_text, nl, route, xt};
use realip_probe::wire::CtTuple;
use std::collections::HashMap;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/evidence/golden"
);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!("{GOLDEN}/{name}")).expect("golden fixture")
}

/// A real reply with some bytes replaced and maybe cut short.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    (
        prop::collection::vec((0..len, any::<u8>()), 1..12),
        prop::option::of(0..len),
    )
        .prop_map(move |(changes, cut)| {
            let mut b = base.clone();
            for (at, v) in changes {
                if let Some(slot) = b.get_mut(at) {
                    *slot = v;
                }
            }
            if let Some(cut) = cut {
                b.truncate(cut);
            }
            b
        })
}

/// A netlink message of `kind` around arbitrary payload bytes.
fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
    m.extend(kind.to_ne_bytes());
    m.extend([0u8; 10]);
    m.extend(payload);
    m
}

fn render_all(dump: &NftDump) {
    let ifnames = HashMap::from([(1, "lo".to_string())]);
    let tables = ruleset::nft_tables(dump, &ifnames, &xt::Context::default());
    for t in &tables {
        for c in &t.chains {
            for r in &c.rules {
                assert!(!r.text.contains('\n'), "one line per rule: {:?}", r.text);
            }
        }
    }
}

fn reg() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 4u32..24, any::<u32>()]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..20)
}

fn verdict() -> impl Strategy<Value = Data> {
    (any::<i32>(), prop::option::of("[a-z-]{0,8}")).prop_map(|(code, chain)| {
        Data::Verdict(Verdict {
            code: code % 8 - 5,
            chain,
        })
    })
}

/// Expressions in any order, registers and data included: the renderer must cope with
/// sequences nft would never write.
fn expr() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (
            prop::option::of(reg()),
            prop::option::of(reg()),
            0u32..4,
            0u32..40,
            0u32..20
        )
            .prop_map(|(dreg, sreg, base, offset, len)| Expr::Payload {
                dreg,
                sreg,
                base,
                offset,
                len
            }),
        (reg(), 0u32..7, bytes()).prop_map(|(sreg, op, data)| Expr::Cmp { sreg, op, data }),
        (reg(), reg(), 0u32..20, 0u32..3, bytes(), bytes()).prop_map(
            |(sreg, dreg, len, op, mask, xor)| {
                Expr::Bitwise {
                    sreg,
                    dreg,
                    len,
                    op,
                    mask,
                    xor,
                    shift: vec![],
                }
            }
        ),
        (0u32..40, prop::option::of(reg()), prop::option::of(reg()))
            .prop_map(|(key, dreg, sreg)| Expr::Meta { key, dreg, sreg }),
        (
            0u32..30,
            prop::option::of(reg()),
            prop::option::of(reg()),
            prop::option::of(0u8..3)
        )
            .prop_map(|(key, dreg, sreg, dir)| Expr::Ct {
                key,
                dreg,
                sreg,
                dir
            }),
        (reg(), prop_oneof![bytes().prop_map(Data::Value), verdict()])
            .prop_map(|(dreg, data)| Expr::Immediate { dreg, data }),
        (any::<u64>(), any::<u64>()).prop_map(|(packets, bytes)| Expr::Counter { packets, bytes }),
        (
            "(__set|__map)?[a-z0-9]{0,6}",
            reg(),
            prop::option::of(reg()),
            any::<bool>()
        )
            .prop_map(|(set, sreg, dreg, invert)| Expr::Lookup {
                set,
                sreg,
                dreg,
                invert
            }),
        (reg(), 0u32..3, bytes(), bytes()).prop_map(|(sreg, op, from, to)| Expr::Range {
            sreg,
            op,
            from,
            to
        }),
        (
            any::<bool>(),
            prop_oneof![Just(2u8), Just(10u8), any::<u8>()],
            prop::option::of(reg()),
            prop::option::of(reg()),
            prop::option::of(reg()),
            prop::option::of(reg()),
            any::<u32>()
        )
            .prop_map(
                |(dnat, family, addr_min, addr_max, proto_min, proto_max, flags)| Expr::Nat {
                    dnat,
                    family,
                    addr_min,
                    addr_max,
                    proto_min,
                    proto_max,
                    flags
                }
            ),
        (
            any::<u32>(),
            prop::option::of(reg()),
            prop::option::of(reg())
        )
            .prop_map(|(flags, proto_min, proto_max)| Expr::Masq {
                flags,
                proto_min,
                proto_max
            }),
        (
            any::<u32>(),
            prop::option::of(reg()),
            prop::option::of(reg())
        )
            .prop_map(|(flags, proto_min, proto_max)| Expr::Redir {
                flags,
                proto_min,
                proto_max
            }),
        (reg(), 0u32..5, any::<u32>()).prop_map(|(dreg, result, flags)| Expr::Fib {
            dreg,
            result,
            flags
        }),
        (reg(), any::<u32>(), any::<bool>(), any::<u32>()).prop_map(
            |(dreg, modulus, random, offset)| Expr::Numgen {
                dreg,
                modulus,
                random,
                offset
            }
        ),
        (
            xt_name(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(name, rev, info)| Expr::Match { name, rev, info }),
        (
            xt_name(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(name, rev, info)| Expr::Target { name, rev, info }),
        (any::<u32>(), any::<u8>()).prop_map(|(kind, code)| Expr::Reject { kind, code }),
        Just(Expr::Notrack),
        "[a-z]{0,8}".prop_map(Expr::Other),
    ]
}

const XT_NAMES: [&str; 24] = [
    "comment",
    "mark",
    "connmark",
    "addrtype",
    "conntrack",
    "state",
    "statistic",
    "tcp",
    "udp",
    "multiport",
    "set",
    "physdev",
    "iprange",
    "mac",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "MARK",
    "CONNMARK",
    "REJECT",
    "LOG",
    "RETURN",
    "weird",
];

fn xt_name() -> impl Strategy<Value = String> {
    prop::sample::select(XT_NAMES.to_vec()).prop_map(String::from)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn netlink_walks_stay_inside_the_buffer(buf in prop::collection::vec(any::<u8>(), 0..300)) {
        for m in nl::messages(&buf) {
            prop_assert!(m.payload.len() <= buf.len());
            for (_, v) in nl::attrs(m.payload) {
                prop_assert!(v.len() <= m.payload.len());
            }
        }
        for (_, v) in nl::attrs(&buf) {
            prop_assert!(v.len() <= buf.len());
        }
    }

    #[test]
    fn nf_tables_replies_of_any_bytes_never_panic(
        kind in prop::sample::select(vec![0u16, 3, 6, 9, 12]),
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let m = message(nft::msg_type(kind), &payload);
        let mut dump = NftDump::default();
        dump.add_messages([m.as_slice()]);
        render_all(&dump);
    }

    #[test]
    fn real_nf_tables_replies_changed_never_panic(buf in mutated(golden("nft-dump.bin"))) {
        let mut dump = NftDump::default();
        dump.add_messages([buf.as_slice()]);
        render_all(&dump);
    }

    #[test]
    fn any_expressions_render_on_one_line(
        exprs in prop::collection::vec(expr(), 0..12),
        family in prop::sample::select(vec![1u8, 2, 3, 5, 7, 10, 99]),
        comment in prop::option::of("[ -~]{0,20}"),
    ) {
        let cx = nft_text::Context { family, ..nft_text::Context::default() };
        let text = nft_text::render(&exprs, comment.as_deref(), &cx);
        prop_assert!(!text.contains('\n'));
        let fam = if family == 10 { xt::Family::V6 } else { xt::Family::V4 };
        if let Some(rule) = nft_ipt::to_ipt("CHAIN", &exprs, fam) {
            let line = rule.render(fam, &xt::Context::default());
            prop_assert!(line.starts_with("-A CHAIN"));
        }
        let _ = ruleset::nft_nat(&exprs, fam);
    }

    #[test]
    fn real_iptables_legacy_blobs_changed_never_panic(
        v4 in mutated(golden("legacy-ip.bin")),
        v6 in mutated(golden("legacy-ip6.bin")),
    ) {
        for (v6_layout, bytes) in [(false, &v4), (true, &v6)] {
            if let Some(info) = legacy::parse_info(bytes) {
                let blob = bytes.get(legacy::GETINFO_LEN..).unwrap_or_default();
                let chains = legacy::parse_table(&info, blob, v6_layout, &xt::Context::default());
                let rules: usize = chains.iter().map(|c| c.rules.len()).sum();
                prop_assert!(rules <= info.num_entries as usize + 1);
            }
        }
    }

    #[test]
    fn legacy_blobs_of_any_bytes_never_panic(
        info in prop::collection::vec(any::<u8>(), 0..100),
        blob in prop::collection::vec(any::<u8>(), 0..600),
        v6 in any::<bool>(),
    ) {
        if let Some(info) = legacy::parse_info(&info) {
            let _ = legacy::parse_table(&info, &blob, v6, &xt::Context::default());
        }
    }

    #[test]
    fn xt_extensions_of_any_bytes_never_panic(
        name in xt_name(),
        rev in 0u8..6,
        info in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        for family in [xt::Family::V4, xt::Family::V6] {
            let mut out = String::new();
            xt::render_match(&mut out, &name, rev, &info, family, &xt::Context::default());
            xt::render_target(&mut out, &name, rev, &info, family);
            prop_assert!(!out.contains('\n'));
            let _ = xt::nat_range(&name, rev, &info, family);
            let _ = legacy::nat_target(&name, rev, &info, family);
        }
    }

    #[test]
    fn conntrack_and_route_replies_never_panic(
        payload in prop::collection::vec(any::<u8>(), 0..300),
        changes in prop::collection::vec((0usize..200, any::<u8>()), 0..8),
    ) {
        let _ = conntrack::parse_entry(&message(0x100, &payload));
        let _ = route::parse_route(&message(route::RTM_NEWROUTE, &payload));
        // A request's tuple attributes read as a reply, with bytes changed: deep, odd input.
        let tuple = CtTuple {
            src: "10.0.0.1".parse().unwrap(),
            sport: 1,
            dst: "10.0.0.2".parse().unwrap(),
            dport: 2,
            proto: 6,
        };
        let mut req = conntrack::get_request(&tuple, conntrack::Side::Orig, 1);
        req[4..6].copy_from_slice(&0x100u16.to_ne_bytes());
        for (at, v) in changes {
            if let Some(slot) = req.get_mut(at) {
                *slot = v;
            }
        }
        let _ = conntrack::parse_entry(&req);
        let mut r = route::get_request("10.0.0.9".parse().unwrap(), 1);
        r[4..6].copy_from_slice(&route::RTM_NEWROUTE.to_ne_bytes());
        let _ = route::parse_route(&r);
    }
}
