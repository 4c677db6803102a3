//! RBAC: verbs per request, the extra `create` check of an apply that creates.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use super::*;
use crate::testing::apiserver::Rbac;

fn primary() -> Value {
    deployment("podinfo-primary", "podinfo:1", 2)
}

#[tokio::test]
async fn apply_that_creates_needs_create_as_well_as_patch() {
    let s = FakeApiServer::new();
    s.set_rbac(Some(Rbac::deny_all().allow(
        "apps",
        &["deployments"],
        &["get", "patch"],
    )));
    let api = deployments(&s);
    let pp = PatchParams::apply("serin").force();
    let (code, msg) = api_error(
        api.patch("podinfo-primary", &pp, &Patch::Apply(primary()))
            .await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        "deployments.apps \"podinfo-primary\" is forbidden: User \"system:serviceaccount:serin-system:serin\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
    );
    assert_eq!(
        last_response(&s)["details"],
        json!({"name": "podinfo-primary", "group": "apps", "kind": "deployments"})
    );
    assert_eq!(last_response(&s)["reason"], "Forbidden");
    assert!(s
        .get("apps/v1", "deployments", Some(NS), "podinfo-primary")
        .is_none());
    // Once it exists, patch alone is enough.
    s.set_rbac(None);
    s.insert(primary());
    s.set_rbac(Some(Rbac::deny_all().allow(
        "apps",
        &["deployments"],
        &["patch"],
    )));
    api.patch("podinfo-primary", &pp, &Patch::Apply(primary()))
        .await
        .unwrap();
}

#[tokio::test]
async fn apply_that_creates_passes_with_patch_and_create() {
    let s = FakeApiServer::new();
    s.set_rbac(Some(Rbac::deny_all().allow(
        "apps",
        &["deployments"],
        &["patch", "create"],
    )));
    let pp = PatchParams::apply("serin").force();
    deployments(&s)
        .patch("podinfo-primary", &pp, &Patch::Apply(primary()))
        .await
        .unwrap();
    assert_eq!(s.requests().last().unwrap().status, 201);
    // Without patch, create alone does not allow an apply.
    s.set_rbac(Some(Rbac::deny_all().allow(
        "apps",
        &["deployments"],
        &["create"],
    )));
    let (code, msg) = api_error(
        deployments(&s)
            .patch("podinfo-primary", &pp, &Patch::Apply(primary()))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        msg.contains("cannot patch resource \"deployments\""),
        "{msg}"
    );
}

#[tokio::test]
async fn list_status_and_core_group_messages() {
    let s = FakeApiServer::new();
    s.insert(primary());
    s.set_rbac(Some(Rbac::deny_all().allow(
        "apps",
        &["deployments"],
        &["get", "patch"],
    )));
    let api = deployments(&s);
    let (_, msg) = api_error(api.list(&ListParams::default()).await);
    assert_eq!(
        msg,
        "deployments.apps is forbidden: User \"system:serviceaccount:serin-system:serin\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
    );
    let (_, msg) = api_error(
        api.patch_status(
            "podinfo-primary",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {}})),
        )
        .await,
    );
    assert!(
        msg.contains("cannot patch resource \"deployments/status\""),
        "{msg}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), NS);
    let (code, msg) = api_error(cms.get("cfg").await);
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        "configmaps \"cfg\" is forbidden: User \"system:serviceaccount:serin-system:serin\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"shop\""
    );
    assert_eq!(s.requests().last().unwrap().verb, "get");
}

#[tokio::test]
async fn policy_from_helm_rendered_rules() {
    let s = FakeApiServer::new();
    let rendered = json!([
        {"kind": "ClusterRole", "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch", "create"]},
            {"apiGroups": ["serin.dev"], "resources": ["canaries", "canaries/status"], "verbs": ["*"]}]},
        {"kind": "Role", "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    ]);
    s.set_rbac(Some(
        Rbac::from_rules(&rendered).with_user("system:serviceaccount:ops:serin"),
    ));
    let pp = PatchParams::apply("serin").force();
    deployments(&s)
        .patch("podinfo-primary", &pp, &Patch::Apply(primary()))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), NS);
    assert_eq!(
        api_error(cms.get("x").await).0,
        404,
        "allowed, then not found"
    );
    let (code, msg) = api_error(cms.list(&ListParams::default()).await);
    assert_eq!(code, 403);
    assert!(
        msg.contains("User \"system:serviceaccount:ops:serin\" cannot list"),
        "{msg}"
    );
}
