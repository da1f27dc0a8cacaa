//! What a namespace's Pod Security label says. The probe needs hostNetwork and NET_RAW, which
//! only the `privileged` level allows; but admission (a dry run) decides, as the cluster's
//! configuration may exempt a namespace or set a default no label shows. The label explains a
//! refusal, and decides only when the dry run cannot be asked.

use std::collections::BTreeMap;

pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `enforce=privileged`.
    Allowed,
    /// `enforce=baseline` or `restricted`: both reject hostNetwork and NET_RAW.
    Rejected { level: String },
    /// No enforce label: the cluster-wide default decides (privileged unless configured).
    ClusterDefault,
}

pub fn judge(labels: Option<&BTreeMap<String, String>>) -> Verdict {
    match labels
        .and_then(|labels| labels.get(ENFORCE_LABEL))
        .map(String::as_str)
    {
        Some("privileged") => Verdict::Allowed,
        Some(level) => Verdict::Rejected {
            level: level.to_string(),
        },
        None => Verdict::ClusterDefault,
    }
}

/// Where the refusing level comes from, in words, for a refusal message.
pub fn explain_level(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Rejected { level } => format!("its label {ENFORCE_LABEL}={level}"),
        Verdict::Allowed => format!(
            "its label says {ENFORCE_LABEL}=privileged, so a policy of the cluster enforces more"
        ),
        Verdict::ClusterDefault => {
            format!("no {ENFORCE_LABEL} label: the cluster's default level")
        }
    }
}

/// What the probe pod needs that only the `privileged` level allows, in words.
pub fn needs(evidence: bool) -> &'static str {
    if evidence {
        "hostNetwork, NET_RAW and NET_ADMIN (for --evidence)"
    } else {
        "hostNetwork and NET_RAW"
    }
}

/// What to tell the user when the namespace's policy refuses only NET_ADMIN (`--evidence`).
pub fn net_admin_hint(namespace: &str) -> String {
    format!(
        "trace without --evidence (the report then names no rule), or run the probe in a \
         namespace whose policy allows NET_ADMIN with --probe-namespace (the policy refusing \
         it in {namespace} is not Pod Security's: a webhook or a policy engine)"
    )
}

/// What to tell the user when the namespace refuses the probe.
pub fn refusal_hint(namespace: &str) -> String {
    format!(
        "run the probe in a namespace labelled {ENFORCE_LABEL}=privileged: \
         `kubectl create namespace realip-probe && kubectl label namespace realip-probe \
         {ENFORCE_LABEL}=privileged`, then add --probe-namespace realip-probe; \
         or let kubectl realip relabel {namespace} with --label-namespace-privileged"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(level: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ENFORCE_LABEL.to_string(), level.to_string())])
    }

    #[test]
    fn levels() {
        assert_eq!(judge(Some(&labels("privileged"))), Verdict::Allowed);
        assert_eq!(
            judge(Some(&labels("baseline"))),
            Verdict::Rejected {
                level: "baseline".into()
            }
        );
        assert!(matches!(
            judge(Some(&labels("restricted"))),
            Verdict::Rejected { .. }
        ));
        assert_eq!(judge(None), Verdict::ClusterDefault);
        assert!(refusal_hint("shop").contains("--label-namespace-privileged"));
        assert_eq!(
            explain_level(&judge(Some(&labels("baseline")))),
            "its label pod-security.kubernetes.io/enforce=baseline"
        );
        assert!(explain_level(&Verdict::ClusterDefault).contains("the cluster's default level"));
    }
}
