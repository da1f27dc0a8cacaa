//! The API objects explain reads, as found in manifests or fetched from a cluster.
//!
//! Services, EndpointSlices, IngressClasses, ConfigMaps and Nodes use the k8s-openapi types;
//! Ingresses and workloads are read leniently from their YAML so that old API versions
//! (`networking.k8s.io/v1beta1` with `serviceName`) and partial manifests still work.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressClass;
use serde_yaml::Value;
use std::collections::BTreeMap;

use super::facts::MetalLbMode;
use super::ExplainError;

#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub ingresses: Vec<IngressDoc>,
    pub ingress_classes: Vec<IngressClass>,
    pub config_maps: Vec<ConfigMap>,
    pub nodes: Vec<Node>,
    pub workloads: Vec<Workload>,
    /// MetalLB's mode and the object that shows it.
    pub metallb: Option<(Option<MetalLbMode>, String)>,
    /// Whether the objects come from a live cluster (then absence means absent).
    pub live: bool,
    /// What could not be read, stated as assumptions.
    pub notes: Vec<String>,
}

/// An Ingress, whatever its API version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressDoc {
    pub name: String,
    pub namespace: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub class_name: Option<String>,
    /// Names of the Services it routes to (rules and default backend).
    pub services: Vec<String>,
}

/// A pod or a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, Pod).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// Labels of the pods (template labels for controllers).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the pods.
    pub annotations: BTreeMap<String, String>,
    pub node_name: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    /// Extended resources the containers request or limit.
    pub resources: Vec<String>,
    /// Every container's command and args.
    pub args: Vec<String>,
}

fn str_map(value: Option<&Value>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(Value::Mapping(m)) = value {
        for (k, v) in m {
            if let Some(k) = k.as_str() {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                map.insert(k.to_string(), v);
            }
        }
    }
    map
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn get_str(value: &Value, path: &[&str]) -> Option<String> {
    get(value, path)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn seq<'a>(value: &'a Value, path: &[&str]) -> impl Iterator<Item = &'a Value> {
    get(value, path)
        .and_then(|v| v.as_sequence())
        .into_iter()
        .flatten()
}

impl IngressDoc {
    pub fn from_value(value: &Value) -> IngressDoc {
        let meta = value.get("metadata");
        let mut services = Vec::new();
        let mut backend = |b: &Value| {
            // networking.k8s.io/v1: backend.service.name; v1beta1: backend.serviceName.
            let name = get_str(b, &["service", "name"]).or_else(|| get_str(b, &["serviceName"]));
            if let Some(name) = name {
                if !services.contains(&name) {
                    services.push(name);
                }
            }
        };
        for key in ["defaultBackend", "backend"] {
            if let Some(b) = get(value, &["spec", key]) {
                backend(b);
            }
        }
        for rule in seq(value, &["spec", "rules"]) {
            for path in seq(rule, &["http", "paths"]) {
                if let Some(b) = path.get("backend") {
                    backend(b);
                }
            }
        }
        IngressDoc {
            name: meta.and_then(|m| get_str(m, &["name"])).unwrap_or_default(),
            namespace: meta.and_then(|m| get_str(m, &["namespace"])),
            annotations: str_map(meta.and_then(|m| m.get("annotations"))),
            class_name: get_str(value, &["spec", "ingressClassName"]),
            services,
        }
    }
}

impl Workload {
    pub fn from_value(kind: &str, value: &Value) -> Workload {
        let meta = value.get("metadata");
        let pod = if kind == "Pod" {
            Some(value)
        } else if kind == "CronJob" {
            get(value, &["spec", "jobTemplate", "spec", "template"])
        } else {
            get(value, &["spec", "template"])
        };
        let pod_meta = pod.and_then(|p| p.get("metadata"));
        let spec = pod.and_then(|p| p.get("spec"));
        let mut resources = Vec::new();
        let mut args = Vec::new();
        if let Some(spec) = spec {
            for container in seq(spec, &["containers"]).chain(seq(spec, &["initContainers"])) {
                for part in ["requests", "limits"] {
                    if let Some(Value::Mapping(m)) = get(container, &["resources", part]) {
                        for key in m.keys().filter_map(|k| k.as_str()) {
                            if !resources.iter().any(|r| r == key) {
                                resources.push(key.to_string());
                            }
                        }
                    }
                }
                for part in ["command", "args"] {
                    args.extend(
                        seq(container, &[part]).filter_map(|a| a.as_str().map(str::to_string)),
                    );
                }
            }
        }
        Workload {
            kind: kind.to_string(),
            name: meta.and_then(|m| get_str(m, &["name"])).unwrap_or_default(),
            namespace: meta.and_then(|m| get_str(m, &["namespace"])),
            labels: str_map(pod_meta.and_then(|m| m.get("labels"))),
            annotations: str_map(pod_meta.and_then(|m| m.get("annotations"))),
            node_name: spec.and_then(|s| get_str(s, &["nodeName"])),
            node_selector: str_map(spec.and_then(|s| s.get("nodeSelector"))),
            resources,
            args,
        }
    }

    /// Whether its pods are selected by `selector` (an empty selector selects nothing).
    pub fn selected_by(&self, selector: &BTreeMap<String, String>) -> bool {
        !selector.is_empty()
            && selector
                .iter()
                .all(|(k, v)| self.labels.get(k).is_some_and(|l| l == v))
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    value: Value,
    index: usize,
    kind: &str,
) -> Result<T, ExplainError> {
    let name = get_str(&value, &["metadata", "name"]).unwrap_or_default();
    serde_yaml::from_value(value).map_err(|err| ExplainError::Object {
        document: index + 1,
        kind: kind.to_string(),
        name,
        message: err.to_string(),
    })
}

impl Objects {
    /// Parses multi-document YAML and adds every object explain understands.
    pub fn add_yaml(&mut self, text: &str) -> Result<(), ExplainError> {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = <Value as serde::Deserialize>::deserialize(document).map_err(|err| {
                ExplainError::Yaml {
                    document: index + 1,
                    message: err.to_string(),
                }
            })?;
            self.add_value(value, index)?;
        }
        Ok(())
    }

    /// Adds one object (or the items of a List).
    pub fn add_value(&mut self, value: Value, index: usize) -> Result<(), ExplainError> {
        let Some(kind) = get_str(&value, &["kind"]) else {
            return Ok(()); // empty documents, comments only, or not an object
        };
        let api = get_str(&value, &["apiVersion"]).unwrap_or_default();
        match kind.as_str() {
            "List" => {
                if let Some(Value::Sequence(items)) = value.get("items") {
                    for item in items.clone() {
                        self.add_value(item, index)?;
                    }
                }
            }
            "Service" => self.services.push(typed(value, index, &kind)?),
            "EndpointSlice" => self.slices.push(typed(value, index, &kind)?),
            "IngressClass" => self.ingress_classes.push(typed(value, index, &kind)?),
            "ConfigMap" => {
                let cm: ConfigMap = typed(value, index, &kind)?;
                self.metallb_from_config_map(&cm);
                self.config_maps.push(cm);
            }
            "Node" => self.nodes.push(typed(value, index, &kind)?),
            "Ingress" => self.ingresses.push(IngressDoc::from_value(&value)),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob"
            | "Pod" => self.workloads.push(Workload::from_value(&kind, &value)),
            "L2Advertisement" | "BGPAdvertisement" if api.starts_with("metallb.io/") => {
                let mode = if kind == "L2Advertisement" {
                    MetalLbMode::L2
                } else {
                    MetalLbMode::Bgp
                };
                let name = get_str(&value, &["metadata", "name"]).unwrap_or_default();
                self.metallb = Some((Some(mode), format!("{kind} {name}")));
            }
            "IPAddressPool" if api.starts_with("metallb.io/") && self.metallb.is_none() => {
                let name = get_str(&value, &["metadata", "name"]).unwrap_or_default();
                self.metallb = Some((None, format!("IPAddressPool {name}")));
            }
            _ => {}
        }
        Ok(())
    }

    /// MetalLB before v0.13 was configured by ConfigMap metallb-system/config.
    fn metallb_from_config_map(&mut self, cm: &ConfigMap) {
        if cm.metadata.name.as_deref() != Some("config")
            || cm.metadata.namespace.as_deref() != Some("metallb-system")
        {
            return;
        }
        let config = cm
            .data
            .as_ref()
            .and_then(|d| d.get("config"))
            .cloned()
            .unwrap_or_default();
        let mode = if config.contains("protocol: bgp") {
            Some(MetalLbMode::Bgp)
        } else if config.contains("protocol: layer2") {
            Some(MetalLbMode::L2)
        } else {
            None
        };
        self.metallb = Some((mode, "ConfigMap metallb-system/config".into()));
    }
}
