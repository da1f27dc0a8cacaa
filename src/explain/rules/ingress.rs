//! Layer-7 ways in: an Ingress routes to the Service, so the pod's TCP peer is a proxy and the
//! client address can only travel in a header (or PROXY protocol).

use super::super::facts::{Facts, IngressController, IngressFacts};
use super::super::model::{L4Source, L7Source};
use super::{aws, clouds, ingress_nginx, tke, Trail};

/// What the pod sees through `ingress`.
pub fn through(facts: &Facts, ingress: &IngressFacts) -> Trail {
    let mut trail = match &ingress.controller.value {
        IngressController::Qcloud => tke::qcloud_ingress(&facts.cluster, &facts.target, ingress),
        IngressController::Nginx => ingress_nginx::through(facts, ingress),
        IngressController::Alb => aws::alb_ingress(&facts.cluster, &facts.target, ingress),
        IngressController::Gce => clouds::gce_ingress(&facts.cluster, &facts.target, ingress),
        IngressController::Other(_) | IngressController::Unknown => unknown_controller(ingress),
    };
    if carries_client(trail.l7) && trail.source != L4Source::Client {
        // The header is the answer: L4 fixes would not bring the client back to the TCP peer
        // (ingress-nginx sorts its own fixes).
        if ingress.controller.value != IngressController::Nginx {
            trail.fixes.clear();
        }
        trail.fix(
            format!(
                "read the client address from {} (the entry your trusted proxy added, counting from the right)",
                header_name(trail.l7)
            ),
            None,
        );
    }
    trail
}

pub fn carries_client(l7: L7Source) -> bool {
    matches!(
        l7,
        L7Source::XForwardedFor | L7Source::XRealIp | L7Source::Forwarded | L7Source::ProxyProtocol
    )
}

pub fn header_name(l7: L7Source) -> &'static str {
    match l7 {
        L7Source::XForwardedFor => "X-Forwarded-For",
        L7Source::XRealIp => "X-Real-IP",
        L7Source::Forwarded => "Forwarded",
        L7Source::ProxyProtocol => "the PROXY protocol header",
        L7Source::None | L7Source::Unknown => "nothing",
    }
}

fn unknown_controller(ingress: &IngressFacts) -> Trail {
    let mut trail = Trail::start("client", L4Source::Client);
    trail.to("ingress controller");
    trail.new_connection(
        L4Source::Proxy,
        "new connection from the ingress controller",
    );
    trail.to("pod");
    trail.l7 = L7Source::Unknown;
    trail.because(
        ingress.controller.from.clone(),
        "an Ingress controller proxies HTTP, so the pod's peer is the proxy; explain has no rules \
         for this controller, so whether a header carries the client is unknown",
    );
    trail.fix(
        "name the controller: spec.ingressClassName (qcloud, nginx, alb, gce)",
        Some(format!(
            "kubectl patch ingress {} -n {} --type merge -p '{{\"spec\":{{\"ingressClassName\":\"CLASS\"}}}}'",
            ingress.name,
            ingress.namespace.as_deref().unwrap_or("default")
        )),
    );
    trail
}
