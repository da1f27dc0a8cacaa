//! `kubectl realip trace` and `kubectl realip cleanup`: the flags to trace's run and to the
//! removal of every run's leftovers, their output and exit codes, and the signals that
//! interrupt them.

use crate::cli::{CleanupArgs, TraceArgs};
use crate::cluster::{self as cluster_api, Cluster};
use crate::error::{Failure, Kind, Result};
use crate::output;
use crate::trace::{self, TraceOptions};
use std::time::Duration;

/// `kubectl realip trace svc/NAME`
pub async fn run(args: &TraceArgs) -> Result<()> {
    let request = args.request();
    let options = TraceOptions::for_request(&request);
    let traced = trace::run::trace(&request, &options, interrupted()).await?;
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
    let cluster = Cluster::new(cluster_api::clients(&args.kube.connection()).await?);
    let scope = trace::teardown::Scope {
        namespace: None,
        selector: trace::manifests::MANAGED_SELECTOR.to_string(),
    };
    let found = trace::teardown::inventory(&cluster, &scope).await?;
    let namespaces = trace::teardown::created_namespaces(&cluster, None).await?;
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
    let outcome = trace::teardown::remove(&cluster, &scope, Duration::from_secs(90)).await;
    let mut left = outcome.left;
    for item in &outcome.deleted {
        out.push_str(&format!("removed {item}\n"));
    }
    for ns in &namespaces {
        match trace::teardown::delete_namespace(&cluster, ns, Duration::from_secs(90)).await {
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
