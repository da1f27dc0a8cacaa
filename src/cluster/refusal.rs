//! Why the API answered 403. RBAC is one cause among several: admission (Pod Security, the
//! namespace lifecycle, quotas, webhooks) refuses with 403 too, and each needs another fix.
//! The `Status` body tells them apart: its causes, else the message each source writes.

use kube::core::Status;

/// The source of a 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The authorizer: no grant for the verb (`User "jane" cannot create resource ...`).
    Rbac,
    /// Pod Security admission: `violates PodSecurity "baseline:latest": ...`.
    PodSecurity,
    /// The namespace lifecycle: `unable to create new content in namespace X because it is
    /// being terminated`.
    NamespaceTerminating { namespace: String },
    /// A ResourceQuota: `exceeded quota: NAME, requested: ..., used: ..., limited: ...`.
    Quota,
    /// An admission webhook (a policy engine): `admission webhook "NAME" denied the request`.
    Webhook { name: String },
    /// Another admission plugin (LimitRanger, NodeRestriction, a policy...).
    Admission,
}

/// The cause reason NamespaceLifecycle admission sets (metav1.NamespaceTerminatingCause).
const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";

impl Refusal {
    /// Classifies a 403 `Status`.
    pub fn of(status: &Status) -> Refusal {
        let terminating = status
            .details
            .iter()
            .flat_map(|d| d.causes.iter())
            .find(|c| c.reason == NAMESPACE_TERMINATING);
        if let Some(cause) = terminating {
            let namespace = quoted_after(&cause.message, "namespace ")
                .or_else(|| word_after(&cause.message, "namespace "))
                .or_else(|| word_after(&status.message, "in namespace "))
                .unwrap_or_default();
            return Refusal::NamespaceTerminating { namespace };
        }
        Refusal::of_message(&status.message)
    }

    /// Classifies by the message alone (events and old servers carry no causes).
    pub fn of_message(message: &str) -> Refusal {
        if message.contains("violates PodSecurity") {
            return Refusal::PodSecurity;
        }
        if message.contains("because it is being terminated") {
            let namespace = word_after(message, "in namespace ").unwrap_or_default();
            return Refusal::NamespaceTerminating { namespace };
        }
        if message.contains("exceeded quota") {
            return Refusal::Quota;
        }
        if let Some(name) = quoted_after(message, "admission webhook ") {
            return Refusal::Webhook { name };
        }
        if is_authorizer(message) {
            return Refusal::Rbac;
        }
        Refusal::Admission
    }

    /// What the user can do about it; `resource`, `verb` and `namespace` are the refused call's.
    pub fn hint(&self, verb: &str, resource: &str, namespace: Option<&str>) -> String {
        let ns = namespace.unwrap_or("default");
        match self {
            Refusal::Rbac => {
                let scope = namespace
                    .map(|ns| format!(" in namespace {ns}"))
                    .unwrap_or_default();
                format!(
                    "you need RBAC verb \"{verb}\" on \"{resource}\"{scope}; {doc} has a minimal \
                     Role/ClusterRole (check with `kubectl auth can-i {verb} {resource}`)",
                    doc = super::RBAC_DOC
                )
            }
            Refusal::PodSecurity => format!(
                "Pod Security admission refused it, not RBAC: the namespace's \
                 pod-security.kubernetes.io/enforce level (or the cluster's default) does not \
                 allow hostNetwork and NET_RAW; use a namespace labelled \
                 pod-security.kubernetes.io/enforce=privileged ({doc}, \"Pod Security\")",
                doc = super::RBAC_DOC
            ),
            Refusal::NamespaceTerminating { namespace } => {
                let namespace = if namespace.is_empty() { ns } else { namespace };
                format!(
                    "namespace {namespace} is being deleted, not an RBAC problem: wait until it \
                     is gone (`kubectl wait --for=delete namespace/{namespace} --timeout=2m`) and \
                     run again, or use another namespace"
                )
            }
            Refusal::Quota => format!(
                "a ResourceQuota of namespace {ns} is used up, not an RBAC problem: `kubectl \
                 describe resourcequota -n {ns}` shows what is used and allowed (the probe asks \
                 for 20m CPU and 32Mi per node, its init container 10m and 16Mi)"
            ),
            Refusal::Webhook { name } => format!(
                "the admission webhook \"{name}\" denied it, not RBAC: its policy (Kyverno, \
                 Gatekeeper, ...) needs an exception for objects labelled \
                 app.kubernetes.io/managed-by=kubectl-realip; `kubectl get \
                 validatingwebhookconfigurations,mutatingwebhookconfigurations` lists the webhooks"
            ),
            Refusal::Admission => format!(
                "an admission plugin refused it, not RBAC (a LimitRange or a policy of the \
                 cluster): the message says which; `kubectl describe limitrange -n {ns}` shows \
                 the limits"
            ),
        }
    }
}

/// The authorizer's wording: `User "x" cannot VERB resource "R" ...`, `... cannot get path`.
fn is_authorizer(message: &str) -> bool {
    ["User \"", "Group \"", "ServiceAccount \"", "system:"]
        .iter()
        .any(|who| message.contains(who))
        && message.contains(" cannot ")
}

/// The text between the quotes following `marker`: `admission webhook "x" ...` gives `x`.
fn quoted_after(message: &str, marker: &str) -> Option<String> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The word following `marker`.
fn word_after(message: &str, marker: &str) -> Option<String> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    (!word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    fn status(message: &str, causes: Vec<StatusCause>) -> Status {
        Status {
            code: 403,
            reason: "Forbidden".into(),
            message: message.into(),
            details: Some(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes,
                retry_after_seconds: 0,
            }),
            ..Status::default()
        }
    }

    /// The messages real API servers send for each source of a 403.
    #[test]
    fn each_source_of_a_403() {
        let rbac = status(
            "daemonsets.apps is forbidden: User \"jane\" cannot create resource \"daemonsets\" in API group \"apps\" in the namespace \"shop\"",
            vec![],
        );
        assert_eq!(Refusal::of(&rbac), Refusal::Rbac);
        let sa = "pods is forbidden: User \"system:serviceaccount:ci:deployer\" cannot list resource \"pods\" in API group \"\" in the namespace \"shop\"";
        assert_eq!(Refusal::of_message(sa), Refusal::Rbac);

        let terminating = status(
            "jobs.batch \"realip-probe-a1b2c3-expiry\" is forbidden: unable to create new content in namespace realip because it is being terminated",
            vec![StatusCause {
                reason: "NamespaceTerminating".into(),
                message: "namespace realip is being terminated".into(),
                field: "metadata.namespace".into(),
            }],
        );
        assert_eq!(
            Refusal::of(&terminating),
            Refusal::NamespaceTerminating {
                namespace: "realip".into()
            }
        );
        // Without causes (an event's message), the message alone tells.
        assert_eq!(
            Refusal::of_message(&terminating.message),
            Refusal::NamespaceTerminating {
                namespace: "realip".into()
            }
        );

        let psa = "pods \"x\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), non-default capabilities (container \"probe\" must not include \"NET_RAW\" in securityContext.capabilities.add)";
        assert_eq!(Refusal::of_message(psa), Refusal::PodSecurity);

        let quota = "pods \"x\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=10, limited: pods=10";
        assert_eq!(Refusal::of_message(quota), Refusal::Quota);

        let webhook = "admission webhook \"validate.kyverno.svc-fail\" denied the request: policy DaemonSet/shop/realip-probe for resource violation: disallow-host-namespaces";
        assert_eq!(
            Refusal::of_message(webhook),
            Refusal::Webhook {
                name: "validate.kyverno.svc-fail".into()
            }
        );

        let limits = "pods \"x\" is forbidden: maximum memory usage per Container is 128Mi, but limit is 256Mi";
        assert_eq!(Refusal::of_message(limits), Refusal::Admission);
    }

    #[test]
    fn hints_name_the_fix_and_say_when_rbac_is_not_the_cause() {
        let rbac = Refusal::Rbac.hint("create", "daemonsets.apps", Some("shop"));
        assert!(rbac.contains("\"create\" on \"daemonsets.apps\" in namespace shop"));
        for refusal in [
            Refusal::PodSecurity,
            Refusal::NamespaceTerminating {
                namespace: "realip".into(),
            },
            Refusal::Quota,
            Refusal::Webhook { name: "w".into() },
            Refusal::Admission,
        ] {
            let hint = refusal.hint("create", "jobs.batch", Some("realip"));
            assert!(
                hint.contains("not RBAC") || hint.contains("not an RBAC"),
                "{hint}"
            );
        }
        assert!(Refusal::NamespaceTerminating {
            namespace: "realip".into()
        }
        .hint("create", "jobs.batch", Some("realip"))
        .contains("kubectl wait --for=delete namespace/realip"));
    }
}
