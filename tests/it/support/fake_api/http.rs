//! The fake API server's HTTP plumbing: the listener, routes (`/api/v1/...`,
//! `/apis/GROUP/VERSION/...`), query strings, the method's verb, and responses (JSON, text,
//! streams, and the `Status` bodies of errors).

use super::store::Key;
use super::verbs::Call;
use super::FakeApi;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::sync::mpsc;

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// Answers every connection `listener` accepts, with `api`, each on its own task.
pub(super) fn serve(listener: tokio::net::TcpListener, api: FakeApi) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let api = api.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(handle(&api, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
}

/// One request: its route, query and verb decoded, then answered by the verbs.
async fn handle(api: &FakeApi, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = parse_query(&raw_query);
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let Some(route) = Route::parse(&path) else {
        return status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
            None,
        );
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, route.name.is_some(), watching) {
        (&Method::GET, true, _) => "get",
        (&Method::GET, false, true) => "watch",
        (&Method::GET, false, false) => "list",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, _, _) => "update",
        (&Method::PATCH, _, _) => "patch",
        (&Method::DELETE, true, _) => "delete",
        (&Method::DELETE, false, _) => "deletecollection",
        _ => return status(405, "MethodNotAllowed", "method not allowed", None),
    };
    api.answer(Call {
        verb,
        route,
        query,
        raw_query,
        body,
    })
    .await
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`, then `[namespaces/NS/]RESOURCE[/NAME[/SUB]]`.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) group: Option<String>,
    pub(super) version: String,
    pub(super) resource: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

impl Route {
    pub(super) fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (None, version.to_string(), rest),
            ["apis", group, version, rest @ ..] => {
                (Some(group.to_string()), version.to_string(), rest)
            }
            _ => return None,
        };
        let owned = |s: Option<&&str>| s.map(|s| s.to_string());
        let (resource, namespace, name, sub) = match rest {
            ["namespaces", ns, resource, tail @ ..] => (
                resource.to_string(),
                Some(ns.to_string()),
                owned(tail.first()),
                owned(tail.get(1)),
            ),
            [resource, tail @ ..] => (
                resource.to_string(),
                None,
                owned(tail.first()),
                owned(tail.get(1)),
            ),
            [] => return None,
        };
        Some(Route {
            group,
            version,
            resource,
            namespace,
            name,
            sub,
        })
    }

    pub(super) fn key(&self) -> Key {
        Key {
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    pub(super) fn api_version(&self) -> String {
        match &self.group {
            Some(group) => format!("{group}/{}", self.version),
            None => self.version.clone(),
        }
    }

    /// A collection route covers its resource in its namespace, or in all namespaces.
    pub(super) fn matches(&self, key: &Key) -> bool {
        key.resource == self.resource
            && (self.namespace.is_none() || self.namespace == key.namespace)
    }
}

/// A query string's parameters, decoded as `application/x-www-form-urlencoded` (what
/// client-go and kube send).
fn parse_query(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

pub(super) fn ok(code: u16, object: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(object.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(super) fn not_found(route: &Route) -> Response<Body> {
    status(
        404,
        "NotFound",
        &format!(
            "{} \"{}\" not found",
            route.resource,
            route.name.clone().unwrap_or_default()
        ),
        Some(route),
    )
}

/// A real `Status` body, as the API server sends with every error.
pub(super) fn status(
    code: u16,
    reason: &str,
    message: &str,
    route: Option<&Route>,
) -> Response<Body> {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(route) = route {
        body["details"] = json!({"kind": route.resource});
        // The namespace lifecycle admission names its cause (metav1.NamespaceTerminatingCause).
        if let Some((_, rest)) = message.split_once("in namespace ") {
            if let Some(ns) = rest.strip_suffix(" because it is being terminated") {
                body["details"]["causes"] = json!([{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace",
                }]);
            }
        }
        if let Some(name) = &route.name {
            body["details"]["name"] = json!(name);
        }
        if let Some(group) = &route.group {
            body["details"]["group"] = json!(group);
        }
    }
    ok(code, &body)
}

/// A plain-text body (a non-follow pod log).
pub(super) fn text(body: String) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(super) fn streaming(rx: mpsc::Receiver<Bytes>, content_type: &str) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Route::parse("/apis/apps/v1/namespaces/shop/daemonsets/x").unwrap();
        assert_eq!(
            (
                r.resource.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref()
            ),
            ("daemonsets", Some("shop"), Some("x"))
        );
        let r = Route::parse("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (r.resource.as_str(), r.namespace, r.name.as_deref()),
            ("namespaces", None, Some("shop"))
        );
        let r = Route::parse("/api/v1/namespaces/shop/pods/p/log").unwrap();
        assert_eq!(r.sub.as_deref(), Some("log"));
    }

    #[test]
    fn queries_are_form_decoded() {
        let query = parse_query(
            "labelSelector=a%3Db%2Cc&watch=true&x=a+b&&flag&fieldSelector=spec.nodeName%3Dn1",
        );
        assert_eq!(query["labelSelector"], "a=b,c");
        assert_eq!(query["fieldSelector"], "spec.nodeName=n1");
        assert_eq!(query["watch"], "true");
        assert_eq!(query["x"], "a b");
        assert_eq!(query["flag"], "");
        assert_eq!(query.len(), 5);
    }
}
