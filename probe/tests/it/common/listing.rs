//! What `nft list` and `iptables-save` print, by chain: the reference the evidence renderers
//! are held to.

use std::collections::BTreeMap;

/// `nft list table` output → chain → rule lines, in order.
pub fn nft_listing(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut chain: Option<String> = None;
    let mut depth = 0;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("chain ").and_then(|r| r.strip_suffix(" {")) {
            chain = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            depth = 0;
            continue;
        }
        let Some(c) = &chain else { continue };
        if t.ends_with('{') {
            depth += 1;
            continue;
        }
        if t == "}" {
            if depth == 0 {
                chain = None;
            } else {
                depth -= 1;
            }
            continue;
        }
        if t.is_empty() || t.starts_with("type ") || t.starts_with("comment ") || t.starts_with('#')
        {
            continue;
        }
        out.entry(c.clone()).or_default().push(t.to_string());
    }
    out
}

/// `iptables-save` output → chain → `-A` lines, in order.
pub fn save_listing(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("-A ")) {
        let chain = line.split_whitespace().nth(1).unwrap_or_default();
        out.entry(chain.to_string())
            .or_default()
            .push(line.to_string());
    }
    out
}

/// `nft list ruleset` output → (family, table) → chain → rule lines.
pub fn nft_ruleset_listing(
    text: &str,
) -> BTreeMap<(String, String), BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut current: Option<((String, String), String)> = None;
    let mut flush = |cur: &mut Option<((String, String), String)>| {
        if let Some((key, body)) = cur.take() {
            out.insert(key, nft_listing(&body));
        }
    };
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("table ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            flush(&mut current);
            let (family, name) = rest.split_once(' ').unwrap_or((rest, ""));
            current = Some(((family.to_string(), name.to_string()), String::new()));
            continue;
        }
        if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&mut current);
    out
}
