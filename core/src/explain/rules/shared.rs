//! What several rules share: the settings they name (the proxy mode, the traffic policy), the
//! fixes and commands they propose, which load balancer a Service gets, what carries a client
//! address at layer 7, and a connection's arrival at a node before the service proxy takes it.
//! Rule modules use this module and never each other; `mod.rs` puts their pieces together.

use super::super::facts::{
    Cloud, ClusterFacts, Fact, ProxyMode, ServiceBackends, ServiceFacts, TrafficPolicy,
    VirtualPlacement,
};
use super::super::model::L7Source;
use super::Trail;

/// External traffic entering a node by a NodePort (or an external or load balancer address),
/// as the node's service proxy handles it: the piece of path the load balancer and Ingress
/// rules hand their trail on to, chosen by `mod.rs` from the proxy mode.
pub type EnterNode = fn(&ClusterFacts, &ServiceBackends, &mut Trail);

/// How external traffic fares on arriving at a node, before the service proxy's own part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The path ends here: every endpoint runs on a virtual node.
    Stopped,
    /// externalTrafficPolicy=Local: delivered to a local pod, unchanged.
    Delivered,
    /// externalTrafficPolicy=Cluster: the service proxy decides.
    Cluster,
}

/// External traffic arrives at a node's NodePort: what holds whatever the service proxy.
pub fn arrive_at_node(backends: &ServiceBackends, trail: &mut Trail) -> Arrival {
    let svc = &backends.service;
    trail.to(&svc.node_port_label());
    if let Some(Fact {
        value: VirtualPlacement::All,
        from,
    }) = &backends.on_virtual_nodes
    {
        trail.unknown(
            from.clone(),
            "every endpoint runs on a virtual node, which has no kube-proxy and no NodePort: \
             traffic entering a real node must cross to it",
        );
        if svc.external_traffic_policy == TrafficPolicy::Local {
            trail.because(
                etp_setting(svc),
                "with Local no real node has a local endpoint: NodePort traffic is dropped",
            );
        }
        return Arrival::Stopped;
    }
    match svc.external_traffic_policy {
        TrafficPolicy::Local => {
            trail.because(
                etp_setting(svc),
                "nodes forward external traffic only to endpoints on the same node and do not \
                 SNAT it; nodes without an endpoint drop it (the LB health-checks \
                 healthCheckNodePort to avoid them)",
            );
            trail.to("pod");
            Arrival::Delivered
        }
        TrafficPolicy::Cluster => Arrival::Cluster,
    }
}

/// The proxy mode, iptables when unknown (the gatherer states that assumption).
pub fn proxy_mode(cluster: &ClusterFacts) -> ProxyMode {
    cluster
        .proxy
        .as_ref()
        .map_or(ProxyMode::Iptables, |p| p.value)
}

pub fn proxy_setting(cluster: &ClusterFacts) -> String {
    cluster.proxy.as_ref().map_or_else(
        || "kube-proxy mode=iptables (assumed)".to_string(),
        |p| p.from.clone(),
    )
}

pub fn etp_setting(svc: &ServiceFacts) -> String {
    if svc.etp_given {
        format!(
            "spec.externalTrafficPolicy={}",
            svc.external_traffic_policy.as_str()
        )
    } else {
        "spec.externalTrafficPolicy=Cluster (default)".to_string()
    }
}

pub fn fix_local(trail: &mut Trail, svc: &ServiceFacts) {
    trail.fix(
        format!(
            "set externalTrafficPolicy: Local on {}/{} so nodes forward only to local pods without SNAT",
            svc.ns(),
            svc.name
        ),
        Some(patch_svc(svc, r#"{"spec":{"externalTrafficPolicy":"Local"}}"#)),
    );
}

/// Which implementation runs a Service's external load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbProvider {
    Tke,
    Aws,
    Gke,
    Azure,
    MetalLb,
    /// spec.loadBalancerClass names a controller explain has no rules for.
    OtherClass,
    Unknown,
}

impl LbProvider {
    pub fn name(self) -> &'static str {
        match self {
            LbProvider::Tke => "a TKE annotation",
            LbProvider::Aws => "an AWS annotation",
            LbProvider::Gke => "a GKE annotation",
            LbProvider::Azure => "an Azure annotation",
            LbProvider::MetalLb => "a MetalLB annotation",
            LbProvider::OtherClass | LbProvider::Unknown => "not recognised",
        }
    }
}

/// The load balancer implementation and the setting that shows it.
pub fn lb_provider(cluster: &ClusterFacts, backends: &ServiceBackends) -> (LbProvider, String) {
    let svc = &backends.service;
    let has_prefix = |prefixes: &[&str]| {
        svc.annotations
            .keys()
            .find(|k| prefixes.iter().any(|p| k.starts_with(p)))
            .cloned()
    };
    if let Some(class) = &svc.load_balancer_class {
        let setting = format!("spec.loadBalancerClass={class}");
        return match class.as_str() {
            "service.k8s.aws/nlb" | "eks.amazonaws.com/nlb" => (LbProvider::Aws, setting),
            c if c.contains("metallb") => (LbProvider::MetalLb, setting),
            _ => (LbProvider::OtherClass, setting),
        };
    }
    let by_annotation: [(&[&str], LbProvider); 5] = [
        (
            &[
                "service.cloud.tencent.com/",
                "service.kubernetes.io/tke-",
                "service.kubernetes.io/qcloud-",
                "service.kubernetes.io/local-svc-only-bind-node-with-pod",
            ],
            LbProvider::Tke,
        ),
        (&["service.beta.kubernetes.io/aws-"], LbProvider::Aws),
        (&["service.beta.kubernetes.io/azure-"], LbProvider::Azure),
        (
            &["cloud.google.com/", "networking.gke.io/"],
            LbProvider::Gke,
        ),
        (
            &["metallb.universe.tf/", "metallb.io/"],
            LbProvider::MetalLb,
        ),
    ];
    for (prefixes, provider) in by_annotation {
        if let Some(key) = has_prefix(prefixes) {
            return (
                provider,
                format!("metadata.annotations[\"{key}\"] ({})", provider.name()),
            );
        }
    }
    if let Some(cloud) = &cluster.cloud {
        let provider = match cloud.value {
            Cloud::Tke => LbProvider::Tke,
            Cloud::Aws => LbProvider::Aws,
            Cloud::Gke => LbProvider::Gke,
            Cloud::Azure => LbProvider::Azure,
        };
        return (provider, cloud.from.clone());
    }
    if let Some(metallb) = &cluster.metallb {
        return (LbProvider::MetalLb, metallb.from.clone());
    }
    (
        LbProvider::Unknown,
        "no cloud or load balancer was recognised".into(),
    )
}

/// Whether `l7` carries the client address (a header or PROXY protocol).
pub fn carries_client(l7: L7Source) -> bool {
    matches!(
        l7,
        L7Source::XForwardedFor | L7Source::XRealIp | L7Source::Forwarded | L7Source::ProxyProtocol
    )
}

/// What carries the client address at layer 7, as a fix names it.
pub fn header_name(l7: L7Source) -> &'static str {
    match l7 {
        L7Source::XForwardedFor => "X-Forwarded-For",
        L7Source::XRealIp => "X-Real-IP",
        L7Source::Forwarded => "Forwarded",
        L7Source::ProxyProtocol => "the PROXY protocol header",
        L7Source::None | L7Source::Unknown => "nothing",
    }
}

/// `kubectl patch svc` with a JSON merge patch, quoted for a POSIX shell.
pub fn patch_svc(svc: &ServiceFacts, patch: &str) -> String {
    format!(
        "kubectl patch svc {} -n {} --type merge -p '{}'",
        svc.name,
        svc.ns(),
        patch
    )
}

/// `kubectl annotate svc ... KEY=VALUE --overwrite`.
pub fn annotate_svc(svc: &ServiceFacts, key: &str, value: &str) -> String {
    format!(
        "kubectl annotate svc {} -n {} {}={} --overwrite",
        svc.name,
        svc.ns(),
        key,
        shell_word(value)
    )
}

/// Quotes `value` for a POSIX shell when it needs it.
pub fn shell_word(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("true"), "true");
        assert_eq!(
            shell_word("preserve_client_ip.enabled=true"),
            "preserve_client_ip.enabled=true"
        );
        assert_eq!(shell_word("*"), "'*'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
