//! The trace, phase by phase: resolve the Service and its topology, check Pod Security, create
//! the run's objects, wait for the probes, follow their logs, and always remove what was
//! created — on success, on error and on a signal.
//!
//! `plan` reads the cluster and plans the run, `deploy` checks and creates its objects,
//! `ready` waits for the probes, `capture` follows their logs, and `predict` asks explain
//! about the nodes the connections entered at; this module runs them in order and removes the
//! run's objects at the end.

mod capture;
mod deploy;
mod plan;
mod predict;
mod ready;

use super::manifests::Objects;
use super::progress::Progress;
use super::report::TraceReport;
use super::send;
use super::teardown::{self, Scope};
use super::TraceOptions;
use crate::cluster::{self as cluster_api, Cluster};
use crate::error::{Failure, Kind, Result};
use crate::output::OutputFormat;
use crate::trace::Request;
use std::future::Future;
use std::sync::Mutex;

/// What a trace produced for stdout.
#[derive(Debug)]
pub struct Traced {
    pub output: String,
    /// At least one connection was seen.
    pub answered: bool,
}

/// Runs a trace until done or until `interrupt` resolves; cleans up in every case.
pub async fn trace(
    args: &Request,
    options: &TraceOptions,
    interrupt: impl Future<Output = ()>,
) -> Result<Traced> {
    let name = cluster_api::parse_target(&args.target).map_err(|err| {
        Failure::usage(err.to_string()).hint("name the Service like kubectl does: svc/NAME")
    })?;
    let cluster = Cluster::new(cluster_api::clients(&args.connection).await?);
    let namespace = cluster.default_namespace().to_string();
    let progress = Progress::new(args.output != OutputFormat::Json && !args.dry_run);
    progress.step(format!("reading Service {namespace}/{name}"));

    let (topology, choice, known) = plan::resolve(&cluster, &namespace, name, args).await?;
    let (plan, unfit) = plan::make_plan(args, options, &topology, &choice)?;
    let mut skipped = choice.skipped.clone();
    skipped.extend(unfit);
    let mut objects =
        Objects::build(&plan).map_err(|err| Failure::new(Kind::Probe, err.to_string()))?;

    if args.dry_run {
        progress.finish();
        return Ok(Traced {
            output: plan::dry_run_text(&plan, &objects, &skipped)?,
            answered: true,
        });
    }

    let created_namespace = Mutex::new(None::<String>);
    let work = async {
        deploy::prepare(
            &cluster,
            &plan,
            &objects,
            args,
            options,
            &progress,
            &created_namespace,
        )
        .await?;
        deploy::create(&cluster, &plan, &mut objects, &progress).await?;
        let ready = ready::wait_ready(&cluster, &plan, options, &mut skipped, &progress).await?;
        capture::capture(&cluster, &plan, args, &topology, &ready, &progress).await
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = interrupt => {
            progress.println("interrupted: removing the probe (this waits until it is gone)");
            Err(Failure::new(Kind::Interrupted, "interrupted; the probe was removed"))
        }
    };

    progress.step("removing the probe");
    let scope = Scope {
        namespace: Some(plan.namespace.clone()),
        selector: plan.run_selector(),
    };
    let removal = teardown::remove(&cluster, &scope, options.teardown_wait).await;
    let mut left = removal.left;
    let namespace_to_delete = created_namespace.lock().ok().and_then(|mut ns| ns.take());
    if let Some(ns) = namespace_to_delete {
        progress.step(format!("removing namespace {ns}"));
        if let Err(err) = teardown::delete_namespace(&cluster, &ns, options.teardown_wait).await {
            left.push(format!("namespace {ns}: {err}"));
        }
    }
    progress.finish();
    if !left.is_empty() {
        let text = format!(
            "warning: some objects could not be removed (they expire by themselves at {}; \
             `kubectl realip cleanup` removes them now):\n  {}",
            plan.expires_at(),
            left.join("\n  ")
        );
        eprintln!("{text}");
    }

    let capture::Captured {
        report,
        tokens,
        mut sent,
        probed,
    } = outcome?;
    send::attach_sightings(&mut sent, &tokens);
    send::attach_flows(&mut sent, &report);
    let answered = !report.flows.is_empty();
    let (prediction, by_entry_node) = predict::predictions(&cluster, known, &report, options).await;
    let traced = TraceReport::new(
        report,
        &topology,
        probed,
        skipped,
        prediction,
        by_entry_node,
        sent,
    );
    let output = match args.output {
        OutputFormat::Text => traced.to_text(&topology),
        OutputFormat::Json => traced.to_json(),
        OutputFormat::Mermaid => crate::analyze::render_mermaid(&traced.report),
    };
    Ok(Traced { output, answered })
}
