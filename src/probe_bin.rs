//! Where the `realip-probe` binary to run on this machine is: the one named by `--probe` /
//! `REALIP_PROBE_BIN`, else the one built beside this executable, else the copy this plugin
//! carries (written once under /run/kubectl-realip/), else the first on PATH.

use std::path::{Path, PathBuf};

pub const PROBE_NAME: &str = "realip-probe";

/// Where the carried probe is unpacked (root-owned, like the lab that runs it).
const UNPACK_DIR: &str = "/run/kubectl-realip";

/// The command that builds the probe, for error hints.
pub const BUILD_HINT: &str =
    "build it with `cargo build --release --workspace` (or pass --probe PATH / set REALIP_PROBE_BIN)";

#[derive(Debug, thiserror::Error)]
pub enum ProbeBinError {
    #[error("the probe binary {0} does not exist or is not an executable file")]
    NotExecutable(PathBuf),
    #[error("no {PROBE_NAME} binary found beside {beside}, carried by this build, nor on PATH")]
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
    let beside = current
        .as_deref()
        .map(beside_candidates)
        .unwrap_or_default();
    if let Some(found) = beside.into_iter().find(|path| is_executable(path)) {
        return Ok(found);
    }
    // The carried copy always has this plugin's version: prefer it to whatever is on PATH.
    if let Some(unpacked) = unpack_embedded(Path::new(UNPACK_DIR)) {
        return Ok(unpacked);
    }
    let on_path = path_candidates(std::env::var_os("PATH").as_deref());
    if let Some(found) = on_path.into_iter().find(|path| is_executable(path)) {
        return Ok(found);
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

/// Writes the probe this plugin carries for this machine's architecture into `dir` (once per
/// version and size), and returns its path; `None` when none is carried or it cannot be written.
fn unpack_embedded(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let carried = crate::embedded::probe(std::env::consts::ARCH)?;
    let path = dir.join(format!(
        "{PROBE_NAME}-{}-{}",
        crate::embedded::PROBE_VERSION,
        carried.arch
    ));
    let same_size = std::fs::metadata(&path).is_ok_and(|meta| meta.len() == carried.size as u64);
    if same_size && is_executable(&path) {
        return Some(path);
    }
    let binary = carried.binary().ok()?;
    std::fs::create_dir_all(dir).ok()?;
    // Write aside and rename: a concurrent run never executes a half-written file.
    let partial = dir.join(format!(".{PROBE_NAME}.{}", std::process::id()));
    let written = std::fs::write(&partial, binary)
        .and_then(|()| std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&partial, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
        return None;
    }
    Some(path)
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
    fn the_carried_probe_unpacks_once() {
        if crate::embedded::probe(std::env::consts::ARCH).is_none() {
            eprintln!(
                "no probe carried by this build for {}: nothing to unpack",
                std::env::consts::ARCH
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let first = unpack_embedded(dir.path()).expect("unpacked");
        assert!(is_executable(&first));
        let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
        assert_eq!(unpack_embedded(dir.path()), Some(first.clone()));
        assert_eq!(
            std::fs::metadata(&first).unwrap().modified().unwrap(),
            modified
        );
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
