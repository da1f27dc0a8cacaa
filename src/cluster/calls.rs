//! The API calls commands make, each tagged with its RBAC verb and resource.

use super::error::{rbac_resource, ApiCall, CallContext, KubeError};
use super::Clients;
use futures::{AsyncBufRead, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::core::NamespaceResourceScope;
use kube::runtime::{watcher, WatchStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// What the typed calls need of a resource type (every k8s-openapi type has it).
pub trait ApiKind:
    kube::Resource<DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
}

impl<K> ApiKind for K where
    K: kube::Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static
{
}

/// One cluster, through the request client (with `--request-timeout`) and the stream client
/// (without).
#[derive(Clone)]
pub struct Cluster {
    pub clients: Clients,
}

impl Cluster {
    pub fn new(clients: Clients) -> Self {
        Cluster { clients }
    }

    /// `-n`, else the context's namespace.
    pub fn default_namespace(&self) -> &str {
        &self.clients.namespace
    }

    /// A namespaced resource in `namespace`.
    pub fn namespaced<K>(&self, namespace: &str) -> Scoped<K>
    where
        K: ApiKind + kube::Resource<Scope = NamespaceResourceScope>,
    {
        Scoped {
            api: Api::namespaced(self.clients.requests.clone(), namespace),
            namespace: Some(namespace.to_string()),
        }
    }

    /// A cluster-scoped resource, or a namespaced one across all namespaces.
    pub fn all<K: ApiKind>(&self) -> Scoped<K> {
        Scoped {
            api: Api::all(self.clients.requests.clone()),
            namespace: None,
        }
    }

    /// The pods matching `selector`, listed then watched by kube's runtime watcher: it lists
    /// again when a watch ends or its resourceVersion expires (410), and waits a growing backoff
    /// (0.8 s, doubling up to 30 s) after each failed call. Both go through the stream client
    /// (no `--request-timeout`); the stream does not end.
    pub fn watch_pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> impl Stream<Item = Result<watcher::Event<Pod>, KubeError>> + use<> {
        let api: Api<Pod> = Api::namespaced(self.clients.streams.clone(), namespace);
        let list = ApiCall::new("list", "pods").ns(namespace);
        let watch = ApiCall::new("watch", "pods").ns(namespace);
        watcher(api, watcher::Config::default().labels(selector))
            .default_backoff()
            .map(move |event| event.map_err(|err| KubeError::from_watcher(&list, &watch, err)))
    }

    /// Follows a container's log (no timeout on the stream).
    pub async fn follow_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<impl AsyncBufRead + use<>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.clients.streams.clone(), namespace);
        let params = LogParams {
            follow: true,
            container: Some(container.to_string()),
            ..LogParams::default()
        };
        api.log_stream(pod, &params)
            .await
            .call(ApiCall::new("get", "pods/log").ns(namespace).name(pod))
    }
}

/// Typed calls on one resource type in one scope.
pub struct Scoped<K> {
    api: Api<K>,
    namespace: Option<String>,
}

impl<K: ApiKind> Scoped<K> {
    fn call(&self, verb: &'static str, name: Option<&str>) -> ApiCall {
        let mut call = ApiCall::new(verb, rbac_resource::<K>());
        call.namespace = self.namespace.clone();
        call.name = name.map(str::to_string);
        call
    }

    pub async fn get(&self, name: &str) -> Result<K, KubeError> {
        self.api.get(name).await.call(self.call("get", Some(name)))
    }

    /// `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, KubeError> {
        self.api
            .get_opt(name)
            .await
            .call(self.call("get", Some(name)))
    }

    pub async fn list(&self, selector: Option<&str>) -> Result<Vec<K>, KubeError> {
        let mut params = ListParams::default();
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        let list = self.api.list(&params).await.call(self.call("list", None))?;
        Ok(list.items)
    }

    pub async fn list_fields(&self, fields: &str) -> Result<Vec<K>, KubeError> {
        let list = self
            .api
            .list(&ListParams::default().fields(fields))
            .await
            .call(self.call("list", None))?;
        Ok(list.items)
    }

    pub async fn create(&self, object: &K) -> Result<K, KubeError> {
        self.api
            .create(&PostParams::default(), object)
            .await
            .call(self.call("create", object.meta().name.as_deref()))
    }

    /// Server-side dry run: admission (Pod Security included) judges it, nothing is stored.
    pub async fn create_dry_run(&self, object: &K) -> Result<K, KubeError> {
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        self.api
            .create(&params, object)
            .await
            .call(self.call("create", object.meta().name.as_deref()))
    }

    /// Deletes with foreground propagation (owned objects go first); gone already is fine.
    /// Returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, KubeError> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        match self
            .api
            .delete(name, &params)
            .await
            .call(self.call("delete", Some(name)))
        {
            Ok(_) => Ok(true),
            Err(err) if err.is_not_found() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// JSON merge patch.
    pub async fn merge_patch(&self, name: &str, patch: &serde_json::Value) -> Result<K, KubeError> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .call(self.call("patch", Some(name)))
    }
}
