//! Snapshots of what people read: text, JSON and Mermaid for a few corpus cases.

use kubectl_realip::explain::{explain_manifests, render_json, render_mermaid, render_text};
use kubectl_realip::output::plain;
use std::path::Path;

fn case(name: &str) -> Vec<kubectl_realip::explain::model::Explanation> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/explain_corpus")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).expect("corpus case");
    explain_manifests(&text).expect("explained")
}

#[test]
fn text_cluster_policy_on_a_tke_clb() {
    insta::assert_snapshot!(plain(&render_text(&case("practice-gr-cluster-lb"))));
}

#[test]
fn text_l7_qcloud_ingress() {
    insta::assert_snapshot!(plain(&render_text(&case(
        "tke-scenario4-vpccni-l7-ingress"
    ))));
}

#[test]
fn text_nginx_ingress_cluster() {
    let explanations = case("nginx-ingress-cluster");
    let whoami: Vec<_> = explanations
        .into_iter()
        .filter(|e| e.service == "whoami")
        .collect();
    insta::assert_snapshot!(plain(&render_text(&whoami)));
}

#[test]
fn json_direct_access() {
    insta::assert_snapshot!(render_json(&case("tke-scenario1-vpccni-direct")));
}

#[test]
fn json_round_trips() {
    let explanations = case("nginx-ingress-local");
    let json = render_json(&explanations);
    let back: Vec<kubectl_realip::explain::model::Explanation> =
        serde_json::from_str(&json).expect("the JSON contract parses back");
    assert_eq!(back, explanations);
}

#[test]
fn mermaid_local_policy() {
    insta::assert_snapshot!(render_mermaid(&case("practice-gr-local-lb")));
}

#[test]
fn text_is_styled_only_by_anstyle() {
    let text = render_text(&case("k8s-cluster-lb"));
    assert!(
        text.contains("\u{1b}["),
        "styles are present before stripping"
    );
    assert!(!plain(&text).contains('\u{1b}'));
}
