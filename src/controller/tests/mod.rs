//! Controller flows against a fake API server: the exact sequence of calls for
//! initialization, a canary release, a rollback, a blue/green switch, a restart
//! mid-release, a 409 conflict, and bad input that must not stop other Canaries.

mod config;
mod fake;
mod lifecycle;
mod materialize;
mod metrics;
mod shard;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use self::fake::*;
use super::events::MemoryEvents;
use super::{reconcile_canary, Context, ReconcileError, Routers};
use crate::crd::{Canary, ProviderSpec};
use crate::providers::{MetricError, MetricSource, MetricSources};
use crate::testing::MockApi;
use crate::traffic::{RouterKind, ServiceRouter, TrafficRouter};
use crate::workloads::deployments::KubeWorkloads;

/// Metric values the test sets; every query is recorded.
#[derive(Default)]
struct FakeMetrics {
    value: Mutex<Option<Result<f64, MetricError>>>,
    queries: Mutex<Vec<String>>,
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

struct Sources(Arc<FakeMetrics>);
impl MetricSources for Sources {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&crate::providers::ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

struct Harness {
    fake: Fake,
    mock: MockApi,
    ctx: Arc<Context>,
    now: Arc<Mutex<DateTime<Utc>>>,
    metrics: Arc<FakeMetrics>,
    events: MemoryEvents,
}

impl Harness {
    fn new(canary_spec: Value) -> Self {
        let fake = Fake::default();
        {
            let mut s = fake.0.lock().unwrap();
            s.put(&dep("podinfo"), target_deployment("podinfo:1", 3));
            s.put(&canary("podinfo"), canary_object(canary_spec));
            s.put(
                "/apis/serin.dev/v1alpha1/namespaces/shop/analysistemplates/error-rate",
                json!({"apiVersion": "serin.dev/v1alpha1", "kind": "AnalysisTemplate",
                       "metadata": {"name": "error-rate", "namespace": NS},
                       "spec": {"args": [{"name": "max", "default": "0.01"}],
                                "metrics": [{"name": "error-rate",
                                             "query": "sum(rate(http_requests_total{namespace=\"{{namespace}}\",pod=~\"{{workload}}-.*\",code=~\"5..\"}[{{interval}}])) / sum(rate(http_requests_total{namespace=\"{{namespace}}\",pod=~\"{{workload}}-.*\"}[{{interval}}]))",
                                             "threshold": {"max": 0.01}}]}}),
            );
        }
        let f = fake.clone();
        let (client, mock) = MockApi::serve(move |r| f.0.lock().unwrap().handle(r));
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
            controller_namespace: "serin-system".into(),
            webhooks: None,
            notify: None,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            fence: crate::controller::Fence::unfenced(),
        });
        Harness {
            fake,
            mock,
            ctx,
            now,
            metrics,
            events,
        }
    }

    fn advance(&self, secs: i64) {
        *self.now.lock().unwrap() += chrono::Duration::seconds(secs);
    }

    async fn reconcile(&self) -> (Result<Action, ReconcileError>, Vec<String>) {
        let obj: Canary = serde_json::from_value(self.get(&canary("podinfo"))).unwrap();
        let r = reconcile_canary(Arc::new(obj), self.ctx.clone()).await;
        (r, self.mock.drain_calls())
    }

    /// Reconcile and return the calls, asserting success.
    async fn ok(&self) -> Vec<String> {
        let (r, calls) = self.reconcile().await;
        r.unwrap_or_else(|e| panic!("reconcile failed: {e}; calls: {calls:#?}"));
        calls
    }

    fn get(&self, path: &str) -> Value {
        self.fake.0.lock().unwrap().get(path)
    }

    fn status(&self) -> Value {
        self.get(&canary("podinfo"))["status"].clone()
    }

    fn settle(&self) {
        self.fake.0.lock().unwrap().settle();
    }

    fn set_image(&self, image: &str) {
        let mut s = self.fake.0.lock().unwrap();
        let mut d = s.get(&dep("podinfo"));
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        let g = d["metadata"]["generation"].as_i64().unwrap() + 1;
        d["metadata"]["generation"] = json!(g);
        s.put(&dep("podinfo"), d);
    }

    fn reasons(&self) -> Vec<String> {
        self.events.take().into_iter().map(|e| e.reason).collect()
    }
}

const TEMPLATE: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/analysistemplates/error-rate";

fn get(path: &str) -> String {
    format!("GET {path}")
}
fn apply(path: &str) -> String {
    format!("PATCH {path}{APPLY}")
}
fn status_write() -> String {
    format!("PATCH {}/status{APPLY}", canary("podinfo"))
}

/// The reads every reconcile of an initialized Canary makes.
fn observe(with_template: bool) -> Vec<String> {
    let mut v = vec![get(&canary("podinfo"))];
    if with_template {
        v.push(get(TEMPLATE));
    }
    v.extend([
        get(&dep("podinfo")),
        get(&dep("podinfo-primary")),
        get(&svc("podinfo")),
    ]);
    v
}

fn with(mut base: Vec<String>, more: &[String]) -> Vec<String> {
    base.extend_from_slice(more);
    base
}

/// Initialize: primary, Services, traffic to primary, target scaled to zero.
async fn initialize(h: &Harness) {
    h.fake.0.lock().unwrap().rollouts_finish = false;
    h.ok().await;
    h.settle();
    h.fake.0.lock().unwrap().rollouts_finish = true;
    h.ok().await;
    assert_eq!(h.status()["phase"], "Initialized");
    h.reasons();
}

#[tokio::test]
async fn initialization_creates_primary_and_services_then_moves_traffic_then_scales_down() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.fake.0.lock().unwrap().rollouts_finish = false;
    assert_eq!(
        h.ok().await,
        vec![
            get(&canary("podinfo")),
            get(&dep("podinfo")),
            get(&dep("podinfo-primary")),
            get(&dep("podinfo")),
            apply(&dep("podinfo-primary")),
            format!("GET {}", hpas()),
            apply(&svc("podinfo-primary")),
            apply(&svc("podinfo-canary")),
            status_write(),
        ]
    );
    let primary = h.get(&dep("podinfo-primary"));
    assert_eq!(
        primary["spec"]["selector"]["matchLabels"],
        json!({"app": "podinfo-primary"})
    );
    assert_eq!(
        primary["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "podinfo"
    );
    assert_eq!(primary["spec"]["replicas"], 3);
    assert_eq!(primary["metadata"]["ownerReferences"][0]["kind"], "Canary");
    assert_eq!(
        h.get(&svc("podinfo-canary"))["spec"]["selector"],
        json!({"app": "podinfo"})
    );
    assert_eq!(h.status()["phase"], "Initializing");
    // The user's Deployment still serves: nothing routed or scaled before the primary is ready.
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    assert!(h.get(&svc("podinfo")).is_null());

    // Primary not ready yet: only reads.
    assert_eq!(h.ok().await, observe(false));

    h.settle();
    assert_eq!(
        h.ok().await,
        with(
            observe(false),
            &[
                apply(&svc("podinfo")),
                apply(&dep("podinfo")),
                status_write()
            ]
        )
    );
    let apex = h.get(&svc("podinfo"));
    assert_eq!(apex["spec"]["selector"], json!({"app": "podinfo-primary"}));
    assert_eq!(
        apex["metadata"]["annotations"]["serin.dev/canary-weight"],
        "0"
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);
    assert_eq!(h.status()["phase"], "Initialized");
    assert_eq!(h.reasons(), vec!["Initialized"]);

    // Steady: reads only, no writes.
    assert_eq!(h.ok().await, observe(false));
}

#[tokio::test]
async fn scale_down_is_a_forced_apply_of_replicas_only() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.fake.0.lock().unwrap().rollouts_finish = false;
    h.ok().await;
    h.settle();
    let obj: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    reconcile_canary(Arc::new(obj), h.ctx.clone())
        .await
        .unwrap();
    let sent = h.mock.drain();
    let scale = sent
        .iter()
        .find(|r| {
            r.method == "PATCH"
                && r.path.starts_with(&dep("podinfo"))
                && !r.path.contains("primary")
        })
        .expect("a scale request");
    assert_eq!(
        scale.path,
        format!("{}{APPLY}", dep("podinfo")),
        "server-side apply, forced, as serin"
    );
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        scale.body.clone().unwrap(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "podinfo", "namespace": "shop"}, "spec": {"replicas": 0}}),
        "only .spec.replicas: the user's other fields stay theirs"
    );
    let status = sent.iter().find(|r| r.path.contains("/status")).unwrap();
    let body = status.body.clone().unwrap();
    assert!(
        body["metadata"]["resourceVersion"].is_string(),
        "status writes are conditional"
    );
    assert_eq!(body["status"]["phase"], "Initialized");
}

fn release_spec() -> Value {
    json!({"targetRef": {"name": "podinfo"},
           "analysis": {"steps": [10, 50], "interval": "1m", "templates": [{"name": "error-rate"}]}})
}

#[tokio::test]
async fn canary_release_exact_calls_from_new_revision_to_promotion() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.001));
    h.set_image("podinfo:2");

    // New revision: canary up (one pod: replica weighting at 0%), no traffic yet.
    assert_eq!(
        h.ok().await,
        with(observe(true), &[apply(&dep("podinfo")), status_write()])
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 1);
    assert_eq!(h.status()["phase"], "Progressing");
    assert_eq!(h.reasons(), vec!["NewRevision"]);

    // Canary ready: step 1, 10%: the apex selects both versions by their shared label.
    assert_eq!(
        h.ok().await,
        with(observe(true), &[apply(&svc("podinfo")), status_write()])
    );
    let apex = h.get(&svc("podinfo"));
    assert_eq!(
        apex["spec"]["selector"],
        json!({"app.kubernetes.io/name": "podinfo"})
    );
    assert_eq!(
        apex["metadata"]["annotations"]["serin.dev/canary-weight"],
        "10"
    );
    assert_eq!(h.status()["canaryWeight"], 10);
    assert_eq!(h.reasons(), vec!["StepAdvanced"]);

    // Within the interval nothing is queried or written.
    h.advance(30);
    assert_eq!(h.ok().await, observe(true));
    assert!(h.metrics.queries.lock().unwrap().is_empty());

    // Check passes: scale up to 3 pods (50% of 6) before routing, then step 2.
    h.advance(30);
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[
                apply(&dep("podinfo")),
                apply(&svc("podinfo")),
                status_write()
            ]
        )
    );
    let q = h.metrics.queries.lock().unwrap().clone();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].contains("pod=~\"podinfo-.*\"") && q[0].contains("[1m]"),
        "{}",
        q[0]
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    let st = h.status();
    assert_eq!(
        (st["currentStep"].as_i64(), st["canaryWeight"].as_i64()),
        (Some(2), Some(50))
    );
    assert_eq!(st["metrics"][0]["name"], "error-rate");
    assert_eq!(st["metrics"][0]["value"], 0.001);
    assert_eq!(st["metrics"][0]["verdict"], "Pass");
    assert_eq!(st["metrics"][0]["reason"], "0.001 <= max 0.01");
    assert_eq!(h.reasons(), vec!["StepAdvanced"]);

    // Last check passes: promote. Primary keeps its scale; the template is copied.
    h.advance(60);
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[
                get(&dep("podinfo-primary")),
                get(&dep("podinfo")),
                apply(&dep("podinfo-primary")),
                format!("GET {}", hpas()),
                status_write()
            ]
        )
    );
    let primary = h.get(&dep("podinfo-primary"));
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:2"
    );
    assert_eq!(h.status()["phase"], "Promoting");
    assert_eq!(h.reasons(), vec!["Promoting"]);

    // Primary rolled out: traffic back to it first, then the canary scales down.
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[
                apply(&svc("podinfo")),
                apply(&dep("podinfo")),
                status_write()
            ]
        )
    );
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);
    assert_eq!(h.status()["phase"], "Finalising");

    assert_eq!(h.ok().await, with(observe(true), &[status_write()]));
    let st = h.status();
    assert_eq!(st["phase"], "Succeeded");
    assert_eq!(st["stableRevision"], st["canaryRevision"]);
    assert_eq!(h.reasons(), vec!["Promoted"]);
}

#[tokio::test]
async fn rollback_routes_everything_to_the_primary_before_scaling_the_canary_down() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.2));
    h.set_image("podinfo:bad");
    h.ok().await;
    h.ok().await;
    assert_eq!(h.status()["canaryWeight"], 10);
    h.reasons();

    h.advance(60);
    assert_eq!(h.ok().await, with(observe(true), &[status_write()]));
    assert_eq!(h.status()["failedChecks"], 1);
    assert_eq!(h.reasons(), vec!["CheckFailed"]);

    h.advance(60);
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[
                apply(&svc("podinfo")),
                apply(&dep("podinfo")),
                status_write()
            ]
        )
    );
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);
    let primary = h.get(&dep("podinfo-primary"));
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:1"
    );
    let st = h.status();
    assert_eq!(st["phase"], "Failed");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("error-rate: 0.2 > max 0.01"),
        "{}",
        st["message"]
    );
    assert_eq!(h.reasons(), vec!["RolledBack"]);

    // The failed revision is not retried on its own.
    h.advance(600);
    assert_eq!(h.ok().await, observe(true));
}

#[tokio::test]
async fn blue_green_switches_the_apex_selector_after_the_preview_passes() {
    let h = Harness::new(
        json!({"targetRef": {"name": "podinfo"}, "strategy": "blue-green",
                                "analysis": {"iterations": 1, "templates": [{"name": "error-rate"}]}}),
    );
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    // Preview at full size, no live traffic.
    assert_eq!(
        h.ok().await,
        with(observe(true), &[apply(&dep("podinfo")), status_write()])
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    assert_eq!(h.ok().await, with(observe(true), &[status_write()]));
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );

    h.advance(60);
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[
                get(&dep("podinfo-primary")),
                get(&dep("podinfo")),
                apply(&dep("podinfo-primary")),
                format!("GET {}", hpas()),
                apply(&svc("podinfo")),
                status_write()
            ]
        )
    );
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo"}),
        "switched to the new version"
    );
    assert_eq!(h.status()["canaryWeight"], 100);

    h.ok().await; // primary ready: back to the primary, canary down
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    h.ok().await;
    assert_eq!(h.status()["phase"], "Succeeded");
}

#[tokio::test]
async fn restart_between_two_actions_resumes_from_status_with_only_the_missing_action() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.advance(60);
    // Step 2 needs: scale canary to 3, then route 50%. The route write fails (crash).
    h.fake.0.lock().unwrap().fail_next = Some(format!("PATCH {}", svc("podinfo")));
    let (r, c) = h.reconcile().await;
    assert!(r.is_err());
    assert_eq!(
        c,
        with(
            observe(true),
            &[apply(&dep("podinfo")), apply(&svc("podinfo"))]
        )
    );
    assert_eq!(
        h.status()["currentStep"],
        1,
        "status not written after a failed action"
    );

    // A new controller process: fresh context, same cluster.
    let restarted = Arc::new(Context {
        events: Arc::new(MemoryEvents::default()),
        ..(*h.ctx).clone()
    });
    let obj: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    reconcile_canary(Arc::new(obj), restarted).await.unwrap();
    assert_eq!(
        h.mock.drain_calls(),
        with(observe(true), &[apply(&svc("podinfo")), status_write()]),
        "the scale already happened; only the route and the status remain"
    );
    assert_eq!(h.status()["currentStep"], 2);
}

#[tokio::test]
async fn conflict_on_status_write_is_retried_with_a_fresh_read() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.fake.0.lock().unwrap().conflict_next_status = true;
    let (r, c) = h.reconcile().await;
    let err = r.unwrap_err();
    assert_eq!(err.category(), "conflict");
    assert_eq!(c.last(), Some(&status_write()));
    let action = super::error_policy(
        Arc::new(serde_json::from_value(h.get(&canary("podinfo"))).unwrap()),
        &err,
        h.ctx.clone(),
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    // The retry re-reads and writes; the primary apply is simply repeated (idempotent).
    let c = h.ok().await;
    assert_eq!(c.first(), Some(&get(&canary("podinfo"))));
    assert_eq!(c.last(), Some(&status_write()));
    assert_eq!(h.status()["phase"], "Initializing");
}
