//! ingress-nginx: what the controller receives (its own Service decides), which forwarded
//! headers and PROXY protocol it trusts (its ConfigMap), and what it passes to the pod.

use super::super::facts::{Facts, IngressFacts, NginxFacts, ServiceBackends, ServiceType};
use super::super::model::{L4Source, L7Source};
use super::shared::{carries_client, header_name, lb_provider, patch_svc, LbProvider};
use super::Trail;

const DEFAULT_HEADER: &str = "X-Forwarded-For";

fn config_setting(nginx: &NginxFacts, key: &str) -> String {
    match nginx.setting(key) {
        Some(v) => format!("{} {key}=\"{v}\"", nginx.config_name()),
        None => format!("{} {key} not set", nginx.config_name()),
    }
}

fn on(nginx: &NginxFacts, key: &str) -> bool {
    nginx
        .setting(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn patch_config(nginx: &NginxFacts, key: &str, value: &str) -> Option<String> {
    let (name, _) = nginx.config.as_ref()?;
    let (ns, name) = name.split_once('/').unwrap_or(("ingress-nginx", name));
    Some(format!(
        "kubectl patch cm {name} -n {ns} --type merge -p '{{\"data\":{{\"{key}\":\"{value}\"}}}}'"
    ))
}

/// What reaches the controller pod from outside, through the controller's own Service:
/// `reached` is the path through its load balancer or NodePort, `None` when it has neither.
fn to_controller(controller: &ServiceBackends, reached: Option<Trail>) -> Trail {
    let svc = &controller.service;
    let mut trail = match reached {
        Some(trail) => trail,
        None => {
            let mut trail = Trail::start("client", L4Source::Client);
            trail.to("ingress-nginx");
            trail.unknown(
                format!("svc/{} spec.type={}", svc.name, svc.type_.as_str()),
                "the controller's Service is not exposed (hostNetwork or another proxy in front): \
                 what it receives is unknown",
            );
            return trail;
        }
    };
    // The controller's hops end at its pod; its reasons are about its own Service.
    if let Some(last) = trail.path.last_mut() {
        last.at = "ingress-nginx pod".into();
    }
    for reason in &mut trail.reasons {
        reason.setting = format!("svc/{}/{} {}", svc.ns(), svc.name, reason.setting);
    }
    trail
}

/// What the pod sees through `ingress`, served by ingress-nginx; `reached` is what a client
/// outside reaches the controller's pod by (see `to_controller`).
pub fn through(facts: &Facts, ingress: &IngressFacts, reached: Option<Trail>) -> Trail {
    let Some(nginx) = &facts.nginx else {
        let mut trail = Trail::start("client", L4Source::Client);
        trail.to("ingress-nginx pod");
        proxy_to_pod(&mut trail);
        trail.l7 = L7Source::Unknown;
        trail.because(
            ingress.controller.from.clone(),
            "the ingress-nginx controller's Service and ConfigMap were not found: whether \
             X-Forwarded-For holds the client depends on them",
        );
        trail.fix(
            "pass the controller's Service and ConfigMap too (-f), or explain against the cluster",
            None,
        );
        return trail;
    };
    let mut trail = match &nginx.controller {
        Some(controller) => to_controller(controller, reached),
        None => {
            let mut trail = Trail::start("client", L4Source::Client);
            trail.to("ingress-nginx pod");
            trail.unknown(
                "ingress-nginx controller Service not found",
                "what the controller receives depends on its own Service, which was not found",
            );
            trail
        }
    };
    trail.because(
        ingress.controller.from.clone(),
        "ingress-nginx terminates HTTP and sets X-Forwarded-For and X-Real-IP from the address \
         it considers the client",
    );
    // Fixes so far are about what reaches nginx; moot once the header carries the client.
    let controller_fixes = trail.fixes.len();
    let arrived = trail.source;
    let upstream_l7 = trail.l7;
    let use_pp = on(nginx, "use-proxy-protocol");
    let use_fwd = on(nginx, "use-forwarded-headers");
    let header = nginx
        .setting("forwarded-for-header")
        .unwrap_or(DEFAULT_HEADER);

    let knows_client: Option<bool> = if use_pp {
        match upstream_l7 {
            L7Source::ProxyProtocol => {
                trail.because(
                    config_setting(nginx, "use-proxy-protocol"),
                    "nginx reads the client address from the PROXY protocol header the load balancer sends",
                );
                Some(true)
            }
            L7Source::Unknown => None,
            _ if arrived == L4Source::Unknown => None,
            _ if !lb_known(facts, nginx) => {
                trail.because(
                    config_setting(nginx, "use-proxy-protocol"),
                    "nginx expects a PROXY protocol header; whether this load balancer sends one \
                     is not known (without it nginx logs \"broken header\")",
                );
                None
            }
            _ => {
                trail.because(
                    config_setting(nginx, "use-proxy-protocol"),
                    "nginx expects a PROXY protocol header the load balancer does not send: it logs \
                     \"broken header\" and drops every request",
                );
                trail.fix(
                    "turn use-proxy-protocol off, or make the load balancer send PROXY protocol",
                    patch_config(nginx, "use-proxy-protocol", "false"),
                );
                trail.source = L4Source::Unknown;
                trail.l7 = L7Source::None;
                return trail;
            }
        }
    } else if upstream_l7 == L7Source::ProxyProtocol {
        trail.because(
            config_setting(nginx, "use-proxy-protocol"),
            "the load balancer sends a PROXY protocol header nginx does not expect: it answers \
             400 Bad Request",
        );
        trail.fix(
            "turn use-proxy-protocol on",
            patch_config(nginx, "use-proxy-protocol", "true"),
        );
        trail.source = L4Source::Unknown;
        trail.l7 = L7Source::None;
        return trail;
    } else if use_fwd && carries_client(upstream_l7) {
        let sent = header_name(upstream_l7);
        if header.eq_ignore_ascii_case(sent) {
            trail.because(
                config_setting(nginx, "use-forwarded-headers"),
                format!("nginx trusts the {sent} header the load balancer adds"),
            );
            Some(true)
        } else {
            trail.because(
                config_setting(nginx, "forwarded-for-header"),
                format!("nginx reads {header} but the load balancer sends {sent}"),
            );
            trail.fix(
                format!("read the header the load balancer sends ({sent})"),
                patch_config(nginx, "forwarded-for-header", sent),
            );
            Some(arrived == L4Source::Client)
        }
    } else {
        if use_fwd {
            trail.because(
                config_setting(nginx, "use-forwarded-headers"),
                "nothing in front of nginx adds X-Forwarded-For, yet nginx trusts it: a client \
                 can forge its address",
            );
            trail.fix(
                "turn use-forwarded-headers off unless a layer-7 proxy you run adds the header",
                patch_config(nginx, "use-forwarded-headers", "false"),
            );
        }
        match arrived {
            L4Source::Client => Some(true),
            L4Source::Unknown => None,
            _ => Some(false),
        }
    };

    if knows_client == Some(true) && (use_pp || use_fwd) {
        if let Some(cidr) = nginx
            .setting("proxy-real-ip-cidr")
            .filter(|c| !c.split(',').any(|c| c.trim() == "0.0.0.0/0"))
        {
            trail.because(
                config_setting(nginx, "proxy-real-ip-cidr"),
                format!(
                    "nginx only trusts forwarded addresses from {cidr}: whether that covers the \
                     load balancer's or nodes' addresses cannot be told from configuration"
                ),
            );
            trail.fix(
                "make proxy-real-ip-cidr cover every address nginx receives from (LB, nodes)",
                None,
            );
            proxy_to_pod(&mut trail);
            trail.l7 = L7Source::Unknown;
            return trail;
        }
    }
    if on(nginx, "compute-full-forwarded-for") {
        trail.because(
            config_setting(nginx, "compute-full-forwarded-for"),
            "X-Forwarded-For keeps the whole chain (client, proxies...) instead of one address",
        );
    }
    proxy_to_pod(&mut trail);
    match knows_client {
        Some(true) => {
            trail.l7 = L7Source::XForwardedFor;
            trail.fixes.drain(..controller_fixes);
        }
        Some(false) => {
            trail.l7 = L7Source::None;
            trail.because(
                "what ingress-nginx received",
                "ingress-nginx itself received a node or load balancer address, so X-Forwarded-For \
                 and X-Real-IP carry that address, not the client's",
            );
            if let Some(controller) = &nginx.controller {
                let svc = &controller.service;
                trail.fix(
                    format!(
                        "set externalTrafficPolicy: Local on the controller's Service {}/{}",
                        svc.ns(),
                        svc.name
                    ),
                    Some(patch_svc(
                        svc,
                        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
                    )),
                );
            }
            trail.fix(
                "or, behind a layer-7 load balancer that adds X-Forwarded-For, trust it",
                patch_config(nginx, "use-forwarded-headers", "true"),
            );
        }
        None => trail.l7 = L7Source::Unknown,
    }
    trail
}

/// Whether explain knows the controller's load balancer well enough to say it sends no PROXY
/// protocol header unless an annotation asks for it.
fn lb_known(facts: &Facts, nginx: &NginxFacts) -> bool {
    let Some(controller) = &nginx.controller else {
        return false;
    };
    match controller.service.type_ {
        ServiceType::LoadBalancer => !matches!(
            lb_provider(&facts.cluster, controller).0,
            LbProvider::Unknown | LbProvider::OtherClass
        ),
        // A NodePort is reached straight from the client: nothing adds a header.
        _ => true,
    }
}

/// ingress-nginx opens its own connection to the pod.
fn proxy_to_pod(trail: &mut Trail) {
    if trail.path.last().is_some_and(|h| h.at == "pod") {
        return;
    }
    trail.new_connection(L4Source::Proxy, "new connection from ingress-nginx");
    trail.to("pod");
}
