//! Creating the run: every check made before the first object is stored (the namespace, the
//! permissions, Pod Security, a server-side dry run), then the objects themselves.

use crate::cluster::{self as cluster_api, Cluster, KubeError, Refusal};
use crate::error::{Failure, Kind, Result};
use crate::trace::manifests::{Objects, RunPlan, MANAGED_LABEL, MANAGED_VALUE, RUN_LABEL};
use crate::trace::preflight::{self, PodAdmission};
use crate::trace::progress::Progress;
use crate::trace::teardown;
use crate::trace::Request;
use crate::trace::{psa, TraceOptions};
use k8s_openapi::api::core::v1::Namespace;
use serde_json::json;
use std::sync::Mutex;

fn cluster_failure(err: KubeError, what: &str) -> Failure {
    match err {
        KubeError::NotFound { .. } => Failure::new(Kind::Cluster, format!("{what} not found")),
        other => other.into(),
    }
}

/// Everything checked before the first object is stored: the namespace (a Terminating one is
/// waited for), the permission of every call the run makes, Pod Security, and a server-side dry
/// run of every object. A missing `--probe-namespace` is created here (ours, removed at the end).
pub(super) async fn prepare(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &Objects,
    args: &Request,
    options: &TraceOptions,
    progress: &Progress,
    created: &Mutex<Option<String>>,
) -> Result<()> {
    progress.step(format!(
        "checking namespace {}, permissions and objects",
        plan.namespace
    ));
    let mut existing = cluster.all::<Namespace>().get_opt(&plan.namespace).await?;
    if existing.as_ref().is_some_and(teardown::terminating) {
        existing = wait_terminated(cluster, plan, args, options, progress).await?;
    }
    check_access(cluster, plan, existing.is_none()).await?;
    let namespace = match existing {
        Some(existing) => existing,
        None => create_namespace(cluster, plan, created).await?,
    };
    check_pod_security(cluster, plan, objects, args, progress, &namespace).await?;
    preflight::dry_run_objects(cluster, plan, objects)
        .await
        .map_err(|err| {
            let mut failure = Failure::from(err);
            failure.message = format!("{}; nothing was created", failure.message);
            failure
        })
}

/// Every call the run makes, allowed? Asked before anything exists: a run that could create but
/// not delete would leave its objects until the cluster's expiry.
async fn check_access(cluster: &Cluster, plan: &RunPlan, create_namespace: bool) -> Result<()> {
    let denied = preflight::denied(cluster, &preflight::needed(plan, create_namespace)).await;
    let Some((first, _)) = denied.first() else {
        return Ok(());
    };
    let lines: Vec<String> = denied
        .iter()
        .map(|(access, reason)| match reason.as_str() {
            "" => access.to_string(),
            reason => format!("{access}: {reason}"),
        })
        .collect();
    Err(Failure::new(
        Kind::Cluster,
        format!(
            "the run could not finish: not allowed to\n  {}\nnothing was created",
            lines.join("\n  ")
        ),
    )
    .hint(format!(
        "grant these verbs ({} has a minimal Role/ClusterRole); `kubectl auth can-i {}` asks the same",
        cluster_api::RBAC_DOC,
        first.can_i()
    )))
}

/// Creates a missing `--probe-namespace`, labelled ours and privileged.
async fn create_namespace(
    cluster: &Cluster,
    plan: &RunPlan,
    created: &Mutex<Option<String>>,
) -> Result<Namespace> {
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": plan.namespace,
            "labels": {
                MANAGED_LABEL: MANAGED_VALUE,
                RUN_LABEL: plan.run_id,
                psa::ENFORCE_LABEL: "privileged",
            },
        },
    }))
    .map_err(|err| Failure::new(Kind::Probe, err.to_string()))?;
    let namespace = cluster.all::<Namespace>().create(&namespace).await?;
    if let Ok(mut slot) = created.lock() {
        *slot = Some(plan.namespace.clone());
    }
    Ok(namespace)
}

/// Makes sure admission lets the probe pods run in the probe namespace. The server decides
/// (a dry run of the probe pod): a namespace labelled `baseline` may be exempted by the
/// cluster's AdmissionConfiguration, one without a label may get a restrictive default. The
/// label only explains a refusal, or decides when the dry run cannot be asked.
async fn check_pod_security(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &Objects,
    args: &Request,
    progress: &Progress,
    existing: &Namespace,
) -> Result<()> {
    let label = psa::judge(existing.metadata.labels.as_ref());
    let admission = preflight::admit_probe_pod(cluster, plan, objects).await;
    if let PodAdmission::Refused(err) = &admission {
        if plan.evidence && admitted_without_net_admin(cluster, plan).await {
            return Err(Failure::new(
                Kind::Cluster,
                format!(
                    "namespace {} admits the probe, but not with the NET_ADMIN capability \
                     --evidence adds: {err}; nothing was created",
                    plan.namespace
                ),
            )
            .hint(psa::net_admin_hint(&plan.namespace)));
        }
    }
    let refused = match admission {
        PodAdmission::Admitted => {
            if let psa::Verdict::Rejected { level } = &label {
                progress.println(&format!(
                    "note: namespace {} is labelled {}={level}, yet admission accepts the probe \
                     (an exemption of the cluster's Pod Security configuration)",
                    plan.namespace,
                    psa::ENFORCE_LABEL
                ));
            }
            return Ok(());
        }
        PodAdmission::Refused(KubeError::Forbidden {
            refusal: Refusal::PodSecurity,
            message,
            ..
        }) => format!(
            "namespace {} refuses the probe ({}): {message}",
            plan.namespace,
            psa::explain_level(&label)
        ),
        PodAdmission::Refused(err) => {
            let mut failure = Failure::from(err);
            failure.message = format!(
                "admission refuses the probe pod: {}; nothing was created",
                failure.message
            );
            return Err(failure);
        }
        PodAdmission::NotAsked(why) => match &label {
            psa::Verdict::Rejected { level } => format!(
                "namespace {} enforces Pod Security level \"{level}\", which rejects the {} the probe needs (admission could not be asked: {why})",
                plan.namespace,
                psa::needs(plan.evidence)
            ),
            _ => {
                tracing::info!("Pod Security not asked ({why}); the namespace's label allows the probe");
                return Ok(());
            }
        },
    };
    if !args.label_namespace_privileged {
        return Err(
            Failure::new(Kind::Cluster, format!("{refused}; nothing was created"))
                .hint(psa::refusal_hint(&plan.namespace)),
        );
    }
    cluster
        .all::<Namespace>()
        .merge_patch(
            &plan.namespace,
            &json!({"metadata": {"labels": {psa::ENFORCE_LABEL: "privileged"}}}),
        )
        .await?;
    progress.println(&format!(
        "note: labelled namespace {} {}=privileged as asked (--label-namespace-privileged); \
         it stays so: `kubectl label namespace {} {}-` reverts it",
        plan.namespace,
        psa::ENFORCE_LABEL,
        plan.namespace,
        psa::ENFORCE_LABEL
    ));
    Ok(())
}

/// Whether admission takes the probe pod once NET_ADMIN (`--evidence`) is left out: then that
/// capability alone is what the namespace's policy refuses.
async fn admitted_without_net_admin(cluster: &Cluster, plan: &RunPlan) -> bool {
    let plain = RunPlan {
        evidence: false,
        ..plan.clone()
    };
    match Objects::build(&plain) {
        Ok(objects) => matches!(
            preflight::admit_probe_pod(cluster, &plain, &objects).await,
            PodAdmission::Admitted
        ),
        Err(_) => false,
    }
}

/// A probe namespace being deleted (an earlier run's, say) refuses every object: wait until it
/// is gone, then it is created anew. The Service's own namespace going away ends the trace.
async fn wait_terminated(
    cluster: &Cluster,
    plan: &RunPlan,
    args: &Request,
    options: &TraceOptions,
    progress: &Progress,
) -> Result<Option<Namespace>> {
    let refusal = Refusal::NamespaceTerminating {
        namespace: plan.namespace.clone(),
    };
    let hint = refusal.hint("create", "namespaces", None);
    if args.probe_namespace.is_none() {
        return Err(Failure::new(
            Kind::Cluster,
            format!(
                "namespace {} of the Service is being deleted (Terminating); nothing was created",
                plan.namespace
            ),
        )
        .hint(hint));
    }
    progress.step(format!(
        "namespace {} is being deleted: waiting until it is gone",
        plan.namespace
    ));
    if teardown::wait_namespace_gone(cluster, &plan.namespace, options.teardown_wait).await? {
        return Ok(None);
    }
    Err(Failure::new(
        Kind::Cluster,
        format!(
            "namespace {} is being deleted (Terminating) and was still there after {}s; nothing was created",
            plan.namespace,
            options.teardown_wait.as_secs()
        ),
    )
    .hint(hint))
}

/// The Job first (it owns the rest, for the cluster's own expiry), then ConfigMaps, DaemonSet.
pub(super) async fn create(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &mut Objects,
    progress: &Progress,
) -> Result<()> {
    progress.step(format!(
        "creating the probe in namespace {}",
        plan.namespace
    ));
    let job = cluster
        .namespaced(&plan.namespace)
        .create(&objects.job)
        .await
        .map_err(|err| cluster_failure(err, &format!("namespace {}", plan.namespace)))?;
    let uid = job.metadata.uid.clone().ok_or_else(|| {
        Failure::new(
            Kind::Cluster,
            "the API returned the expiry Job without a uid",
        )
    })?;
    objects.owned_by_job(&uid);
    for map in &objects.config_maps {
        cluster.namespaced(&plan.namespace).create(map).await?;
    }
    cluster
        .namespaced(&plan.namespace)
        .create(&objects.daemon_set)
        .await?;
    Ok(())
}
