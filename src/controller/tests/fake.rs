//! A small stateful fake of the API server for controller flow tests: it stores what
//! is applied, answers GETs from that, honours resourceVersion preconditions, and
//! marks Deployments ready when the test says rollouts finish.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::testing::{not_found, status_body, Recorded};

pub const NS: &str = "shop";

pub fn canary(name: &str) -> String {
    format!("/apis/serin.dev/v1alpha1/namespaces/{NS}/canaries/{name}")
}

#[derive(Default)]
pub struct FakeState {
    pub objects: BTreeMap<String, Value>,
    rv: u64,
    /// Deployments finish their rollout as soon as they are written.
    pub rollouts_finish: bool,
    /// Answer the next status write with 409 Conflict.
    pub conflict_next_status: bool,
    /// Answer the next "METHOD path" request with 500 (a crash or outage mid-step).
    pub fail_next: Option<String>,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<FakeState>>);

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else if k == "selector" || k == "matchLabels" {
                    // x-kubernetes-map-type: atomic in the real schemas: replaced whole.
                    a.insert(k.clone(), v.clone());
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn kind_of(path: &str) -> &str {
    path.rsplit('/').nth(1).unwrap_or("")
}

impl FakeState {
    fn bump(&mut self, obj: &mut Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    fn finish_rollout(&self, d: &mut Value) {
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        d["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                             "updatedReplicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas});
    }

    pub fn put(&mut self, path: &str, mut obj: Value) {
        self.bump(&mut obj);
        self.objects.insert(path.to_string(), obj);
    }

    pub fn get(&self, path: &str) -> Value {
        self.objects.get(path).cloned().unwrap_or(Value::Null)
    }

    pub fn handle(&mut self, r: &Recorded) -> (u16, Value) {
        let path = r.path.split('?').next().unwrap_or("").to_string();
        let body = r.body.clone().unwrap_or(Value::Null);
        if self.fail_next.as_deref() == Some(format!("{} {path}", r.method).as_str()) {
            self.fail_next = None;
            return (
                500,
                status_body(500, "InternalError", "etcdserver: request timed out"),
            );
        }
        match r.method.as_str() {
            "GET" if path.ends_with("horizontalpodautoscalers") => {
                let prefix = format!("{path}/");
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": items}),
                )
            }
            "GET" => match self.objects.get(&path) {
                Some(o) => (200, o.clone()),
                None => (
                    404,
                    not_found(kind_of(&path), "", path.rsplit('/').next().unwrap_or("")),
                ),
            },
            "POST" => {
                let mut o = body;
                o["metadata"]["name"] = json!(format!("ev-{}", self.rv));
                (201, o)
            }
            "DELETE" => match self.objects.remove(&path) {
                Some(o) => (200, o),
                None => (404, not_found(kind_of(&path), "", "")),
            },
            "PATCH" => {
                let (item, sub) = match path.strip_suffix("/status") {
                    Some(p) => (p.to_string(), true),
                    None => (path.clone(), false),
                };
                if sub && self.conflict_next_status {
                    self.conflict_next_status = false;
                    return (409, status_body(409, "Conflict", "Operation cannot be fulfilled on canaries.serin.dev \"podinfo\": the object has been modified; please apply your changes to the latest version and try again"));
                }
                let want_rv = body["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                let mut obj = self.objects.get(&item).cloned().unwrap_or_else(|| {
                    json!({"apiVersion": body["apiVersion"], "kind": body["kind"],
                           "metadata": {"name": body["metadata"]["name"], "namespace": NS, "generation": 0, "uid": format!("uid-{}", self.rv)}})
                });
                if let Some(want) = want_rv {
                    if obj["metadata"]["resourceVersion"].as_str() != Some(want.as_str()) {
                        return (
                            409,
                            status_body(409, "Conflict", "the object has been modified"),
                        );
                    }
                }
                let mut patch = body.clone();
                if let Some(m) = patch["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                if sub {
                    obj["status"] = Value::Null;
                    merge(&mut obj["status"], &patch["status"]);
                } else {
                    let before = obj["spec"].clone();
                    merge(&mut obj, &patch);
                    if obj["spec"] != before {
                        let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                        obj["metadata"]["generation"] = json!(g);
                    }
                    if path.contains("/deployments/") && self.rollouts_finish {
                        self.finish_rollout(&mut obj);
                    }
                }
                self.bump(&mut obj);
                self.objects.insert(item, obj.clone());
                (200, obj)
            }
            _ => (405, status_body(405, "MethodNotAllowed", "")),
        }
    }
}

pub fn target_deployment(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "uid": "dep-uid", "generation": 1,
                     "labels": {"app.kubernetes.io/name": "podinfo"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo", "app.kubernetes.io/name": "podinfo"}},
                "spec": {"containers": [{"name": "podinfo", "image": image, "ports": [{"containerPort": 9898}]}]}
            }
        },
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "availableReplicas": replicas, "readyReplicas": replicas}
    })
}

pub fn canary_object(spec: Value) -> Value {
    json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS, "uid": "canary-uid", "generation": 1,
                     "finalizers": ["serin.dev/finalizer"]},
        "spec": spec,
    })
}
