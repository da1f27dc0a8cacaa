//! What a lab left up: one small JSON file per run under /run/kubectl-realip/, read by `--down`.

use super::topology::Names;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

pub const STATE_DIR: &str = "/run/kubectl-realip";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The namespace prefix it was built under: `--down` removes only labs of its own prefix,
    /// so that a test's `--down` never takes a lab a user left up. Files written before it was
    /// recorded are the default prefix's.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    pub id: String,
    pub namespaces: Vec<String>,
    /// Left up on purpose by `--keep` (otherwise the run is in progress or crashed).
    pub kept: bool,
    /// The process that made it; a lab whose owner is gone and not kept was abandoned.
    pub owner: u32,
}

fn default_prefix() -> String {
    super::topology::NS_PREFIX.to_string()
}

impl State {
    pub fn new(names: &Names, namespaces: &[String], kept: bool) -> Self {
        State {
            prefix: names.ns_prefix().to_string(),
            id: names.id.clone(),
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

/// One file per run: two prefixes may draw the same id.
fn path_for(dir: &Path, state: &State) -> PathBuf {
    dir.join(format!("lab-{}{}.json", state.prefix, state.id))
}

pub fn write(state: &State) -> io::Result<PathBuf> {
    write_in(Path::new(STATE_DIR), state)
}

fn write_in(dir: &Path, state: &State) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = path_for(dir, state);
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
        let state = State::new(&Names::new("ab12"), &["rip-ab12-client".into()], true);
        let path = write_in(dir.path(), &state).unwrap();
        std::fs::write(dir.path().join("lab-bad.json"), "{").unwrap();
        std::fs::write(dir.path().join("other.txt"), "x").unwrap();
        let all = read_all_in(dir.path());
        assert_eq!(all, vec![(path, state.clone())]);
        assert!(state.removable());
        // In progress: owned by this (running) process and not kept.
        assert!(!State::new(&Names::new("cd34"), &[], false).removable());
    }

    #[test]
    fn same_id_under_two_prefixes_are_two_records() {
        let dir = tempfile::tempdir().unwrap();
        let user = State::new(&Names::new("ab12"), &["rip-ab12-client".into()], true);
        let test = State::new(
            &Names::with_prefix("riplt-", "ab12"),
            &["riplt-ab12-client".into()],
            true,
        );
        write_in(dir.path(), &user).unwrap();
        write_in(dir.path(), &test).unwrap();
        let prefixes: Vec<String> = read_all_in(dir.path())
            .into_iter()
            .map(|(_, state)| state.prefix)
            .collect();
        assert_eq!(prefixes, ["rip-", "riplt-"]);
    }

    /// A record written before prefixes were recorded is the default prefix's.
    #[test]
    fn older_records_belong_to_the_default_prefix() {
        let state: State = serde_json::from_str(
            r#"{"id":"ab12","namespaces":["rip-ab12-client"],"kept":true,"owner":1}"#,
        )
        .unwrap();
        assert_eq!(state.prefix, "rip-");
    }
}
