#![allow(dead_code)]
//! A scripted mock Kubernetes API server for adapter tests: a kube `Client` over
//! `tower_test`, answering a fixed sequence of exchanges and recording every request,
//! so tests assert the exact calls (method, path with query, content type, body).
//! [`apiserver`] is the stateful alternative: a fake kube-apiserver that checks RBAC,
//! tracks server-side-apply field ownership, validates and aggregates Events.

pub mod apiserver;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

/// One expected request and the answer to give.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: &'static str,
    /// Path and query, exactly as the client sends it.
    pub path: String,
    pub status: u16,
    pub response: Value,
    /// How long the server takes to answer (tests with paused time make slow calls).
    pub delay: std::time::Duration,
}

impl Exchange {
    /// Answer only after `delay`.
    pub fn delayed(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Expect `method path`, answer `status` with `response`.
pub fn expect(
    method: &'static str,
    path: impl Into<String>,
    status: u16,
    response: Value,
) -> Exchange {
    Exchange {
        method,
        path: path.into(),
        status,
        response,
        delay: std::time::Duration::ZERO,
    }
}

/// A request as the mock server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

pub struct MockApi {
    recorded: Arc<Mutex<Vec<Recorded>>>,
    failures: Arc<Mutex<Vec<String>>>,
    remaining: Arc<Mutex<VecDeque<Exchange>>>,
}

impl MockApi {
    /// A client whose requests are answered from `script`, in order.
    pub fn start(script: Vec<Exchange>) -> (Client, MockApi) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let remaining = Arc::new(Mutex::new(VecDeque::from(script)));
        let (rec, fail, rem) = (recorded.clone(), failures.clone(), remaining.clone());
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body = (!bytes.is_empty()).then(|| {
                    serde_json::from_slice(&bytes)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
                });
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let method = parts.method.to_string();
                rec.lock().unwrap().push(Recorded {
                    method: method.clone(),
                    path: path.clone(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body,
                });
                let next = rem.lock().unwrap().pop_front();
                let (status, answer) = match next {
                    Some(x) if x.method == method && x.path == path => {
                        if !x.delay.is_zero() {
                            tokio::time::sleep(x.delay).await;
                        }
                        (x.status, x.response)
                    }
                    Some(x) => {
                        fail.lock().unwrap().push(format!(
                            "expected {} {}, got {method} {path}",
                            x.method, x.path
                        ));
                        (500, status_body(500, "InternalError", "unexpected request"))
                    }
                    None => {
                        fail.lock()
                            .unwrap()
                            .push(format!("unexpected extra request {method} {path}"));
                        (500, status_body(500, "InternalError", "unexpected request"))
                    }
                };
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                send.send_response(resp);
            }
        });
        (
            Client::new(svc, "default"),
            MockApi {
                recorded,
                failures,
                remaining,
            },
        )
    }

    /// A client whose requests are answered by `handler` (a fake API server with
    /// state); tests then assert the recorded sequence.
    pub fn serve<F>(mut handler: F) -> (Client, MockApi)
    where
        F: FnMut(&Recorded) -> (u16, Value) + Send + 'static,
    {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let r = record(req).await;
                rec.lock().unwrap().push(r.clone());
                let (status, answer) = handler(&r);
                send.send_response(json_response(status, &answer));
            }
        });
        (
            Client::new(svc, "default"),
            MockApi {
                recorded,
                failures: Arc::default(),
                remaining: Arc::default(),
            },
        )
    }

    /// The requests since the last call, as "METHOD path" lines.
    pub fn drain_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.recorded.lock().unwrap())
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// The requests since the last call.
    pub fn drain(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.recorded.lock().unwrap())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// Assert every scripted exchange happened, in order, and nothing else; return the log.
    pub fn finish(self) -> Vec<Recorded> {
        let failures = self.failures.lock().unwrap().clone();
        let left: Vec<String> = self
            .remaining
            .lock()
            .unwrap()
            .iter()
            .map(|x| format!("{} {}", x.method, x.path))
            .collect();
        let log: Vec<String> = self
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            failures.is_empty(),
            "mismatched requests: {failures:#?}\nall requests: {log:#?}"
        );
        assert!(
            left.is_empty(),
            "expected requests never made: {left:#?}\nall requests: {log:#?}"
        );
        self.requests()
    }
}

async fn record(req: Request<Body>) -> Recorded {
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.unwrap_or_default();
    let body = (!bytes.is_empty()).then(|| {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    });
    Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    }
}

fn json_response(status: u16, answer: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(answer).unwrap()))
        .unwrap()
}

/// A `Status` body as the API server sends it.
pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A 404 for `name` of `kind` (plural resource, group).
pub fn not_found(resource: &str, group: &str, name: &str) -> Value {
    let mut v = status_body(
        404,
        "NotFound",
        &format!("{resource}.{group} \"{name}\" not found"),
    );
    v["details"] = json!({"name": name, "group": group, "kind": resource});
    v
}

fn shared_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// A recorded real API server exchange from `../shared/apiserver-fixtures/NAME.json`.
pub fn fixture(name: &str) -> Value {
    let path = shared_dir()
        .join("apiserver-fixtures")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The status and body a real server answered in fixture `name`.
pub fn fixture_response(name: &str) -> (u16, Value) {
    let f = fixture(name);
    (
        f["response"]["status"].as_u64().unwrap() as u16,
        f["response"]["body"].clone(),
    )
}

/// A CRD from `../shared/crds/FILE`, by `spec.names.kind`.
pub fn shared_crd(file: &str, kind: &str) -> Value {
    let path = shared_dir().join("crds").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["spec"]["names"]["kind"] == kind {
            return v;
        }
    }
    panic!("no CRD of kind {kind} in {file}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;

    #[tokio::test]
    async fn answers_script_and_records_requests() {
        let (status, body) = fixture_response("04-deployment-get-404");
        let (client, mock) = MockApi::start(vec![expect(
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/podinfo",
            status,
            body,
        )]);
        let api: Api<Deployment> = Api::namespaced(client, "shop");
        let err = api.get("podinfo").await.unwrap_err();
        assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
        let log = mock.finish();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].method, "GET");
    }

    #[tokio::test]
    #[should_panic(expected = "expected GET")]
    async fn unexpected_request_fails_the_test() {
        let (client, mock) = MockApi::start(vec![expect(
            "GET",
            "/api/v1/namespaces/x/pods/p",
            200,
            json!({}),
        )]);
        let api: Api<Deployment> = Api::namespaced(client, "shop");
        let _ = api.get("podinfo").await;
        mock.finish();
    }
}
