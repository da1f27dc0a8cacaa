//! What admission refuses in the fake API server: Pod Security (when played) and a policy
//! engine's webhook refusing added capabilities.

use super::PodSecurity;
use serde_json::Value;

/// What Pod Security admission says of a pod in `namespace`, when it refuses it.
pub(super) fn pod_security_refusal(
    policy: &PodSecurity,
    namespace: &Value,
    pod: &Value,
) -> Option<String> {
    let name = namespace["metadata"]["name"].as_str().unwrap_or_default();
    if policy.exempt_namespaces.iter().any(|exempt| exempt == name) {
        return None;
    }
    let level = namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        .as_str()
        .unwrap_or(&policy.default_level);
    if level == "privileged" {
        return None;
    }
    let mut violations = Vec::new();
    if pod["spec"]["hostNetwork"] == true {
        violations.push("host namespaces (hostNetwork=true)".to_string());
    }
    // What the baseline level lets a container add.
    const BASELINE: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let added: Vec<String> = container["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|c| !BASELINE.contains(c))
            .map(|c| format!("\"{c}\""))
            .collect();
        if !added.is_empty() {
            violations.push(format!(
                "non-default capabilities (container \"{}\" must not include {} in securityContext.capabilities.add)",
                container["name"].as_str().unwrap_or_default(),
                added.join(", ")
            ));
        }
    }
    (!violations.is_empty()).then(|| {
        format!(
            "pods \"{}\" is forbidden: violates PodSecurity \"{level}:latest\": {}",
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            violations.join(", ")
        )
    })
}

/// What a policy engine's webhook refusing `caps` says of a pod or DaemonSet that adds one.
pub(super) fn capability_refusal(
    caps: &[String],
    webhook: &str,
    resource: &str,
    object: &Value,
) -> Option<String> {
    let spec = match resource {
        "pods" => &object["spec"],
        "daemonsets" => &object["spec"]["template"]["spec"],
        _ => return None,
    };
    let added: Vec<&str> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c["securityContext"]["capabilities"]["add"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
        .filter(|c| caps.iter().any(|refused| refused == c))
        .collect();
    let first = added.first()?;
    Some(format!(
        "admission webhook \"{webhook}\" denied the request: policy {}/{} for resource violation: \
         disallow-capabilities: adding {first} is not allowed",
        object["kind"].as_str().unwrap_or("Pod"),
        object["metadata"]["name"].as_str().unwrap_or_default()
    ))
}
