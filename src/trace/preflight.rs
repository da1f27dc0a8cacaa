//! Before anything is created: may this user make every call the run needs, and would the API
//! store every object? A run that could create its objects but not delete them, or whose
//! DaemonSet is refused after its ConfigMaps were stored, must not start: what it created
//! would stay until the cluster's expiry.
//!
//! Permissions are asked with SelfSubjectAccessReviews (creates alone are not enough: deletes,
//! watches and log reads are needed later); objects go through server-side dry runs
//! (`?dryRun=All`: validation and admission, nothing stored).

use super::manifests::{Delivery, Objects, RunPlan};
use crate::cluster::{Cluster, KubeError, Refusal};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use std::fmt;

/// One permission a run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    /// None for cluster-scoped resources.
    pub namespace: Option<String>,
    /// What the run needs it for.
    pub why: &'static str,
}

impl Access {
    /// The RBAC name: `daemonsets.apps`, `pods/log`.
    pub fn rbac_resource(&self) -> String {
        let mut name = self.resource.to_string();
        if !self.group.is_empty() {
            name = format!("{name}.{}", self.group);
        }
        if let Some(sub) = self.subresource {
            name = format!("{name}/{sub}");
        }
        name
    }

    /// `kubectl auth can-i` arguments that ask the same question.
    pub fn can_i(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {} -n {ns}", self.verb, self.rbac_resource()),
            None => format!("{} {}", self.verb, self.rbac_resource()),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.rbac_resource())?;
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        write!(f, " ({})", self.why)
    }
}

/// Every permission the run needs, from its plan: the optional reads (events, explain's
/// prediction) are left out, as is `create pods`, which only the dry run of the probe pod uses.
pub fn needed(plan: &RunPlan, create_namespace: bool) -> Vec<Access> {
    let ns = || Some(plan.namespace.clone());
    let access = |verb, group, resource, subresource, why| Access {
        verb,
        group,
        resource,
        subresource,
        namespace: ns(),
        why,
    };
    let mut out = Vec::new();
    if create_namespace {
        for (verb, why) in [
            ("create", "create the probe namespace"),
            ("delete", "remove the probe namespace"),
        ] {
            out.push(Access {
                namespace: None,
                ..access(verb, "", "namespaces", None, why)
            });
        }
    }
    let mut kinds = vec![
        ("batch", "jobs", "the expiry timer"),
        ("apps", "daemonsets", "the probe"),
    ];
    if matches!(plan.delivery, Delivery::Embedded { .. }) {
        kinds.push(("", "configmaps", "the probe binary"));
    }
    for (group, resource, why) in kinds {
        for verb in ["create", "list", "delete"] {
            out.push(access(verb, group, resource, None, why));
        }
    }
    for (verb, why) in [
        ("list", "probe readiness"),
        ("watch", "probe readiness"),
        ("delete", "removing probe pods that outlive the DaemonSet"),
    ] {
        out.push(access(verb, "", "pods", None, why));
    }
    out.push(access(
        "get",
        "",
        "pods",
        Some("log"),
        "the probes' event streams",
    ));
    out
}

/// The needed permissions the API says this user lacks, with the authorizer's reason. A review
/// that cannot be asked (an API without it, a refused review) reports nothing: the dry runs
/// still catch refused creates, and a refused delete is reported at the end as today.
pub async fn denied(cluster: &Cluster, needed: &[Access]) -> Vec<(Access, String)> {
    let reviews = needed.iter().map(|access| async move {
        let review = SelfSubjectAccessReview {
            metadata: Default::default(),
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(access.verb.into()),
                    group: Some(access.group.into()),
                    resource: Some(access.resource.into()),
                    subresource: access.subresource.map(str::to_string),
                    namespace: access.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            },
            status: None,
        };
        match cluster
            .all::<SelfSubjectAccessReview>()
            .create(&review)
            .await
        {
            Ok(answer) => {
                let status = answer.status.unwrap_or_default();
                (!status.allowed).then(|| (access.clone(), status.reason.unwrap_or_default()))
            }
            Err(err) => {
                tracing::info!("no access review for {access}: {err}");
                None
            }
        }
    });
    futures::future::join_all(reviews)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The probe pod the DaemonSet would create, for a dry run: Pod Security and other pod
/// admission judge pods, not DaemonSets.
pub fn probe_pod(plan: &RunPlan, objects: &Objects) -> Option<Pod> {
    let template = objects.daemon_set.spec.as_ref()?.template.clone();
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    pod.metadata.name = Some(format!("{}-admission-check", plan.base_name()));
    pod.metadata.namespace = Some(plan.namespace.clone());
    Some(pod)
}

/// What admission says of the probe pod.
#[derive(Debug)]
pub enum PodAdmission {
    Admitted,
    /// Pod Security, a quota, a webhook, validation: the DaemonSet's pods would be refused too.
    Refused(KubeError),
    /// The dry run could not be asked (no grant to create pods, an API error): why.
    NotAsked(String),
}

/// A server-side dry run of the probe pod: admission as it stands, exemptions and cluster
/// defaults included, which no namespace label shows.
pub async fn admit_probe_pod(cluster: &Cluster, plan: &RunPlan, objects: &Objects) -> PodAdmission {
    let Some(pod) = probe_pod(plan, objects) else {
        return PodAdmission::NotAsked("the DaemonSet has no pod template".into());
    };
    match cluster
        .namespaced::<Pod>(&plan.namespace)
        .create_dry_run(&pod)
        .await
    {
        Ok(_) => PodAdmission::Admitted,
        Err(err) => match err {
            KubeError::Forbidden {
                refusal: Refusal::Rbac,
                ..
            } => PodAdmission::NotAsked("no grant to create pods (dry run)".into()),
            KubeError::Forbidden { .. } => PodAdmission::Refused(err),
            KubeError::Api { code, .. } if (400..500).contains(&code) && code != 429 => {
                PodAdmission::Refused(err)
            }
            other => PodAdmission::NotAsked(other.to_string()),
        },
    }
}

/// Server-side dry runs of the Job, every ConfigMap and the DaemonSet, in creation order: the
/// first refusal, if any.
pub async fn dry_run_objects(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &Objects,
) -> Result<(), KubeError> {
    cluster
        .namespaced(&plan.namespace)
        .create_dry_run(&objects.job)
        .await?;
    for map in &objects.config_maps {
        cluster
            .namespaced(&plan.namespace)
            .create_dry_run(map)
            .await?;
    }
    cluster
        .namespaced(&plan.namespace)
        .create_dry_run(&objects.daemon_set)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::manifests::Carried;

    fn plan(delivery: Delivery) -> RunPlan {
        RunPlan {
            run_id: "a1b2c3".into(),
            namespace: "shop".into(),
            target: "shop/web".into(),
            nodes: vec!["node-a".into()],
            started_unix: 0,
            capture_secs: 60,
            expiry_secs: 90,
            l7: false,
            evidence: false,
            ports: vec![80],
            delivery,
            timer_image: "busybox:1.37".into(),
        }
    }

    #[test]
    fn every_call_of_the_run_and_only_those() {
        let embedded = plan(Delivery::Embedded {
            probes: vec![Carried {
                arch: "x86_64".into(),
                kube_arch: "amd64".into(),
                gzip: vec![1],
            }],
            probe_version: "0.1.0".into(),
            base_image: "busybox:1.37".into(),
        });
        let asked: Vec<String> = needed(&embedded, true).iter().map(Access::can_i).collect();
        assert_eq!(
            asked,
            [
                "create namespaces",
                "delete namespaces",
                "create jobs.batch -n shop",
                "list jobs.batch -n shop",
                "delete jobs.batch -n shop",
                "create daemonsets.apps -n shop",
                "list daemonsets.apps -n shop",
                "delete daemonsets.apps -n shop",
                "create configmaps -n shop",
                "list configmaps -n shop",
                "delete configmaps -n shop",
                "list pods -n shop",
                "watch pods -n shop",
                "delete pods -n shop",
                "get pods/log -n shop",
            ]
        );
        // A prebuilt image needs no ConfigMaps; an existing namespace is not created.
        let image = plan(Delivery::Image(
            "registry.example/realip-probe:0.1.0".into(),
        ));
        let asked = needed(&image, false);
        assert!(asked.iter().all(|a| a.resource != "configmaps"));
        assert!(asked.iter().all(|a| a.resource != "namespaces"));
        assert_eq!(
            asked[2].to_string(),
            "delete jobs.batch in namespace shop (the expiry timer)"
        );
    }
}
