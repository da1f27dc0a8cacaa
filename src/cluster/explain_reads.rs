//! What explain reads from a live cluster. The reads go through [`Source`] so the gathering
//! logic is testable with canned objects; [`KubeSource`] is the real one. The objects read are
//! handed to the core's explain as they are.
//!
//! Only the Service itself is required. Every other read is optional: a refusal (403) or a
//! failure becomes a stated assumption, never a failed command.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use std::collections::BTreeMap;

use crate::cluster::{ApiCall, CallContext, Cluster, KubeError};
use realip_core::explain::facts::MetalLbMode;
use realip_core::explain::objects::{IngressDoc, Objects, Workload};

/// The reads explain makes. Errors keep their kind so 403 and 404 can be told apart.
#[allow(async_fn_in_trait)]
pub trait Source {
    async fn service(&self, ns: &str, name: &str) -> Result<Service, KubeError>;
    async fn endpoint_slices(
        &self,
        ns: &str,
        service: &str,
    ) -> Result<Vec<EndpointSlice>, KubeError>;
    async fn ingresses(&self, ns: &str) -> Result<Vec<Ingress>, KubeError>;
    async fn ingress_classes(&self) -> Result<Vec<IngressClass>, KubeError>;
    async fn config_map(&self, ns: &str, name: &str) -> Result<ConfigMap, KubeError>;
    async fn config_maps(&self, ns: &str) -> Result<Vec<ConfigMap>, KubeError>;
    /// Services in `ns`, or in every namespace when None, matching `selector` (may be empty).
    async fn services(&self, ns: Option<&str>, selector: &str) -> Result<Vec<Service>, KubeError>;
    async fn nodes(&self) -> Result<Vec<Node>, KubeError>;
    async fn pods(&self, ns: &str, selector: &str) -> Result<Vec<Pod>, KubeError>;
    async fn daemon_set(&self, ns: &str, name: &str) -> Result<DaemonSet, KubeError>;
    /// Names (`namespace/name`) of MetalLB objects of `kind` (L2Advertisement, BGPAdvertisement).
    async fn metallb(&self, kind: &str) -> Result<Vec<String>, KubeError>;
}

/// The real cluster, through the cluster adapter's typed, RBAC-tagged calls.
pub struct KubeSource {
    pub cluster: Cluster,
}

fn selector(selector: &str) -> Option<&str> {
    (!selector.is_empty()).then_some(selector)
}

impl Source for KubeSource {
    async fn service(&self, ns: &str, name: &str) -> Result<Service, KubeError> {
        self.cluster.namespaced::<Service>(ns).get(name).await
    }

    async fn endpoint_slices(
        &self,
        ns: &str,
        service: &str,
    ) -> Result<Vec<EndpointSlice>, KubeError> {
        let labels = format!("kubernetes.io/service-name={service}");
        self.cluster
            .namespaced::<EndpointSlice>(ns)
            .list(Some(&labels))
            .await
    }

    async fn ingresses(&self, ns: &str) -> Result<Vec<Ingress>, KubeError> {
        self.cluster.namespaced::<Ingress>(ns).list(None).await
    }

    async fn ingress_classes(&self) -> Result<Vec<IngressClass>, KubeError> {
        self.cluster.all::<IngressClass>().list(None).await
    }

    async fn config_map(&self, ns: &str, name: &str) -> Result<ConfigMap, KubeError> {
        self.cluster.namespaced::<ConfigMap>(ns).get(name).await
    }

    async fn config_maps(&self, ns: &str) -> Result<Vec<ConfigMap>, KubeError> {
        self.cluster.namespaced::<ConfigMap>(ns).list(None).await
    }

    async fn services(&self, ns: Option<&str>, labels: &str) -> Result<Vec<Service>, KubeError> {
        match ns {
            Some(ns) => {
                self.cluster
                    .namespaced::<Service>(ns)
                    .list(selector(labels))
                    .await
            }
            None => self.cluster.all::<Service>().list(selector(labels)).await,
        }
    }

    async fn nodes(&self) -> Result<Vec<Node>, KubeError> {
        self.cluster.all::<Node>().list(None).await
    }

    async fn pods(&self, ns: &str, labels: &str) -> Result<Vec<Pod>, KubeError> {
        self.cluster
            .namespaced::<Pod>(ns)
            .list(selector(labels))
            .await
    }

    async fn daemon_set(&self, ns: &str, name: &str) -> Result<DaemonSet, KubeError> {
        self.cluster.namespaced::<DaemonSet>(ns).get(name).await
    }

    async fn metallb(&self, kind: &str) -> Result<Vec<String>, KubeError> {
        // A custom resource: no k8s-openapi type, so a dynamic list.
        let gvk = GroupVersionKind::gvk("metallb.io", "v1beta1", kind);
        let resource = ApiResource::from_gvk(&gvk);
        let call = ApiCall::new("list", format!("{}.metallb.io", resource.plural));
        Api::<DynamicObject>::all_with(self.cluster.clients.requests.clone(), &resource)
            .list(&ListParams::default())
            .await
            .call(call)
            .map(|list| {
                list.items
                    .iter()
                    .map(|o| {
                        format!(
                            "{}/{}",
                            o.metadata.namespace.as_deref().unwrap_or_default(),
                            o.metadata.name.as_deref().unwrap_or_default()
                        )
                    })
                    .collect()
            })
    }
}

/// An optional read: absent is fine, a refusal or failure is noted as an assumption.
fn optional<T>(objects: &mut Objects, what: &str, result: Result<T, KubeError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) if err.is_not_found() => None,
        Err(err) if err.is_forbidden() => {
            objects
                .notes
                .push(format!("could not read {what}: forbidden"));
            None
        }
        Err(err) => {
            objects.notes.push(format!("could not read {what}: {err}"));
            None
        }
    }
}

fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Namespaces where ingress-nginx controllers usually live, besides a cluster-wide label search.
const NGINX_NAMESPACES: [&str; 2] = ["ingress-nginx", "kube-system"];

/// Objects the caller has read already (trace does): the Service, its EndpointSlices and the
/// nodes. explain reads the rest itself.
#[derive(Debug, Clone)]
pub struct Known {
    pub service: Service,
    pub slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
}

/// Reads everything explain uses about `ns/name`.
pub async fn gather(source: &impl Source, ns: &str, name: &str) -> Result<Objects, KubeError> {
    let mut objects = Objects {
        live: true,
        ..Objects::default()
    };
    let service = source.service(ns, name).await?;
    let slices = source.endpoint_slices(ns, name).await;
    objects.slices = optional(
        &mut objects,
        &format!("EndpointSlices of {ns}/{name}"),
        slices,
    )
    .unwrap_or_default();
    read_pods(source, &mut objects, &service).await;
    let nodes = source.nodes().await;
    objects.nodes = optional(&mut objects, "nodes", nodes).unwrap_or_default();
    objects.services.push(service);
    read_around(source, &mut objects, ns, name).await;
    Ok(objects)
}

/// Reads what explain uses besides what the caller has read already.
pub async fn gather_known(source: &impl Source, known: Known) -> Objects {
    let Known {
        service,
        slices,
        nodes,
    } = known;
    let ns = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut objects = Objects {
        live: true,
        slices,
        ..Objects::default()
    };
    read_pods(source, &mut objects, &service).await;
    objects.nodes = nodes;
    objects.services.push(service);
    read_around(source, &mut objects, &ns, &name).await;
    objects
}

/// The pods the Service selects.
async fn read_pods(source: &impl Source, objects: &mut Objects, service: &Service) {
    let ns = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty());
    if let Some(selector) = selector {
        let pods = source.pods(ns, &selector_string(selector)).await;
        let pods = optional(objects, &format!("pods of {ns}/{name}"), pods).unwrap_or_default();
        objects
            .workloads
            .extend(pods.iter().map(Workload::from_pod));
    }
}

/// The cluster's configuration (kube-proxy, the cloud's controllers, MetalLB) and the Ingresses
/// routing to `ns/name`.
async fn read_around(source: &impl Source, objects: &mut Objects, ns: &str, name: &str) {
    for (cm_ns, cm_name) in [
        ("kube-system", "kube-proxy"),
        ("kube-system", "tke-service-controller-config"),
        ("kube-system", "cilium-config"),
        ("metallb-system", "config"),
    ] {
        let read = source.config_map(cm_ns, cm_name).await;
        if let Some(cm) = optional(objects, &format!("ConfigMap {cm_ns}/{cm_name}"), read) {
            objects.add_config_map(cm);
        }
    }
    // MetalLB's mode from its advertisements (a 404 means MetalLB is not installed).
    for (kind, mode) in [
        ("L2Advertisement", MetalLbMode::L2),
        ("BGPAdvertisement", MetalLbMode::Bgp),
    ] {
        let read = source.metallb(kind).await;
        if let Some(first) = optional(objects, &format!("MetalLB {kind}s"), read)
            .and_then(|names| names.into_iter().next())
        {
            objects.metallb = Some((Some(mode), format!("{kind} {first}")));
        }
    }
    let ds = source.daemon_set("kube-system", "kube-proxy").await;
    if let Some(ds) = optional(objects, "DaemonSet kube-system/kube-proxy", ds) {
        objects.workloads.push(Workload::from_daemon_set(&ds));
    }

    let ingresses = source.ingresses(ns).await;
    let ingresses = optional(objects, &format!("Ingresses in {ns}"), ingresses).unwrap_or_default();
    objects.ingresses = ingresses
        .iter()
        .map(IngressDoc::from_ingress)
        .filter(|i| i.services.iter().any(|s| s == name))
        .collect();
    if !objects.ingresses.is_empty() {
        let classes = source.ingress_classes().await;
        objects.ingress_classes = optional(objects, "IngressClasses", classes).unwrap_or_default();
        gather_nginx(source, objects).await;
    }
}

/// ingress-nginx controller Services, their pods and ConfigMaps.
async fn gather_nginx(source: &impl Source, objects: &mut Objects) {
    let mut found: Vec<Service> = Vec::new();
    let labelled = source
        .services(None, "app.kubernetes.io/name=ingress-nginx")
        .await;
    found.extend(
        optional(objects, "ingress-nginx Services (all namespaces)", labelled).unwrap_or_default(),
    );
    for ns in NGINX_NAMESPACES {
        let listed = source.services(Some(ns), "").await;
        found.extend(optional(objects, &format!("Services in {ns}"), listed).unwrap_or_default());
    }
    let mut seen = Vec::new();
    for svc in found {
        let key = (svc.metadata.namespace.clone(), svc.metadata.name.clone());
        let name = key.1.clone().unwrap_or_default();
        if seen.contains(&key) || !(name.contains("nginx")) {
            continue;
        }
        seen.push(key);
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        read_pods(source, objects, &svc).await;
        let config_maps = source.config_maps(&ns).await;
        for cm in optional(objects, &format!("ConfigMaps in {ns}"), config_maps).unwrap_or_default()
        {
            let already = objects
                .config_maps
                .iter()
                .any(|c| c.metadata == cm.metadata);
            if !already
                && cm
                    .metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.contains("nginx"))
            {
                objects.config_maps.push(cm);
            }
        }
        objects.services.push(svc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A cluster of canned objects that records the reads made of it.
    #[derive(Default)]
    struct Canned {
        service: Option<Service>,
        slices: Vec<EndpointSlice>,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        config_maps: Vec<ConfigMap>,
        reads: RefCell<Vec<&'static str>>,
    }

    fn absent(resource: &str) -> KubeError {
        KubeError::NotFound {
            call: Box::new(ApiCall::new("get", resource)),
            message: "not found".into(),
        }
    }

    impl Canned {
        fn read(&self, what: &'static str) {
            self.reads.borrow_mut().push(what);
        }
    }

    impl Source for Canned {
        async fn service(&self, _: &str, _: &str) -> Result<Service, KubeError> {
            self.read("service");
            self.service.clone().ok_or_else(|| absent("services"))
        }
        async fn endpoint_slices(&self, _: &str, _: &str) -> Result<Vec<EndpointSlice>, KubeError> {
            self.read("endpointslices");
            Ok(self.slices.clone())
        }
        async fn ingresses(&self, _: &str) -> Result<Vec<Ingress>, KubeError> {
            self.read("ingresses");
            Ok(Vec::new())
        }
        async fn ingress_classes(&self) -> Result<Vec<IngressClass>, KubeError> {
            self.read("ingressclasses");
            Ok(Vec::new())
        }
        async fn config_map(&self, ns: &str, name: &str) -> Result<ConfigMap, KubeError> {
            self.read("configmap");
            self.config_maps
                .iter()
                .find(|cm| {
                    cm.metadata.namespace.as_deref() == Some(ns)
                        && cm.metadata.name.as_deref() == Some(name)
                })
                .cloned()
                .ok_or_else(|| absent("configmaps"))
        }
        async fn config_maps(&self, _: &str) -> Result<Vec<ConfigMap>, KubeError> {
            self.read("configmaps");
            Ok(self.config_maps.clone())
        }
        async fn services(&self, _: Option<&str>, _: &str) -> Result<Vec<Service>, KubeError> {
            self.read("services");
            Ok(Vec::new())
        }
        async fn nodes(&self) -> Result<Vec<Node>, KubeError> {
            self.read("nodes");
            Ok(self.nodes.clone())
        }
        async fn pods(&self, _: &str, _: &str) -> Result<Vec<Pod>, KubeError> {
            self.read("pods");
            Ok(self.pods.clone())
        }
        async fn daemon_set(&self, _: &str, _: &str) -> Result<DaemonSet, KubeError> {
            self.read("daemonset");
            Err(absent("daemonsets"))
        }
        async fn metallb(&self, _: &str) -> Result<Vec<String>, KubeError> {
            self.read("metallb");
            Ok(Vec::new())
        }
    }

    fn object<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
        serde_json::from_value(json).expect("a valid object")
    }

    fn canned() -> Canned {
        Canned {
            service: Some(object(serde_json::json!({
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                         "ports": [{"port": 80, "nodePort": 31080}]}
            }))),
            slices: vec![object(serde_json::json!({
                "metadata": {"name": "web-1", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.5"], "nodeName": "node-a"}]
            }))],
            nodes: vec![object(serde_json::json!({
                "metadata": {"name": "node-a"},
                "spec": {"providerID": "qcloud:///1/ins-1", "podCIDR": "10.244.0.0/24"}
            }))],
            pods: vec![object(serde_json::json!({
                "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "web"}]}
            }))],
            config_maps: vec![object(serde_json::json!({
                "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                "data": {"config.conf": "kind: KubeProxyConfiguration\nmode: ipvs\n"}
            }))],
            ..Canned::default()
        }
    }

    #[tokio::test]
    async fn what_trace_read_is_not_read_again_and_explains_the_same() {
        let cluster = canned();
        let read = gather(&cluster, "shop", "web").await.expect("gathered");
        let reads = cluster.reads.take();
        for what in ["service", "endpointslices", "nodes"] {
            assert!(reads.contains(&what), "{reads:?}");
        }
        let known = Known {
            service: cluster.service.clone().expect("a Service"),
            slices: cluster.slices.clone(),
            nodes: cluster.nodes.clone(),
        };
        let given = gather_known(&cluster, known).await;
        let reads = cluster.reads.take();
        for what in ["service", "endpointslices", "nodes"] {
            assert!(!reads.contains(&what), "{what} read again: {reads:?}");
        }
        assert!(
            reads.contains(&"pods") && reads.contains(&"configmap"),
            "{reads:?}"
        );
        for entry in [None, Some("node-a")] {
            let json = |objects: &Objects| {
                serde_json::to_string(&realip_core::explain::explain_gathered(objects, entry))
                    .expect("JSON")
            };
            assert_eq!(json(&read), json(&given));
        }
    }
}
