//! Where the `realip-probe` binary to run on this machine is: the one named by `--probe` /
//! `REALIP_PROBE_BIN`, else the one built beside this executable, else the first on PATH.

use std::path::{Path, PathBuf};

pub const PROBE_NAME: &str = "realip-probe";

/// The command that builds the probe, for error hints.
pub const BUILD_HINT: &str =
    "build it with `cargo build --release --workspace` (or pass --probe PATH / set REALIP_PROBE_BIN)";

#[derive(Debug, thiserror::Error)]
pub enum ProbeBinError {
    #[error("the probe binary {0} does not exist or is not an executable file")]
    NotExecutable(PathBuf),
    #[error("no {PROBE_NAME} binary found beside {beside} nor on PATH")]
    NotFound { beside: String },
}

/// Finds the probe binary. `explicit` is `--probe` (clap already folds in REALIP_PROBE_BIN).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ProbeBinError> {
    if let Some(path) = explicit {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(ProbeBinError::NotExecutable(path.to_path_buf()))
        };
    }
    let current = std::env::current_exe().ok();
    let candidates = current
        .as_deref()
        .map(beside_candidates)
        .unwrap_or_default()
        .into_iter()
        .chain(path_candidates(std::env::var_os("PATH").as_deref()));
    for candidate in candidates {
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ProbeBinError::NotFound {
        beside: current.as_deref().and_then(Path::parent).map_or_else(
            || "this executable".to_string(),
            |dir| dir.display().to_string(),
        ),
    })
}

/// `target/release/realip-probe` next to `target/release/kubectl-realip`; for test binaries in
/// `target/debug/deps/`, the parent directory too.
fn beside_candidates(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = vec![dir.join(PROBE_NAME)];
    if dir.file_name().is_some_and(|name| name == "deps") {
        if let Some(parent) = dir.parent() {
            out.push(parent.join(PROBE_NAME));
        }
    }
    out
}

fn path_candidates(path: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
    path.map(|path| {
        std::env::split_paths(path)
            .map(|dir| dir.join(PROBE_NAME))
            .collect()
    })
    .unwrap_or_default()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn beside_a_test_binary_looks_in_the_profile_dir() {
        let found = beside_candidates(Path::new("/t/target/debug/deps/lab-1234"));
        assert_eq!(
            found,
            vec![
                PathBuf::from("/t/target/debug/deps/realip-probe"),
                PathBuf::from("/t/target/debug/realip-probe")
            ]
        );
        assert_eq!(
            beside_candidates(Path::new("/t/target/release/kubectl-realip")),
            vec![PathBuf::from("/t/target/release/realip-probe")]
        );
    }

    #[test]
    fn explicit_path_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("realip-probe");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        assert!(matches!(
            locate(Some(&file)),
            Err(ProbeBinError::NotExecutable(_))
        ));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(locate(Some(&file)).unwrap(), file);
        assert!(locate(Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn path_is_split() {
        let found = path_candidates(Some(std::ffi::OsStr::new("/a:/b")));
        assert_eq!(
            found,
            vec![
                PathBuf::from("/a/realip-probe"),
                PathBuf::from("/b/realip-probe")
            ]
        );
    }
}
