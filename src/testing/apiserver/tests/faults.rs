//! Fault injection: hooks, missing resource types, garbage collection, determinism.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Api;
use serde_json::json;

use super::*;
use crate::testing::apiserver::status;

fn virtualservices(s: &FakeApiServer) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    Api::namespaced_with(
        s.client(),
        NS,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    )
}

fn vs() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "podinfo", "namespace": NS},
           "spec": {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo-primary"}, "weight": 100}]}]}})
}

#[tokio::test]
async fn a_removed_resource_type_is_a_404_like_a_missing_crd() {
    let s = FakeApiServer::new();
    let pp = PatchParams::apply("serin").force();
    virtualservices(&s)
        .patch("podinfo", &pp, &Patch::Apply(vs()))
        .await
        .unwrap();
    s.set_resource_available("virtualservices", false);
    let (code, msg) = api_error(
        virtualservices(&s)
            .patch("podinfo", &pp, &Patch::Apply(vs()))
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (404, "the server could not find the requested resource")
    );
    // With the whole group gone, the server's mux answers in plain text.
    s.set_resource_available("destinationrules", false);
    let (code, msg) = api_error(virtualservices(&s).get("podinfo").await);
    assert_eq!((code, msg.as_str()), (404, "404 page not found"));
    let groups = s.client().list_api_groups().await.unwrap();
    assert!(!groups
        .groups
        .iter()
        .any(|g| g.name == "networking.istio.io"));
    assert!(groups
        .groups
        .iter()
        .any(|g| g.name == "gateway.networking.k8s.io"));
    s.set_resource_available("virtualservices", true);
    s.set_resource_available("destinationrules", true);
    assert_eq!(
        api_error(virtualservices(&s).get("podinfo").await).0,
        404,
        "removing the CRD removed its objects"
    );
}

#[tokio::test]
async fn a_hook_can_fail_a_request_or_change_the_cluster_first() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 1));
    let mut n = 0;
    s.set_hook(Box::new(move |req, ctl| {
        n += 1;
        match (n, req.verb.as_str()) {
            (1, "patch") => Some((
                500,
                status(500, "InternalError", "etcdserver: request timed out"),
            )),
            (2, "patch") => {
                ctl.delete_object("apps/v1", "deployments", Some(NS), "podinfo");
                None
            }
            _ => None,
        }
    }));
    let api = deployments(&s);
    let merge = Patch::Merge(json!({"spec": {"replicas": 2}}));
    let (code, msg) = api_error(api.patch("podinfo", &PatchParams::default(), &merge).await);
    assert_eq!((code, msg.as_str()), (500, "etcdserver: request timed out"));
    assert_eq!(
        api_error(api.patch("podinfo", &PatchParams::default(), &merge).await).0,
        404
    );
    let lines: Vec<String> = s.requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "PATCH /apis/apps/v1/namespaces/shop/deployments/podinfo? -> 500",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/podinfo? -> 404"
        ]
    );
}

#[tokio::test]
async fn a_lost_response_still_commits_the_write() {
    let s = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), NS);
    s.set_hook(Box::new(|req, ctl| {
        if req.is_apply() {
            ctl.answer_after_serving(504, status(504, "Timeout", "the request timed out"));
        }
        None
    }));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    let pp = PatchParams::apply("serin");
    assert_eq!(
        api_error(cms.patch("cfg", &pp, &Patch::Apply(&cm)).await).0,
        504
    );
    s.clear_hook();
    assert_eq!(cms.get("cfg").await.unwrap().data.unwrap()["a"], "1");
    let d = s.drain_requests();
    assert_eq!(d.len(), 2);
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn a_hook_can_make_a_clients_copy_stale() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 1));
    let api = deployments(&s);
    let mut d = api.get("podinfo").await.unwrap();
    s.set_hook(Box::new(|req, ctl| {
        if req.verb == "update" {
            ctl.bump_resource_version("apps/v1", "deployments", Some(NS), "podinfo");
        }
        None
    }));
    d.spec.as_mut().unwrap().replicas = Some(4);
    assert_eq!(
        api_error(api.replace("podinfo", &Default::default(), &d).await).0,
        409
    );
}

#[tokio::test]
async fn garbage_collection_follows_owner_uids_and_finalizers() {
    let s = FakeApiServer::new();
    let owner = s.insert(deployment("podinfo", "podinfo:1", 1));
    let uid = owner["metadata"]["uid"].clone();
    let owned = |name: &str, finalizers: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": NS, "finalizers": finalizers,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo", "uid": uid}]}})
    };
    s.insert(owned("plain", json!([])));
    s.insert(owned("held", json!(["serin.dev/finalizer"])));
    s.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "free", "namespace": NS}}));
    assert!(s.collect_garbage().is_empty(), "the owner is still there");
    assert!(s.delete_object("apps/v1", "deployments", Some(NS), "podinfo"));
    assert_eq!(
        s.collect_garbage(),
        ["configmaps/shop/held", "configmaps/shop/plain"]
    );
    assert!(s.get("v1", "configmaps", Some(NS), "plain").is_none());
    let held = s.get("v1", "configmaps", Some(NS), "held").unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    assert!(s.get("v1", "configmaps", Some(NS), "free").is_some());
    assert!(s.collect_garbage().is_empty());
}

async fn scenario() -> Vec<String> {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    let pp = PatchParams::apply("serin").force();
    let mut calls = Vec::new();
    for i in 0..3 {
        let a = api.clone();
        let p = pp.clone();
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo"},
                          "spec": {"replicas": i}});
        calls.push(tokio::spawn(async move {
            a.patch("podinfo", &p, &Patch::Apply(body))
                .await
                .map(|_| ())
        }));
    }
    for c in calls {
        let _ = c.await;
    }
    let mut out: Vec<String> = s
        .requests()
        .iter()
        .map(|r| format!("{} {:?}", r.line(), r.body))
        .collect();
    out.push(dep(&s, "podinfo").to_string());
    out
}

#[test]
fn the_same_schedule_gives_the_same_requests_and_state() {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario())
    };
    let first = run();
    assert_eq!(first.len(), 4);
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
}
