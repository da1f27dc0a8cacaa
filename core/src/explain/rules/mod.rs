//! The rules: from [`Facts`] to one verdict per way in. Pure; every step names its setting.
//!
//! Each way in is followed hop by hop as a [`Trail`]: the source address a hop receives, what
//! rewrote it, the setting that decided it and the fix. The modules hold the knowledge of one
//! piece of the path each (kube-proxy, Cilium, a cloud's load balancer, an Ingress controller);
//! `docs/scenarios.md` gives the source of every rule. They share [`shared`] and never import
//! each other: this module picks, from the facts, the module for each piece and puts the
//! pieces together.

pub mod aws;
pub mod cilium;
pub mod clouds;
pub mod ingress;
pub mod ingress_nginx;
pub mod kubernetes;
pub mod shared;
pub mod tke;
mod trail;

pub use trail::Trail;

use super::facts::{
    ClusterFacts, Facts, IngressController, IngressFacts, ProxyMode, ServiceBackends, ServiceType,
};
use super::model::{Closed, Explanation, L4Source, Origin, OriginVerdict, Reason};
use shared::{lb_provider, proxy_mode, LbProvider};
use std::ops::ControlFlow;

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
        origins.push(through_ingress(facts, ingress).verdict(Origin::InternetViaLb, &via));
    }
    if !svc.external_ips.is_empty() {
        origins.push(
            kubernetes::external_ip(cluster, target, enter_node)
                .verdict(Origin::InternetViaLb, "external-ip"),
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
        origins.push(node_port(cluster, target).verdict(Origin::NodePort, "node-port"));
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

    origins.push(pod_to_cluster_ip(cluster, target).verdict(Origin::InClusterPod, "cluster-ip"));
    origins.push(hairpin(cluster, target).verdict(Origin::InClusterPod, "hairpin"));
    if svc.type_ == ServiceType::LoadBalancer {
        origins.push(
            to_lb_address(cluster, target, false).verdict(Origin::InClusterPod, "lb-address"),
        );
    }
    origins.push(node_to_cluster_ip(cluster, target).verdict(Origin::Node, "cluster-ip"));
    if svc.type_ == ServiceType::LoadBalancer {
        origins.push(to_lb_address(cluster, target, true).verdict(Origin::Node, "lb-address"));
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

/// External traffic entering a node by a NodePort (or an external or LB address), as the node's
/// service proxy handles it: kube-proxy's rules or Cilium's.
fn enter_node(cluster: &ClusterFacts, backends: &ServiceBackends, trail: &mut Trail) {
    match proxy_mode(cluster) {
        ProxyMode::Cilium(lb_mode) => cilium::enter_node(cluster, backends, lb_mode, trail),
        _ => kubernetes::enter_node(cluster, backends, trail),
    }
}

/// A client outside the cluster straight to `<node IP>:<nodePort>`.
fn node_port(cluster: &ClusterFacts, backends: &ServiceBackends) -> Trail {
    let mut trail = Trail::start("client", L4Source::Client);
    enter_node(cluster, backends, &mut trail);
    trail
}

/// A client on the internet through the Service's own load balancer.
fn load_balancer(cluster: &ClusterFacts, backends: &ServiceBackends) -> Trail {
    let (provider, from) = lb_provider(cluster, backends);
    match provider {
        LbProvider::Tke => tke::service_lb(cluster, backends, &from, enter_node),
        LbProvider::Aws => aws::service_lb(cluster, backends, &from, enter_node),
        LbProvider::Gke => clouds::gke_service_lb(cluster, backends, &from, enter_node),
        LbProvider::Azure => clouds::azure_service_lb(cluster, backends, &from, enter_node),
        LbProvider::MetalLb => clouds::metallb_service_lb(cluster, backends, &from, enter_node),
        LbProvider::OtherClass | LbProvider::Unknown => {
            clouds::generic_service_lb(cluster, backends, provider, &from, enter_node)
        }
    }
}

/// What the pod sees through `ingress`, by its controller.
fn through_ingress(facts: &Facts, ingress: &IngressFacts) -> Trail {
    let (cluster, target) = (&facts.cluster, &facts.target);
    let mut trail = match &ingress.controller.value {
        IngressController::Qcloud => tke::qcloud_ingress(cluster, target, ingress, enter_node),
        IngressController::Nginx => {
            // The controller is reached through its own Service, exposed like any other.
            let controller = facts.nginx.as_ref().and_then(|n| n.controller.as_ref());
            let reached = controller.and_then(|c| match c.service.type_ {
                ServiceType::LoadBalancer => Some(load_balancer(cluster, c)),
                ServiceType::NodePort => Some(node_port(cluster, c)),
                _ => None,
            });
            ingress_nginx::through(facts, ingress, reached)
        }
        IngressController::Alb => aws::alb_ingress(cluster, target, ingress, enter_node),
        IngressController::Gce => clouds::gce_ingress(cluster, target, ingress, enter_node),
        IngressController::Other(_) | IngressController::Unknown => {
            ingress::unknown_controller(ingress)
        }
    };
    ingress::read_the_header(ingress, &mut trail);
    trail
}

/// Another pod through the Service's ClusterIP.
fn pod_to_cluster_ip(cluster: &ClusterFacts, backends: &ServiceBackends) -> Trail {
    let mut trail = match kubernetes::to_cluster_ip(backends) {
        ControlFlow::Break(headless) => return headless,
        ControlFlow::Continue(trail) => trail,
    };
    match proxy_mode(cluster) {
        ProxyMode::Cilium(_) => cilium::pod_to_service(cluster, &mut trail),
        _ => kubernetes::pod_to_cluster_ip(cluster, backends, &mut trail),
    }
    trail
}

/// A pod reaching itself through its own Service.
fn hairpin(cluster: &ClusterFacts, backends: &ServiceBackends) -> Trail {
    let mut trail = kubernetes::via_cluster_ip("pod", L4Source::Pod, backends);
    match proxy_mode(cluster) {
        ProxyMode::Cilium(_) => cilium::hairpin(&mut trail),
        _ => kubernetes::hairpin(cluster, backends, &mut trail),
    }
    trail
}

/// A host-network process on a node through the Service's ClusterIP.
fn node_to_cluster_ip(cluster: &ClusterFacts, backends: &ServiceBackends) -> Trail {
    let mut trail = kubernetes::via_cluster_ip("node", L4Source::Node, backends);
    match proxy_mode(cluster) {
        ProxyMode::Cilium(_) => cilium::node_to_service(&mut trail),
        _ => kubernetes::node_to_cluster_ip(cluster, backends, &mut trail),
    }
    trail
}

/// A pod (`from_node` false) or a node (true) to the load balancer's address.
fn to_lb_address(cluster: &ClusterFacts, backends: &ServiceBackends, from_node: bool) -> Trail {
    let mut trail = match kubernetes::to_lb_address_start(backends, from_node) {
        ControlFlow::Continue(trail) => trail,
        ControlFlow::Break(mut out) => {
            // Out to the load balancer and back: what that load balancer does to a hairpin.
            aws::hairpin_caveat(&backends.service, &mut out);
            if out.source != L4Source::Unknown {
                out.to("pod");
            }
            return out;
        }
    };
    match proxy_mode(cluster) {
        ProxyMode::Cilium(_) if from_node => cilium::node_to_service(&mut trail),
        ProxyMode::Cilium(_) => cilium::pod_to_service(cluster, &mut trail),
        _ => kubernetes::to_lb_address(cluster, backends, from_node, &mut trail),
    }
    trail
}
