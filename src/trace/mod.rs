//! Deploy the probe to a live cluster, measure, report, leave nothing behind.
//!
//! Pure parts: [`topology`] (what to probe), [`manifests`] (what to create), [`preflight`]'s
//! list of needed permissions, [`psa`], [`readiness`], [`collect`], [`report`].
//! [`run`](mod@run) drives them, phase by phase, through the cluster adapter in
//! [`crate::cluster`]; the `trace` and `cleanup` commands enter through [`crate::cmd::trace`].
//!
//! Exit codes: 0 a report with at least one connection (or a dry run); 1 the capture saw no
//! connection; 2 bad flags; 3 the cluster refused or failed (RBAC, Pod Security, missing
//! Service, unreachable API); 4 no probe could start (image pull, scheduling); 130 interrupted
//! (SIGINT, SIGTERM, SIGHUP) after removing the probe.

pub mod collect;
pub mod manifests;
pub mod preflight;
pub mod progress;
pub mod psa;
pub mod readiness;
pub mod report;
pub mod run;
pub mod send;
pub mod teardown;
pub mod topology;

use crate::cluster::Connection;
use crate::explain::model::Explanation;
use crate::output::OutputFormat;
use manifests::Carried;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// What a trace is asked to do: what `kubectl realip trace`'s flags say (see the command line's
/// help for each).
#[derive(Debug, Clone)]
pub struct Request {
    /// `svc/NAME`, `service/NAME` or `services/NAME`.
    pub target: String,
    pub connection: Connection,
    pub duration: Duration,
    pub flows: Option<usize>,
    pub max_syns: u64,
    pub send: bool,
    pub send_to: Vec<String>,
    pub l7: bool,
    pub evidence: bool,
    pub image: Option<String>,
    pub probe_namespace: Option<String>,
    pub label_namespace_privileged: bool,
    /// A node label selector.
    pub nodes: Option<String>,
    pub max_nodes: usize,
    pub dry_run: bool,
    pub ready_timeout: Duration,
    pub base_image: String,
    pub output: OutputFormat,
}

/// What a trace needs besides its request; tests set these directly.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub run_id: String,
    /// Unix time the run starts.
    pub now_unix: i64,
    pub ready_timeout: Duration,
    /// How long to wait for deleted objects to be gone.
    pub teardown_wait: Duration,
    /// The probes this plugin carries.
    pub probes: Vec<Carried>,
    pub probe_version: String,
    pub base_image: String,
    /// explain's prediction, shown beside the measurement; `None` asks explain live.
    pub prediction: Option<Explanation>,
    /// Ask explain from the live cluster when no prediction is given.
    pub predict_live: bool,
}

impl TraceOptions {
    pub fn for_request(args: &Request) -> Self {
        TraceOptions {
            run_id: new_run_id(),
            now_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            ready_timeout: args.ready_timeout,
            teardown_wait: Duration::from_secs(90),
            probes: crate::embedded::probes()
                .iter()
                .map(|p| Carried {
                    arch: p.arch.to_string(),
                    kube_arch: p.kube_arch().to_string(),
                    gzip: p.gzip.to_vec(),
                })
                .collect(),
            probe_version: crate::embedded::PROBE_VERSION.to_string(),
            base_image: args.base_image.clone(),
            prediction: None,
            predict_live: true,
        }
    }
}

/// Six lowercase hex digits, random per run (names must be unique and DNS-safe).
fn new_run_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:06x}", hasher.finish() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_short_hex_and_differ() {
        let a = new_run_id();
        let b = new_run_id();
        assert_eq!(a.len(), 6);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
