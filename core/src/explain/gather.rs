//! From API objects to [`Facts`]: shared by the offline (manifests) and live (cluster) paths.
//! Every gap is stated as an assumption.

use super::facts::{
    CiliumLbMode, Cloud, ClusterFacts, EndpointFacts, Fact, Facts, IngressController, IngressFacts,
    IpMode, LbIngress, NginxFacts, NodeFacts, PortFacts, Protocol, ProxyMode, ServiceBackends,
    ServiceFacts, ServiceType, TargetPort, TkeNetwork, TrafficPolicy, VirtualPlacement,
};
use super::objects::{IngressDoc, Objects, Workload};
use super::ExplainError;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeSet;

/// Resource and annotation names that mark a TKE VPC-CNI (ENI) pod.
const ENI_RESOURCES: [&str; 2] = [
    "tke.cloud.tencent.com/eni-ip",
    "tke.cloud.tencent.com/direct-eni",
];
const ENI_NETWORKS_ANNOTATION: &str = "tke.cloud.tencent.com/networks";
const TKE_SERVICE_CONFIG: &str = "tke-service-controller-config";

fn same_ns(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn ns_of_cm(cm: &ConfigMap) -> Option<&str> {
    cm.metadata.namespace.as_deref()
}

fn find_cm<'a>(objects: &'a Objects, ns: &str, name: &str) -> Option<&'a ConfigMap> {
    objects
        .config_maps
        .iter()
        .find(|cm| cm.metadata.name.as_deref() == Some(name) && same_ns(ns_of_cm(cm), Some(ns)))
}

pub fn service_facts(svc: &Service) -> ServiceFacts {
    let spec = svc.spec.clone().unwrap_or_default();
    let meta = &svc.metadata;
    let type_ = match spec.type_.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIp,
    };
    let policy = |p: Option<&str>| match p {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    };
    let lb_ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let (address, is_hostname) = match (&i.ip, &i.hostname) {
                (Some(ip), _) => (ip.clone(), false),
                (None, Some(host)) => (host.clone(), true),
                (None, None) => return None,
            };
            let ip_mode = match i.ip_mode.as_deref() {
                Some("Proxy") => Some(IpMode::Proxy),
                Some("VIP") => Some(IpMode::Vip),
                _ => None,
            };
            Some(LbIngress {
                address,
                is_hostname,
                ip_mode,
            })
        })
        .collect();
    ServiceFacts {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone(),
        type_,
        type_given: spec.type_.is_some(),
        external_traffic_policy: policy(spec.external_traffic_policy.as_deref()),
        etp_given: spec.external_traffic_policy.is_some(),
        internal_traffic_policy: policy(spec.internal_traffic_policy.as_deref()),
        health_check_node_port: spec.health_check_node_port,
        load_balancer_class: spec.load_balancer_class.clone(),
        allocate_lb_node_ports: spec.allocate_load_balancer_node_ports.unwrap_or(true),
        headless: spec.cluster_ip.as_deref() == Some("None"),
        annotations: meta.annotations.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        selector: spec.selector.clone().unwrap_or_default(),
        ports: spec.ports.iter().flatten().map(port_facts).collect(),
        cluster_ips: spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
        external_ips: spec.external_ips.unwrap_or_default(),
        lb_ingress,
    }
}

fn port_facts(port: &ServicePort) -> PortFacts {
    // Out of range only where the API server would have refused the Service.
    let number = |n: i32| u16::try_from(n).unwrap_or(0);
    PortFacts {
        name: port.name.clone(),
        protocol: Protocol::of(port.protocol.as_deref()),
        port: number(port.port),
        node_port: port.node_port.filter(|p| *p != 0).map(number),
        target_port: match &port.target_port {
            Some(IntOrString::Int(0)) | None => None,
            Some(IntOrString::Int(n)) => Some(TargetPort::Number(number(*n))),
            Some(IntOrString::String(name)) => Some(TargetPort::Name(name.clone())),
        },
    }
}

/// A Service's endpoints, as its EndpointSlices list them, in their order: the one reading of
/// EndpointSlices that trace, explain and the lab share.
pub fn endpoints<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<EndpointFacts> {
    slices
        .into_iter()
        .flat_map(|slice| slice.endpoints.iter())
        .map(|endpoint| EndpointFacts {
            addresses: endpoint.addresses.clone(),
            node: endpoint.node_name.clone(),
            pod: endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone()),
            ready: endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false),
        })
        .collect()
}

/// The nodes of the ready endpoints, in their order (once per endpoint).
pub fn ready_nodes(endpoints: &[EndpointFacts]) -> impl Iterator<Item = String> + '_ {
    endpoints
        .iter()
        .filter(|e| e.ready)
        .filter_map(|e| e.node.clone())
}

/// The TCP ports the endpoints listen on (the Service's resolved target ports).
pub fn endpoint_tcp_ports(slices: &[EndpointSlice]) -> impl Iterator<Item = u16> + '_ {
    slices
        .iter()
        .flat_map(|slice| slice.ports.iter().flatten())
        .filter(|port| Protocol::of(port.protocol.as_deref()) == Protocol::Tcp)
        .filter_map(|port| port.port.and_then(|p| u16::try_from(p).ok()))
}

fn node_is_virtual(node: &Node) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    name.starts_with("eklet-")
        || labels
            .get("node.kubernetes.io/instance-type")
            .map(String::as_str)
            == Some("eklet")
        || labels.get("type").map(String::as_str) == Some("virtual-kubelet")
        || taints
            .iter()
            .any(|t| t.key.contains("eklet") || t.key.contains("virtual-kubelet"))
}

fn node_facts(node: &Node) -> NodeFacts {
    let internal_ips = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map_or(0, |a| a.iter().filter(|a| a.type_ == "InternalIP").count());
    NodeFacts {
        name: node.metadata.name.clone().unwrap_or_default(),
        virtual_node: node_is_virtual(node),
        internal_ips,
    }
}

fn workload_is_eni(w: &Workload) -> Option<String> {
    if let Some(v) = w.annotations.get(ENI_NETWORKS_ANNOTATION) {
        if v.contains("eni") {
            return Some(format!(
                "{} {} pod annotations[\"{ENI_NETWORKS_ANNOTATION}\"]=\"{v}\"",
                w.kind.to_lowercase(),
                w.name
            ));
        }
    }
    w.resources
        .iter()
        .find(|r| ENI_RESOURCES.contains(&r.as_str()))
        .map(|r| format!("{} {} requests {r}", w.kind.to_lowercase(), w.name))
}

fn workload_on_virtual(w: &Workload) -> bool {
    w.node_selector
        .get("node.kubernetes.io/instance-type")
        .is_some_and(|v| v == "eklet")
        || w.node_selector
            .get("type")
            .is_some_and(|v| v == "virtual-kubelet")
}

/// The Service plus what the objects tell about its pods.
fn service_backends(objects: &Objects, cluster: &ClusterFacts, svc: &Service) -> ServiceBackends {
    let service = service_facts(svc);
    let ns = service.namespace.as_deref();
    let pods: Vec<&Workload> = objects
        .workloads
        .iter()
        .filter(|w| same_ns(w.namespace.as_deref(), ns) && w.selected_by(&service.selector))
        .collect();

    let slices: Vec<&EndpointSlice> = objects
        .slices
        .iter()
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .is_some_and(|n| *n == service.name)
                && same_ns(s.metadata.namespace.as_deref(), ns)
        })
        .collect();
    let mut endpoint_nodes: Option<Vec<String>> = None;
    if !slices.is_empty() {
        let nodes: Vec<String> = ready_nodes(&endpoints(slices.iter().copied())).collect();
        if !nodes.is_empty() {
            endpoint_nodes = Some(nodes);
        }
    } else {
        let nodes: Vec<String> = pods.iter().filter_map(|p| p.node_name.clone()).collect();
        if !nodes.is_empty() {
            endpoint_nodes = Some(nodes);
        }
    }

    let eni_pods = pods
        .iter()
        .find_map(|w| workload_is_eni(w))
        .map(|from| Fact::new(true, from));

    // A node is virtual if its object says so, or by TKE's naming when the object is missing.
    let is_virtual = |name: &str| {
        cluster
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map_or(name.starts_with("eklet-"), |n| n.virtual_node)
    };
    let on_virtual_nodes = match &endpoint_nodes {
        Some(nodes) => {
            let on_virtual = nodes.iter().filter(|n| is_virtual(n)).count();
            let known = on_virtual > 0 || cluster.nodes.iter().any(|n| nodes.contains(&n.name));
            let placement = match on_virtual {
                0 => VirtualPlacement::None,
                n if n == nodes.len() => VirtualPlacement::All,
                _ => VirtualPlacement::Some,
            };
            known.then(|| {
                Fact::new(
                    placement,
                    format!("endpoints on nodes {}", nodes.join(", ")),
                )
            })
        }
        None => pods.iter().find(|w| workload_on_virtual(w)).map(|w| {
            Fact::new(
                VirtualPlacement::All,
                format!(
                    "{} {} nodeSelector picks super nodes (eklet)",
                    w.kind.to_lowercase(),
                    w.name
                ),
            )
        }),
    };
    ServiceBackends {
        service,
        endpoint_nodes,
        eni_pods,
        on_virtual_nodes,
    }
}

/// kube-proxy's mode and masqueradeAll from its ConfigMap or DaemonSet, or Cilium's replacement.
fn proxy_facts(objects: &Objects, cluster: &mut ClusterFacts) {
    if let Some(cm) = find_cm(objects, "kube-system", "cilium-config") {
        let data = cm.data.clone().unwrap_or_default();
        let kpr = data
            .get("kube-proxy-replacement")
            .map(|v| v.trim().to_string());
        if matches!(kpr.as_deref(), Some("true" | "strict")) {
            let raw = data.get("bpf-lb-mode").map(|v| v.trim().to_string());
            let mode = match raw.as_deref() {
                Some("dsr") => CiliumLbMode::Dsr,
                Some("hybrid") => CiliumLbMode::Hybrid,
                _ => CiliumLbMode::Snat,
            };
            let from = format!(
                "kube-system/cilium-config kube-proxy-replacement={} bpf-lb-mode={}",
                kpr.unwrap_or_default(),
                raw.unwrap_or_else(|| "snat (default)".into())
            );
            cluster.proxy = Some(Fact::new(ProxyMode::Cilium(mode), from));
            return;
        }
    }
    if let Some(cm) = find_cm(objects, "kube-system", "kube-proxy") {
        for (key, text) in cm.data.clone().unwrap_or_default() {
            let Some(config) = super::documents::parse_embedded::<serde_json::Value>(&text) else {
                continue;
            };
            if config.get("kind").and_then(|k| k.as_str()) != Some("KubeProxyConfiguration") {
                continue;
            }
            let raw = config
                .get("mode")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            let mode = match raw.as_str() {
                "ipvs" => ProxyMode::Ipvs,
                "nftables" => ProxyMode::Nftables,
                _ => ProxyMode::Iptables,
            };
            let shown = if raw.is_empty() {
                "\"\" (iptables)"
            } else {
                raw.as_str()
            };
            cluster.proxy = Some(Fact::new(
                mode,
                format!("kube-system/kube-proxy {key} mode={shown}"),
            ));
            let masq = config
                .get("masqueradeAll")
                .or_else(|| config.get("iptables").and_then(|i| i.get("masqueradeAll")))
                .and_then(|m| m.as_bool());
            if let Some(masq) = masq {
                cluster.masquerade_all = Some(Fact::new(
                    masq,
                    format!("kube-system/kube-proxy {key} masqueradeAll={masq}"),
                ));
            }
            return;
        }
    }
    let daemonset = objects.workloads.iter().find(|w| {
        w.kind == "DaemonSet"
            && w.name == "kube-proxy"
            && same_ns(w.namespace.as_deref(), Some("kube-system"))
    });
    if let Some(ds) = daemonset {
        let mut args = ds.args.iter();
        while let Some(arg) = args.next() {
            let mode = if let Some(m) = arg.strip_prefix("--proxy-mode=") {
                Some(m.to_string())
            } else if arg == "--proxy-mode" {
                args.next().cloned()
            } else {
                None
            };
            if let Some(m) = mode {
                let value = match m.as_str() {
                    "ipvs" => ProxyMode::Ipvs,
                    "nftables" => ProxyMode::Nftables,
                    _ => ProxyMode::Iptables,
                };
                cluster.proxy = Some(Fact::new(
                    value,
                    format!("daemonset kube-system/kube-proxy --proxy-mode={m}"),
                ));
            }
            if arg == "--masquerade-all" || arg == "--masquerade-all=true" {
                cluster.masquerade_all = Some(Fact::new(
                    true,
                    "daemonset kube-system/kube-proxy --masquerade-all",
                ));
            }
        }
    }
}

fn cloud_facts(objects: &Objects, cluster: &mut ClusterFacts) {
    for node in &objects.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let provider = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default();
        let by_provider = [
            ("qcloud://", Cloud::Tke),
            ("aws://", Cloud::Aws),
            ("gce://", Cloud::Gke),
            ("azure://", Cloud::Azure),
        ]
        .into_iter()
        .find(|(p, _)| provider.starts_with(p));
        if let Some((_, cloud)) = by_provider {
            cluster.cloud = Some(Fact::new(
                cloud,
                format!("node {name} spec.providerID={provider}"),
            ));
            return;
        }
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let by_label = labels.keys().find_map(|k| {
            let cloud = if k.contains("cloud.tencent.com") {
                Cloud::Tke
            } else if k.starts_with("eks.amazonaws.com/") {
                Cloud::Aws
            } else if k.starts_with("cloud.google.com/gke") {
                Cloud::Gke
            } else if k.starts_with("kubernetes.azure.com/") {
                Cloud::Azure
            } else {
                return None;
            };
            Some((cloud, k.clone()))
        });
        if let Some((cloud, key)) = by_label {
            cluster.cloud = Some(Fact::new(cloud, format!("node {name} label {key}")));
            return;
        }
    }
    if find_cm(objects, "kube-system", TKE_SERVICE_CONFIG).is_some() {
        cluster.cloud = Some(Fact::new(
            Cloud::Tke,
            format!("ConfigMap kube-system/{TKE_SERVICE_CONFIG} exists"),
        ));
        return;
    }
    if let Some(ing) = objects
        .ingresses
        .iter()
        .find(|i| class_of(i).as_deref() == Some("qcloud"))
    {
        cluster.cloud = Some(Fact::new(
            Cloud::Tke,
            format!("ingress {} class qcloud", ing.name),
        ));
    }
}

fn tke_facts(objects: &Objects, cluster: &mut ClusterFacts) {
    if let Some(cm) = find_cm(objects, "kube-system", TKE_SERVICE_CONFIG) {
        let value = cm
            .data
            .as_ref()
            .and_then(|d| d.get("GlobalRouteDirectAccess"))
            .map(|v| v.trim().to_string());
        let on = value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let from = match value {
            Some(v) => format!("kube-system/{TKE_SERVICE_CONFIG} GlobalRouteDirectAccess=\"{v}\""),
            None => format!("kube-system/{TKE_SERVICE_CONFIG} has no GlobalRouteDirectAccess"),
        };
        cluster.global_route_direct_access = Some(Fact::new(on, from));
    }
    if !cluster.cloud_is(Cloud::Tke) {
        return;
    }
    let unreadable = objects.notes.iter().any(|n| n.contains(TKE_SERVICE_CONFIG));
    if objects.live && cluster.global_route_direct_access.is_none() && !unreadable {
        // Read from the cluster and absent: the switch is off.
        cluster.global_route_direct_access = Some(Fact::new(
            false,
            format!("ConfigMap kube-system/{TKE_SERVICE_CONFIG} not found"),
        ));
    }
    if find_cm(objects, "kube-system", "cilium-config").is_some() {
        cluster.tke_network = Some(Fact::new(
            TkeNetwork::CiliumOverlay,
            "ConfigMap kube-system/cilium-config on TKE",
        ));
        return;
    }
    for node in objects.nodes.iter().filter(|n| !node_is_virtual(n)) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default();
        if let Some(r) = ENI_RESOURCES.iter().find(|r| allocatable.contains_key(**r)) {
            let pod_cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
            if pod_cidr.is_none() {
                cluster.tke_network = Some(Fact::new(
                    TkeNetwork::VpcCni,
                    format!("node {name} offers {r} and has no spec.podCIDR"),
                ));
                return;
            }
        }
        if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
            cluster.tke_network = Some(Fact::new(
                TkeNetwork::GlobalRouter,
                format!(
                    "node {name} spec.podCIDR={cidr} (GlobalRouter gives each node a pod range)"
                ),
            ));
            return;
        }
    }
}

fn class_of(ingress: &IngressDoc) -> Option<String> {
    ingress.class_name.clone().or_else(|| {
        ingress
            .annotations
            .get("kubernetes.io/ingress.class")
            .cloned()
    })
}

fn controller_of(
    objects: &Objects,
    cluster: &ClusterFacts,
    ingress: &IngressDoc,
) -> Fact<IngressController> {
    let from_class_name = ingress.class_name.is_some();
    let class = class_of(ingress);
    let setting = match (&class, from_class_name) {
        (Some(c), true) => format!("ingress {} spec.ingressClassName={c}", ingress.name),
        (Some(c), false) => format!(
            "ingress {} metadata.annotations[\"kubernetes.io/ingress.class\"]=\"{c}\"",
            ingress.name
        ),
        (None, _) => format!("ingress {} has no class", ingress.name),
    };
    let by_controller = |controller: &str| {
        if controller == "k8s.io/ingress-nginx" || controller.contains("nginx") {
            IngressController::Nginx
        } else if controller == "ingress.k8s.aws/alb" {
            IngressController::Alb
        } else if controller.contains("qcloud") || controller.contains("tencent") {
            IngressController::Qcloud
        } else {
            IngressController::Other(controller.to_string())
        }
    };
    let Some(class) = class else {
        let default = objects.ingress_classes.iter().find(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
                .is_some_and(|v| v == "true")
        });
        if let Some(default) = default {
            let controller = default
                .spec
                .as_ref()
                .and_then(|s| s.controller.clone())
                .unwrap_or_default();
            return Fact::new(
                by_controller(&controller),
                format!(
                    "{setting}; default IngressClass {} (controller {controller})",
                    default.metadata.name.clone().unwrap_or_default()
                ),
            );
        }
        return match cluster.cloud.as_ref().map(|c| c.value) {
            Some(Cloud::Tke) => Fact::new(
                IngressController::Qcloud,
                format!("{setting}; on TKE the CLB ingress controller takes it (assumed)"),
            ),
            Some(Cloud::Gke) => Fact::new(
                IngressController::Gce,
                format!("{setting}; on GKE the GKE Ingress controller takes it (assumed)"),
            ),
            _ => Fact::new(IngressController::Unknown, setting),
        };
    };
    if let Some(ic) = objects
        .ingress_classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class.as_str()))
    {
        if let Some(controller) = ic.spec.as_ref().and_then(|s| s.controller.clone()) {
            return Fact::new(
                by_controller(&controller),
                format!("{setting} (IngressClass controller {controller})"),
            );
        }
    }
    let value = match class.as_str() {
        "qcloud" => IngressController::Qcloud,
        "alb" => IngressController::Alb,
        "gce" | "gce-internal" => IngressController::Gce,
        c if c.contains("nginx") => IngressController::Nginx,
        c => IngressController::Other(c.to_string()),
    };
    Fact::new(value, setting)
}

fn is_nginx_controller_service(svc: &Service) -> bool {
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    if name.ends_with("-admission") || name.ends_with("-metrics") {
        return false;
    }
    let labels = svc.metadata.labels.clone().unwrap_or_default();
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let component_ok = labels
        .get("app.kubernetes.io/component")
        .or_else(|| selector.get("app.kubernetes.io/component"))
        .is_none_or(|c| c == "controller");
    let named = labels.get("app.kubernetes.io/name").map(String::as_str) == Some("ingress-nginx")
        || selector.get("app.kubernetes.io/name").map(String::as_str) == Some("ingress-nginx");
    (named && component_ok)
        || ((name.contains("ingress-nginx") || name.contains("nginx-ingress"))
            && name.ends_with("controller"))
}

fn nginx_facts(
    objects: &Objects,
    cluster: &ClusterFacts,
    classes: &[String],
    assumptions: &mut Vec<String>,
) -> NginxFacts {
    let candidates: Vec<&Service> = objects
        .services
        .iter()
        .filter(|s| is_nginx_controller_service(s))
        .collect();
    let chosen = candidates
        .iter()
        .find(|s| {
            let name = s.metadata.name.as_deref().unwrap_or_default();
            classes.iter().any(|c| name.starts_with(c.as_str()))
        })
        .or_else(|| (candidates.len() == 1).then(|| &candidates[0]))
        .copied();
    let controller = chosen.map(|svc| service_backends(objects, cluster, svc));
    if controller.is_none() {
        assumptions.push(if candidates.is_empty() {
            "ingress-nginx controller Service not found: what nginx receives is unknown".into()
        } else {
            "several ingress-nginx controller Services and none named after the Ingress class: \
             what nginx receives is unknown"
                .into()
        });
    }
    let ctrl_ns = chosen.and_then(|s| s.metadata.namespace.clone());
    let ctrl_name = chosen
        .and_then(|s| s.metadata.name.clone())
        .unwrap_or_default();
    let config = objects
        .config_maps
        .iter()
        .filter(|cm| same_ns(ns_of_cm(cm), ctrl_ns.as_deref()))
        .find(|cm| {
            let name = cm.metadata.name.as_deref().unwrap_or_default();
            (!ctrl_name.is_empty() && name == ctrl_name)
                || name == "nginx-configuration"
                || name == "ingress-nginx-controller"
                || (name.contains("nginx")
                    && (name.ends_with("controller") || name.contains("configuration")))
        })
        .map(|cm| {
            (
                format!(
                    "{}/{}",
                    cm.metadata.namespace.as_deref().unwrap_or("ingress-nginx"),
                    cm.metadata.name.clone().unwrap_or_default()
                ),
                cm.data.clone().unwrap_or_default(),
            )
        });
    if config.is_none() {
        assumptions.push(
            "ingress-nginx ConfigMap not found: assumed its defaults (use-forwarded-headers, \
             use-proxy-protocol and compute-full-forwarded-for off)"
                .into(),
        );
    }
    NginxFacts { controller, config }
}

/// The cluster-wide facts, with their assumptions.
pub fn cluster_facts(objects: &Objects, assumptions: &mut Vec<String>) -> ClusterFacts {
    let mut cluster = ClusterFacts {
        nodes: objects.nodes.iter().map(node_facts).collect(),
        ..ClusterFacts::default()
    };
    proxy_facts(objects, &mut cluster);
    cloud_facts(objects, &mut cluster);
    tke_facts(objects, &mut cluster);
    cluster.metallb = objects
        .metallb
        .as_ref()
        .map(|(mode, from)| Fact::new(*mode, from.clone()));
    if cluster.proxy.is_none() {
        assumptions.push(
            "kube-proxy mode unknown (no kube-system/kube-proxy ConfigMap or DaemonSet, no \
             cilium-config): assumed iptables"
                .into(),
        );
    }
    assumptions.extend(objects.notes.iter().cloned());
    cluster
}

/// Facts about one Service.
pub fn facts_for(
    objects: &Objects,
    cluster: &ClusterFacts,
    base: &[String],
    svc: &Service,
) -> Facts {
    let mut assumptions = base.to_vec();
    let target = service_backends(objects, cluster, svc);
    let s = &target.service;
    if s.namespace.is_none() {
        assumptions.push(
            "metadata.namespace not set: assumed default (objects without a namespace are \
             matched with any namespace)"
                .into(),
        );
    }
    if !s.etp_given && matches!(s.type_, ServiceType::LoadBalancer | ServiceType::NodePort) {
        assumptions
            .push("spec.externalTrafficPolicy not set: Cluster, the Kubernetes default".into());
    }
    if target.endpoint_nodes.is_none() && s.type_ != ServiceType::ExternalName {
        assumptions.push(
            "where the pods run is unknown (no EndpointSlices or Pods with a nodeName): a \
             rewrite by MASQUERADE shows as the node IP, or the bridge IP when the pod is on the \
             receiving node"
                .into(),
        );
    }
    let ingresses: Vec<IngressFacts> = objects
        .ingresses
        .iter()
        .filter(|i| {
            same_ns(i.namespace.as_deref(), s.namespace.as_deref()) && i.services.contains(&s.name)
        })
        .map(|i| IngressFacts {
            name: i.name.clone(),
            namespace: i.namespace.clone(),
            controller: controller_of(objects, cluster, i),
            annotations: i.annotations.clone(),
        })
        .collect();
    let nginx_classes: Vec<String> = objects
        .ingresses
        .iter()
        .filter(|i| {
            ingresses
                .iter()
                .any(|f| f.name == i.name && f.controller.value == IngressController::Nginx)
        })
        .filter_map(class_of)
        .collect();
    let nginx = (!nginx_classes.is_empty()
        || ingresses
            .iter()
            .any(|i| i.controller.value == IngressController::Nginx))
    .then(|| nginx_facts(objects, cluster, &nginx_classes, &mut assumptions));
    if cluster.cloud_is(Cloud::Tke) && cluster.tke_network.is_none() && target.eni_pods.is_none() {
        let direct = s.annotations.contains_key(super::rules::tke::DIRECT_ACCESS)
            || ingresses.iter().any(|i| {
                i.annotations
                    .contains_key(super::rules::tke::INGRESS_DIRECT_ACCESS)
            });
        if direct {
            assumptions.push(
                "TKE network mode unknown (VPC-CNI, GlobalRouter or Cilium-Overlay): no node \
                 or pod shows it"
                    .into(),
            );
        }
    }
    Facts {
        target,
        ingresses,
        nginx,
        cluster: cluster.clone(),
        assumptions,
    }
}

/// Facts for every Service in the objects, in order.
pub fn all_facts(objects: &Objects) -> Vec<Facts> {
    let mut base = Vec::new();
    let cluster = cluster_facts(objects, &mut base);
    objects
        .services
        .iter()
        .map(|svc| facts_for(objects, &cluster, &base, svc))
        .collect()
}

/// Every node the objects name: Node objects, and the nodes pods and endpoints run on.
pub fn known_nodes(objects: &Objects) -> BTreeSet<String> {
    let nodes = objects.nodes.iter().filter_map(|n| n.metadata.name.clone());
    let pods = objects.workloads.iter().filter_map(|w| w.node_name.clone());
    let endpoints = objects
        .slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter_map(|e| e.node_name.clone());
    nodes.chain(pods).chain(endpoints).collect()
}

/// `--entry-node` must name one of the nodes, once they are known: a typo would otherwise be
/// reasoned on as a node that hosts no pod.
pub fn check_entry_node(objects: &Objects, node: &str) -> Result<(), ExplainError> {
    let known = known_nodes(objects);
    if known.is_empty() || known.contains(node) {
        return Ok(());
    }
    Err(ExplainError::UnknownEntryNode {
        node: node.to_string(),
        known: known.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn objects(yaml: &str) -> Objects {
        let mut objects = Objects::default();
        objects.add_yaml(yaml).expect("valid fixture");
        objects
    }

    fn cluster(yaml: &str) -> (ClusterFacts, Vec<String>) {
        let mut assumptions = Vec::new();
        let cluster = cluster_facts(&objects(yaml), &mut assumptions);
        (cluster, assumptions)
    }

    #[test]
    fn proxy_mode_sources() {
        let (c, a) = cluster("");
        assert!(c.proxy.is_none());
        assert!(a.iter().any(|a| a.contains("assumed iptables")));

        let (c, _) = cluster(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-proxy, namespace: kube-system}\ndata:\n  config.conf: |\n    kind: KubeProxyConfiguration\n    mode: \"\"\n    masqueradeAll: true\n",
        );
        assert_eq!(c.proxy.unwrap().value, ProxyMode::Iptables);
        assert!(c.masquerade_all.unwrap().value);

        let (c, _) = cluster(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: kube-proxy, namespace: kube-system}\nspec:\n  template:\n    spec:\n      containers:\n      - name: p\n        args: [--proxy-mode, nftables]\n",
        );
        assert_eq!(c.proxy.unwrap().value, ProxyMode::Nftables);

        let (c, _) = cluster(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config, namespace: kube-system}\ndata: {kube-proxy-replacement: strict, bpf-lb-mode: dsr}\n",
        );
        assert_eq!(c.proxy.unwrap().value, ProxyMode::Cilium(CiliumLbMode::Dsr));
    }

    #[test]
    fn cloud_and_tke_network() {
        let (c, _) = cluster(
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {providerID: 'aws:///us-east-1a/i-0'}\n",
        );
        assert_eq!(c.cloud.unwrap().value, Cloud::Aws);
        let (c, _) = cluster(
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {providerID: 'qcloud:///1/ins-1', podCIDR: 172.18.0.0/26}\n",
        );
        assert_eq!(c.tke_network.unwrap().value, TkeNetwork::GlobalRouter);
        let (c, _) = cluster(
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {cloud.tencent.com/node-instance-id: ins-1}}\nstatus: {allocatable: {tke.cloud.tencent.com/eni-ip: '20'}}\n",
        );
        assert_eq!(c.tke_network.unwrap().value, TkeNetwork::VpcCni);
        let (c, _) = cluster(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tke-service-controller-config, namespace: kube-system}\ndata: {GlobalRouteDirectAccess: 'true'}\n",
        );
        assert_eq!(c.cloud.unwrap().value, Cloud::Tke);
        assert!(c.global_route_direct_access.unwrap().value);
    }

    #[test]
    fn ingress_controllers_by_class() {
        let o = objects(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: public}\nspec: {controller: k8s.io/ingress-nginx}\n",
        );
        let c = ClusterFacts::default();
        let ingress = |class: Option<&str>, annotation: Option<&str>| IngressDoc {
            name: "i".into(),
            class_name: class.map(str::to_string),
            annotations: annotation
                .map(|a| {
                    BTreeMap::from([("kubernetes.io/ingress.class".to_string(), a.to_string())])
                })
                .unwrap_or_default(),
            ..IngressDoc::default()
        };
        assert_eq!(
            controller_of(&o, &c, &ingress(Some("public"), None)).value,
            IngressController::Nginx
        );
        assert_eq!(
            controller_of(&o, &c, &ingress(None, Some("qcloud"))).value,
            IngressController::Qcloud
        );
        assert_eq!(
            controller_of(&o, &c, &ingress(Some("alb"), None)).value,
            IngressController::Alb
        );
        assert_eq!(
            controller_of(&o, &c, &ingress(Some("gce"), None)).value,
            IngressController::Gce
        );
        assert_eq!(
            controller_of(&o, &c, &ingress(None, None)).value,
            IngressController::Unknown
        );
        assert_eq!(
            controller_of(&o, &c, &ingress(Some("traefik"), None)).value,
            IngressController::Other("traefik".into())
        );
    }

    #[test]
    fn v1beta1_ingress_backends() {
        let o = objects(
            "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {name: i, namespace: s}\nspec:\n  backend: {serviceName: def, servicePort: 80}\n  rules:\n  - http:\n      paths:\n      - backend: {serviceName: web, servicePort: 80}\n",
        );
        assert_eq!(o.ingresses[0].services, ["def", "web"]);
    }
}
