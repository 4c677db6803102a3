//! The mock API server of the scale benchmark: list (paginated, with label and field
//! selectors: `mock_list.rs`) + watch (newline-delimited events from a
//! resourceVersion), GET, server-side apply and merge patches (object and `/status`),
//! create, replace (Leases, with resourceVersion preconditions), delete, and Events
//! (counted, not stored). Deployments finish their rollout at once, in a second watch
//! event, as the Deployment controller would report it.
//!
//! It counts requests by verb and resource in three kinds: requests, watch connections,
//! and the pages of lists asked for with a `limit` (kube's watchers list in pages).
//! Requests under `/bench/human/` are the bench acting as a person (approvals through
//! `serin::gates::apply_decision`, with a kube client whose base URL carries that
//! prefix): served like any other, not counted. `mock_track.rs` attributes each counted
//! request to the Canary it concerns and follows whole releases and approvals.
//!
//! It runs in a child process so that the controller's RSS is measured alone.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::mock_list::{PageError, Selector, Snapshots};
use super::mock_track::{attribute, base_name, Tracker};
use super::seed::{deployment, Seed};

/// The bench's own endpoints and what the mock follows for them.
#[path = "mock_bench.rs"]
mod bench;
/// Writes: create, replace, patch, delete.
#[path = "mock_write.rs"]
mod write;
use write::How;

#[derive(Default)]
struct State {
    rv: u64,
    /// By type key ("/apis/apps/v1/deployments"), then item path.
    /// Shared, so that a list's snapshot costs a reference per item, not a copy.
    objects: HashMap<String, BTreeMap<String, Arc<Value>>>,
    /// (resourceVersion, type key, namespace, event line)
    log: Vec<(u64, String, String, Arc<Value>)>,
    /// Requests (neither watches nor watchers' list pages) by "VERB resource".
    counts: BTreeMap<String, u64>,
    watches: BTreeMap<String, u64>,
    pages: BTreeMap<String, u64>,
    open_watches: u64,
    snapshots: Snapshots,
    track: Tracker,
    /// Deployment item paths released at least once, in release order.
    released: Vec<String>,
    /// The gated Deployments' item paths (released first).
    gated: Vec<String>,
    /// Who owns each top-level status field, by item path.
    status_owners: HashMap<String, HashMap<String, String>>,
}

#[derive(Clone)]
pub struct Mock {
    state: Arc<Mutex<State>>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// `/apis/g/v/namespaces/ns/plural/name/sub` split up.
struct ApiPath {
    type_key: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    /// The item path (without a subresource).
    item: String,
}

fn parse_path(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        "apis" => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    let (ns, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first()?;
    let name = rest.get(1).map(|s| s.to_string());
    let sub = rest.get(2).map(|s| s.to_string());
    let type_key = format!("{prefix}/{plural}");
    let item = match (&ns, &name) {
        (Some(ns), Some(n)) => format!("{prefix}/namespaces/{ns}/{plural}/{n}"),
        (None, Some(n)) => format!("{prefix}/{plural}/{n}"),
        _ => String::new(),
    };
    Some(ApiPath {
        type_key,
        ns,
        name,
        sub,
        item,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn kind_for(type_key: &str) -> &'static str {
    match type_key.rsplit('/').next() {
        Some("deployments") => "Deployment",
        Some("canaries") => "Canary",
        Some("services") => "Service",
        Some("namespaces") => "Namespace",
        Some("leases") => "Lease",
        Some("analysistemplates") => "AnalysisTemplate",
        Some("horizontalpodautoscalers") => "HorizontalPodAutoscaler",
        _ => "Object",
    }
}

/// What the metadata-only watches and lists of kube ask for.
fn metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

fn as_partial(o: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]})
}

impl State {
    fn get(&self, p: &ApiPath) -> Option<&Value> {
        self.objects.get(&p.type_key)?.get(&p.item).map(|v| &**v)
    }

    fn remove(&mut self, p: &ApiPath) -> Option<Value> {
        self.objects
            .get_mut(&p.type_key)?
            .remove(&p.item)
            .map(Arc::unwrap_or_clone)
    }

    fn bump(&mut self, o: &mut Value) -> u64 {
        self.rv += 1;
        o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.rv
    }

    fn record(&mut self, p: &ApiPath, kind: &str, obj: &Value) {
        let line = Arc::new(json!({"type": kind, "object": obj}));
        self.log.push((
            self.rv,
            p.type_key.clone(),
            p.ns.clone().unwrap_or_default(),
            line,
        ));
    }

    /// Store `obj` at `p`, with a new resourceVersion and a watch event.
    fn store(&mut self, p: &ApiPath, mut obj: Value) -> Value {
        let kind = if self.get(p).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.bump(&mut obj);
        self.record(p, kind, &obj);
        self.objects
            .entry(p.type_key.clone())
            .or_default()
            .insert(p.item.clone(), Arc::new(obj.clone()));
        obj
    }

    fn finish_rollout(&mut self, p: &ApiPath) {
        let Some(mut d) = self.get(p).cloned() else {
            return;
        };
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let want = json!({"observedGeneration": generation, "replicas": replicas,
                          "updatedReplicas": replicas, "availableReplicas": replicas,
                          "readyReplicas": replicas,
                          "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                          "lastUpdateTime": "2026-11-22T14:23:08Z", "lastTransitionTime": "2026-11-22T14:23:08Z",
                                          "message": "Deployment has minimum availability."},
                                         {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                          "lastUpdateTime": "2026-11-22T14:23:08Z", "lastTransitionTime": "2026-11-22T14:23:08Z",
                                          "message": "ReplicaSet has successfully progressed."}]});
        if d["status"] != want {
            d["status"] = want;
            self.store(p, d);
        }
    }

    fn list(&self, p: &ApiPath, sel: &Selector) -> (u64, Vec<Arc<Value>>) {
        let items: Vec<Arc<Value>> = match self.objects.get(&p.type_key) {
            None => vec![],
            Some(m) => match &p.ns {
                None => m.values().collect::<Vec<_>>(),
                // Items sort by path, so one namespace is one range.
                Some(_) => {
                    let from = format!("{}/", uriless_collection(p));
                    m.range(from.clone()..)
                        .take_while(|(k, _)| k.starts_with(&from))
                        .map(|(_, v)| v)
                        .collect()
                }
            }
            .into_iter()
            .filter(|v| sel.matches(v))
            .cloned()
            .collect(),
        };
        (self.rv, items)
    }
}

fn list_body(p: &ApiPath, partial: bool, page: super::mock_list::Page) -> Value {
    let kind = if partial {
        "PartialObjectMetadataList".to_string()
    } else {
        format!("{}List", kind_for(&p.type_key))
    };
    let mut meta = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = page.cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(page.remaining);
    }
    let api_version = if partial {
        "meta.k8s.io/v1".to_string()
    } else {
        let (prefix, _) = p.type_key.rsplit_once('/').unwrap();
        prefix
            .trim_start_matches("/api/")
            .trim_start_matches("/apis/")
            .to_string()
    };
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|v| {
            if partial {
                as_partial(v)
            } else {
                (**v).clone()
            }
        })
        .collect();
    json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items})
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    let q = uri.query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn json_response(code: u16, v: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

impl Mock {
    pub fn new(seed: &Seed) -> Mock {
        let mut st = State::default();
        for n in 0..seed.namespaces {
            let ns = format!("team-{n:03}");
            let p = parse_path(&format!("/api/v1/namespaces/{ns}")).unwrap();
            st.store(
                &p,
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "uid": format!("ns-{n}"),
                                    "labels": {"kubernetes.io/metadata.name": ns,
                                               "serin.dev/shard": if n.is_multiple_of(2) { "a" } else { "b" }}}}),
            );
            let p = parse_path(&format!(
                "/apis/serin.dev/v1alpha1/namespaces/{ns}/analysistemplates/error-rate"
            ))
            .unwrap();
            st.store(&p, json!({"apiVersion": "serin.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "error-rate", "namespace": ns, "uid": format!("tpl-{n}"), "generation": 1},
                "spec": {"args": [{"name": "max", "default": "0.01"}],
                         "metrics": [{"name": "error-rate",
                                      "query": "sum(rate(http_requests_total{namespace=\"{{namespace}}\",pod=~\"{{workload}}-.*\",code=~\"5..\"}[{{interval}}])) / sum(rate(http_requests_total{namespace=\"{{namespace}}\",pod=~\"{{workload}}-.*\"}[{{interval}}]))",
                                      "threshold": {"max": 0.01}}]}}));
        }
        for i in 0..seed.deployments {
            let ns = format!("team-{:03}", i % seed.namespaces);
            let name = format!("app-{i:04}");
            let p =
                parse_path(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}")).unwrap();
            let d = deployment(&ns, &name, i, "1.0.0", seed);
            st.store(&p, d);
            st.finish_rollout(&p);
            if i < seed.gated {
                st.gated.push(p.item.clone());
                st.track.gated.insert(format!("{ns}/{name}"));
            }
        }
        let (changed, _) = tokio::sync::watch::channel(st.rv);
        Mock {
            state: Arc::new(Mutex::new(st)),
            changed,
        }
    }

    fn notify(&self) {
        let rv = self.state.lock().unwrap().rv;
        self.changed.send_replace(rv);
    }

    async fn watch(&self, p: ApiPath, from: u64, partial: bool, sel: Selector) -> Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut changed = self.changed.subscribe();
        let state = self.state.clone();
        state.lock().unwrap().open_watches += 1;
        tokio::spawn(async move {
            let mut next_rv = from;
            loop {
                changed.borrow_and_update();
                let batch: Vec<Bytes> = {
                    let st = state.lock().unwrap();
                    let start = st.log.partition_point(|(rv, ..)| *rv <= next_rv);
                    let out: Vec<Bytes> = st.log[start..]
                        .iter()
                        .filter(|(_, t, ns, line)| {
                            *t == p.type_key
                                && p.ns.as_ref().is_none_or(|want| want == ns)
                                && sel.matches(&line["object"])
                        })
                        .map(|(_, _, _, line)| {
                            let mut bytes = if partial {
                                serde_json::to_vec(&json!({"type": line["type"], "object": as_partial(&line["object"])}))
                            } else {
                                serde_json::to_vec(&**line)
                            }
                            .unwrap();
                            bytes.push(b'\n');
                            Bytes::from(bytes)
                        })
                        .collect();
                    next_rv = st.log.last().map_or(next_rv, |(rv, ..)| *rv);
                    out
                };
                for b in batch {
                    if tx.send(b).await.is_err() {
                        state.lock().unwrap().open_watches -= 1;
                        return;
                    }
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap()
    }

    pub async fn handle(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut path = uri.path().to_string();
        match path.as_str() {
            "/bench/stats" => return json_response(200, &self.stats()),
            "/bench/releases" => {
                return json_response(200, &self.state.lock().unwrap().track.summary())
            }
            "/bench/waiting" => return json_response(200, &self.waiting()),
            "/bench/recycle" => return json_response(200, &json!({"released": self.recycle()})),
            "/bench/reset-largest-page" => {
                self.state.lock().unwrap().snapshots.largest_page = 0;
                return json_response(200, &json!({}));
            }
            "/bench/release" => {
                let n = query_param(&uri, "count")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let done = self.release(n);
                return json_response(200, &json!({"released": done}));
            }
            _ => {}
        }
        // The bench acting as a person: served, not counted.
        let human = match path.strip_prefix("/bench/human") {
            Some(rest) => {
                path = rest.to_string();
                true
            }
            None => false,
        };
        let Some(p) = parse_path(&path) else {
            return (StatusCode::NOT_FOUND, "not an API path").into_response();
        };
        let plural = p.type_key.rsplit('/').next().unwrap_or("").to_string();
        let watching = query_param(&uri, "watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (&method, p.name.is_some(), watching) {
            (&Method::GET, _, true) => "WATCH",
            (&Method::GET, false, false) => "LIST",
            _ => method.as_str(),
        };
        let what = format!(
            "{verb} {plural}{}",
            p.sub.as_ref().map(|s| format!("/{s}")).unwrap_or_default()
        );
        let limit: usize = query_param(&uri, "limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cont = query_param(&uri, "continue").filter(|c| !c.is_empty());
        let paged = verb == "LIST" && (limit > 0 || cont.is_some());
        let sel = Selector::parse(
            query_param(&uri, "labelSelector").as_deref(),
            query_param(&uri, "fieldSelector").as_deref(),
        );
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        if !human {
            let mut st = self.state.lock().unwrap();
            let counts = if watching {
                &mut st.watches
            } else if paged {
                &mut st.pages
            } else {
                &mut st.counts
            };
            *counts.entry(what.clone()).or_default() += 1;
            if !watching && !paged {
                let st = &mut *st;
                let who = attribute(
                    &st.track,
                    p.ns.as_deref(),
                    &plural,
                    p.name.as_deref(),
                    &sel,
                    &body,
                    |ns, n| st.known(ns, n),
                );
                if let Some(who) = who {
                    if plural == "events" && method == Method::POST {
                        if let Some(n) = body["metadata"]["name"].as_str() {
                            st.track.events.insert(
                                format!("{}/{n}", p.ns.clone().unwrap_or_default()),
                                who.clone(),
                            );
                        }
                    }
                    st.track.request(&who, &what);
                }
            }
        }
        let partial = metadata_only(&headers);
        if watching {
            let from = query_param(&uri, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return self.watch(p, from, partial, sel).await;
        }
        let (code, answer) = {
            let mut st = self.state.lock().unwrap();
            if verb == "LIST" {
                let st = &mut *st;
                let (rv, items) = st.list(&p, &sel);
                match st.snapshots.page(limit, cont.as_deref(), || (rv, items)) {
                    Ok(page) => (200, list_body(&p, partial, page)),
                    Err(PageError::Expired) => (
                        410,
                        status(410, "Expired", "The provided continue parameter is too old to display a consistent list result."),
                    ),
                    Err(PageError::Malformed) => {
                        (400, status(400, "BadRequest", "invalid continue token"))
                    }
                }
            } else {
                let how = How {
                    partial,
                    server_side_apply: headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|c| c.starts_with("application/apply-patch")),
                    manager: query_param(&uri, "fieldManager").unwrap_or_default(),
                };
                let r = self.apply(&mut st, &method, &p, body.clone(), &how);
                if r.0 < 300 && !human {
                    self.track_write(&mut st, &method, &p, &plural, &body);
                }
                if r.0 < 300
                    && human
                    && plural == "canaries"
                    && method == Method::PATCH
                    && p.sub.as_deref() == Some("status")
                {
                    let key = format!(
                        "{}/{}",
                        p.ns.clone().unwrap_or_default(),
                        p.name.clone().unwrap_or_default()
                    );
                    st.track.approval(&key);
                }
                r
            }
        };
        if method != Method::GET {
            self.notify();
        }
        json_response(code, &answer)
    }
}

/// The collection path of `p` (POST target).
fn uriless_collection(p: &ApiPath) -> String {
    let (prefix, plural) = p.type_key.rsplit_once('/').unwrap();
    match &p.ns {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
        None => p.type_key.clone(),
    }
}

/// Serve on 127.0.0.1 (an ephemeral port) until the process is stopped.
pub async fn serve(seed: Seed) {
    let mock = Mock::new(&seed);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let mock = mock.clone();
            async move { mock.handle(method, uri, headers, body).await }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    axum::serve(listener, app).await.unwrap();
}
