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

/// The kernel tests' check helper (probe/tests/common), for its one rule on skips.
#[cfg(test)]
#[path = "../probe/tests/common/mod.rs"]
mod kernel_check;

#[cfg(test)]
mod tests {
    use super::*;
    use kernel_check as kernel;

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
