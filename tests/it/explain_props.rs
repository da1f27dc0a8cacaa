//! Whatever the configuration, explain answers every way in (or says it is closed), never
//! panics, and its paths agree with its verdicts.

use kubectl_realip::explain::model::{L4Source, Origin};
use kubectl_realip::explain::{explain_manifests, render_json, render_mermaid, render_text};
use proptest::prelude::*;

const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const ANNOTATIONS: [&str; 12] = [
    "service.cloud.tencent.com/direct-access: \"true\"",
    "service.cloud.tencent.com/direct-access: \"false\"",
    "service.kubernetes.io/local-svc-only-bind-node-with-pod: \"true\"",
    "service.beta.kubernetes.io/aws-load-balancer-type: nlb",
    "service.beta.kubernetes.io/aws-load-balancer-type: external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: ip",
    "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: \"*\"",
    "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes: preserve_client_ip.enabled=true",
    "cloud.google.com/neg: '{\"ingress\": true}'",
    "service.beta.kubernetes.io/azure-load-balancer-internal: \"true\"",
    "metallb.universe.tf/address-pool: public",
    "service.cilium.io/forwarding-mode: dsr",
];
const CLASSES: [&str; 7] = [
    "qcloud",
    "nginx",
    "alb",
    "gce",
    "traefik",
    "",
    "nginx-ingress-eni",
];
const CLUSTER: [&str; 8] = [
    "",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-proxy, namespace: kube-system}\ndata:\n  config.conf: |\n    kind: KubeProxyConfiguration\n    mode: ipvs\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-proxy, namespace: kube-system}\ndata:\n  config.conf: |\n    kind: KubeProxyConfiguration\n    mode: nftables\n    masqueradeAll: true\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config, namespace: kube-system}\ndata: {kube-proxy-replacement: \"true\", bpf-lb-mode: hybrid}\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tke-service-controller-config, namespace: kube-system}\ndata: {GlobalRouteDirectAccess: \"true\"}\n",
    "apiVersion: v1\nkind: Node\nmetadata: {name: eklet-1, labels: {node.kubernetes.io/instance-type: eklet}}\n",
    "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {providerID: 'qcloud:///1/ins-1', podCIDR: 172.18.0.0/26}\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ingress-nginx-controller, namespace: ingress-nginx}\ndata: {use-proxy-protocol: \"true\", use-forwarded-headers: \"true\", proxy-real-ip-cidr: 192.0.2.0/24}\n",
];

#[allow(clippy::too_many_arguments)]
fn manifest(
    type_: &str,
    local: bool,
    annotations: &[usize],
    ip_mode_proxy: bool,
    class: Option<usize>,
    controller: Option<(usize, bool)>,
    cluster: &[usize],
    endpoint_node: Option<&str>,
) -> String {
    let mut yaml = String::from("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n");
    for a in annotations {
        yaml.push_str(&format!("    {}\n", ANNOTATIONS[*a]));
    }
    yaml.push_str(&format!(
        "spec:\n  type: {type_}\n  externalTrafficPolicy: {}\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n",
        if local { "Local" } else { "Cluster" }
    ));
    if ip_mode_proxy {
        yaml.push_str("status: {loadBalancer: {ingress: [{ip: 198.51.100.9, ipMode: Proxy}]}}\n");
    }
    if let Some(c) = class {
        let class = CLASSES[c];
        yaml.push_str("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\nspec:\n");
        if !class.is_empty() {
            yaml.push_str(&format!("  ingressClassName: {class}\n"));
        }
        yaml.push_str("  defaultBackend: {service: {name: web, port: {number: 80}}}\n");
    }
    if let Some((t, local)) = controller {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: ingress-nginx-controller, namespace: ingress-nginx, labels: {{app.kubernetes.io/name: ingress-nginx}}}}\nspec: {{type: {}, externalTrafficPolicy: {}, selector: {{app.kubernetes.io/name: ingress-nginx}}, ports: [{{port: 80}}]}}\n",
            TYPES[t],
            if local { "Local" } else { "Cluster" }
        ));
    }
    for c in cluster {
        if !CLUSTER[*c].is_empty() {
            yaml.push_str("---\n");
            yaml.push_str(CLUSTER[*c]);
        }
    }
    if let Some(node) = endpoint_node {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-1, namespace: shop, labels: {{app: web}}}}\nspec: {{nodeName: {node}, containers: [{{name: web}}]}}\n"
        ));
    }
    yaml
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_way_in_is_answered_consistently(
        t in 0..TYPES.len(),
        local in any::<bool>(),
        annotations in proptest::collection::vec(0..ANNOTATIONS.len(), 0..4),
        ip_mode_proxy in any::<bool>(),
        class in proptest::option::of(0..CLASSES.len()),
        controller in proptest::option::of((0..3usize, any::<bool>())),
        cluster in proptest::collection::vec(0..CLUSTER.len(), 0..4),
        endpoint_node in proptest::option::of(prop_oneof![Just("eklet-1"), Just("n1"), Just("elsewhere")]),
    ) {
        // One value per annotation key, as in a real object.
        let mut keys = Vec::new();
        let annotations: Vec<usize> = annotations
            .into_iter()
            .filter(|a| {
                let key = ANNOTATIONS[*a].split(':').next().unwrap_or_default();
                let new = !keys.contains(&key);
                keys.push(key);
                new
            })
            .collect();
        let yaml = manifest(TYPES[t], local, &annotations, ip_mode_proxy, class, controller, &cluster, endpoint_node);
        let explanations = explain_manifests(&yaml).expect("valid manifests are explained");
        let web = explanations.iter().find(|e| e.service == "web").expect("web explained");
        for origin in Origin::ALL {
            let open = web.origins.iter().any(|v| v.origin == origin);
            let closed = web.closed.iter().any(|c| c.origin == origin);
            prop_assert!(open != closed, "{origin:?} both or neither in\n{yaml}");
        }
        for e in &explanations {
            for v in &e.origins {
                prop_assert!(!v.reasons.is_empty(), "{:?} via {} has no reason\n{yaml}", v.origin, v.via);
                let last = v.path.last().expect("a path");
                prop_assert!(
                    v.l4_source_seen_by_pod == L4Source::Unknown || last.source == v.l4_source_seen_by_pod,
                    "{:?} via {}: path ends with {:?}, verdict {:?}\n{yaml}",
                    v.origin, v.via, last.source, v.l4_source_seen_by_pod
                );
                if v.l4_source_seen_by_pod == L4Source::Client {
                    prop_assert!(v.path.iter().all(|h| h.rewrite.is_none()), "client kept yet rewritten\n{yaml}");
                }
            }
        }
        // Rendering never fails either.
        prop_assert!(!render_text(&explanations).is_empty());
        prop_assert!(serde_json::from_str::<serde_json::Value>(&render_json(&explanations)).is_ok());
        prop_assert!(render_mermaid(&explanations).starts_with("flowchart LR"));
    }
}
