//! What the API server would refuse in an object, in its words: explain must not reason on a
//! value no cluster accepts.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the API server would refuse in a Service, in its words (`spec.type: Unsupported value:
/// "Banana": supported values: ...`): explain must not reason on a value no cluster accepts,
/// such as a policy of `local` read as the default `Cluster`.
pub fn service_problems(svc: &Service) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(spec) = svc.spec.as_ref() else {
        return problems;
    };
    problems.extend(one_of(
        "spec.type",
        spec.type_.as_deref(),
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ));
    problems.extend(one_of(
        "spec.externalTrafficPolicy",
        spec.external_traffic_policy.as_deref(),
        &["Cluster", "Local"],
    ));
    problems.extend(one_of(
        "spec.internalTrafficPolicy",
        spec.internal_traffic_policy.as_deref(),
        &["Cluster", "Local"],
    ));
    problems.extend(one_of(
        "spec.sessionAffinity",
        spec.session_affinity.as_deref(),
        &["ClientIP", "None"],
    ));
    problems.extend(one_of(
        "spec.ipFamilyPolicy",
        spec.ip_family_policy.as_deref(),
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
    ));
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        let field = format!("spec.ports[{i}]");
        problems.extend(one_of(
            &format!("{field}.protocol"),
            port.protocol.as_deref(),
            &["SCTP", "TCP", "UDP"],
        ));
        problems.extend(port_number(&format!("{field}.port"), Some(port.port)));
        // 0 is "not set": the API server allocates one.
        let node_port = port.node_port.filter(|p| *p != 0);
        problems.extend(port_number(&format!("{field}.nodePort"), node_port));
        if node_port.is_some() && matches!(spec.type_.as_deref(), None | Some("ClusterIP")) {
            problems.push(format!(
                "{field}.nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
            ));
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) if *n != 0 => {
                problems.extend(port_number(&format!("{field}.targetPort"), Some(*n)));
            }
            Some(IntOrString::String(name)) => {
                if let Some(why) = port_name_problem(name) {
                    problems.push(format!(
                        "{field}.targetPort: Invalid value: {name:?}: {why}"
                    ));
                }
            }
            _ => {}
        }
    }
    let health = spec.health_check_node_port.filter(|p| *p != 0);
    problems.extend(port_number("spec.healthCheckNodePort", health));
    problems
}

/// A value outside the supported ones, as the API server says it.
fn one_of(field: &str, value: Option<&str>, supported: &[&str]) -> Option<String> {
    let value = value.filter(|v| !supported.contains(v))?;
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Some(format!(
        "{field}: Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    ))
}

/// A port number outside 1-65535, as the API server says it.
fn port_number(field: &str, port: Option<i32>) -> Option<String> {
    port.filter(|p| !(1..=65535).contains(p))
        .map(|p| format!("{field}: Invalid value: {p}: must be between 1 and 65535, inclusive"))
}

/// Why `name` is not a port name (IANA service name: at most 15 of a-z, 0-9 and single inner
/// hyphens, with a letter).
fn port_name_problem(name: &str) -> Option<&'static str> {
    if name.len() > 15 {
        Some("must be no more than 15 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    } else if name.contains("--") {
        Some("must not contain consecutive hyphens")
    } else if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        Some("must contain at least one letter (a-z)")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("must not begin or end with a hyphen")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": spec}))
            .expect("a Service")
    }

    #[test]
    fn what_the_api_server_accepts_passes() {
        for spec in [
            serde_json::json!({}),
            serde_json::json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "internalTrafficPolicy": "Cluster", "sessionAffinity": "ClientIP",
                "ipFamilyPolicy": "PreferDualStack", "healthCheckNodePort": 32000,
                "ports": [{"port": 443, "targetPort": "https-alt", "nodePort": 31443, "protocol": "TCP"},
                          {"port": 53, "targetPort": 5353, "protocol": "UDP"}]}),
            // nodePort 0 and targetPort 0 mean "not set".
            serde_json::json!({"ports": [{"port": 80, "targetPort": 0, "nodePort": 0}]}),
            serde_json::json!({"type": "ExternalName", "externalName": "db.example.com"}),
        ] {
            assert_eq!(
                service_problems(&service(spec.clone())),
                Vec::<String>::new(),
                "{spec}"
            );
        }
    }

    #[test]
    fn what_the_api_server_refuses_is_said_in_its_words() {
        let problems = service_problems(&service(serde_json::json!({
            "type": "Banana", "externalTrafficPolicy": "local", "internalTrafficPolicy": "Nearby",
            "sessionAffinity": "Sticky", "ipFamilyPolicy": "Triple", "healthCheckNodePort": 70000,
            "ports": [{"port": 0, "nodePort": -1, "protocol": "tcp", "targetPort": 65536},
                      {"port": 80, "targetPort": "-http"}, {"port": 81, "targetPort": "a--b"},
                      {"port": 82, "targetPort": "1234"}, {"port": 83, "targetPort": "much-too-long-name"}]
        })));
        let expected = [
            r#"spec.type: Unsupported value: "Banana": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            r#"spec.externalTrafficPolicy: Unsupported value: "local": supported values: "Cluster", "Local""#,
            r#"spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local""#,
            r#"spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None""#,
            r#"spec.ipFamilyPolicy: Unsupported value: "Triple": supported values: "PreferDualStack", "RequireDualStack", "SingleStack""#,
            r#"spec.ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP""#,
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].nodePort: Invalid value: -1: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive",
            r#"spec.ports[1].targetPort: Invalid value: "-http": must not begin or end with a hyphen"#,
            r#"spec.ports[2].targetPort: Invalid value: "a--b": must not contain consecutive hyphens"#,
            r#"spec.ports[3].targetPort: Invalid value: "1234": must contain at least one letter (a-z)"#,
            r#"spec.ports[4].targetPort: Invalid value: "much-too-long-name": must be no more than 15 characters"#,
            "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ];
        assert_eq!(problems, expected);
        // A node port is for the types that open one.
        let problems = service_problems(&service(serde_json::json!({
            "ports": [{"port": 80, "nodePort": 30080}]
        })));
        assert_eq!(
            problems,
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }
}
