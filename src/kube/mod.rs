//! The cluster adapter: a `kube::Client` built from the kubectl flags, the API calls commands
//! make, and typed API errors.
//!
//! Everything that talks to the API server goes through here so that commands see one error
//! type ([`KubeError`]) that already names the verb and resource a refusal was about.

mod calls;
mod client;
mod error;
mod refusal;
mod transport;

pub use calls::{Cluster, Kind, Scoped};
pub use client::{client, clients, kubeconfig, Clients};
pub use error::{rbac_resource, ApiCall, CallContext, KubeError, RBAC_DOC};
pub use refusal::Refusal;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};

/// The load balancer addresses a Service's status announces (`status.loadBalancer.ingress`).
pub fn lb_ingress(service: &Service) -> impl Iterator<Item = &LoadBalancerIngress> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
}
