//! Server-side apply: conflicts, forcing, shared ownership, removal of dropped fields.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use super::*;
use crate::testing::fixture_response;

fn serin() -> PatchParams {
    PatchParams::apply("serin").force()
}

fn scale(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": NS},
           "spec": {"replicas": replicas}})
}

/// What serin applied on the user's Deployment when bug 2 happened.
fn scale_and_template(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": NS},
           "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "podinfo"}},
                    "spec": {"containers": [{"name": "podinfo", "image": image}]}}}})
}

#[tokio::test]
async fn unforced_apply_of_a_field_the_creator_owns_conflicts_like_fixture_07() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    let r = api
        .patch(
            "podinfo",
            &PatchParams::apply("argocd"),
            &Patch::Apply(scale(5)),
        )
        .await;
    let (code, msg) = api_error(r);
    assert_eq!(code, 409);
    assert_eq!(
        msg,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    // Same body as the real server's, but for the manager's name.
    let (_, mut real) = fixture_response("07-deployment-ssa-conflict-409");
    let text = real
        .to_string()
        .replace("\\\"curl\\\"", "\\\"kubectl-client-side-apply\\\"");
    real = serde_json::from_str(&text).unwrap();
    assert_eq!(last_response(&s), real);
    assert_eq!(dep(&s, "podinfo")["spec"]["replicas"], 2, "nothing written");
}

#[tokio::test]
async fn forced_apply_takes_the_field_from_the_creator_like_fixture_08() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let d = deployments(&s)
        .patch("podinfo", &serin(), &Patch::Apply(scale(0)))
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(0));
    let d = dep(&s, "podinfo");
    assert_eq!(
        entry(&d, "serin", "Apply").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    let user = entry(&d, "kubectl-client-side-apply", "Update").unwrap();
    assert!(
        user["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "the creator lost .spec.replicas"
    );
    assert!(user["fieldsV1"]["f:spec"].get("f:selector").is_some());
    // Apply entries come first, as in fixture 08.
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "serin");
    assert_eq!(d["metadata"]["generation"], 2);
}

#[tokio::test]
async fn applying_the_value_already_there_shares_ownership_without_conflict() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let pp = PatchParams::apply("serin");
    deployments(&s)
        .patch("podinfo", &pp, &Patch::Apply(scale(2)))
        .await
        .unwrap();
    let d = dep(&s, "podinfo");
    assert!(entry(&d, "serin", "Apply").unwrap()["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_some());
    let user = entry(&d, "kubectl-client-side-apply", "Update").unwrap();
    assert!(
        user["fieldsV1"]["f:spec"].get("f:replicas").is_some(),
        "both own it"
    );
}

#[tokio::test]
async fn bug_2_dropping_a_solely_owned_image_is_a_422() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    // The image differs from the user's: forcing makes serin its only owner.
    api.patch(
        "podinfo",
        &serin(),
        &Patch::Apply(scale_and_template("podinfo:1")),
    )
    .await
    .unwrap();
    let d = dep(&s, "podinfo");
    let user = entry(&d, "kubectl-client-side-apply", "Update").unwrap();
    let c = &user["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        ["k:{\"name\":\"podinfo\"}"];
    assert!(c.get("f:image").is_none() && c.get("f:name").is_some() && c.get(".").is_some());
    let r = api
        .patch("podinfo", &serin(), &Patch::Apply(scale(2)))
        .await;
    let (code, msg) = api_error(r);
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Deployment.apps \"podinfo\" is invalid: spec.template.spec.containers[0].image: Required value"
    );
    let body = last_response(&s);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["details"],
        json!({"name": "podinfo", "group": "apps", "kind": "Deployment", "causes": [
            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.template.spec.containers[0].image"}]})
    );
    assert_eq!(
        dep(&s, "podinfo")["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:1"
    );
}

#[tokio::test]
async fn bug_2_variant_a_shared_image_survives_the_smaller_apply() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    api.patch(
        "podinfo",
        &serin(),
        &Patch::Apply(scale_and_template("podinfo:2")),
    )
    .await
    .unwrap();
    let d = api
        .patch("podinfo", &serin(), &Patch::Apply(scale(2)))
        .await
        .unwrap();
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("podinfo:2"));
    let d = dep(&s, "podinfo");
    assert_eq!(
        entry(&d, "serin", "Apply").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[tokio::test]
async fn dropped_fields_go_unless_another_manager_owns_them() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    let with_labels = |labels: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "podinfo", "namespace": NS, "labels": labels}})
    };
    // `app` has the user's value (shared), `serin.dev/owned` is serin's alone.
    let pp = PatchParams::apply("serin");
    api.patch(
        "podinfo",
        &pp,
        &Patch::Apply(with_labels(
            json!({"app": "podinfo", "serin.dev/owned": "x"}),
        )),
    )
    .await
    .unwrap();
    let d = api
        .patch("podinfo", &pp, &Patch::Apply(with_labels(json!({}))))
        .await
        .unwrap();
    let labels = d.metadata.labels.unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("podinfo"));
    assert!(!labels.contains_key("serin.dev/owned"));
}

#[tokio::test]
async fn a_no_op_apply_keeps_the_resource_version() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    api.patch("podinfo", &serin(), &Patch::Apply(scale(3)))
        .await
        .unwrap();
    let before = dep(&s, "podinfo");
    let again = api
        .patch("podinfo", &serin(), &Patch::Apply(scale(3)))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        before["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from)
    );
    assert_eq!(dep(&s, "podinfo"), before);
}

#[tokio::test]
async fn apply_creates_a_missing_object_with_only_the_applied_fields_owned() {
    let s = FakeApiServer::new();
    let api = deployments(&s);
    let mut body = deployment("podinfo-primary", "podinfo:1", 2);
    body["metadata"]["namespace"] = json!(NS);
    api.patch("podinfo-primary", &serin(), &Patch::Apply(&body))
        .await
        .unwrap();
    let d = dep(&s, "podinfo-primary");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(
        d["metadata"]["managedFields"].as_array().unwrap().len(),
        2,
        "serin's apply + the rollout"
    );
    let f = &entry(&d, "serin", "Apply").unwrap()["fieldsV1"];
    assert_eq!(
        f["f:spec"]["f:selector"],
        json!({}),
        "an atomic selector is one leaf"
    );
    assert_eq!(
        f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"podinfo-primary\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    assert!(
        f["f:metadata"].get("f:name").is_none(),
        "server-set metadata is never owned"
    );
}

#[tokio::test]
async fn an_update_takes_fields_from_the_applier_and_a_reapply_then_conflicts() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    api.patch("podinfo", &serin(), &Patch::Apply(scale(3)))
        .await
        .unwrap();
    let hpa = PatchParams {
        field_manager: Some("hpa-controller".into()),
        ..Default::default()
    };
    api.patch(
        "podinfo",
        &hpa,
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let d = dep(&s, "podinfo");
    assert!(
        entry(&d, "serin", "Apply").is_none(),
        "serin's only field was taken"
    );
    assert!(entry(&d, "hpa-controller", "Update").is_some());
    let (code, msg) = api_error(
        api.patch(
            "podinfo",
            &PatchParams::apply("serin"),
            &Patch::Apply(scale(3)),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(
        msg.ends_with("conflict with \"hpa-controller\" using apps/v1: .spec.replicas"),
        "{msg}"
    );
}

#[tokio::test]
async fn managed_fields_can_be_overwritten_or_cleared_by_a_non_apply_write() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:2", 2));
    let api = deployments(&s);
    api.patch("podinfo", &serin(), &Patch::Apply(scale(3)))
        .await
        .unwrap();
    // Hand .spec.replicas back: the user's entry owns it again, serin's entry is gone.
    let d = dep(&s, "podinfo");
    let mut user = entry(&d, "kubectl-client-side-apply", "Update").unwrap();
    user["fieldsV1"]["f:spec"]["f:replicas"] = json!({});
    let patch = json!([{"op": "replace", "path": "/metadata/managedFields", "value": [user]}]);
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/podinfo");
    let (code, _) = raw(
        &s,
        "PATCH",
        &path,
        "application/json-patch+json",
        Some(patch),
    )
    .await;
    assert_eq!(code, 200);
    let d = dep(&s, "podinfo");
    let entries = d["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["manager"], "kubectl-client-side-apply");
    // serin's next apply of another value now conflicts with the user again.
    let (code, _) = api_error(
        api.patch(
            "podinfo",
            &PatchParams::apply("serin"),
            &Patch::Apply(scale(5)),
        )
        .await,
    );
    assert_eq!(code, 409);
    // `[{}]` clears every entry.
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"managedFields": [{}]}})),
    )
    .await
    .unwrap();
    assert!(dep(&s, "podinfo")["metadata"]
        .get("managedFields")
        .is_none());
    api.patch(
        "podinfo",
        &PatchParams::apply("serin"),
        &Patch::Apply(scale(5)),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn canary_status_lists_merge_by_key_between_managers() {
    let s = FakeApiServer::new();
    s.insert(json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                    "metadata": {"name": "podinfo", "namespace": NS}, "spec": {"targetRef": {"name": "podinfo"}}}));
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        s.client(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("serin.dev", "v1alpha1", "Canary"),
            "canaries",
        ),
    );
    let status = |approvals: Value| {
        json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "podinfo"},
               "status": {"approvals": approvals}})
    };
    api.patch_status(
        "podinfo",
        &serin(),
        &Patch::Apply(status(json!([{"id": "a", "by": "serin"}]))),
    )
    .await
    .unwrap();
    let gate = PatchParams::apply("serin-gates").force();
    let c = api
        .patch_status(
            "podinfo",
            &gate,
            &Patch::Apply(status(json!([{"id": "b", "by": "alice"}]))),
        )
        .await
        .unwrap();
    assert_eq!(
        c.data["status"]["approvals"],
        json!([{"id": "a", "by": "serin"}, {"id": "b", "by": "alice"}])
    );
    assert_eq!(
        c.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let stored = s
        .get("serin.dev/v1alpha1", "canaries", Some(NS), "podinfo")
        .unwrap();
    let e = stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "serin-gates")
        .unwrap()
        .clone();
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:approvals": {"k:{\"id\":\"b\"}": {".": {}, "f:by": {}, "f:id": {}}}}})
    );
}

#[tokio::test]
async fn typed_deployment_round_trips_through_apply() {
    // serin applies typed objects; unset Options must not be sent as nulls that own fields.
    let s = FakeApiServer::new();
    let api: Api<Deployment> = deployments(&s);
    let d: Deployment = serde_json::from_value(deployment("web", "web:1", 1)).unwrap();
    let out = api.patch("web", &serin(), &Patch::Apply(&d)).await.unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        out.status.unwrap().ready_replicas,
        None,
        "the write's answer predates the rollout"
    );
    let now = api.get("web").await.unwrap();
    assert_eq!(now.status.unwrap().ready_replicas, Some(1));
}

#[tokio::test]
async fn keyed_and_set_lists_merge_and_shrink_item_by_item() {
    let s = FakeApiServer::new();
    let mut user = deployment("podinfo", "podinfo:2", 2);
    user["metadata"]["finalizers"] = json!(["user.dev/keep"]);
    s.insert(user);
    let api = deployments(&s);
    let body = |containers: Value, finalizers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "podinfo", "finalizers": finalizers},
               "spec": {"template": {"spec": {"containers": containers}}}})
    };
    let two =
        json!([{"name": "podinfo", "image": "podinfo:2"}, {"name": "sidecar", "image": "envoy:1"}]);
    let d = api
        .patch(
            "podinfo",
            &serin(),
            &Patch::Apply(body(two, json!(["serin.dev/finalizer"]))),
        )
        .await
        .unwrap();
    let names: Vec<String> = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["podinfo", "sidecar"]);
    assert_eq!(
        d.metadata.finalizers.unwrap(),
        ["user.dev/keep", "serin.dev/finalizer"]
    );
    let f = entry(&dep(&s, "podinfo"), "serin", "Apply").unwrap()["fieldsV1"].clone();
    assert_eq!(
        f["f:metadata"]["f:finalizers"],
        json!({"v:\"serin.dev/finalizer\"": {}})
    );
    // Dropping the sidecar removes it; the user's container stays although serin
    // stopped applying it, because the user owns it too.
    let d = api
        .patch(
            "podinfo",
            &serin(),
            &Patch::Apply(body(json!([]), json!([]))),
        )
        .await
        .unwrap();
    let c = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        (c.len(), c[0].name.as_str(), c[0].image.as_deref()),
        (1, "podinfo", Some("podinfo:2"))
    );
    assert_eq!(d.metadata.finalizers.unwrap(), ["user.dev/keep"]);
}

#[tokio::test]
async fn a_service_selector_is_one_atomic_field() {
    let s = FakeApiServer::new();
    s.insert(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo", "namespace": NS},
                    "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898}]}}));
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(s.client(), NS);
    let apply = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo"},
                       "spec": {"selector": {"app": "podinfo-primary"}}});
    let (code, msg) = api_error(
        api.patch(
            "podinfo",
            &PatchParams::apply("serin"),
            &Patch::Apply(&apply),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(
        msg.ends_with(": .spec.selector"),
        "the whole map conflicts: {msg}"
    );
    let svc = api
        .patch("podinfo", &serin(), &Patch::Apply(&apply))
        .await
        .unwrap();
    // Replaced whole, not merged key by key.
    let sel = svc.spec.unwrap().selector.unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel["app"], "podinfo-primary");
    let stored = s.get("v1", "services", Some(NS), "podinfo").unwrap();
    let user = entry(&stored, "kubectl-client-side-apply", "Update").unwrap();
    assert_eq!(
        user["fieldsV1"]["f:spec"]["f:ports"],
        json!({".": {}, "k:{\"port\":9898,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}}})
    );
}

/// Recorded on kube-apiserver v1.36: a manager that stops sending a map it alone
/// filled (`status.policyWait`) removes it whole; nothing like `policyWait: {}` stays.
#[tokio::test]
async fn a_map_dropped_by_its_only_manager_goes_whole() {
    let s = FakeApiServer::new();
    s.insert(json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                    "metadata": {"name": "podinfo", "namespace": NS}, "spec": {"targetRef": {"name": "podinfo"}}}));
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        s.client(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("serin.dev", "v1alpha1", "Canary"),
            "canaries",
        ),
    );
    let status = |s: Value| {
        json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "podinfo"},
               "status": s})
    };
    let wait = json!({"reason": "OutsideWindow", "policy": "ReleasePolicy shop/hours",
                      "revision": "abc", "stage": "Start", "message": "waits",
                      "since": "2026-12-01T01:00:00Z"});
    api.patch_status(
        "podinfo",
        &serin(),
        &Patch::Apply(status(json!({"phase": "Waiting", "policyWait": wait}))),
    )
    .await
    .unwrap();
    let c = api
        .patch_status(
            "podinfo",
            &serin(),
            &Patch::Apply(status(json!({"phase": "Progressing"}))),
        )
        .await
        .unwrap();
    assert_eq!(c.data["status"]["phase"], "Progressing");
    assert!(c.data["status"].get("policyWait").is_none(), "{:#}", c.data);
}
