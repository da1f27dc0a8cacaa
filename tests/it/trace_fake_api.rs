//! The fake API server speaks what kube's client expects: get/list/create/delete/watch/logs,
//! real Status bodies on failures, garbage collection by ownerReferences.

use crate::support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kubectl_realip::cluster::{client, ApiCall, CallContext, Connection, KubeError};
use support::cluster;
use support::{FakeApi, Fault, LogScript};

async fn connect(api: &FakeApi) -> (kube::Client, String) {
    let args = Connection {
        kubeconfig: Some(api.kubeconfig().to_path_buf()),
        ..Connection::default()
    };
    client(&args).await.expect("client for the fake API")
}

#[tokio::test]
async fn get_list_create_delete_and_status_bodies() {
    let api = FakeApi::start().await;
    api.insert(&cluster::namespace("shop", &[]));
    api.insert(&cluster::lb_service(
        "shop",
        "web",
        "203.0.113.10",
        80,
        31080,
    ));
    let (client, namespace) = connect(&api).await;
    assert_eq!(namespace, "default");

    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    let web = services.get("web").await.unwrap();
    assert_eq!(web.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        services
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let missing = services
        .get("nope")
        .await
        .call(ApiCall::new("get", "services").ns("shop"));
    assert!(matches!(missing, Err(KubeError::NotFound { .. })));

    api.forbid("create", "configmaps");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let mut map = ConfigMap::default();
    map.metadata.name = Some("m".into());
    let refused = maps
        .create(&PostParams::default(), &map)
        .await
        .call(ApiCall::new("create", "configmaps").ns("shop"));
    match refused {
        Err(KubeError::Forbidden { message, .. }) => {
            assert!(
                message.contains("cannot create resource \"configmaps\""),
                "{message}"
            )
        }
        other => panic!("expected 403, got {other:?}"),
    }

    api.fault(Fault {
        verb: "create".into(),
        resource: "pods".into(),
        name: None,
        code: 409,
        message: None,
        times: Some(1),
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pod = cluster::app_pod("shop", "p", "web", "node-a", "10.244.1.5");
    assert!(matches!(
        pods.create(&PostParams::default(), &pod)
            .await
            .call(ApiCall::new("create", "pods")),
        Err(KubeError::Conflict { .. })
    ));
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(api.get("pods", Some("shop"), "p").is_none());
}

#[tokio::test]
async fn watch_sees_changes_after_the_list() {
    let api = FakeApi::start().await;
    api.insert(&cluster::namespace("shop", &[]));
    let (client, _) = connect(&api).await;
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let stream = pods
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap();
    futures::pin_mut!(stream);
    api.insert(&cluster::app_pod(
        "shop",
        "other",
        "db",
        "node-a",
        "10.244.1.6",
    ));
    api.insert(&cluster::app_pod(
        "shop",
        "p",
        "web",
        "node-a",
        "10.244.1.5",
    ));
    api.update("pods", Some("shop"), "p", |pod| {
        pod["status"]["phase"] = "Failed".into()
    });
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(pod) => kinds.push(format!("added {}", pod.metadata.name.unwrap())),
            WatchEvent::Modified(pod) => {
                kinds.push(format!("modified {}", pod.status.unwrap().phase.unwrap()))
            }
            other => kinds.push(format!("{other:?}")),
        }
    }
    assert_eq!(kinds, ["added p", "modified Failed"]);
}

#[tokio::test]
async fn logs_follow_and_owner_garbage_collection() {
    let api = FakeApi::start().await;
    api.insert(&cluster::namespace("shop", &[]));
    let (client, _) = connect(&api).await;
    let owner = api.insert(&serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "timer", "namespace": "shop"}, "spec": {"template": {}}
    }));
    let mut pod =
        serde_json::to_value(cluster::app_pod("shop", "p", "web", "node-a", "10.244.1.5")).unwrap();
    pod["metadata"]["ownerReferences"] = serde_json::json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": "timer", "uid": owner["metadata"]["uid"]
    }]);
    api.insert(&pod);
    api.logs(
        "shop",
        "p",
        vec![LogScript::lines(["one".to_string(), "two".to_string()]).hold_open()],
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let stream = pods
        .log_stream(
            "p",
            &LogParams {
                follow: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    use futures::AsyncBufReadExt;
    let mut lines = stream.lines();
    assert_eq!(lines.next().await.unwrap().unwrap(), "one");
    assert_eq!(lines.next().await.unwrap().unwrap(), "two");

    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client, "shop");
    jobs.delete("timer", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(
        api.get("pods", Some("shop"), "p").is_none(),
        "the owned pod is collected"
    );
    // The follow stream ends with its pod.
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}
