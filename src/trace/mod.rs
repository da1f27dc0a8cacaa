//! Deploy the probe to a live cluster, measure, report, leave nothing behind.
//!
//! Pure parts: [`topology`] (what to probe), [`manifests`] (what to create), [`preflight`]'s
//! list of needed permissions, [`psa`], [`readiness`], [`collect`], [`report`].
//! [`run`](mod@run) drives them, phase by phase, through the cluster adapter in
//! [`crate::cluster`].
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

use crate::cli::{CleanupArgs, TraceArgs};
use crate::cluster::{self as cluster_api, Cluster};
use crate::error::{Failure, Kind, Result};
use crate::explain::model::Explanation;
use crate::output;
use manifests::{Carried, MANAGED_SELECTOR};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// What a trace needs besides its flags; tests set these directly.
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
    pub fn from_args(args: &TraceArgs) -> Self {
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

/// Resolves on SIGINT, SIGTERM or SIGHUP.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|kind| signal(kind).ok())
        .collect::<Vec<_>>();
        if streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = streams
            .into_iter()
            .map(|mut s| Box::pin(async move { s.recv().await }));
        futures::future::select_all(waits).await;
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `kubectl realip trace svc/NAME`
pub async fn run(args: &TraceArgs) -> Result<()> {
    let options = TraceOptions::from_args(args);
    run_with(args, &options, interrupted()).await
}

/// The trace with its options and interrupt source given (tests use this).
pub async fn run_with(
    args: &TraceArgs,
    options: &TraceOptions,
    interrupt: impl Future<Output = ()>,
) -> Result<()> {
    let traced = run::trace(args, options, interrupt).await?;
    output::emit(&traced.output)
        .map_err(|err| Failure::new(Kind::Usage, format!("writing to stdout: {err}")))?;
    if traced.answered {
        Ok(())
    } else {
        Err(Failure::new(
            Kind::NoAnswer,
            format!("no connection reached the probes in {}s", args.duration.as_secs()),
        )
        .hint("send traffic to the Service while tracing, use --send, or trace longer with --duration"))
    }
}

/// `kubectl realip cleanup`: removes every leftover of every run, in every namespace, by label;
/// deletes only namespaces a run created (they carry the managed-by label).
pub async fn cleanup(args: &CleanupArgs) -> Result<()> {
    let cluster = Cluster::new(cluster_api::clients(&args.kube).await?);
    let scope = teardown::Scope {
        namespace: None,
        selector: MANAGED_SELECTOR.to_string(),
    };
    let found = teardown::inventory(&cluster, &scope).await?;
    let namespaces = teardown::created_namespaces(&cluster, None).await?;
    let mut out = String::new();
    if found.is_empty() && namespaces.is_empty() {
        out.push_str("nothing to remove: no kubectl-realip objects in the cluster\n");
        return output::emit(&out)
            .map_err(|err| Failure::usage(format!("writing to stdout: {err}")));
    }
    if args.dry_run {
        for item in &found {
            out.push_str(&format!("would remove {item}\n"));
        }
        for ns in &namespaces {
            out.push_str(&format!(
                "would remove namespace {ns} (created by kubectl realip)\n"
            ));
        }
        return output::emit(&out)
            .map_err(|err| Failure::usage(format!("writing to stdout: {err}")));
    }
    let outcome = teardown::remove(&cluster, &scope, Duration::from_secs(90)).await;
    let mut left = outcome.left;
    for item in &outcome.deleted {
        out.push_str(&format!("removed {item}\n"));
    }
    for ns in &namespaces {
        match teardown::delete_namespace(&cluster, ns, Duration::from_secs(90)).await {
            Ok(()) => out.push_str(&format!("removed namespace {ns}\n")),
            Err(err) => left.push(format!("namespace {ns}: {err}")),
        }
    }
    output::emit(&out).map_err(|err| Failure::usage(format!("writing to stdout: {err}")))?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Kind::Cluster,
            format!(
                "some objects could not be removed:\n  {}",
                left.join("\n  ")
            ),
        )
        .hint(format!(
            "check the RBAC grants in {}",
            cluster_api::RBAC_DOC
        )))
    }
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
