//! The cluster adapter: a `kube::Client` built from the kubectl flags, the API calls commands
//! make, and typed API errors.
//!
//! Everything that talks to the API server goes through here so that commands see one error
//! type ([`KubeError`]) that already names the verb and resource a refusal was about.

mod calls;
mod client;
mod error;
pub mod explain_reads;
mod refusal;
mod target;
mod transport;

pub use calls::{ApiKind, Cluster, Scoped};
pub use client::{client, clients, kubeconfig, Clients, Connection};
pub use error::{rbac_resource, ApiCall, CallContext, KubeError, RBAC_DOC};
pub use refusal::Refusal;
pub use target::{parse_target, TargetError};
