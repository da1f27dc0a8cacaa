//! plugin.yaml against the rules krew's own validator applies (pkg/index/validation), plus the
//! index's review rules: https URIs, LICENSE shipped, selectors that never overlap.

use serde_yaml::Value;

const MANIFEST: &str = include_str!("../../plugin.yaml");
const OSES: [&str; 3] = ["linux", "darwin", "windows"];
const ARCHES: [&str; 4] = ["amd64", "arm64", "386", "arm"];

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

/// Does a `matchLabels`/`matchExpressions` selector match this os/arch?
fn selects(selector: &Value, os: &str, arch: &str) -> bool {
    let label = |key: &str| if key == "os" { os } else { arch };
    let labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_mapping)
        .is_none_or(|m| {
            m.iter()
                .all(|(k, v)| v.as_str() == Some(label(k.as_str().unwrap_or_default())))
        });
    let exprs_ok = selector
        .get("matchExpressions")
        .and_then(Value::as_sequence)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = text(e, &["key"]).unwrap_or_default();
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_sequence)
                    .map(|s| s.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let hit = values.contains(&label(key));
                match text(e, &["operator"]) {
                    Some("In") => hit,
                    Some("NotIn") => !hit,
                    _ => false,
                }
            })
        });
    labels_ok && exprs_ok
}

fn is_semver_tag(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn validate(manifest: &str) -> Result<(), String> {
    let doc: Value = serde_yaml::from_str(manifest).map_err(|e| e.to_string())?;
    if text(&doc, &["apiVersion"]) != Some("krew.googlecontainertools.github.com/v1alpha2") {
        return Err("apiVersion must be krew.googlecontainertools.github.com/v1alpha2".into());
    }
    if text(&doc, &["kind"]) != Some("Plugin") {
        return Err("kind must be Plugin".into());
    }
    let name = text(&doc, &["metadata", "name"]).ok_or("metadata.name missing")?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("unsafe plugin name {name:?}"));
    }
    let short = text(&doc, &["spec", "shortDescription"]).unwrap_or_default();
    if short.is_empty() || short.len() > 50 {
        return Err("shortDescription must be set and at most 50 characters".into());
    }
    let version = text(&doc, &["spec", "version"]).unwrap_or_default();
    if !is_semver_tag(version) {
        return Err(format!(
            "spec.version {version:?} is not vMAJOR.MINOR.PATCH"
        ));
    }
    let platforms = doc
        .get("spec")
        .and_then(|s| s.get("platforms"))
        .and_then(Value::as_sequence)
        .filter(|p| !p.is_empty())
        .ok_or("spec.platforms must list at least one platform")?;
    for (i, p) in platforms.iter().enumerate() {
        let uri = text(p, &["uri"]).unwrap_or_default();
        if !uri.starts_with("https://") {
            return Err(format!("platform {i}: uri must be https"));
        }
        if !uri.contains(version) {
            return Err(format!("platform {i}: uri does not name version {version}"));
        }
        let sha = text(p, &["sha256"]).unwrap_or_default();
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "platform {i}: sha256 must be 64 lowercase hex digits"
            ));
        }
        let bin = text(p, &["bin"]).unwrap_or_default();
        if bin.is_empty() {
            return Err(format!("platform {i}: bin has to be set"));
        }
        let files = p
            .get("files")
            .and_then(Value::as_sequence)
            .filter(|f| !f.is_empty())
            .ok_or(format!("platform {i}: files must be listed"))?;
        let from: Vec<&str> = files.iter().filter_map(|f| text(f, &["from"])).collect();
        if !from.contains(&"LICENSE") {
            return Err(format!("platform {i}: LICENSE must be shipped"));
        }
        if !from.contains(&bin) {
            return Err(format!("platform {i}: bin {bin} is not among the files"));
        }
        let selector = p
            .get("selector")
            .ok_or(format!("platform {i}: nil selector"))?;
        let keys: Vec<String> = selector
            .get("matchLabels")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)))
            .chain(
                selector
                    .get("matchExpressions")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| text(e, &["key"]).map(String::from)),
            )
            .collect();
        if keys.is_empty() {
            return Err(format!("platform {i}: empty selector"));
        }
        if let Some(key) = keys.iter().find(|k| *k != "os" && *k != "arch") {
            return Err(format!("platform {i}: selector key {key:?} not supported"));
        }
    }
    for os in OSES {
        for arch in ARCHES {
            let hits = platforms
                .iter()
                .filter(|p| p.get("selector").is_some_and(|s| selects(s, os, arch)))
                .count();
            if hits > 1 {
                return Err(format!("{hits} platforms match {os}/{arch}"));
            }
        }
    }
    Ok(())
}

#[test]
fn plugin_yaml_passes_krew_rules() {
    validate(MANIFEST).unwrap();
}

#[test]
fn plugin_yaml_covers_linux_and_darwin_on_amd64_and_arm64() {
    let doc: Value = serde_yaml::from_str(MANIFEST).unwrap();
    let platforms = doc["spec"]["platforms"].as_sequence().unwrap();
    for os in ["linux", "darwin"] {
        for arch in ["amd64", "arm64"] {
            assert!(
                platforms.iter().any(|p| selects(&p["selector"], os, arch)),
                "no platform for {os}/{arch}"
            );
        }
    }
}

#[test]
fn plugin_yaml_version_matches_the_crate() {
    let doc: Value = serde_yaml::from_str(MANIFEST).unwrap();
    assert_eq!(
        doc["spec"]["version"].as_str(),
        Some(format!("v{}", env!("CARGO_PKG_VERSION")).as_str())
    );
}

#[test]
fn validator_rejects_what_krew_rejects() {
    let broken = [
        (
            "os: darwin\n        arch: amd64",
            "os: linux\n        arch: amd64",
        ),
        ("- from: LICENSE\n      to: .\n  - selector", "- selector"),
        ("uri: https://", "uri: http://"),
        ("version: v0.1.0", "version: 0.1.0"),
        ("name: realip", "name: real/ip"),
        (
            "os: linux\n        arch: arm64",
            "os: linux\n        cpu: arm64",
        ),
    ];
    for (from, to) in broken {
        assert!(MANIFEST.contains(from), "fixture drifted: {from:?}");
        let mutated = MANIFEST.replacen(from, to, 1);
        assert!(
            validate(&mutated).is_err(),
            "accepted after {from:?} -> {to:?}"
        );
    }
    let upper = MANIFEST.replacen(&"0".repeat(64), &"A".repeat(64), 1);
    assert!(validate(&upper).is_err(), "accepted an uppercase sha256");
}
