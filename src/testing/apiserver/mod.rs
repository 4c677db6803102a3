//! A stateful fake kube-apiserver for tests: a real `kube::Client` whose requests are
//! answered the way a real API server answers a controller. It checks RBAC verbs (an
//! apply that creates needs `create` too), tracks server-side-apply field ownership in
//! `metadata.managedFields` (conflicts, shared ownership, removal of fields an applier
//! drops), validates (422), keeps resourceVersion/generation/finalizer semantics,
//! moves Deployments' status, and stores Events so a test sees what `kubectl describe`
//! would show. A hook before every request allows fault injection.
//!
//! Simplifications (each documented where it lives):
//! * only the defaults a controller notices: a Deployment's `spec.replicas` (1) and a
//!   port's `protocol` (TCP); the rest (imagePullPolicy, strategy, ...) stay unset;
//! * the schema knowledge is a table (`resources.rs`) of list-map keys, set lists and
//!   atomic maps; a keyed list whose items lack a key is treated as atomic, where the
//!   real server would reject it; `null`s in an applied config are dropped;
//! * strategic merge patch merges the known keyed lists, `$patch: delete` and
//!   `$deleteFromPrimitiveList`; ordering directives are ignored;
//! * writes to `/status` change only `.status` (a real Deployment status write may also
//!   change annotations); validation covers names, Deployments, Services and Events;
//! * watches are refused with 405 (or, with [`FakeApiServer::set_hold_watches`], held
//!   open without events); `propagationPolicy` is ignored and garbage
//!   collection runs when a test calls [`FakeApiServer::collect_garbage`]; the Deployment
//!   controller's `deployment.kubernetes.io/revision` annotation is not written;
//! * no admission webhooks, no CRD schema/CEL validation (the `../shared/crds` tests
//!   cover that); UIDs and generated names are deterministic, the clock is fixed
//!   until [`FakeApiServer::set_time`].
//!
//! Determinism: the service is a plain `tower::service_fn` answering inline, so on a
//! current-thread runtime the order of requests is reproducible. (kube's `Client`
//! itself puts a `tower::buffer::Buffer` in front, whose worker is a tokio task.)

mod controllers;
mod errors;
mod fieldset;
mod handler;
mod patch;
mod rbac;
mod resources;
mod ssa;
mod store;
mod validate;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

// Part of the API for other test modules, even where this crate does not use them yet.
#[allow(unused_imports)]
pub use rbac::{Rbac, Rule, DEFAULT_USER};
pub use store::Rollouts;

use handler::Raw;
use resources::{ResourceType, RESOURCES};
use store::{Store, Target};

/// A request as a hook sees it, parsed.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub version: String,
    /// Plural resource (`""` for discovery and unknown paths).
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Media type without parameters.
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl RequestInfo {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `PATCH` with `application/apply-patch+yaml`.
    pub fn is_apply(&self) -> bool {
        self.content_type.as_deref() == Some("application/apply-patch+yaml")
    }
}

/// A served request and its answer.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub verb: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
    pub response: Value,
}

impl RequestRecord {
    /// `"PATCH /apis/apps/v1/namespaces/shop/deployments/x?fieldManager=serin -> 200"`.
    pub fn line(&self) -> String {
        format!("{} {} -> {}", self.method, self.path, self.status)
    }
}

/// An Event as `kubectl describe` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventView {
    pub name: String,
    pub type_: String,
    pub reason: String,
    pub action: String,
    pub note: String,
    /// `series.count`, or 1 for an Event seen once.
    pub count: i64,
}

/// Runs before each request: answer instead (`Some((code, body))`) or change the
/// cluster through the [`ServerControl`] and let the request through (`None`).
/// The server's state is locked while it runs: use the `ServerControl`, never a
/// `FakeApiServer` handle, from inside (that would deadlock).
pub type Hook = Box<dyn FnMut(&RequestInfo, &mut ServerControl) -> Option<(u16, Value)> + Send>;

struct State {
    store: Store,
    rbac: Option<Rbac>,
    requests: Vec<RequestRecord>,
    /// Keep every request in `requests` (off for long simulations).
    record: bool,
    hook: Option<Hook>,
    /// Hold watches open without an event instead of refusing them.
    hold_watches: bool,
}

/// What a hook may do to the cluster while a request waits.
pub struct ServerControl<'a> {
    store: &'a mut Store,
    rbac: &'a mut Option<Rbac>,
    after: Option<(u16, Value)>,
}

/// The fake API server; clones share the cluster.
#[derive(Clone)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

fn find_rt(
    api_version: &str,
    pred: impl Fn(&ResourceType) -> bool,
) -> Option<(&'static ResourceType, String)> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.versions.contains(&version) && pred(r))
        .map(|r| (r, version.to_string()))
}

fn target(api_version: &str, plural: &str, ns: Option<&str>, name: &str) -> Target {
    let (rt, version) = find_rt(api_version, |r| r.plural == plural)
        .unwrap_or_else(|| panic!("unknown resource {api_version} {plural}"));
    Target {
        rt,
        version,
        namespace: ns.map(str::to_string).filter(|_| rt.namespaced),
        name: name.to_string(),
        status: false,
    }
}

/// Shared by [`FakeApiServer`] and [`ServerControl`].
fn insert(store: &mut Store, obj: Value) -> Value {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion").to_string();
    let kind = obj["kind"].as_str().expect("kind").to_string();
    let (rt, _) = find_rt(&api_version, |r| r.kind == kind)
        .unwrap_or_else(|| panic!("unknown kind {api_version} {kind}"));
    let t = target(
        &api_version,
        rt.plural,
        obj["metadata"]["namespace"].as_str(),
        obj["metadata"]["name"].as_str().unwrap_or_default(),
    );
    const USER: &str = "kubectl-client-side-apply";
    let result = if store.get(&t).is_ok() {
        let status = obj.get("status").cloned();
        let mut written = store.update(&t, obj, USER);
        if let (Ok(_), Some(status)) = (&written, status) {
            let mut with_status = store.get(&t).expect("just written");
            with_status["status"] = status;
            written = store.update(
                &Target {
                    status: true,
                    ..t.clone()
                },
                with_status,
                USER,
            );
        }
        written
    } else {
        store.create(&t, obj, USER, true)
    };
    result.unwrap_or_else(|e| panic!("insert {api_version} {kind}: {}", e.body))
}

impl ServerControl<'_> {
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.store.get(&target(api_version, plural, ns, name)).ok()
    }

    /// Create or overwrite as a user would (manager `kubectl-client-side-apply`).
    pub fn insert(&mut self, obj: Value) -> Value {
        insert(self.store, obj)
    }

    /// Delete as a user would (finalizers are honoured). False if it was not there.
    pub fn delete_object(
        &mut self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> bool {
        self.store
            .delete(&target(api_version, plural, ns, name), None)
            .is_ok()
    }

    /// Give the object a new resourceVersion, so a client's copy goes stale.
    pub fn bump_resource_version(
        &mut self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> bool {
        self.store
            .bump(&target(api_version, plural, ns, name).key())
    }

    pub fn set_resource_available(&mut self, plural: &str, available: bool) {
        set_available(self.store, plural, available);
    }

    pub fn set_rbac(&mut self, policy: Option<Rbac>) {
        *self.rbac = policy;
    }

    pub fn settle(&mut self) {
        self.store.settle();
    }

    /// Serve the request, then answer this instead: the write happened, the client
    /// never learns it (a lost response or a timeout after commit).
    pub fn answer_after_serving(&mut self, code: u16, body: Value) {
        self.after = Some((code, body));
    }
}

fn set_available(store: &mut Store, plural: &str, available: bool) {
    if available {
        store.unavailable.remove(plural);
    } else {
        // Removing a CRD removes its objects.
        store.unavailable.insert(plural.to_string());
        store.objects.retain(|k, _| k.1 != plural);
    }
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    let (ct, bytes) = match body {
        Value::String(s) => ("text/plain; charset=utf-8", s.clone().into_bytes()),
        v => ("application/json", serde_json::to_vec(v).expect("json")),
    };
    Response::builder()
        .status(code)
        .header("content-type", ct)
        .body(Body::from(bytes))
        .expect("response")
}

impl FakeApiServer {
    /// An empty cluster; RBAC allows everything; Deployments roll out instantly.
    pub fn new() -> Self {
        FakeApiServer {
            state: Arc::new(Mutex::new(State {
                store: Store::default(),
                rbac: None,
                requests: Vec::new(),
                record: true,
                hook: None,
                hold_watches: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client whose requests this server answers (default namespace `default`).
    pub fn client(&self) -> Client {
        Client::new(self.service(), "default")
    }

    /// A client whose writes stop once `fence` closes, as the controller's are.
    pub fn fenced_client(&self, fence: &crate::controller::Fence) -> Client {
        kube::client::ClientBuilder::new(self.service(), "default")
            .with_layer(&crate::controller::fence::FenceLayer(fence.clone()))
            .build()
    }

    /// The server as a tower service.
    fn service(
        &self,
    ) -> impl tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Send
           + Clone
           + 'static {
        let state = self.state.clone();
        tower::service_fn(move |req: Request<Body>| {
            let state = state.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let header = |h: http::header::HeaderName| {
                    parts
                        .headers
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let raw = Raw {
                    method: parts.method.to_string(),
                    path_and_query: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    content_type: header(http::header::CONTENT_TYPE),
                    accept: header(http::header::ACCEPT),
                    user_agent: header(http::header::USER_AGENT),
                    body: bytes.to_vec(),
                };
                let watch = raw.path_and_query.split_once('?').is_some_and(|(_, q)| {
                    q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1")
                });
                if watch && state.lock().unwrap_or_else(|e| e.into_inner()).hold_watches {
                    // An open watch on which nothing happens: the controller runs on its
                    // initial list and its own requeues.
                    std::future::pending::<()>().await;
                }
                let (code, answer) =
                    serve(&mut state.lock().unwrap_or_else(|e| e.into_inner()), raw);
                Ok::<_, std::convert::Infallible>(respond(code, &answer))
            }
        })
    }

    /// Create (or overwrite) an object as a user would: manager
    /// `kubectl-client-side-apply` (operation Update) owns every field it sets; uid,
    /// resourceVersion, generation and creationTimestamp are filled in. A `status` in
    /// `obj` is kept (unlike a real create), so tests can start from any state.
    /// Panics if the object is invalid.
    pub fn insert(&self, obj: Value) -> Value {
        insert(&mut self.lock().store, obj)
    }

    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.lock()
            .store
            .get(&target(api_version, plural, ns, name))
            .ok()
    }

    /// Delete as a user would (finalizers are honoured). False if it was not there.
    pub fn delete_object(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> bool {
        self.lock()
            .store
            .delete(&target(api_version, plural, ns, name), None)
            .is_ok()
    }

    /// `None` allows everything.
    pub fn set_rbac(&self, policy: Option<Rbac>) {
        self.lock().rbac = policy;
    }

    /// Install or remove a resource type (a CRD) by plural; removing deletes its objects.
    pub fn set_resource_available(&self, plural: &str, available: bool) {
        set_available(&mut self.lock().store, plural, available);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Stop (or resume) keeping requests for [`Self::requests`]: a long simulation
    /// would otherwise hold every body it ever sent.
    pub fn set_recording(&self, on: bool) {
        self.lock().record = on;
    }

    pub fn drain_requests(&self) -> Vec<RequestRecord> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Hold watches open (no event ever comes) instead of refusing them with 405, so
    /// the whole controller (`run`) can run against this server.
    pub fn set_hold_watches(&self, on: bool) {
        self.lock().hold_watches = on;
    }

    pub fn set_hook(&self, hook: Hook) {
        self.lock().hook = Some(hook);
    }

    pub fn clear_hook(&self) {
        self.lock().hook = None;
    }

    pub fn set_deployment_rollouts(&self, mode: Rollouts) {
        self.lock().store.rollouts = mode;
    }

    /// Finish every Deployment's rollout now.
    pub fn settle(&self) {
        self.lock().store.settle();
    }

    /// The server clock (creationTimestamp, managedFields times, deletionTimestamp).
    pub fn set_time(&self, now: DateTime<Utc>) {
        self.lock().store.now = now;
    }

    /// Delete objects whose owners are all gone (cascading); returns
    /// `plural/namespace/name` of each. The real collector runs on its own; tests call this.
    pub fn collect_garbage(&self) -> Vec<String> {
        self.lock().store.collect_garbage()
    }

    /// Every object stored, as `plural/namespace/name` (for assertions on what exists).
    pub fn object_names(&self) -> Vec<String> {
        self.lock()
            .store
            .objects
            .keys()
            .map(|k| format!("{}/{}/{}", k.1, k.2, k.3))
            .collect()
    }

    /// The events.k8s.io Events about `kind`/`name` in `ns`, oldest first.
    pub fn events_for(&self, ns: &str, kind: &str, name: &str) -> Vec<EventView> {
        let st = self.lock();
        let mut evs: Vec<&Value> = st
            .store
            .objects
            .iter()
            .filter(|(k, _)| k.1 == "events" && k.2 == ns)
            .map(|(_, e)| e)
            .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
            .collect();
        // UIDs are sequential, so they sort in creation order.
        evs.sort_by_key(|e| {
            e["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        evs.into_iter()
            .map(|e| EventView {
                name: s(&e["metadata"]["name"]),
                type_: s(&e["type"]),
                reason: s(&e["reason"]),
                action: s(&e["action"]),
                note: s(&e["note"]),
                count: e["series"]["count"].as_i64().unwrap_or(1),
            })
            .collect()
    }
}

fn serve(st: &mut State, raw: Raw) -> (u16, Value) {
    let (info, route) = handler::request_info(&st.store, &raw);
    let mut after = None;
    let mut answer = None;
    if let Some(mut hook) = st.hook.take() {
        let mut ctl = ServerControl {
            store: &mut st.store,
            rbac: &mut st.rbac,
            after: None,
        };
        answer = hook(&info, &mut ctl);
        after = ctl.after.take();
        st.hook = Some(hook);
    }
    let (code, body) = match answer {
        Some(a) => a,
        None => {
            // The hook may have changed the cluster (a CRD removed): route again.
            let (_, route) = if st.hook.is_some() {
                handler::request_info(&st.store, &raw)
            } else {
                (info.clone(), route)
            };
            match handler::dispatch(&mut st.store, &st.rbac, &raw, &info, route) {
                Ok(ok) => ok,
                Err(e) => (e.code, e.body),
            }
        }
    };
    let (code, body) = after.unwrap_or((code, body));
    if !st.record {
        return (code, body);
    }
    st.requests.push(RequestRecord {
        method: info.method.clone(),
        path: raw.path_and_query.clone(),
        verb: info.verb.clone(),
        content_type: info.content_type.clone(),
        body: info.body.clone(),
        status: code,
        response: body.clone(),
    });
    (code, body)
}

/// A `Status` body for hooks that answer with an error, e.g. `status(500, "InternalError", "etcdserver: request timed out")`.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    errors::status(code, reason, message, Some(json!({})))
}
