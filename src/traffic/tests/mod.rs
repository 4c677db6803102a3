//! Router tests: exact API calls against the scripted mock server, and every object
//! serin writes validated against the real CRDs.

mod gateway;
mod istio;
mod nginx;
mod schema;
mod service;
mod smi;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};

use crate::testing::{expect, not_found, Exchange, MockApi, Recorded};
use crate::traffic::RouteTarget;

pub const NS: &str = "shop";

pub fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "serin.dev/v1alpha1".into(),
        kind: "Canary".into(),
        name: "podinfo".into(),
        uid: "0b6c2f6e-5d1f-4c1e-9b36-6a0f2d8e7c11".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn target() -> RouteTarget {
    RouteTarget {
        namespace: NS.into(),
        name: "podinfo".into(),
        service: "podinfo".into(),
        port: 9898,
        port_name: "http".into(),
        owner: Some(owner()),
        ..Default::default()
    }
}

/// Path of a server-side apply by serin.
pub fn apply_path(collection: &str, name: &str) -> String {
    format!("{collection}/{name}?&force=true&fieldManager=serin")
}

pub fn get(collection: &str, name: &str, obj: Option<&Value>) -> Exchange {
    let path = format!("{collection}/{name}");
    match obj {
        Some(o) => expect("GET", path, 200, o.clone()),
        None => {
            let resource = collection.rsplit('/').next().unwrap_or_default();
            expect("GET", path, 404, not_found(resource, "", name))
        }
    }
}

/// An apply answered with a minimal object (the router ignores the answer's content).
pub fn apply(collection: &str, name: &str, api_version: &str, kind: &str) -> Exchange {
    expect(
        "PATCH",
        apply_path(collection, name),
        200,
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}}),
    )
}

pub fn delete(collection: &str, name: &str) -> Exchange {
    expect(
        "DELETE",
        format!("{collection}/{name}?"),
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
    )
}

/// The body of the `i`-th request, checking it was a server-side apply.
pub fn applied(log: &[Recorded], i: usize) -> Value {
    assert_eq!(log[i].method, "PATCH");
    assert_eq!(
        log[i].content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    log[i].body.clone().expect("apply has a body")
}

/// What the server holds after `applied` was applied over `existing` by serin: the
/// applied top-level spec fields replace the existing ones (all lists serin writes are
/// atomic), annotations merge.
pub fn merged(existing: Option<&Value>, applied: &Value) -> Value {
    let mut out = existing
        .cloned()
        .unwrap_or_else(|| json!({"metadata": {}, "spec": {}}));
    for k in ["apiVersion", "kind"] {
        out[k] = applied[k].clone();
    }
    for (k, v) in applied["metadata"].as_object().unwrap() {
        if k == "annotations" || k == "labels" {
            for (ak, av) in v.as_object().unwrap() {
                out["metadata"][k][ak] = av.clone();
            }
        } else {
            out["metadata"][k] = v.clone();
        }
    }
    if let Some(spec) = applied["spec"].as_object() {
        for (k, v) in spec {
            out["spec"][k] = v.clone();
        }
    }
    out
}

pub fn start(script: Vec<Exchange>) -> (kube::Client, MockApi) {
    MockApi::start(script)
}
