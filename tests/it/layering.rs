//! The layers docs/architecture.md states, held: the core depends on no command line, cluster
//! client, runtime or terminal crate and does no I/O of its own; the probe knows no Kubernetes.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crate names of a Cargo.toml's `[dependencies]` table.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("the manifest");
    let mut names = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if let Some((name, _)) = line.split_once('=').filter(|_| inside) {
            names.push(name.trim().trim_end_matches(".workspace").to_string());
        }
    }
    names
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            out.push((path, text));
        }
    }
    out
}

#[test]
fn the_core_uses_no_flags_cluster_runtime_or_terminal_crate() {
    let deps = dependencies(&repo().join("core/Cargo.toml"));
    assert!(deps.contains(&"realip-probe".to_string()), "{deps:?}");
    for forbidden in ["clap", "kube", "tokio", "indicatif", "futures", "hyper"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "core depends on {forbidden}"
        );
    }
}

#[test]
fn the_probe_knows_no_kubernetes() {
    let deps = dependencies(&repo().join("probe/Cargo.toml"));
    assert!(deps.contains(&"serde".to_string()), "{deps:?}");
    for forbidden in ["kube", "k8s-openapi", "kubectl-realip", "realip-core"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "the probe depends on {forbidden}"
        );
    }
}

#[test]
fn the_core_opens_no_file_socket_or_terminal() {
    let files = sources(&repo().join("core/src"));
    assert!(files.len() > 20, "{} files", files.len());
    for (path, text) in files {
        for io in [
            "std::fs",
            "File::",
            "stdin()",
            "stdout()",
            "stderr()",
            "TcpStream",
            "UdpSocket",
            "std::env",
            "println!",
            "eprintln!",
        ] {
            assert!(!text.contains(io), "{} uses {io}", path.display());
        }
    }
}
