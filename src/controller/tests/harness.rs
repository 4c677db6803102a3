//! The Canary controller against the stateful fake API server ([`FakeApiServer`]):
//! builder-style setup, a pinned clock, scripted metric values, and the requests each
//! reconcile made as `"METHOD path?query"` lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::super::events::MemoryEvents;
use super::super::{reconcile_canary, Context, Fence, ReconcileError, Routers};
use crate::crd::{Canary, ProviderSpec};
use crate::providers::{MetricError, MetricSource, MetricSources};
use crate::testing::apiserver::{FakeApiServer, Hook, RequestInfo, Rollouts, ServerControl};
use crate::traffic::{RouterKind, ServiceRouter, TrafficRouter};
use crate::workloads::deployments::KubeWorkloads;

pub const NS: &str = "shop";
/// The query kube-rs sends with every forced server-side apply as serin.
pub const APPLY: &str = "?&force=true&fieldManager=serin";

pub fn dep(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
}
pub fn svc(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/services/{name}")
}
pub fn canary(name: &str) -> String {
    format!("/apis/serin.dev/v1alpha1/namespaces/{NS}/canaries/{name}")
}
pub fn hpas() -> String {
    format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers?")
}
pub fn records() -> String {
    format!("/apis/apps/v1/namespaces/{NS}/controllerrevisions?&labelSelector=serin.dev%2Fprimary")
}
pub const TEMPLATE: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/analysistemplates/error-rate";

pub fn get(path: &str) -> String {
    format!("GET {path}")
}
pub fn apply(path: &str) -> String {
    format!("PATCH {path}{APPLY}")
}
pub fn status_write() -> String {
    format!("PATCH {}/status{APPLY}", canary("podinfo"))
}

/// `(apiVersion, plural, namespace, name)` of an object path.
fn parse_path(path: &str) -> (String, String, Option<String>, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (api_version, rest) = match parts.first() {
        Some(&"api") => (parts[1].to_string(), &parts[2..]),
        _ => (format!("{}/{}", parts[1], parts[2]), &parts[3..]),
    };
    match rest {
        ["namespaces", ns, plural, name] => (
            api_version,
            plural.to_string(),
            Some(ns.to_string()),
            name.to_string(),
        ),
        [plural, name] => (api_version, plural.to_string(), None, name.to_string()),
        _ => panic!("not an object path: {path}"),
    }
}

/// The user's Deployment: 3 replicas, selector `app: podinfo`, a label both versions'
/// pods share (`app.kubernetes.io/name`).
pub fn target_deployment(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS,
                     "labels": {"app.kubernetes.io/name": "podinfo"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo", "app.kubernetes.io/name": "podinfo"}},
                "spec": {"containers": [{"name": "podinfo", "image": image, "ports": [{"containerPort": 9898}]}]}
            }
        },
    })
}

pub fn canary_object(spec: Value) -> Value {
    json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS, "finalizers": ["serin.dev/finalizer"]},
        "spec": spec,
    })
}

pub fn error_rate_template() -> Value {
    json!({"apiVersion": "serin.dev/v1alpha1", "kind": "AnalysisTemplate",
           "metadata": {"name": "error-rate", "namespace": NS},
           "spec": {"args": [{"name": "max", "default": "0.01"}],
                    "metrics": [{"name": "error-rate",
                                 "query": "sum(rate(http_requests_total{namespace=\"{{namespace}}\",pod=~\"{{workload}}-.*\",code=~\"5..\"}[{{interval}}])) / sum(rate(http_requests_total{namespace=\"{{namespace}}\",pod=~\"{{workload}}-.*\"}[{{interval}}]))",
                                 "threshold": {"max": 0.01}}]}})
}

/// Metric values the test sets; every query is recorded.
#[derive(Default)]
pub struct FakeMetrics {
    pub value: Mutex<Option<Result<f64, MetricError>>>,
    pub queries: Mutex<Vec<String>>,
}

#[async_trait]
impl MetricSource for FakeMetrics {
    async fn query_scalar(&self, query: &str, _at: DateTime<Utc>) -> Result<f64, MetricError> {
        self.queries.lock().unwrap().push(query.to_string());
        self.value
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Err(MetricError::NoData))
    }
    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.query_scalar(query, at).await.map(|v| vec![v])
    }
}

pub struct Sources(pub Arc<FakeMetrics>);
impl MetricSources for Sources {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&crate::providers::ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

pub struct Harness {
    pub server: FakeApiServer,
    pub ctx: Arc<Context>,
    pub now: Arc<Mutex<DateTime<Utc>>>,
    pub metrics: Arc<FakeMetrics>,
    pub events: MemoryEvents,
}

impl Harness {
    /// The user's Deployment, a Canary with `canary_spec`, the `error-rate` template.
    pub fn new(canary_spec: Value) -> Self {
        let server = FakeApiServer::new();
        server.set_time(Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap());
        server.insert(target_deployment("podinfo:1", 3));
        server.insert(canary_object(canary_spec));
        server.insert(error_rate_template());
        server.settle();
        let client = server.client();
        let now = Arc::new(Mutex::new(
            Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
        ));
        let metrics = Arc::new(FakeMetrics::default());
        let events = MemoryEvents::default();
        let mut by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> = HashMap::new();
        by_kind.insert(
            RouterKind::Service,
            Arc::new(ServiceRouter::new(client.clone())),
        );
        let clock_now = now.clone();
        let ctx = Arc::new(Context {
            written: Default::default(),
            templates: None,
            policies: None,
            client: client.clone(),
            workloads: Arc::new(KubeWorkloads::new(client.clone())),
            routers: Routers {
                by_kind,
                default: RouterKind::Service,
            },
            sources: Arc::new(Sources(metrics.clone())),
            events: Arc::new(events.clone()),
            clock: Arc::new(move || *clock_now.lock().unwrap()),
            check_timeout: Duration::from_secs(5),
            reconcile_deadline: Duration::from_secs(20),
            queries: None,
            controller_namespace: "serin-system".into(),
            webhooks: None,
            notify: None,
            metrics: Arc::new(crate::metrics::ControllerMetrics::new()),
            fence: Fence::unfenced(),
        });
        server.drain_requests();
        Harness {
            server,
            ctx,
            now,
            metrics,
            events,
        }
    }

    /// When the idle `podinfo` Canary looks again, asked now: at its place in the
    /// period.
    pub fn idle_recheck(&self) -> Duration {
        crate::rollout::Recheck::for_canary(NS, "podinfo").after(*self.now.lock().unwrap())
    }

    /// The same cluster and clock with a changed context (webhooks on, other bounds).
    pub fn with_ctx(mut self, f: impl FnOnce(&mut Context)) -> Self {
        let mut ctx = (*self.ctx).clone();
        f(&mut ctx);
        self.ctx = Arc::new(ctx);
        self
    }

    /// Outgoing webhooks on, called by a fresh background runner on this clock.
    pub fn with_webhooks(self) -> Self {
        let clock = self.ctx.clock.clone();
        self.with_ctx(|c| c.webhooks = Some(Arc::new(new_runner(clock))))
    }

    pub fn runner(&self) -> Arc<crate::gates::HookRunner> {
        self.ctx.webhooks.clone().expect("webhooks on")
    }

    pub fn advance(&self, secs: i64) {
        let mut now = self.now.lock().unwrap();
        *now += chrono::Duration::seconds(secs);
        self.server.set_time(*now);
    }

    pub async fn reconcile(&self) -> (Result<Action, ReconcileError>, Vec<String>) {
        let obj: Canary = match serde_json::from_value(self.get(&canary("podinfo"))) {
            Ok(c) => c,
            Err(_) => Canary::new(
                "podinfo",
                serde_json::from_value(json!({"targetRef": {"name": "podinfo"}})).unwrap(),
            ),
        };
        let mut obj = obj;
        obj.metadata.namespace = Some(NS.into());
        let r = reconcile_canary(Arc::new(obj), self.ctx.clone()).await;
        (r, self.calls())
    }

    /// The requests since the last call, as `"METHOD path?query"`.
    pub fn calls(&self) -> Vec<String> {
        self.server
            .drain_requests()
            .into_iter()
            .filter(|r| !r.path.contains("/events"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Reconcile and return the calls, asserting success.
    pub async fn ok(&self) -> Vec<String> {
        let (r, calls) = self.reconcile().await;
        r.unwrap_or_else(|e| panic!("reconcile failed: {e}; calls: {calls:#?}"));
        calls
    }

    /// The object at `path`, or `Value::Null`.
    pub fn get(&self, path: &str) -> Value {
        let (av, plural, ns, name) = parse_path(path);
        self.server
            .get(&av, &plural, ns.as_deref(), &name)
            .unwrap_or(Value::Null)
    }

    pub fn delete(&self, path: &str) -> bool {
        let (av, plural, ns, name) = parse_path(path);
        self.server
            .delete_object(&av, &plural, ns.as_deref(), &name)
    }

    pub fn status(&self) -> Value {
        self.get(&canary("podinfo"))["status"].clone()
    }

    pub fn settle(&self) {
        self.server.settle();
    }

    pub fn manual_rollouts(&self) {
        self.server.set_deployment_rollouts(Rollouts::Manual);
    }

    pub fn instant_rollouts(&self) {
        self.server.set_deployment_rollouts(Rollouts::Instant);
    }

    /// Edit an object as its user would (manager `kubectl-client-side-apply`).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut o = self.get(path);
        f(&mut o);
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("managedFields");
            m.remove("resourceVersion");
        }
        self.server.insert(o);
    }

    pub fn set_image(&self, image: &str) {
        self.edit(&dep("podinfo"), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        });
    }

    pub fn image_of(&self, deployment: &str) -> Value {
        self.get(&dep(deployment))["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    }

    pub fn reasons(&self) -> Vec<String> {
        self.events.take().into_iter().map(|e| e.reason).collect()
    }

    /// Answer the first request `matches` accepts with `code` instead of serving it.
    pub fn fail_once(&self, code: u16, matches: impl Fn(&RequestInfo) -> bool + Send + 'static) {
        let mut done = false;
        let hook: Hook = Box::new(move |r: &RequestInfo, _: &mut ServerControl| {
            if done || !matches(r) {
                return None;
            }
            done = true;
            Some((
                code,
                crate::testing::status_body(code, "Injected", "injected by the test"),
            ))
        });
        self.server.set_hook(hook);
    }
}

/// A background webhook runner with short backoffs.
pub fn new_runner(clock: super::super::Clock) -> crate::gates::HookRunner {
    let mut caller = crate::gates::WebhookCaller::new().unwrap();
    caller.base_backoff = Duration::from_millis(20);
    caller.max_backoff = Duration::from_millis(50);
    crate::gates::HookRunner::new(caller, clock)
}

/// Initialize: primary, Services, traffic to primary, target scaled to zero after the
/// scale-down delay.
pub async fn initialize(h: &Harness) {
    h.manual_rollouts();
    h.ok().await;
    h.settle();
    h.instant_rollouts();
    h.ok().await;
    assert_eq!(h.status()["phase"], "Initialized");
    h.ok().await;
    h.advance(30);
    h.ok().await;
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);
    h.calls();
    h.reasons();
}
