//! The API objects explain reads, as found in manifests or fetched from a cluster.
//!
//! Services, EndpointSlices, IngressClasses, ConfigMaps and Nodes use the k8s-openapi types;
//! Ingresses and workloads are read leniently from their YAML so that old API versions
//! (`networking.k8s.io/v1beta1` with `serviceName`) and partial manifests still work.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, PodSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::documents::{self, Counted, Document};
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
    if let Some(Value::Object(m)) = value {
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            map.insert(k.clone(), v);
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
        .and_then(|v| v.as_array())
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

impl IngressDoc {
    /// An Ingress read from a cluster (networking.k8s.io/v1).
    pub fn from_ingress(ingress: &Ingress) -> IngressDoc {
        let spec = ingress.spec.as_ref();
        let defaults = spec.and_then(|s| s.default_backend.as_ref()).into_iter();
        let paths = spec
            .and_then(|s| s.rules.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|rule| rule.http.as_ref())
            .flat_map(|http| http.paths.iter().map(|path| &path.backend));
        let mut services: Vec<String> = Vec::new();
        for name in defaults
            .chain(paths)
            .filter_map(|backend| backend.service.as_ref())
            .map(|service| &service.name)
        {
            if !services.contains(name) {
                services.push(name.clone());
            }
        }
        IngressDoc {
            name: ingress.metadata.name.clone().unwrap_or_default(),
            namespace: ingress.metadata.namespace.clone(),
            annotations: ingress.metadata.annotations.clone().unwrap_or_default(),
            class_name: spec.and_then(|s| s.ingress_class_name.clone()),
            services,
        }
    }
}

impl Workload {
    /// A pod read from a cluster.
    pub fn from_pod(pod: &Pod) -> Workload {
        Workload::of_template("Pod", &pod.metadata, Some(&pod.metadata), pod.spec.as_ref())
    }

    /// A DaemonSet read from a cluster: its pod template.
    pub fn from_daemon_set(daemon_set: &DaemonSet) -> Workload {
        let template = daemon_set.spec.as_ref().map(|s| &s.template);
        Workload::of_template(
            "DaemonSet",
            &daemon_set.metadata,
            template.and_then(|t| t.metadata.as_ref()),
            template.and_then(|t| t.spec.as_ref()),
        )
    }

    fn of_template(
        kind: &str,
        meta: &ObjectMeta,
        pod_meta: Option<&ObjectMeta>,
        spec: Option<&PodSpec>,
    ) -> Workload {
        let containers = spec.into_iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        });
        let mut resources: Vec<String> = Vec::new();
        let mut args = Vec::new();
        for container in containers {
            let needs = container.resources.as_ref();
            for part in [
                needs.and_then(|r| r.requests.as_ref()),
                needs.and_then(|r| r.limits.as_ref()),
            ] {
                for key in part.into_iter().flat_map(|m| m.keys()) {
                    if !resources.contains(key) {
                        resources.push(key.clone());
                    }
                }
            }
            args.extend(container.command.iter().flatten().cloned());
            args.extend(container.args.iter().flatten().cloned());
        }
        let map = |m: Option<&BTreeMap<String, String>>| m.cloned().unwrap_or_default();
        Workload {
            kind: kind.to_string(),
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone(),
            labels: map(pod_meta.and_then(|m| m.labels.as_ref())),
            annotations: map(pod_meta.and_then(|m| m.annotations.as_ref())),
            node_name: spec.and_then(|s| s.node_name.clone()),
            node_selector: map(spec.and_then(|s| s.node_selector.as_ref())),
            resources,
            args,
        }
    }

    /// A workload of `kind` read leniently from a manifest.
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
                    if let Some(Value::Object(m)) = get(container, &["resources", part]) {
                        for key in m.keys() {
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

/// What one input held, for a message that names it when it holds no Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// How many objects of each kind (List items counted one by one).
    pub kinds: BTreeMap<String, usize>,
    /// The kinds among them that explain does not read.
    pub unread: BTreeSet<String>,
}

impl Read {
    fn merge(&mut self, other: Read) {
        for (kind, count) in other.kinds {
            *self.kinds.entry(kind).or_default() += count;
        }
        self.unread.extend(other.unread);
    }

    fn saw(&mut self, kind: &str, understood: bool) {
        *self.kinds.entry(kind.to_string()).or_default() += 1;
        if !understood {
            self.unread.insert(kind.to_string());
        }
    }
}

/// Where an object was found: its document, and its place in a List if it is an item.
#[derive(Debug, Clone, Copy)]
struct Place<'a> {
    document: &'a Document<'a>,
    item: Option<usize>,
}

impl Place<'_> {
    fn object_error(&self, kind: &str, name: &str, message: String) -> ExplainError {
        ExplainError::Object {
            document: self.document.number,
            line: self.document.line,
            item: self.item.map(|i| i + 1),
            kind: kind.to_string(),
            name: name.to_string(),
            message,
        }
    }
}

/// An object's content, read into a value: a document of its own, or a List item.
struct Content<'a> {
    value: Value,
    /// The document it is all of, when it is: a wrong field is then named by its line.
    whole: Option<&'a Document<'a>>,
}

impl Content<'_> {
    fn typed<T: DeserializeOwned>(
        self,
        place: Place<'_>,
        kind: &str,
        name: &str,
    ) -> Result<T, ExplainError> {
        serde_json::from_value(self.value).map_err(|err| {
            // Rare: read the document again, only to say where the wrong field is.
            let located = self
                .whole
                .and_then(|document| match documents::parse::<T>(document) {
                    Err(ExplainError::Yaml { message, .. }) => Some(message),
                    _ => None,
                });
            place.object_error(kind, name, located.unwrap_or_else(|| err.to_string()))
        })
    }
}

/// What one document turned out to be, read in one pass.
enum Parsed {
    /// Empty, or only comments: kubectl skips these too.
    Empty,
    /// A scalar or a sequence where an object belongs.
    NotAMapping(&'static str),
    Object {
        kind: Option<String>,
        api_version: String,
        name: String,
        /// Every field but `items`.
        fields: Value,
        /// What `items` held, read one by one as they came (they are the objects if this is a
        /// List: kubectl writes `items` before `kind`).
        items: Box<(Objects, Read)>,
        /// The first item that could not be read.
        item_error: Option<ExplainError>,
    },
}

/// Reads a document in one pass; `items` are read one at a time, never held as one tree.
struct DocumentSeed<'d> {
    document: &'d Document<'d>,
    /// Values read into the document's own fields (items count their own).
    count: &'d Cell<usize>,
    /// Set when an item stopped the parse at the bound.
    item_too_large: &'d Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Parsed;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Parsed, E> {
        Ok(Parsed::Empty)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Parsed, E> {
        Ok(Parsed::Empty)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Parsed, E> {
        Ok(Parsed::NotAMapping("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Parsed, E> {
        Ok(Parsed::NotAMapping("a number"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Parsed, E> {
        Ok(Parsed::NotAMapping("a number"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Parsed, E> {
        Ok(Parsed::NotAMapping("a number"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Parsed, E> {
        Ok(Parsed::NotAMapping("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::NotAMapping("a sequence"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut fields = serde_json::Map::new();
        let mut items = Box::<(Objects, Read)>::default();
        let mut item_error = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(ListItems {
                    objects: &mut items.0,
                    read: &mut items.1,
                    document: self.document,
                    failed: &mut item_error,
                    too_large: self.item_too_large,
                })?;
            } else {
                let value = map.next_value_seed(Counted { count: self.count })?;
                fields.insert(key, value);
            }
        }
        let fields = Value::Object(fields);
        Ok(Parsed::Object {
            kind: get_str(&fields, &["kind"]),
            api_version: get_str(&fields, &["apiVersion"]).unwrap_or_default(),
            name: get_str(&fields, &["metadata", "name"]).unwrap_or_default(),
            fields,
            items,
            item_error,
        })
    }
}

/// `List` and the API's typed lists (`PodList`, `ServiceList`): their items are the objects.
fn is_list(kind: &str) -> bool {
    kind.ends_with("List")
}

/// A document's `items`, each read into `objects` as soon as it is parsed.
struct ListItems<'o, 'd> {
    objects: &'o mut Objects,
    read: &'o mut Read,
    document: &'d Document<'d>,
    failed: &'o mut Option<ExplainError>,
    too_large: &'d Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ListItems<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListItems<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            // Each item is bounded on its own.
            let count = Cell::new(0);
            let item = match seq.next_element_seed(Counted { count: &count }) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(err) => {
                    self.too_large.set(Counted::exceeded(&count));
                    return Err(err);
                }
            };
            let place = Place {
                document: self.document,
                item: Some(index),
            };
            // Only the first problem is kept; it counts only if the document is a List.
            if let Err(err) = self.objects.add_item(item, place, self.read) {
                self.failed.get_or_insert(err);
            }
            index += 1;
        }
        Ok(())
    }

    // `items` that are not a sequence: not a List's, nothing to read.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

impl Objects {
    /// Parses multi-document YAML (or JSON) and adds every object explain understands; says
    /// what the input held. Errors name the document and its line.
    pub fn add_yaml(&mut self, text: &str) -> Result<Read, ExplainError> {
        let mut read = Read::default();
        for document in documents::split(text) {
            self.add_document(&document, &mut read)?;
        }
        Ok(read)
    }

    fn add_document(
        &mut self,
        document: &Document<'_>,
        read: &mut Read,
    ) -> Result<(), ExplainError> {
        let count = Cell::new(0);
        let item_too_large = Cell::new(false);
        let seed = DocumentSeed {
            document,
            count: &count,
            item_too_large: &item_too_large,
        };
        let parsed = documents::parse_seed(document, seed).map_err(|err| {
            if Counted::exceeded(&count) || item_too_large.get() {
                documents::too_large(document)
            } else {
                documents::yaml_error(document, &err)
            }
        })?;
        let not_an_object = |why: String| ExplainError::Yaml {
            document: document.number,
            line: document.line,
            message: format!("not a Kubernetes object: {why}"),
        };
        let (kind, api, name, fields, items, item_error) = match parsed {
            Parsed::Empty => return Ok(()),
            Parsed::NotAMapping(what) => {
                return Err(not_an_object(format!(
                    "{what}, where a mapping with apiVersion and kind belongs"
                )))
            }
            Parsed::Object { kind: None, .. } => {
                return Err(not_an_object("it has no kind".into()))
            }
            Parsed::Object {
                kind: Some(kind),
                api_version,
                name,
                fields,
                items,
                item_error,
            } => (kind, api_version, name, fields, items, item_error),
        };
        if is_list(&kind) {
            if let Some(err) = item_error {
                return Err(err);
            }
            let (objects, items_read) = *items;
            self.merge(objects);
            read.merge(items_read);
            return Ok(());
        }
        let place = Place {
            document,
            item: None,
        };
        let content = Content {
            value: fields,
            whole: Some(document),
        };
        self.add_object(&kind, &api, &name, content, place, read)
    }

    /// One item of a List.
    fn add_item(
        &mut self,
        item: Value,
        place: Place<'_>,
        read: &mut Read,
    ) -> Result<(), ExplainError> {
        let Some(kind) = get_str(&item, &["kind"]) else {
            return Err(ExplainError::Yaml {
                document: place.document.number,
                line: place.document.line,
                message: format!(
                    "List item {}: not a Kubernetes object: it has no kind",
                    place.item.map_or(1, |i| i + 1)
                ),
            });
        };
        let api = get_str(&item, &["apiVersion"]).unwrap_or_default();
        let name = get_str(&item, &["metadata", "name"]).unwrap_or_default();
        if is_list(&kind) {
            let items = match item {
                Value::Object(mut map) => map.remove("items"),
                _ => None,
            };
            if let Some(Value::Array(items)) = items {
                for (i, nested) in items.into_iter().enumerate() {
                    let place = Place {
                        item: Some(i),
                        ..place
                    };
                    self.add_item(nested, place, read)?;
                }
            }
            return Ok(());
        }
        let content = Content {
            value: item,
            whole: None,
        };
        self.add_object(&kind, &api, &name, content, place, read)
    }

    /// Adds a ConfigMap (one read from a cluster, or a manifest's).
    pub fn add_config_map(&mut self, cm: ConfigMap) {
        self.metallb_from_config_map(&cm);
        self.config_maps.push(cm);
    }

    /// Takes in what a List's items held.
    fn merge(&mut self, other: Objects) {
        self.services.extend(other.services);
        self.slices.extend(other.slices);
        self.ingresses.extend(other.ingresses);
        self.ingress_classes.extend(other.ingress_classes);
        self.config_maps.extend(other.config_maps);
        self.nodes.extend(other.nodes);
        self.workloads.extend(other.workloads);
        self.notes.extend(other.notes);
        // An advertisement says the mode; a pool only that MetalLB is there.
        match other.metallb {
            Some(found @ (Some(_), _)) => self.metallb = Some(found),
            Some(pool) if self.metallb.is_none() => self.metallb = Some(pool),
            _ => {}
        }
    }

    fn add_object(
        &mut self,
        kind: &str,
        api: &str,
        name: &str,
        content: Content<'_>,
        place: Place<'_>,
        read: &mut Read,
    ) -> Result<(), ExplainError> {
        let mut understood = true;
        match kind {
            "Service" => {
                let service: Service = content.typed(place, kind, name)?;
                let problems = super::validate::service_problems(&service);
                if !problems.is_empty() {
                    return Err(place.object_error(kind, name, problems.join("; ")));
                }
                self.services.push(service);
            }
            "EndpointSlice" => self.slices.push(content.typed(place, kind, name)?),
            "IngressClass" => self.ingress_classes.push(content.typed(place, kind, name)?),
            "ConfigMap" => self.add_config_map(content.typed(place, kind, name)?),
            "Node" => self.nodes.push(content.typed(place, kind, name)?),
            "Ingress" => self.ingresses.push(IngressDoc::from_value(&content.value)),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob"
            | "Pod" => self
                .workloads
                .push(Workload::from_value(kind, &content.value)),
            "L2Advertisement" | "BGPAdvertisement" if api.starts_with("metallb.io/") => {
                let mode = if kind == "L2Advertisement" {
                    MetalLbMode::L2
                } else {
                    MetalLbMode::Bgp
                };
                self.metallb = Some((Some(mode), format!("{kind} {name}")));
            }
            "IPAddressPool" if api.starts_with("metallb.io/") => {
                if self.metallb.is_none() {
                    self.metallb = Some((None, format!("IPAddressPool {name}")));
                }
            }
            _ => understood = false,
        }
        read.saw(kind, understood);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object<T: DeserializeOwned>(json: &Value) -> T {
        serde_json::from_value(json.clone()).expect("a valid object")
    }

    /// A live cluster's objects are read from their types; a manifest's leniently: the same
    /// object says the same either way.
    #[test]
    fn typed_and_lenient_readings_agree() {
        let pod = serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"tke.cloud.tencent.com/networks": "tke-route-eni"}},
            "spec": {"nodeName": "node-a", "nodeSelector": {"type": "virtual-kubelet"},
                     "initContainers": [{"name": "init", "command": ["sh"]}],
                     "containers": [{"name": "web", "args": ["--port", "80"],
                        "resources": {"requests": {"tke.cloud.tencent.com/eni-ip": "1", "cpu": "1"},
                                      "limits": {"tke.cloud.tencent.com/eni-ip": "1"}}}]}
        });
        assert_eq!(
            Workload::from_pod(&object(&pod)),
            Workload::from_value("Pod", &pod)
        );
        let daemon_set = serde_json::json!({
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "spec": {"selector": {}, "template": {
                "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {"containers": [{"name": "kube-proxy",
                    "command": ["kube-proxy"], "args": ["--proxy-mode", "ipvs"]}]}}}
        });
        assert_eq!(
            Workload::from_daemon_set(&object(&daemon_set)),
            Workload::from_value("DaemonSet", &daemon_set)
        );
        let ingress = serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop",
                         "annotations": {"kubernetes.io/ingress.class": "qcloud"}},
            "spec": {"ingressClassName": "nginx",
                "defaultBackend": {"service": {"name": "default", "port": {"number": 80}}},
                "rules": [{"http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/b", "pathType": "Prefix",
                     "backend": {"service": {"name": "default", "port": {"number": 80}}}}]}}]}
        });
        let typed = IngressDoc::from_ingress(&object(&ingress));
        assert_eq!(typed, IngressDoc::from_value(&ingress));
        assert_eq!(typed.services, ["default", "web"]);
    }
}
