//! `explain svc/NAME` against the in-process fake API server: the reads it makes, the
//! ConfigMaps and node labels it uses, and 403s that become assumptions.

use crate::support;

use kubectl_realip::cli::{ExplainArgs, KubeArgs, OutputFormat};
use kubectl_realip::cmd::explain::explain_live;
use kubectl_realip::explain::model::{Explanation, L4Source, L7Source, Origin, OriginVerdict};
use support::{FakeApi, Fault};

/// Stores every object of a multi-document YAML text.
fn insert_yaml(api: &FakeApi, yaml: &str) {
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(document).expect("valid fixture YAML");
        if !value.is_null() {
            api.insert(&value);
        }
    }
}

fn args(api: &FakeApi) -> ExplainArgs {
    ExplainArgs {
        target: Some("svc/web".into()),
        filename: Vec::new(),
        entry_node: None,
        kube: KubeArgs {
            kubeconfig: Some(api.kubeconfig().to_path_buf()),
            namespace: Some("shop".into()),
            ..KubeArgs::default()
        },
        output: OutputFormat::Json,
    }
}

fn verdict<'a>(e: &'a Explanation, origin: Origin, via: &str) -> &'a OriginVerdict {
    e.origins
        .iter()
        .find(|v| v.origin == origin && v.via == via)
        .unwrap_or_else(|| panic!("no {origin:?} via {via} in {e:#?}"))
}

const TKE_GLOBAL_ROUTER: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    service.cloud.tencent.com/direct-access: "true"
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 31080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: ["172.18.0.80"]
  nodeName: node-a
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {kubernetes.io/hostname: node-a}
spec:
  podCIDR: 172.18.0.64/26
  providerID: qcloud:///800002/ins-example
status:
  addresses: [{type: InternalIP, address: 192.0.2.11}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: tke-service-controller-config, namespace: kube-system}
data: {GlobalRouteDirectAccess: "true"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-proxy, namespace: kube-system}
data:
  config.conf: |
    apiVersion: kubeproxy.config.k8s.io/v1alpha1
    kind: KubeProxyConfiguration
    mode: ipvs
"#;

#[tokio::test]
async fn reads_the_configmaps_and_node_labels_it_needs() {
    let api = FakeApi::start().await;
    insert_yaml(&api, TKE_GLOBAL_ROUTER);
    let explanations = explain_live(&args(&api), "svc/web")
        .await
        .expect("explained");
    assert_eq!(explanations.len(), 1);
    let e = &explanations[0];
    assert_eq!((e.service.as_str(), e.namespace.as_str()), ("web", "shop"));

    let lb = verdict(e, Origin::InternetViaLb, "lb");
    assert_eq!(lb.l4_source_seen_by_pod, L4Source::Client, "{lb:#?}");
    assert!(lb
        .reasons
        .iter()
        .any(|r| r.setting.contains("GlobalRouteDirectAccess=\"true\"")));

    let node_port = verdict(e, Origin::NodePort, "node-port");
    assert_eq!(
        node_port.l4_source_seen_by_pod,
        L4Source::Bridge,
        "one node hosts the pod"
    );
    assert!(node_port
        .reasons
        .iter()
        .any(|r| r.setting.contains("mode=ipvs")));
    assert!(
        !e.assumptions
            .iter()
            .any(|a| a.contains("kube-proxy mode unknown")),
        "{:?}",
        e.assumptions
    );

    let seen = api.seen();
    let read = |verb: &str, resource: &str, name: Option<&str>| {
        seen.iter()
            .any(|s| s.verb == verb && s.resource == resource && s.name.as_deref() == name)
    };
    assert!(read("get", "services", Some("web")));
    assert!(read("list", "endpointslices", None));
    assert!(read("list", "nodes", None));
    assert!(read("get", "configmaps", Some("kube-proxy")));
    assert!(read(
        "get",
        "configmaps",
        Some("tke-service-controller-config")
    ));
    assert!(
        seen.iter()
            .all(|s| matches!(s.verb.as_str(), "get" | "list")),
        "explain only reads"
    );
}

#[tokio::test]
async fn a_403_on_an_optional_read_becomes_an_assumption() {
    let api = FakeApi::start().await;
    insert_yaml(&api, TKE_GLOBAL_ROUTER);
    api.forbid("get", "configmaps");
    api.forbid("list", "nodes");
    let explanations = explain_live(&args(&api), "svc/web")
        .await
        .expect("still explained");
    let e = &explanations[0];
    for what in [
        "could not read ConfigMap kube-system/kube-proxy: forbidden",
        "could not read ConfigMap kube-system/tke-service-controller-config: forbidden",
        "could not read nodes: forbidden",
    ] {
        assert!(
            e.assumptions.iter().any(|a| a == what),
            "{what} not in {:?}",
            e.assumptions
        );
    }
    assert!(e.assumptions.iter().any(|a| a.contains("assumed iptables")));
    // Without the ConfigMap nothing shows that GlobalRouteDirectAccess is on.
    let lb = verdict(e, Origin::InternetViaLb, "lb");
    assert_eq!(lb.l4_source_seen_by_pod, L4Source::Unknown, "{lb:#?}");
}

#[tokio::test]
async fn finds_the_ingress_nginx_controller_and_its_configmap() {
    let api = FakeApi::start().await;
    insert_yaml(
        &api,
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: web, port: {number: 80}}}
---
apiVersion: v1
kind: Service
metadata:
  name: ingress-nginx-controller
  namespace: ingress-nginx
  labels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  selector: {app.kubernetes.io/name: ingress-nginx}
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data: {use-proxy-protocol: "true"}
"#,
    );
    let explanations = explain_live(&args(&api), "svc/web")
        .await
        .expect("explained");
    assert_eq!(explanations.len(), 1, "only the target is explained");
    let e = &explanations[0];
    let via = verdict(e, Origin::InternetViaLb, "ingress/web");
    // The ConfigMap says PROXY protocol, an unknown LB is not known to send it: unknown.
    assert_eq!(via.l7_client_ip, L7Source::Unknown, "{via:#?}");
    assert!(via.reasons.iter().any(|r| r
        .setting
        .contains("svc/ingress-nginx/ingress-nginx-controller")));
}

#[tokio::test]
async fn a_missing_service_is_a_cluster_error() {
    let api = FakeApi::start().await;
    let err = explain_live(&args(&api), "svc/web").await.unwrap_err();
    assert_eq!(err.kind, kubectl_realip::error::Kind::Cluster);
    assert!(err.message.contains("not found"), "{}", err.message);

    api.fault(Fault {
        verb: "get".into(),
        resource: "services".into(),
        name: Some("web".into()),
        code: 403,
        message: None,
        times: None,
    });
    let err = explain_live(&args(&api), "svc/web").await.unwrap_err();
    assert!(err
        .hint
        .unwrap_or_default()
        .contains("\"get\" on \"services\""));
}

#[tokio::test]
async fn a_bad_target_is_a_usage_error() {
    let api = FakeApi::start().await;
    let err = explain_live(&args(&api), "deploy/web").await.unwrap_err();
    assert_eq!(err.kind, kubectl_realip::error::Kind::Usage);
}

#[tokio::test]
async fn reads_metallb_advertisements() {
    let api = FakeApi::start().await;
    insert_yaml(
        &api,
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
"#,
    );
    let explanations = explain_live(&args(&api), "svc/web")
        .await
        .expect("explained");
    let lb = verdict(&explanations[0], Origin::InternetViaLb, "lb");
    assert_eq!(lb.l4_source_seen_by_pod, L4Source::Node, "{lb:#?}");
    assert!(
        lb.reasons
            .iter()
            .any(|r| r.setting == "L2Advertisement metallb-system/l2"),
        "{lb:#?}"
    );
}

#[tokio::test]
async fn node_labels_reveal_super_nodes_and_the_cloud() {
    let api = FakeApi::start().await;
    insert_yaml(
        &api,
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, nodePort: 31080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: ["172.18.0.90"]
  nodeName: super-1
---
apiVersion: v1
kind: Node
metadata:
  name: super-1
  labels: {node.kubernetes.io/instance-type: eklet, cloud.tencent.com/node-instance-id: eks-1}
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {cloud.tencent.com/node-instance-id: ins-1}
"#,
    );
    let explanations = explain_live(&args(&api), "svc/web")
        .await
        .expect("explained");
    let e = &explanations[0];
    let lb = verdict(e, Origin::InternetViaLb, "lb");
    assert_eq!(lb.l4_source_seen_by_pod, L4Source::Client, "{lb:#?}");
    assert!(lb
        .reasons
        .iter()
        .any(|r| r.setting.contains("cloud.tencent.com/node-instance-id")));
    assert!(lb.reasons.iter().any(|r| r.text.contains("super nodes")));
    // A NodePort on node-a has no local endpoint with Local: unknown, never a guess.
    let node_port = verdict(e, Origin::NodePort, "node-port");
    assert_eq!(node_port.l4_source_seen_by_pod, L4Source::Unknown);
}
