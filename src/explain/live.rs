//! Live adapter: read what explain needs from a cluster. The reads go through [`Source`] so the
//! gathering logic is testable with canned objects; [`KubeSource`] is the real one.
//!
//! Only the Service itself is required. Every other read is optional: a refusal (403) or a
//! failure becomes a stated assumption, never a failed command.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use std::collections::BTreeMap;

use super::facts::MetalLbMode;
use super::model::Explanation;
use super::objects::{IngressDoc, Objects, Workload};
use crate::cli::ExplainArgs;
use crate::error::{Failure, Result};
use crate::kube::{ApiCall, CallContext, Cluster, KubeError};

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

fn pod_workloads(pods: Vec<Pod>) -> Vec<Workload> {
    pods.into_iter()
        .filter_map(|p| serde_json::to_value(&p).ok())
        .map(|v| Workload::from_value("Pod", &v))
        .collect()
}

/// Namespaces where ingress-nginx controllers usually live, besides a cluster-wide label search.
const NGINX_NAMESPACES: [&str; 2] = ["ingress-nginx", "kube-system"];

/// Reads everything explain uses about `ns/name`.
pub async fn gather(source: &impl Source, ns: &str, name: &str) -> Result<Objects, KubeError> {
    let mut objects = Objects {
        live: true,
        ..Objects::default()
    };
    let service = source.service(ns, name).await?;
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    objects.services.push(service);

    let slices = source.endpoint_slices(ns, name).await;
    objects.slices = optional(
        &mut objects,
        &format!("EndpointSlices of {ns}/{name}"),
        slices,
    )
    .unwrap_or_default();
    if !selector.is_empty() {
        let pods = source.pods(ns, &selector_string(&selector)).await;
        let pods =
            optional(&mut objects, &format!("pods of {ns}/{name}"), pods).unwrap_or_default();
        objects.workloads.extend(pod_workloads(pods));
    }
    let nodes = source.nodes().await;
    objects.nodes = optional(&mut objects, "nodes", nodes).unwrap_or_default();

    for (cm_ns, cm_name) in [
        ("kube-system", "kube-proxy"),
        ("kube-system", "tke-service-controller-config"),
        ("kube-system", "cilium-config"),
        ("metallb-system", "config"),
    ] {
        let read = source.config_map(cm_ns, cm_name).await;
        if let Some(cm) = optional(&mut objects, &format!("ConfigMap {cm_ns}/{cm_name}"), read) {
            let value = serde_json::to_value(&cm).unwrap_or_default();
            // add_value keeps MetalLB's legacy ConfigMap detection in one place.
            if objects.add_value(value).is_err() {
                objects.config_maps.push(cm);
            }
        }
    }
    // MetalLB's mode from its advertisements (a 404 means MetalLB is not installed).
    for (kind, mode) in [
        ("L2Advertisement", MetalLbMode::L2),
        ("BGPAdvertisement", MetalLbMode::Bgp),
    ] {
        let read = source.metallb(kind).await;
        if let Some(first) = optional(&mut objects, &format!("MetalLB {kind}s"), read)
            .and_then(|names| names.into_iter().next())
        {
            objects.metallb = Some((Some(mode), format!("{kind} {first}")));
        }
    }
    let ds = source.daemon_set("kube-system", "kube-proxy").await;
    if let Some(ds) = optional(&mut objects, "DaemonSet kube-system/kube-proxy", ds) {
        if let Ok(value) = serde_json::to_value(&ds) {
            objects
                .workloads
                .push(Workload::from_value("DaemonSet", &value));
        }
    }

    let ingresses = source.ingresses(ns).await;
    let ingresses =
        optional(&mut objects, &format!("Ingresses in {ns}"), ingresses).unwrap_or_default();
    objects.ingresses = ingresses
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .map(|v| IngressDoc::from_value(&v))
        .filter(|i| i.services.iter().any(|s| s == name))
        .collect();
    if !objects.ingresses.is_empty() {
        let classes = source.ingress_classes().await;
        objects.ingress_classes =
            optional(&mut objects, "IngressClasses", classes).unwrap_or_default();
        gather_nginx(source, &mut objects).await;
    }
    Ok(objects)
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
        let selector = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if !selector.is_empty() {
            let pods = source.pods(&ns, &selector_string(&selector)).await;
            let pods = optional(objects, &format!("pods of {ns}/{name}"), pods).unwrap_or_default();
            objects.workloads.extend(pod_workloads(pods));
        }
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

/// `svc/NAME`, `service/NAME`, `services/NAME` → NAME.
pub fn parse_target(target: &str) -> Result<&str> {
    let (kind, name) = target.split_once('/').ok_or_else(|| {
        Failure::usage(format!("{target:?} is not svc/NAME"))
            .hint("name the Service as svc/NAME, or explain manifests with -f FILE")
    })?;
    if !matches!(kind, "svc" | "service" | "services") || name.is_empty() || name.contains('/') {
        return Err(Failure::usage(format!("{target:?} is not svc/NAME"))
            .hint("explain works on Services: svc/NAME"));
    }
    Ok(name)
}

/// explain's prediction for `namespace/name` over an existing connection (trace shows it beside
/// what it measured). `entry_node` is where connections enter, when known.
pub async fn predict(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    entry_node: Option<&str>,
) -> Result<Explanation, KubeError> {
    let source = KubeSource {
        cluster: cluster.clone(),
    };
    let objects = gather(&source, namespace, name).await?;
    Ok(explain_gathered(&objects, entry_node))
}

/// The target is the first Service; the others are ingress controllers read for context.
fn explain_gathered(objects: &Objects, entry_node: Option<&str>) -> Explanation {
    let mut facts = super::gather::all_facts(objects)
        .into_iter()
        .next()
        .unwrap_or_default();
    facts.cluster.entry_node = entry_node.map(str::to_string);
    super::rules::explain(&facts)
}

/// Explains the Service from the cluster the kubectl flags point at.
pub async fn explain_live(args: &ExplainArgs, target: &str) -> Result<Vec<Explanation>> {
    let name = parse_target(target)?;
    let cluster = Cluster::new(crate::kube::clients(&args.kube).await?);
    let namespace = cluster.default_namespace().to_string();
    let source = KubeSource { cluster };
    let objects = gather(&source, &namespace, name).await?;
    if let Some(node) = args.entry_node.as_deref() {
        super::gather::check_entry_node(&objects, node)?;
    }
    Ok(vec![explain_gathered(&objects, args.entry_node.as_deref())])
}
