//! The probe binary this plugin carries (see build.rs): gzip-compressed static Linux builds,
//! one per node architecture, always the probe version of this plugin.

use std::io::Read;

/// One carried probe binary.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedProbe {
    /// The node architecture as `uname -m` prints it: `x86_64` or `aarch64`.
    pub arch: &'static str,
    /// Size of the uncompressed binary.
    pub size: usize,
    /// The gzip-compressed binary.
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/embedded_probes.rs"));

/// Version of the carried probes (the workspace shares one version).
pub const PROBE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every carried probe; empty when built with `REALIP_PROBE_EMBED=none` or for a non-Linux
/// target without prebuilt binaries.
pub fn probes() -> &'static [EmbeddedProbe] {
    PROBES
}

/// The probe for one architecture, by `uname -m` or Kubernetes (`kubernetes.io/arch`) name.
pub fn probe(arch: &str) -> Option<EmbeddedProbe> {
    let arch = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    };
    PROBES.iter().copied().find(|probe| probe.arch == arch)
}

/// What `kubectl realip version` prints: the plugin's version and the probes it carries, by
/// node architecture. A build from source carries only its own architecture's; release builds
/// (krew) carry amd64 and arm64.
pub fn version_text() -> String {
    version_text_for(env!("CARGO_PKG_VERSION"), probes())
}

fn version_text_for(version: &str, carried: &[EmbeddedProbe]) -> String {
    let archs: Vec<String> = carried
        .iter()
        .map(|p| format!("{} ({})", p.kube_arch(), p.arch))
        .collect();
    let probes = match carried {
        [] => "carries no probe (built with REALIP_PROBE_EMBED=none, or not for Linux): trace \
               needs --image IMAGE, a probe image built from probe/Dockerfile"
            .to_string(),
        [_] => format!(
            "carries the probe {PROBE_VERSION} for {} nodes only: trace skips nodes of other \
             architectures unless --image names a probe image built for them. Release builds \
             (krew) carry amd64 and arm64; a build from source carries its own architecture's, \
             or both with REALIP_PROBE_EMBED=PATH-TO-AMD64-PROBE,PATH-TO-ARM64-PROBE",
            archs.join(", "),
        ),
        _ => format!(
            "carries the probe {PROBE_VERSION} for {} nodes",
            archs.join(", ")
        ),
    };
    let mut text = format!("kubectl-realip {version}\n");
    for line in crate::output::wrap(&probes, crate::output::WIDTH, "", "  ") {
        text.push_str(&line);
        text.push('\n');
    }
    if carried.len() < 2 {
        // Whole, so that a terminal can open it.
        text.push_str(concat!("  see ", crate::doc_url!("first-cluster.md"), "\n"));
    }
    text
}

impl EmbeddedProbe {
    /// Kubernetes' name for the architecture (`kubernetes.io/arch`).
    pub fn kube_arch(&self) -> &'static str {
        match self.arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
    }

    /// The uncompressed binary, e.g. to run it locally.
    pub fn binary(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.size);
        flate2::read::GzDecoder::new(self.gzip).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// The kernel tests' check helper (probe/tests/it/common), for its one rule on skips.
#[cfg(test)]
#[path = "../probe/tests/it/common/mod.rs"]
mod kernel_check;

#[cfg(test)]
mod tests {
    use super::*;
    use kernel_check as kernel;

    fn carried(arch: &'static str) -> EmbeddedProbe {
        EmbeddedProbe {
            arch,
            size: 0,
            gzip: &[],
        }
    }

    #[test]
    fn version_names_the_architectures_carried() {
        let plain = |probes: &[EmbeddedProbe]| version_text_for("9.9.9", probes).replace('\n', " ");
        let both = plain(&[carried("x86_64"), carried("aarch64")]);
        assert!(both.starts_with("kubectl-realip 9.9.9 "), "{both}");
        assert!(
            both.contains("for amd64 (x86_64), arm64 (aarch64) nodes"),
            "{both}"
        );
        let one = plain(&[carried("aarch64")]);
        assert!(one.contains("for arm64 (aarch64) nodes only"), "{one}");
        assert!(one.contains("REALIP_PROBE_EMBED="), "{one}");
        assert!(one.contains("--image"), "{one}");
        let none = plain(&[]);
        assert!(none.contains("carries no probe"), "{none}");
        assert!(none.contains("--image"), "{none}");
    }

    #[test]
    fn carried_probes_decompress_to_elf_binaries() {
        let none = probes()
            .is_empty()
            .then(|| "this build carries no probe (REALIP_PROBE_EMBED=none or not Linux)".into());
        if !kernel::runnable("carried_probes_decompress_to_elf_binaries", none) {
            return;
        }
        for carried in probes() {
            let binary = carried.binary().unwrap();
            assert_eq!(binary.len(), carried.size);
            assert_eq!(&binary[..4], b"\x7fELF");
            assert_eq!(
                probe(carried.kube_arch()).map(|p| p.arch),
                Some(carried.arch)
            );
        }
    }
}
