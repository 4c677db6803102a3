//! The Deployment backend on its own, against the stateful fake API server: what it
//! creates for a primary and what it reports as revisions move.

use serde_json::Value;

use super::*;
use crate::crd::ServiceSpec;
use crate::testing::apiserver::{FakeApiServer, Rollouts};
use crate::workloads::{WorkloadBackend, WorkloadRef};

const NS: &str = "shop";

fn target(image: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfo", "image": image}]}
            }
        }
    })
}

fn podinfo() -> WorkloadRef {
    WorkloadRef {
        namespace: NS.into(),
        name: "podinfo".into(),
        service: ServiceSpec::default(),
        owner: None,
    }
}

fn setup() -> (FakeApiServer, KubeWorkloads) {
    let server = FakeApiServer::new();
    server.set_deployment_rollouts(Rollouts::Instant);
    server.insert(target("podinfo:1"));
    let workloads = KubeWorkloads::new(server.client());
    (server, workloads)
}

fn image(d: &Value) -> &str {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_primary_is_made_from_the_target_with_its_own_selector_services_and_record() {
    let (server, workloads) = setup();
    let w = podinfo();
    let before = workloads.observe(&w).await.unwrap();
    assert!(!before.primary_exists);
    workloads
        .initialize_primary(&w, &before.target_revision, None)
        .await
        .unwrap();
    server.settle();

    let primary = server
        .get("apps/v1", "deployments", Some(NS), "podinfo-primary")
        .expect("the primary exists");
    assert_eq!(image(&primary), "podinfo:1");
    assert_eq!(primary["spec"]["replicas"], 3);
    let selector = &primary["spec"]["selector"]["matchLabels"];
    assert_ne!(
        selector,
        &serde_json::json!({"app": "podinfo"}),
        "the primary must not select the target's pods"
    );
    // The apex Service is the router's; the backend makes the two it routes between.
    let names = server.object_names();
    for name in [
        "services/shop/podinfo-primary",
        "services/shop/podinfo-canary",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "services/shop/podinfo"),
        "{names:?}"
    );
    // The revision's spec is recorded, so a primary can be rebuilt without the target.
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("controllerrevisions/shop/podinfo-primary-")),
        "{names:?}"
    );
    let after = workloads.observe(&w).await.unwrap();
    assert!(after.primary_exists);
    assert_eq!(
        after.primary_revision.as_deref(),
        Some(before.target_revision.as_str())
    );
    assert!(after.owned_missing.is_empty(), "{:?}", after.owned_missing);
}

#[tokio::test]
async fn a_new_target_revision_is_seen_and_promotion_copies_it_to_the_primary() {
    let (server, workloads) = setup();
    let w = podinfo();
    let first = workloads.observe(&w).await.unwrap().target_revision;
    workloads
        .initialize_primary(&w, &first, None)
        .await
        .unwrap();
    server.settle();

    let mut next = server
        .get("apps/v1", "deployments", Some(NS), "podinfo")
        .unwrap();
    next["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:2".into();
    server.insert(next);
    server.settle();
    let second = workloads.observe(&w).await.unwrap().target_revision;
    assert_ne!(second, first, "a new pod template is a new revision");

    workloads.promote_primary(&w, &second).await.unwrap();
    server.settle();
    let primary = server
        .get("apps/v1", "deployments", Some(NS), "podinfo-primary")
        .unwrap();
    assert_eq!(image(&primary), "podinfo:2");
    assert_eq!(
        workloads.observe(&w).await.unwrap().primary_revision,
        Some(second)
    );
}
