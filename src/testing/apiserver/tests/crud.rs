//! Create, read, update, patch, delete: the bookkeeping a controller relies on.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use super::*;
use crate::testing::{fixture, fixture_response};

#[tokio::test]
async fn get_of_a_missing_object_is_fixture_04() {
    let s = FakeApiServer::new();
    let r = deployments(&s).get("nope").await;
    assert_eq!(api_error(r).0, 404);
    assert_eq!(
        last_response(&s),
        fixture_response("04-deployment-get-404").1
    );
}

#[tokio::test]
async fn create_fills_server_fields_and_owns_what_the_creator_set_like_fixture_02() {
    let s = FakeApiServer::new();
    let f = fixture("02-deployment-create");
    let pp = PostParams {
        field_manager: Some("curl".into()),
        ..Default::default()
    };
    let body: Deployment = serde_json::from_value(f["request"]["body"].clone()).unwrap();
    let d = deployments(&s).create(&pp, &body).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert!(d.metadata.uid.is_some() && d.metadata.creation_timestamp.is_some());
    let got = &last_response(&s)["metadata"]["managedFields"][0];
    let real = &f["response"]["body"]["metadata"]["managedFields"][0];
    assert_eq!(
        (&got["manager"], &got["operation"]),
        (&real["manager"], &real["operation"])
    );
    // The nodes the creator added carry `.`; those a typed zero value has do not.
    assert_eq!(
        got["fieldsV1"]["f:metadata"],
        real["fieldsV1"]["f:metadata"]
    );
    let c = |v: &Value| {
        v["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"podinfo\"}"]
            .clone()
    };
    assert_eq!(c(got)["f:ports"], c(real)["f:ports"]);
    assert_eq!(c(got)["."], json!({}));
    assert_eq!(got["fieldsV1"]["f:spec"]["f:selector"], json!({}));
    // A second create of the same name.
    let (code, msg) = api_error(deployments(&s).create(&pp, &body).await);
    assert_eq!(
        (code, msg.as_str()),
        (409, "deployments.apps \"podinfo\" already exists")
    );
}

#[tokio::test]
async fn put_with_a_stale_resource_version_is_fixture_05() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 2));
    let api = deployments(&s);
    let mut d = api.get("podinfo").await.unwrap();
    d.metadata.resource_version = Some("1".into());
    let (code, _) = api_error(api.replace("podinfo", &PostParams::default(), &d).await);
    assert_eq!(code, 409);
    let (_, real) = fixture_response("05-deployment-put-stale-409");
    assert_eq!(last_response(&s), real);
    let mut d = api.get("podinfo").await.unwrap();
    let before = d.metadata.resource_version.clone().unwrap();
    d.spec.as_mut().unwrap().replicas = Some(3);
    let out = api
        .replace("podinfo", &PostParams::default(), &d)
        .await
        .unwrap();
    assert!(
        out.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > before.parse().unwrap()
    );
    assert_eq!(out.metadata.generation, Some(2));
    assert_eq!(
        api_error(api.replace("other", &PostParams::default(), &d).await).0,
        400,
        "name mismatch"
    );
}

#[tokio::test]
async fn a_stale_lease_update_is_fixture_22() {
    let s = FakeApiServer::new();
    let f = fixture("21-lease-create");
    let api: Api<Lease> = Api::namespaced(s.client(), NS);
    let lease: Lease = serde_json::from_value(f["request"]["body"].clone()).unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        created.metadata.generation, None,
        "Leases do not track generation"
    );
    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    stale.spec.as_mut().unwrap().holder_identity = Some("serin-other".into());
    assert_eq!(
        api_error(
            api.replace("serin-leader", &PostParams::default(), &stale)
                .await
        )
        .0,
        409
    );
    assert_eq!(
        last_response(&s),
        fixture_response("22-lease-update-stale-409").1
    );
}

#[tokio::test]
async fn patches_with_a_resource_version_are_preconditions() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 2));
    let api = deployments(&s);
    let p = json!({"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 1}});
    let (code, msg) = api_error(
        api.patch("podinfo", &PatchParams::default(), &Patch::Merge(p))
            .await,
    );
    assert_eq!(code, 409);
    assert_eq!(
        msg,
        "Operation cannot be fulfilled on deployments.apps \"podinfo\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let current = dep(&s, "podinfo")["metadata"]["resourceVersion"].clone();
    let p = json!({"metadata": {"resourceVersion": current}, "spec": {"replicas": 1}});
    api.patch("podinfo", &PatchParams::default(), &Patch::Merge(p))
        .await
        .unwrap();
    let mut apply = deployment("podinfo", "podinfo:1", 1);
    apply["metadata"]["resourceVersion"] = json!("5");
    let pp = PatchParams::apply("serin").force();
    assert_eq!(
        api_error(api.patch("podinfo", &pp, &Patch::Apply(apply)).await).0,
        409
    );
}

#[tokio::test]
async fn generation_counts_spec_changes_and_resource_version_only_real_changes() {
    let s = FakeApiServer::new();
    s.set_deployment_rollouts(Rollouts::Manual);
    s.insert(deployment("podinfo", "podinfo:1", 2));
    let api = deployments(&s);
    let merge = |v: Value| Patch::Merge(v);
    let pp = PatchParams::default();
    let d0 = dep(&s, "podinfo");
    api.patch(
        "podinfo",
        &pp,
        &merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    let d1 = dep(&s, "podinfo");
    assert_eq!(d1["metadata"]["generation"], 1, "metadata only");
    assert!(rv(&d1) > rv(&d0));
    api.patch(
        "podinfo",
        &pp,
        &merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        rv(&dep(&s, "podinfo")),
        rv(&d1),
        "a no-op write is not stored"
    );
    api.patch("podinfo", &pp, &merge(json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();
    assert_eq!(dep(&s, "podinfo")["metadata"]["generation"], 2);
    api.patch_status("podinfo", &pp, &merge(json!({"status": {"replicas": 7}})))
        .await
        .unwrap();
    assert_eq!(
        dep(&s, "podinfo")["metadata"]["generation"],
        2,
        "status only"
    );
}

#[tokio::test]
async fn status_and_main_resource_writes_are_isolated() {
    let s = FakeApiServer::new();
    s.set_deployment_rollouts(Rollouts::Manual);
    s.insert(deployment("podinfo", "podinfo:1", 2));
    let api = deployments(&s);
    let pp = PatchParams::default();
    let both = json!({"spec": {"replicas": 9}, "status": {"replicas": 9}});
    api.patch_status("podinfo", &pp, &Patch::Merge(&both))
        .await
        .unwrap();
    let d = dep(&s, "podinfo");
    assert_eq!(
        (
            d["spec"]["replicas"].clone(),
            d["status"]["replicas"].clone()
        ),
        (json!(2), json!(9))
    );
    api.patch(
        "podinfo",
        &pp,
        &Patch::Merge(json!({"spec": {"replicas": 4}, "status": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let d = dep(&s, "podinfo");
    assert_eq!(
        (
            d["spec"]["replicas"].clone(),
            d["status"]["replicas"].clone()
        ),
        (json!(4), json!(9))
    );
    // A resource without a status subresource has none to write to.
    let (code, body) = raw(
        &s,
        "GET",
        "/api/v1/namespaces/shop/configmaps/x/status",
        "",
        None,
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            404,
            Some("the server could not find the requested resource")
        )
    );
}

#[tokio::test]
async fn rollouts_are_instant_or_wait_for_settle() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 3));
    let st = api_status(&s).await;
    assert_eq!(st["readyReplicas"], 3);
    assert_eq!(st["observedGeneration"], 1);
    assert_eq!(st["conditions"][0]["type"], "Available");
    s.set_deployment_rollouts(Rollouts::Manual);
    let api = deployments(&s);
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api_status(&s).await["observedGeneration"],
        1,
        "manual: not yet"
    );
    s.settle();
    let st = api_status(&s).await;
    assert_eq!(st["observedGeneration"], 2);
    // Zero counts are omitted, as the real server's JSON does.
    assert!(st.get("replicas").is_none() && st.get("readyReplicas").is_none());
    let d = api.get("podinfo").await.unwrap();
    assert_eq!(d.status.unwrap().replicas, None);
    let before = rv(&dep(&s, "podinfo"));
    s.settle();
    assert_eq!(
        rv(&dep(&s, "podinfo")),
        before,
        "settling twice changes nothing"
    );
}

async fn api_status(s: &FakeApiServer) -> Value {
    dep(s, "podinfo")["status"].clone()
}

#[tokio::test]
async fn finalizers_hold_a_deletion_until_the_last_one_is_removed() {
    let s = FakeApiServer::new();
    let mut d = deployment("podinfo", "podinfo:1", 1);
    d["metadata"]["finalizers"] = json!(["serin.dev/finalizer"]);
    s.insert(d);
    let api = deployments(&s);
    let r = api
        .delete("podinfo", &DeleteParams::default())
        .await
        .unwrap();
    let kept = r.left().expect("the object, still there");
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert!(api.get("podinfo").await.is_ok());
    let add = json!({"metadata": {"finalizers": ["serin.dev/finalizer", "other"]}});
    let (code, msg) = api_error(
        api.patch("podinfo", &PatchParams::default(), &Patch::Merge(add))
            .await,
    );
    assert_eq!(code, 422);
    assert!(
        msg.contains("metadata.finalizers: Forbidden: no new finalizers can be added"),
        "{msg}"
    );
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(api.get("podinfo").await).0, 404);
    // Without finalizers the answer is a success Status.
    s.insert(deployment("plain", "p:1", 1));
    let st = api
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .unwrap();
    assert_eq!(st.details.unwrap().name, "plain");
    assert_eq!(
        api_error(api.delete("plain", &DeleteParams::default()).await).0,
        404
    );
}

#[tokio::test]
async fn lists_filter_by_label_selector() {
    let s = FakeApiServer::new();
    for (name, tier) in [("a", Some("web")), ("b", Some("db")), ("c", None)] {
        let mut d = deployment(name, "x:1", 1);
        if let Some(t) = tier {
            d["metadata"]["labels"]["tier"] = json!(t);
        }
        s.insert(d);
    }
    let mut other = deployment("d", "x:1", 1);
    other["metadata"]["namespace"] = json!("elsewhere");
    s.insert(other);
    let api = deployments(&s);
    let names = |l: kube::core::ObjectList<Deployment>| {
        l.items
            .into_iter()
            .map(|d| d.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let q = |sel: &str| ListParams::default().labels(sel).limit(1);
    assert_eq!(names(api.list(&q("tier")).await.unwrap()), ["a", "b"]);
    assert_eq!(names(api.list(&q("tier=web")).await.unwrap()), ["a"]);
    assert_eq!(names(api.list(&q("tier!=web")).await.unwrap()), ["b", "c"]);
    assert_eq!(names(api.list(&q("!tier")).await.unwrap()), ["c"]);
    assert_eq!(
        names(api.list(&ListParams::default()).await.unwrap()).len(),
        3
    );
    let all: Api<Deployment> = Api::all(s.client());
    assert_eq!(
        names(all.list(&ListParams::default()).await.unwrap()).len(),
        4
    );
}

#[tokio::test]
async fn patch_formats_json_strategic_and_their_errors() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 1));
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/podinfo");
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "podinfo", "image": "podinfo:2"}]}}}});
    let (code, d) = raw(
        &s,
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        Some(smp),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"],
        json!([{"name": "podinfo", "image": "podinfo:2"}])
    );
    let test = json!([{"op": "test", "path": "/spec/replicas", "value": 7}]);
    let (code, body) = raw(
        &s,
        "PATCH",
        &path,
        "application/json-patch+json",
        Some(test),
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            422,
            Some("testing value /spec/replicas failed: test failed")
        )
    );
    let ops = json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 2}]);
    let (code, d) = raw(&s, "PATCH", &path, "application/json-patch+json", Some(ops)).await;
    assert_eq!((code, d["spec"]["replicas"].clone()), (200, json!(2)));
    // Custom resources do not take strategic merge patches.
    let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/x";
    let (code, _) = raw(
        &s,
        "PATCH",
        vs,
        "application/strategic-merge-patch+json",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 415);
}

#[tokio::test]
async fn generate_name_and_validation_on_create() {
    let s = FakeApiServer::new();
    let api: Api<Service> = Api::namespaced(s.client(), NS);
    let svc = |name: Value| {
        serde_json::from_value::<Service>(
            json!({"metadata": {"generateName": name}, "spec": {"selector": {"app": "x"}}}),
        )
        .unwrap()
    };
    let (code, msg) = api_error(
        api.create(&PostParams::default(), &svc(json!("podinfo-")))
            .await,
    );
    assert_eq!(code, 422);
    assert!(
        msg.starts_with("Service \"podinfo-")
            && msg.ends_with("is invalid: spec.ports: Required value"),
        "{msg}"
    );
    let mut ok = svc(json!("podinfo-"));
    ok.spec.as_mut().unwrap().ports =
        Some(vec![serde_json::from_value(json!({"port": 80})).unwrap()]);
    let created = api.create(&PostParams::default(), &ok).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(
        name.starts_with("podinfo-") && name.len() == "podinfo-".len() + 5,
        "{name}"
    );
    assert_eq!(
        created.spec.unwrap().ports.unwrap()[0].protocol.as_deref(),
        Some("TCP"),
        "defaulted"
    );
    let bad = deployment("Bad_Name", "x:1", 1);
    let d: Deployment = serde_json::from_value(bad).unwrap();
    let (code, msg) = api_error(deployments(&s).create(&PostParams::default(), &d).await);
    assert_eq!(code, 422);
    assert!(msg.starts_with("Deployment.apps \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{msg}");
    let mut no_sel = deployment("nosel", "x:1", 1);
    no_sel["spec"].as_object_mut().unwrap().remove("selector");
    let (code, msg) = raw(
        &s,
        "POST",
        "/apis/apps/v1/namespaces/shop/deployments",
        "application/json",
        Some(no_sel),
    )
    .await;
    assert_eq!(
        (code, msg["message"].as_str()),
        (
            422,
            Some("Deployment.apps \"nosel\" is invalid: spec.selector: Required value")
        )
    );
}

#[tokio::test]
async fn watches_are_refused() {
    let s = FakeApiServer::new();
    let (code, _) = raw(
        &s,
        "GET",
        "/apis/apps/v1/namespaces/shop/deployments?watch=true",
        "",
        None,
    )
    .await;
    assert_eq!(code, 405);
}
