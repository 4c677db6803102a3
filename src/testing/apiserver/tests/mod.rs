//! Behaviour tests, all through a real `kube::Client`.

mod crud;
mod events;
mod faults;
mod fidelity;
mod rbac;
mod ssa;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{json, Value};

use super::{FakeApiServer, Rollouts};

pub const NS: &str = "shop";

/// A valid Deployment `name` running `image`, selected by `app: name`.
pub fn deployment(name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}
            }
        }
    })
}

pub fn deployments(s: &FakeApiServer) -> Api<Deployment> {
    Api::namespaced(s.client(), NS)
}

/// The code and message of an API error.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The body of the last answer the server gave.
pub fn last_response(s: &FakeApiServer) -> Value {
    s.requests().last().expect("a request").response.clone()
}

/// The managedFields entry of `manager` (with `operation`), as JSON.
pub fn entry(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .cloned()
}

pub fn dep(s: &FakeApiServer, name: &str) -> Value {
    s.get("apps/v1", "deployments", Some(NS), name)
        .expect("deployment exists")
}

pub fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Send a raw request (for what kube's typed API does not expose, like JSON patch).
pub async fn raw(
    s: &FakeApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let res = s
        .client()
        .send(req.body(kube::client::Body::from(bytes)).unwrap())
        .await
        .unwrap();
    let code = res.status().as_u16();
    let bytes = res.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, body)
}
