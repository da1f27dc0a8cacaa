//! The rules: from [`Facts`] to one verdict per way in. Pure; every step names its setting.
//!
//! Each way in is followed hop by hop as a [`Trail`]: the source address a hop receives, what
//! rewrote it, the setting that decided it and the fix. The modules hold the knowledge of one
//! piece of the path each; `docs/scenarios.md` gives the source of every rule.

pub mod aws;
pub mod cilium;
pub mod clouds;
pub mod ingress;
pub mod ingress_nginx;
pub mod kubernetes;
pub mod tke;

use super::facts::{ClusterFacts, Facts, ServiceBackends, ServiceType};
use super::model::{
    Closed, Explanation, Fix, Hop, L4Source, L7Source, Origin, OriginVerdict, Reason,
};

/// A path being followed: where the packet is and what the pod will see.
#[derive(Debug, Clone)]
pub struct Trail {
    /// The source address the current hop receives.
    pub source: L4Source,
    /// Where the client address can still be read at layer 7.
    pub l7: L7Source,
    pub reasons: Vec<Reason>,
    pub fixes: Vec<Fix>,
    pub path: Vec<Hop>,
    /// A rewrite that has happened but shows at the next hop (a proxy's new connection).
    pending: Option<String>,
}

impl Trail {
    /// A path that starts at `at` with `source` as the sender.
    pub fn start(at: &str, source: L4Source) -> Trail {
        Trail {
            source,
            l7: L7Source::None,
            reasons: Vec::new(),
            fixes: Vec::new(),
            path: vec![Hop {
                at: at.to_string(),
                source,
                rewrite: None,
            }],
            pending: None,
        }
    }

    /// A proxy opens a new connection: from now on the source is `source`.
    pub fn new_connection(&mut self, source: L4Source, what: &str) {
        self.source = source;
        self.pending = Some(what.to_string());
    }

    /// The packet reaches `at` with its source unchanged.
    pub fn to(&mut self, at: &str) {
        self.path.push(Hop {
            at: at.to_string(),
            source: self.source,
            rewrite: self.pending.take(),
        });
    }

    /// The packet reaches `at` with its source rewritten to `source` by `what`.
    pub fn rewritten(&mut self, at: &str, source: L4Source, what: &str) {
        self.source = source;
        let what = match self.pending.take() {
            Some(before) => format!("{before}; {what}"),
            None => what.to_string(),
        };
        self.path.push(Hop {
            at: at.to_string(),
            source,
            rewrite: Some(what),
        });
    }

    pub fn because(&mut self, setting: impl Into<String>, text: impl Into<String>) {
        self.reasons.push(Reason {
            setting: setting.into(),
            text: text.into(),
        });
    }

    pub fn fix(&mut self, text: impl Into<String>, apply: Option<String>) {
        let fix = Fix {
            text: text.into(),
            apply,
        };
        let same = |f: &Fix| f.text == fix.text || (fix.apply.is_some() && f.apply == fix.apply);
        if !self.fixes.iter().any(same) {
            self.fixes.push(fix);
        }
    }

    /// The path ends without an answer: the pod's view is unknown for the given reason.
    pub fn unknown(&mut self, setting: impl Into<String>, text: impl Into<String>) {
        self.source = L4Source::Unknown;
        if self.l7 == L7Source::None {
            self.l7 = L7Source::Unknown;
        }
        self.because(setting, text);
    }

    pub fn verdict(self, origin: Origin, via: &str) -> OriginVerdict {
        OriginVerdict {
            origin,
            via: via.to_string(),
            l4_source_seen_by_pod: self.source,
            l7_client_ip: self.l7,
            reasons: self.reasons,
            fixes: self.fixes,
            path: self.path,
        }
    }
}

/// Predicts, for every way into the Service, what the pod sees.
pub fn explain(facts: &Facts) -> Explanation {
    let target = &facts.target;
    let svc = &target.service;
    let cluster = &facts.cluster;
    let mut origins = Vec::new();
    let mut closed = Vec::new();

    if svc.type_ == ServiceType::ExternalName {
        for origin in Origin::ALL {
            closed.push(Closed {
                origin,
                reason: Reason {
                    setting: "spec.type=ExternalName".into(),
                    text: "an ExternalName Service is a DNS alias: no proxying, no rewrite by Kubernetes".into(),
                },
            });
        }
        return finish(facts, origins, closed);
    }

    // internet-via-lb: the Service's own load balancer, each Ingress, spec.externalIPs.
    if svc.type_ == ServiceType::LoadBalancer {
        origins.push(load_balancer(cluster, target).verdict(Origin::InternetViaLb, "lb"));
    }
    for ingress in &facts.ingresses {
        let via = format!("ingress/{}", ingress.name);
        origins.push(ingress::through(facts, ingress).verdict(Origin::InternetViaLb, &via));
    }
    if !svc.external_ips.is_empty() {
        origins.push(
            kubernetes::external_ip(cluster, target).verdict(Origin::InternetViaLb, "external-ip"),
        );
    }
    if !origins.iter().any(|o| o.origin == Origin::InternetViaLb) {
        closed.push(Closed {
            origin: Origin::InternetViaLb,
            reason: Reason {
                setting: format!("spec.type={}", svc.type_.as_str()),
                text:
                    "no load balancer, no Ingress routing to it and no spec.externalIPs were found"
                        .into(),
            },
        });
    }

    if svc.has_node_ports() {
        origins.push(kubernetes::node_port(cluster, target).verdict(Origin::NodePort, "node-port"));
    } else {
        let setting = if svc.type_ == ServiceType::LoadBalancer {
            "spec.allocateLoadBalancerNodePorts=false".to_string()
        } else {
            format!("spec.type={}", svc.type_.as_str())
        };
        closed.push(Closed {
            origin: Origin::NodePort,
            reason: Reason {
                setting,
                text: "the Service has no NodePort".into(),
            },
        });
    }

    origins.push(
        kubernetes::pod_to_cluster_ip(cluster, target).verdict(Origin::InClusterPod, "cluster-ip"),
    );
    origins.push(kubernetes::hairpin(cluster, target).verdict(Origin::InClusterPod, "hairpin"));
    if svc.type_ == ServiceType::LoadBalancer {
        origins.push(
            kubernetes::to_lb_address(cluster, target, false)
                .verdict(Origin::InClusterPod, "lb-address"),
        );
    }
    origins
        .push(kubernetes::node_to_cluster_ip(cluster, target).verdict(Origin::Node, "cluster-ip"));
    if svc.type_ == ServiceType::LoadBalancer {
        origins.push(
            kubernetes::to_lb_address(cluster, target, true).verdict(Origin::Node, "lb-address"),
        );
    }
    finish(facts, origins, closed)
}

fn finish(facts: &Facts, origins: Vec<OriginVerdict>, closed: Vec<Closed>) -> Explanation {
    let svc = &facts.target.service;
    Explanation {
        service: svc.name.clone(),
        namespace: svc.ns().to_string(),
        assumptions: facts.assumptions.clone(),
        origins,
        closed,
    }
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
            super::facts::Cloud::Tke => LbProvider::Tke,
            super::facts::Cloud::Aws => LbProvider::Aws,
            super::facts::Cloud::Gke => LbProvider::Gke,
            super::facts::Cloud::Azure => LbProvider::Azure,
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

/// A client on the internet through the Service's own load balancer.
pub fn load_balancer(cluster: &ClusterFacts, backends: &ServiceBackends) -> Trail {
    let (provider, from) = lb_provider(cluster, backends);
    match provider {
        LbProvider::Tke => tke::service_lb(cluster, backends, &from),
        LbProvider::Aws => aws::service_lb(cluster, backends, &from),
        LbProvider::Gke => clouds::gke_service_lb(cluster, backends, &from),
        LbProvider::Azure => clouds::azure_service_lb(cluster, backends, &from),
        LbProvider::MetalLb => clouds::metallb_service_lb(cluster, backends, &from),
        LbProvider::OtherClass | LbProvider::Unknown => {
            clouds::generic_service_lb(cluster, backends, provider, &from)
        }
    }
}

/// `kubectl patch svc` with a JSON merge patch, quoted for a POSIX shell.
pub fn patch_svc(svc: &super::facts::ServiceFacts, patch: &str) -> String {
    format!(
        "kubectl patch svc {} -n {} --type merge -p '{}'",
        svc.name,
        svc.ns(),
        patch
    )
}

/// `kubectl annotate svc ... KEY=VALUE --overwrite`.
pub fn annotate_svc(svc: &super::facts::ServiceFacts, key: &str, value: &str) -> String {
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

    #[test]
    fn a_proxy_rewrite_shows_at_the_next_hop() {
        let mut trail = Trail::start("client", L4Source::Client);
        trail.new_connection(L4Source::Proxy, "new connection");
        trail.to("pod");
        assert_eq!(trail.path[1].rewrite.as_deref(), Some("new connection"));
        assert_eq!(trail.path[1].source, L4Source::Proxy);
        trail.rewritten("x", L4Source::Node, "SNAT");
        assert_eq!(trail.path[2].rewrite.as_deref(), Some("SNAT"));
    }
}
