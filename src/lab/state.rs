//! What a lab left up: one small JSON file per run under /run/kubectl-realip/, read by `--down`.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

pub const STATE_DIR: &str = "/run/kubectl-realip";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub namespaces: Vec<String>,
    /// Left up on purpose by `--keep` (otherwise the run is in progress or crashed).
    pub kept: bool,
    /// The process that made it; a lab whose owner is gone and not kept was abandoned.
    pub owner: u32,
}

impl State {
    pub fn new(id: &str, namespaces: &[String], kept: bool) -> Self {
        State {
            id: id.to_string(),
            namespaces: namespaces.to_vec(),
            kept,
            owner: std::process::id(),
        }
    }

    /// Whether `--down` should remove it: kept, or its owner no longer runs.
    pub fn removable(&self) -> bool {
        self.kept || !Path::new(&format!("/proc/{}", self.owner)).exists()
    }
}

fn path_for(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("lab-{id}.json"))
}

pub fn write(state: &State) -> io::Result<PathBuf> {
    write_in(Path::new(STATE_DIR), state)
}

fn write_in(dir: &Path, state: &State) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = path_for(dir, &state.id);
    let text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Every recorded lab, with the file that records it. Unreadable files are skipped.
pub fn read_all() -> Vec<(PathBuf, State)> {
    read_all_in(Path::new(STATE_DIR))
}

fn read_all_in(dir: &Path) -> Vec<(PathBuf, State)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, State)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lab-") && n.ends_with(".json"))
        })
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let state = serde_json::from_str(&text).ok()?;
            Some((path, state))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_skip_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new("ab12", &["rip-ab12-client".into()], true);
        let path = write_in(dir.path(), &state).unwrap();
        std::fs::write(dir.path().join("lab-bad.json"), "{").unwrap();
        std::fs::write(dir.path().join("other.txt"), "x").unwrap();
        let all = read_all_in(dir.path());
        assert_eq!(all, vec![(path, state.clone())]);
        assert!(state.removable());
        // In progress: owned by this (running) process and not kept.
        assert!(!State::new("cd34", &[], false).removable());
    }
}
