//! The evidence renderers on bytes a real kernel sent: `tests/fixtures/evidence/golden/` holds
//! the nf_tables replies, the iptables-legacy blobs (IPv4 and IPv6) and the ipset names of one
//! namespace loaded with every rule fixture, and what `nft list ruleset` and the `*-save` tools
//! printed for it (recorded by `evidence_kernel`'s `record_golden_fixtures`). Every rule must
//! print exactly as the tools printed it; the `ruleset` event they make is pinned as JSON.
//! No root needed.

use realip_probe::evidence::ruleset::{self, NftDump};
use realip_probe::evidence::snapshot::{self, Snapshot};
use realip_probe::evidence::{legacy, xt, Table};
use realip_probe::wire::{decode_line, encode_line, Backend, Event};
use std::collections::{BTreeMap, HashMap};

use crate::common;

use common::listing::{nft_ruleset_listing, save_listing};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/evidence/golden"
);

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{GOLDEN}/{name}")).expect("golden fixture")
}

fn text(name: &str) -> String {
    String::from_utf8(read(name)).expect("utf-8")
}

fn context() -> xt::Context {
    let ipsets = text("ipsets.txt")
        .lines()
        .filter_map(|l| {
            let (i, n) = l.split_once(' ')?;
            Some((i.parse().ok()?, n.to_string()))
        })
        .collect();
    xt::Context { ipsets }
}

/// The snapshot the probe would take of the recorded namespace.
fn snapshot() -> Snapshot {
    let cx = context();
    let mut dump = NftDump::default();
    dump.add_messages([read("nft-dump.bin").as_slice()]);
    let ifnames = HashMap::from([(1, "lo".to_string())]);
    let mut tables = ruleset::nft_tables(&dump, &ifnames, &cx);
    for (v6, file) in [(false, "legacy-ip.bin"), (true, "legacy-ip6.bin")] {
        let bytes = read(file);
        let info = legacy::parse_info(&bytes).expect("ipt_getinfo");
        tables.push(ruleset::legacy_table(
            v6,
            &info,
            &bytes[legacy::GETINFO_LEN..],
            &cx,
        ));
    }
    Snapshot {
        tables,
        errors: vec![],
    }
}

fn by_chain(t: &Table) -> BTreeMap<String, Vec<String>> {
    t.chains
        .iter()
        .filter(|c| !c.rules.is_empty())
        .map(|c| {
            (
                c.name.clone(),
                c.rules.iter().map(|r| r.text.clone()).collect(),
            )
        })
        .collect()
}

fn nonempty(m: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    m.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

fn table<'a>(snap: &'a Snapshot, backend: Backend, family: &str, name: &str) -> &'a Table {
    snap.tables
        .iter()
        .find(|t| t.backend == backend && t.family == family && t.name == name)
        .unwrap_or_else(|| panic!("no {backend:?} table {family} {name}"))
}

#[test]
fn native_rules_print_as_nft_list_ruleset_printed_them() {
    let snap = snapshot();
    let listed = nft_ruleset_listing(&text("nft-list-ruleset.txt"));
    let native: Vec<&Table> = snap
        .tables
        .iter()
        .filter(|t| t.backend == Backend::Nftables)
        .collect();
    assert_eq!(native.len(), 3, "kube-proxy, calico, extras");
    for t in native {
        let expected = listed
            .get(&(t.family.clone(), t.name.clone()))
            .unwrap_or_else(|| panic!("{} {} not listed", t.family, t.name));
        assert_eq!(
            by_chain(t),
            nonempty(expected.clone()),
            "table {} {}",
            t.family,
            t.name
        );
    }
}

#[test]
fn iptables_nft_rules_print_as_iptables_nft_save_printed_them() {
    let snap = snapshot();
    let t = table(&snap, Backend::IptablesNft, "ip", "nat");
    assert_eq!(by_chain(t), save_listing(&text("iptables-nft-save.txt")));
}

#[test]
fn iptables_legacy_rules_print_as_iptables_legacy_save_printed_them() {
    let snap = snapshot();
    let t = table(&snap, Backend::IptablesLegacy, "ip", "nat");
    assert_eq!(by_chain(t), save_listing(&text("iptables-legacy-save.txt")));
    let t6 = table(&snap, Backend::IptablesLegacy, "ip6", "nat");
    assert_eq!(
        by_chain(t6),
        save_listing(&text("ip6tables-legacy-save.txt"))
    );
}

#[test]
fn the_start_ruleset_event_is_bounded_and_pinned() {
    let snap = snapshot();
    let event = snapshot::start_event(&snap, "node-a", 1_700_000_000_000_000_000);
    let total: usize = snap
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum();
    assert_eq!(
        event.rules.len() as u64 + event.summarised + event.left_out,
        total as u64
    );
    let line = encode_line(&Event::Ruleset(event.clone()));
    assert_eq!(
        decode_line(&line).expect("decodes"),
        Event::Ruleset(event.clone())
    );
    insta::assert_json_snapshot!("start_ruleset", event);
}
