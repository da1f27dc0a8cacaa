//! docs/rbac.md grants what trace calls: every permission trace asks about before it creates
//! anything (`preflight::needed`) is in the ClusterRole and in the narrow Role, the narrow Role
//! holds the ClusterRole's probe rules and nothing else, and the read ClusterRole has trace's
//! reads.

use kubectl_realip::trace::manifests::{Carried, Delivery, RunPlan};
use kubectl_realip::trace::preflight::{self, Access};
use serde_yaml::Value;
use std::collections::BTreeSet;

/// One grant: API group, resource (with `/subresource`), verb.
type Grant = (String, String, String);

/// The objects of every ```yaml block of docs/rbac.md, by kind and name.
fn documented(kind: &str, name: &str) -> BTreeSet<Grant> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rbac.md"))
        .expect("docs/rbac.md");
    let mut found = None;
    for block in text.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap_or_default();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = <Value as serde::Deserialize>::deserialize(doc).expect("valid YAML");
            if value["kind"] == kind && value["metadata"]["name"] == name {
                assert!(found.is_none(), "two {kind} {name}");
                found = Some(grants(&value));
            }
        }
    }
    found.unwrap_or_else(|| panic!("docs/rbac.md has no {kind} {name}"))
}

fn grants(role: &Value) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn grant_of(access: &Access) -> Grant {
    let resource = match access.subresource {
        Some(sub) => format!("{}/{sub}", access.resource),
        None => access.resource.to_string(),
    };
    (access.group.into(), resource, access.verb.into())
}

fn grant(group: &str, resource: &str, verb: &str) -> Grant {
    (group.into(), resource.into(), verb.into())
}

/// A run delivering the carried probe with `--evidence` (the most it needs: ConfigMaps too).
fn plan() -> RunPlan {
    RunPlan {
        run_id: "rb4c01".into(),
        namespace: "realip-probe".into(),
        target: "shop/web".into(),
        nodes: vec!["node-a".into()],
        started_unix: 0,
        capture_secs: 60,
        expiry_secs: 120,
        l7: false,
        evidence: true,
        ports: vec![80],
        delivery: Delivery::Embedded {
            probes: vec![Carried {
                arch: "x86_64".into(),
                kube_arch: "amd64".into(),
                gzip: vec![0],
            }],
            probe_version: "0.1.0".into(),
            base_image: "busybox:1.37".into(),
        },
        timer_image: "busybox:1.37".into(),
    }
}

/// What trace calls besides the asked permissions: the dry run of the probe pod and the
/// probe pods' events (both optional).
fn probe_extras() -> [Grant; 2] {
    [grant("", "pods", "create"), grant("", "events", "list")]
}

/// What trace reads before it plans the run (`trace::run`).
fn trace_reads() -> [Grant; 4] {
    [
        grant("", "services", "get"),
        grant("", "nodes", "list"),
        grant("discovery.k8s.io", "endpointslices", "list"),
        grant("", "namespaces", "get"),
    ]
}

#[test]
fn the_cluster_role_grants_every_call_of_a_run() {
    let role = documented("ClusterRole", "kubectl-realip");
    for access in preflight::needed(&plan(), true) {
        assert!(
            role.contains(&grant_of(&access)),
            "ClusterRole lacks {access}"
        );
    }
    for extra in probe_extras().into_iter().chain(trace_reads()) {
        assert!(role.contains(&extra), "ClusterRole lacks {extra:?}");
    }
}

#[test]
fn the_narrow_role_is_the_probe_rules_and_nothing_else() {
    let role = documented("Role", "kubectl-realip-probe");
    let needed: BTreeSet<Grant> = preflight::needed(&plan(), false)
        .iter()
        .map(grant_of)
        .chain(probe_extras())
        .collect();
    assert_eq!(role, needed);
    // The same rules as the full ClusterRole's for the probe.
    let cluster = documented("ClusterRole", "kubectl-realip");
    assert!(role.is_subset(&cluster), "{:?}", role.difference(&cluster));
}

#[test]
fn the_read_role_has_what_trace_reads() {
    let role = documented("ClusterRole", "kubectl-realip-read");
    for read in trace_reads() {
        assert!(role.contains(&read), "kubectl-realip-read lacks {read:?}");
    }
    assert!(
        role.iter()
            .all(|(_, _, verb)| ["get", "list"].contains(&verb.as_str())),
        "kubectl-realip-read only reads: {role:?}"
    );
}
