//! API errors that know which call failed, so a 403 can name the missing verb and resource.

use super::refusal::Refusal;
use super::transport::{chain, find, Transport};
use crate::error::{Failure, Kind};
use kube::runtime::watcher;
use std::fmt;
use std::time::Duration;

/// Where the minimal Role/ClusterRole is documented: a URL, for krew users have no checkout.
pub const RBAC_DOC: &str = crate::doc_url!("rbac.md");

/// One API call: what a refusal or a failure is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// RBAC verb: get, list, watch, create, delete, patch, deletecollection.
    pub verb: &'static str,
    /// RBAC resource, with its API group when it has one: `daemonsets.apps`, `pods/log`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl ApiCall {
    pub fn new(verb: &'static str, resource: impl Into<String>) -> Self {
        ApiCall {
            verb,
            resource: resource.into(),
            namespace: None,
            name: None,
        }
    }

    pub fn ns(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// The RBAC name of a resource type: `services`, `daemonsets.apps`.
pub fn rbac_resource<K: k8s_openapi::Resource>() -> String {
    if K::GROUP.is_empty() {
        K::URL_PATH_SEGMENT.to_string()
    } else {
        format!("{}.{}", K::URL_PATH_SEGMENT, K::GROUP)
    }
}

impl fmt::Display for ApiCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("cannot reach the Kubernetes API{at} ({call}): {message}", at = At(server))]
    Unreachable {
        call: Box<ApiCall>,
        server: Option<String>,
        message: String,
    },
    /// Connecting or waiting for the answer took longer than the bound in force.
    #[error("{message} ({call})")]
    TimedOut { call: Box<ApiCall>, message: String },
    #[error("forbidden: cannot {call}: {message}")]
    Forbidden {
        call: Box<ApiCall>,
        /// RBAC, or which admission refused it.
        refusal: Refusal,
        message: String,
    },
    #[error("not found: {call}: {message}")]
    NotFound { call: Box<ApiCall>, message: String },
    #[error("conflict: {call}: {message}")]
    Conflict { call: Box<ApiCall>, message: String },
    #[error("the API refused to {call} ({code} {reason}): {message}")]
    Api {
        call: Box<ApiCall>,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{call}: {message}")]
    Other { call: Box<ApiCall>, message: String },
}

impl KubeError {
    /// Classifies a kube error for the call that produced it.
    pub fn from_kube(call: ApiCall, err: kube::Error) -> Self {
        let call = Box::new(call);
        match err {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                match status.code {
                    403 => KubeError::Forbidden {
                        call,
                        refusal: Refusal::of(&status),
                        message,
                    },
                    404 => KubeError::NotFound { call, message },
                    409 => KubeError::Conflict { call, message },
                    code => KubeError::Api {
                        call,
                        code,
                        reason: status.reason.clone(),
                        message,
                    },
                }
            }
            kube::Error::HyperError(err) => transport_failure(call, &err),
            kube::Error::Service(err) => transport_failure(call, err.as_ref()),
            other => KubeError::Other {
                call,
                message: error_chain(&other),
            },
        }
    }

    /// Classifies an error of kube's runtime watcher: of its `list` call or of its `watch`.
    pub fn from_watcher(list: &ApiCall, watch: &ApiCall, err: watcher::Error) -> Self {
        match err {
            watcher::Error::InitialListFailed(err) => KubeError::from_kube(list.clone(), err),
            watcher::Error::WatchStartFailed(err) | watcher::Error::WatchFailed(err) => {
                KubeError::from_kube(watch.clone(), err)
            }
            watcher::Error::WatchError(status) => {
                KubeError::from_kube(watch.clone(), kube::Error::Api(status))
            }
            other @ watcher::Error::NoResourceVersion => KubeError::Other {
                call: Box::new(list.clone()),
                message: other.to_string(),
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::NotFound { .. })
    }

    pub fn is_forbidden(&self) -> bool {
        matches!(self, KubeError::Forbidden { .. })
    }

    /// Why a 403 was given.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            KubeError::Forbidden { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// A failure below HTTP: a timeout says which bound ran out, anything else is unreachable.
fn transport_failure(call: Box<ApiCall>, err: &(dyn std::error::Error + 'static)) -> KubeError {
    let transport = find::<Transport>(err);
    let server = transport.map(|t| t.server.clone());
    let timed_out = chain(err).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if !timed_out {
        return KubeError::Unreachable {
            call,
            server,
            message: error_chain(err),
        };
    }
    let connecting = find::<hyper_util::client::legacy::Error>(err).is_some_and(|e| e.is_connect());
    let bound = transport.and_then(|t| {
        if connecting {
            t.connect_timeout
        } else {
            t.request_timeout
        }
    });
    let within = bound
        .map(|b| format!(" within {}", seconds(b)))
        .unwrap_or_default();
    let message = if connecting {
        format!("no connection to the Kubernetes API{}{within}", At(&server))
    } else {
        format!("the Kubernetes API{} did not answer{within}", At(&server))
    };
    KubeError::TimedOut { call, message }
}

/// ` at URL` when the server is known.
struct At<'a>(&'a Option<String>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(server) => write!(f, " at {server}"),
            None => Ok(()),
        }
    }
}

/// `5s`, `1.5s`.
fn seconds(bound: Duration) -> String {
    format!("{}s", bound.as_secs_f64())
}

/// `err: cause: cause`, because hyper's top-level messages ("client error (Connect)") hide why.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `.call(ApiCall)` on kube results.
pub trait CallContext<T> {
    fn call(self, call: ApiCall) -> Result<T, KubeError>;
}

impl<T> CallContext<T> for Result<T, kube::Error> {
    fn call(self, call: ApiCall) -> Result<T, KubeError> {
        self.map_err(|err| KubeError::from_kube(call, err))
    }
}

impl From<KubeError> for Failure {
    fn from(err: KubeError) -> Self {
        let failure = Failure::new(Kind::Cluster, err.to_string());
        match &err {
            // An unusable kubeconfig or flag is bad input, not a cluster's refusal.
            KubeError::Config(_) => Failure::new(Kind::Usage, err.to_string()).hint(
                "check --kubeconfig/--context (kubectl config get-contexts lists what exists)",
            ),
            KubeError::Unreachable { .. } => failure.hint(
                "is the cluster up and the context right? `kubectl cluster-info` should answer",
            ),
            KubeError::TimedOut { .. } => failure.hint(
                "is the API server reachable from here (VPN, firewall)? `kubectl cluster-info` \
                 should answer; --request-timeout sets how long one request may take",
            ),
            KubeError::Forbidden { call, refusal, .. } => {
                failure.hint(refusal.hint(call.verb, &call.resource, call.namespace.as_deref()))
            }
            KubeError::NotFound { .. }
            | KubeError::Conflict { .. }
            | KubeError::Api { .. }
            | KubeError::Other { .. } => failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Status::default()
        }))
    }

    #[test]
    fn forbidden_names_verb_resource_and_the_doc() {
        let call = ApiCall::new("create", "daemonsets.apps").ns("shop");
        let err = KubeError::from_kube(
            call,
            status(
                403,
                "Forbidden",
                "daemonsets.apps is forbidden: User \"jane\" cannot create",
            ),
        );
        assert!(err.is_forbidden());
        let failure = Failure::from(err);
        assert_eq!(failure.kind, Kind::Cluster);
        let hint = failure.hint.unwrap();
        assert!(
            hint.contains("\"create\" on \"daemonsets.apps\" in namespace shop"),
            "{hint}"
        );
        assert!(hint.contains(RBAC_DOC));
    }

    #[test]
    fn an_unusable_kubeconfig_is_bad_input() {
        let failure = Failure::from(KubeError::Config("no context \"x\" in k".into()));
        assert_eq!(failure.kind, Kind::Usage);
        assert!(failure.hint.unwrap().contains("get-contexts"));
    }

    #[test]
    fn codes_map_to_kinds() {
        let call = || ApiCall::new("get", "services").ns("a").name("web");
        assert!(KubeError::from_kube(call(), status(404, "NotFound", "x")).is_not_found());
        assert!(matches!(
            KubeError::from_kube(call(), status(409, "AlreadyExists", "x")),
            KubeError::Conflict { .. }
        ));
        assert!(matches!(
            KubeError::from_kube(call(), status(500, "InternalError", "x")),
            KubeError::Api { code: 500, .. }
        ));
        assert_eq!(call().to_string(), "get services web in namespace a");
    }
}
