//! The cluster adapter: a `kube::Client` built from the kubectl flags, and typed API errors.
//!
//! Everything that talks to the API server goes through here so that commands see one error
//! type ([`KubeError`]) that already names the verb and resource a refusal was about.

mod client;
mod error;

pub use client::{client, clients, Clients};
pub use error::{ApiCall, CallContext, KubeError, RBAC_DOC};
