//! Layer-7 ways in, whatever the controller: an Ingress routes to the Service, so the pod's TCP
//! peer is a proxy and the client address can only travel in a header (or PROXY protocol).

use super::super::facts::{IngressController, IngressFacts};
use super::super::model::{L4Source, L7Source};
use super::shared::{carries_client, header_name};
use super::Trail;

/// When a header carries the client to the pod, reading it is the fix: L4 fixes would not
/// bring the client back to the TCP peer (ingress-nginx sorts its own fixes).
pub fn read_the_header(ingress: &IngressFacts, trail: &mut Trail) {
    if carries_client(trail.l7) && trail.source != L4Source::Client {
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
}

/// A controller explain has no rules for.
pub fn unknown_controller(ingress: &IngressFacts) -> Trail {
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
