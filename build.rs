//! Embeds the realip-probe binary (gzip-compressed) so `trace` can deliver it to the nodes and
//! plugin and probe versions always match.
//!
//! `REALIP_PROBE_EMBED` decides what is embedded:
//! - unset: on Linux targets, build the probe from this workspace (`cargo build --release -p
//!   realip-probe`, static, into `<target>/realip-probe-embed`); elsewhere embed nothing.
//! - `PATH[,PATH...]`: embed these prebuilt static Linux binaries (one per architecture; the
//!   architecture is read from each ELF header). Release builds use this to carry amd64 + arm64.
//! - `none`: embed nothing (trace then needs `--image`).

use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=REALIP_PROBE_EMBED");
    println!("cargo:rerun-if-changed=probe/src");
    println!("cargo:rerun-if-changed=probe/Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let binaries: Vec<PathBuf> = match env::var("REALIP_PROBE_EMBED").ok().as_deref() {
        Some("none") | Some("") => Vec::new(),
        Some(paths) => paths.split(',').map(PathBuf::from).collect(),
        None if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") => {
            match build_probe(&out_dir) {
                Ok(path) => vec![path],
                Err(err) => {
                    println!("cargo:warning=the realip-probe binary is not embedded: {err}");
                    Vec::new()
                }
            }
        }
        None => Vec::new(),
    };

    let mut entries = String::new();
    for path in &binaries {
        println!("cargo:rerun-if-changed={}", path.display());
        let binary = fs::read(path)
            .unwrap_or_else(|err| panic!("REALIP_PROBE_EMBED: reading {}: {err}", path.display()));
        let arch = elf_arch(&binary).unwrap_or_else(|| {
            panic!(
                "REALIP_PROBE_EMBED: {} is not a Linux x86_64 or aarch64 ELF binary",
                path.display()
            )
        });
        let gz_path = out_dir.join(format!("realip-probe-{arch}.gz"));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&binary).expect("compressing in memory");
        fs::write(&gz_path, encoder.finish().expect("compressing in memory"))
            .expect("writing to OUT_DIR");
        entries.push_str(&format!(
            "    EmbeddedProbe {{ arch: {arch:?}, size: {}, gzip: include_bytes!({:?}) }},\n",
            binary.len(),
            gz_path.display().to_string()
        ));
    }
    fs::write(
        out_dir.join("embedded_probes.rs"),
        format!("pub(crate) static PROBES: &[EmbeddedProbe] = &[\n{entries}];\n"),
    )
    .expect("writing to OUT_DIR");
}

/// `x86_64` or `aarch64` from an ELF header, as `uname -m` names them on the node.
fn elf_arch(binary: &[u8]) -> Option<&'static str> {
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" || binary[5] != 1 {
        return None;
    }
    match u16::from_le_bytes([binary[18], binary[19]]) {
        0x3e => Some("x86_64"),
        0xb7 => Some("aarch64"),
        _ => None,
    }
}

/// Builds the probe with the same toolchain, static, into its own target dir (the outer cargo
/// holds the lock on ours), without the outer build's wrappers and flags: under clippy the
/// workspace wrapper would otherwise lint the probe a second time, and RUSTFLAGS meant for the
/// plugin must not leak in.
fn build_probe(out_dir: &Path) -> Result<PathBuf, String> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let target = env::var("TARGET").map_err(|_| "no TARGET")?;
    // OUT_DIR is <target-dir>/<profile>/build/<pkg>/out (or one level deeper with --target).
    let target_dir = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.join("target"))
        .join("realip-probe-embed");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&manifest_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "realip-probe",
            "--bin",
            "realip-probe",
        ])
        .arg("--target")
        .arg(&target)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    // Variables cargo sets for this build script must not reconfigure the nested build.
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str() {
            if key.starts_with("CARGO_CFG_")
                || key.starts_with("CARGO_FEATURE_")
                || key.starts_with("DEP_")
            {
                command.env_remove(key);
            }
        }
    }
    let status = command
        .status()
        .map_err(|err| format!("running cargo for realip-probe: {err}"))?;
    if !status.success() {
        return Err(format!("cargo build -p realip-probe failed ({status})"));
    }
    let binary = target_dir
        .join(&target)
        .join("release")
        .join("realip-probe");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!("{} was not built", binary.display()))
    }
}
