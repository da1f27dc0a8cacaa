//! AWS: Classic ELB, NLB with instance or ip targets (in-tree controller or AWS Load Balancer
//! Controller), client IP preservation, PROXY protocol v2, and the ALB Ingress.

use super::super::facts::{ClusterFacts, IngressFacts, ServiceBackends, ServiceFacts};
use super::super::model::{L4Source, L7Source};
use super::shared::{annotate_svc, EnterNode};
use super::Trail;

pub const LB_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
pub const TARGET_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type";
pub const TG_ATTRIBUTES: &str =
    "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes";
pub const PROXY_PROTOCOL: &str = "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol";
pub const BACKEND_PROTOCOL: &str = "service.beta.kubernetes.io/aws-load-balancer-backend-protocol";
pub const ALB_TARGET_TYPE: &str = "alb.ingress.kubernetes.io/target-type";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsLb {
    Classic,
    NlbInstance,
    NlbIp,
}

fn annotation_setting(svc: &ServiceFacts, key: &str) -> String {
    match svc.annotation(key) {
        Some(v) => format!("metadata.annotations[\"{key}\"]=\"{v}\""),
        None => format!("metadata.annotations[\"{key}\"] not set"),
    }
}

/// Which load balancer AWS builds for the Service, and the setting that says so.
pub fn kind(svc: &ServiceFacts) -> (AwsLb, String) {
    let by_controller = svc
        .load_balancer_class
        .as_deref()
        .is_some_and(|c| c == "service.k8s.aws/nlb" || c == "eks.amazonaws.com/nlb");
    let controller = by_controller || svc.annotation(LB_TYPE) == Some("external");
    match svc.annotation(LB_TYPE) {
        Some("nlb-ip") => (AwsLb::NlbIp, annotation_setting(svc, LB_TYPE)),
        _ if controller => match svc.annotation(TARGET_TYPE) {
            Some("ip") => (AwsLb::NlbIp, annotation_setting(svc, TARGET_TYPE)),
            _ => (
                AwsLb::NlbInstance,
                format!(
                    "{} (instance is the default)",
                    annotation_setting(svc, TARGET_TYPE)
                ),
            ),
        },
        Some("nlb") => (AwsLb::NlbInstance, annotation_setting(svc, LB_TYPE)),
        _ => (
            AwsLb::Classic,
            format!(
                "{} (the in-tree controller builds a Classic ELB)",
                annotation_setting(svc, LB_TYPE)
            ),
        ),
    }
}

/// `preserve_client_ip.enabled` from the target group attributes, if written.
pub fn preserve_attribute(svc: &ServiceFacts) -> Option<bool> {
    svc.annotation(TG_ATTRIBUTES)?
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == "preserve_client_ip.enabled")
        .map(|(_, v)| v.trim().eq_ignore_ascii_case("true"))
}

fn proxy_protocol(svc: &ServiceFacts) -> bool {
    svc.annotation(PROXY_PROTOCOL).is_some_and(|v| v == "*")
}

/// Whether the NLB keeps the client address, with the setting that decides.
fn preserves(svc: &ServiceFacts, lb: AwsLb) -> (bool, String) {
    match preserve_attribute(svc) {
        Some(v) => (v, annotation_setting(svc, TG_ATTRIBUTES)),
        None => (
            lb == AwsLb::NlbInstance,
            format!(
                "preserve_client_ip.enabled not set (default: {} for {} targets)",
                lb == AwsLb::NlbInstance,
                if lb == AwsLb::NlbIp { "ip" } else { "instance" }
            ),
        ),
    }
}

/// The Service's own AWS load balancer.
pub fn service_lb(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    from: &str,
    enter_node: EnterNode,
) -> Trail {
    let svc = &backends.service;
    let (lb, setting) = kind(svc);
    let mut trail = Trail::start("client", L4Source::Client);
    trail.because(from, "the Service's load balancer is built by AWS");
    let pp = proxy_protocol(svc);
    match lb {
        AwsLb::Classic => {
            trail.to("Classic ELB");
            let http = matches!(svc.annotation(BACKEND_PROTOCOL), Some("http" | "https"));
            trail.because(
                setting,
                "a Classic ELB proxies: it opens its own connection to the NodePort",
            );
            trail.new_connection(L4Source::Lb, "new connection from the ELB");
            if http {
                trail.l7 = L7Source::XForwardedFor;
                trail.because(
                    annotation_setting(svc, BACKEND_PROTOCOL),
                    "an HTTP listener adds X-Forwarded-For with the client address",
                );
            } else if pp {
                trail.l7 = L7Source::ProxyProtocol;
                trail.because(
                    annotation_setting(svc, PROXY_PROTOCOL),
                    "the ELB prepends a PROXY protocol v1 header with the client address: the \
                     application must expect it",
                );
            } else {
                trail.fix(
                    "send PROXY protocol (the application must parse it), or move to an NLB \
                     with instance targets",
                    Some(annotate_svc(svc, PROXY_PROTOCOL, "*")),
                );
            }
            enter_node(cluster, backends, &mut trail);
        }
        AwsLb::NlbInstance | AwsLb::NlbIp => {
            trail.to("NLB");
            let (keep, keep_setting) = preserves(svc, lb);
            trail.because(
                setting,
                if lb == AwsLb::NlbIp {
                    "ip targets: the NLB sends to the pod IPs directly, no NodePort"
                } else {
                    "instance targets: the NLB sends to the NodePort of the nodes"
                },
            );
            if keep {
                trail.because(
                    keep_setting,
                    "client IP preservation is on: the NLB keeps the client address",
                );
            } else {
                trail.because(
                    keep_setting,
                    "client IP preservation is off: the NLB connects from its own private address",
                );
                trail.new_connection(L4Source::Lb, "NLB rewrites the source to its private IP");
            }
            if pp {
                trail.l7 = L7Source::ProxyProtocol;
                trail.because(
                    annotation_setting(svc, PROXY_PROTOCOL),
                    "the NLB prepends a PROXY protocol v2 header with the client address: the \
                     application must expect it",
                );
            }
            if lb == AwsLb::NlbIp {
                trail.to("pod");
            } else {
                enter_node(cluster, backends, &mut trail);
            }
            if trail.source != L4Source::Client && !pp && !keep {
                trail.fix(
                    "turn on client IP preservation on the target group",
                    Some(annotate_svc(
                        svc,
                        TG_ATTRIBUTES,
                        "preserve_client_ip.enabled=true",
                    )),
                );
                trail.fix(
                    "or have the NLB send PROXY protocol v2 (the application must parse it)",
                    Some(annotate_svc(svc, PROXY_PROTOCOL, "*")),
                );
            }
        }
    }
    trail
}

/// Client IP preservation breaks connections from a target to itself through the NLB.
pub fn hairpin_caveat(svc: &ServiceFacts, trail: &mut Trail) {
    if svc.annotation(LB_TYPE).is_none() && svc.load_balancer_class.is_none() {
        return;
    }
    let (lb, _) = kind(svc);
    if lb == AwsLb::Classic {
        return;
    }
    let (keep, setting) = preserves(svc, lb);
    if keep {
        trail.unknown(
            setting,
            "with client IP preservation on, a connection the NLB sends back to the node (or \
             pod) it came from is dropped as a hairpin: in-cluster callers through the NLB \
             time out now and then",
        );
        trail.fix(
            "call the Service by its ClusterIP from inside the cluster, or turn preservation off \
             and use PROXY protocol",
            None,
        );
    }
}

/// The ALB Ingress (AWS Load Balancer Controller) in front of the Service of `backends`.
pub fn alb_ingress(
    cluster: &ClusterFacts,
    backends: &ServiceBackends,
    ingress: &IngressFacts,
    enter_node: EnterNode,
) -> Trail {
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("ALB");
    trail.because(
        ingress.controller.from.clone(),
        "an ALB terminates HTTP and adds X-Forwarded-For with the client address",
    );
    trail.l7 = L7Source::XForwardedFor;
    trail.new_connection(L4Source::Proxy, "new connection from the ALB");
    let target = ingress.annotation(ALB_TARGET_TYPE).unwrap_or("instance");
    let setting = match ingress.annotation(ALB_TARGET_TYPE) {
        Some(v) => format!(
            "ingress {} metadata.annotations[\"{ALB_TARGET_TYPE}\"]=\"{v}\"",
            ingress.name
        ),
        None => format!("{ALB_TARGET_TYPE} not set (instance is the default)"),
    };
    if target == "ip" {
        trail.because(setting, "ip targets: the ALB connects to the pod IPs");
        trail.to("pod");
    } else {
        trail.because(
            setting,
            "instance targets: the ALB connects to the Service's NodePort",
        );
        if !backends.service.has_node_ports() {
            trail.unknown(
                format!("spec.type={}", backends.service.type_.as_str()),
                "instance targets need a NodePort Service; this one has none",
            );
            trail.l7 = L7Source::Unknown;
            return trail;
        }
        enter_node(cluster, backends, &mut trail);
    }
    trail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(annotations: &[(&str, &str)], class: Option<&str>) -> ServiceFacts {
        ServiceFacts {
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            load_balancer_class: class.map(str::to_string),
            ..ServiceFacts::default()
        }
    }

    #[test]
    fn which_load_balancer() {
        assert_eq!(kind(&svc(&[], None)).0, AwsLb::Classic);
        assert_eq!(kind(&svc(&[(LB_TYPE, "nlb")], None)).0, AwsLb::NlbInstance);
        assert_eq!(kind(&svc(&[(LB_TYPE, "nlb-ip")], None)).0, AwsLb::NlbIp);
        assert_eq!(
            kind(&svc(&[(LB_TYPE, "external")], None)).0,
            AwsLb::NlbInstance
        );
        assert_eq!(
            kind(&svc(&[(LB_TYPE, "external"), (TARGET_TYPE, "ip")], None)).0,
            AwsLb::NlbIp
        );
        assert_eq!(
            kind(&svc(&[(TARGET_TYPE, "ip")], Some("service.k8s.aws/nlb"))).0,
            AwsLb::NlbIp
        );
    }

    #[test]
    fn preservation_defaults_and_attribute() {
        assert_eq!(preserve_attribute(&svc(&[], None)), None);
        let on = svc(
            &[(TG_ATTRIBUTES, "a=b, preserve_client_ip.enabled=true")],
            None,
        );
        assert_eq!(preserve_attribute(&on), Some(true));
        let off = svc(&[(TG_ATTRIBUTES, "preserve_client_ip.enabled=false")], None);
        assert_eq!(preserve_attribute(&off), Some(false));
        assert!(preserves(&svc(&[], None), AwsLb::NlbInstance).0);
        assert!(!preserves(&svc(&[], None), AwsLb::NlbIp).0);
        assert!(!preserves(&off, AwsLb::NlbInstance).0);
    }
}
