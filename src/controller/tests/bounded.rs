//! Bounded work: webhooks run in the background (a reconcile starts a call and a later
//! one judges its answer), a webhook over its caps is a configuration error, and no
//! reconcile outlives `--reconcile-deadline`, wherever it is stuck.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;
use crate::crd::Strategy;
use crate::gates::testrecv;
use crate::providers::{MetricError, MetricSource, MetricSources};
use crate::traffic::{RouteTarget, RouterError, RouterKind, ServiceRouter, TrafficRouter};

fn hooked_spec(url: &str) -> Value {
    json!({"targetRef": {"name": "podinfo"},
           "analysis": {"steps": [10, 50], "interval": "1m", "templates": [{"name": "error-rate"}]},
           "webhooks": [{"name": "load", "type": "rollout", "url": url, "timeout": "5s", "retries": 0}]})
}

/// Wait (real time, bounded) until the runner holds no running call.
async fn until_answered(h: &Harness) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while h.runner().running() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the webhook call ended");
}

/// A release of podinfo:2 at step 1 (10%), its first check due in one interval.
async fn at_step_one(h: &Harness) {
    initialize(h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.001));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    assert_eq!(h.status()["canaryWeight"], 10);
    h.reasons();
}

#[tokio::test]
async fn a_slow_rollout_hook_runs_in_the_background_and_its_answer_is_judged_with_the_check() {
    let mut recv = testrecv::start(vec![(200, Duration::from_millis(500))]).await;
    let h = Harness::new(hooked_spec(&recv.url("/load"))).with_webhooks();
    at_step_one(&h).await;
    h.advance(60);
    let calls = h.ok().await;
    assert!(calls.contains(&status_write()), "{calls:#?}");
    assert_eq!(
        h.runner().running(),
        1,
        "the reconcile returned while the call runs on"
    );
    let st = h.status();
    assert_eq!(
        (st["currentStep"].as_i64(), st["failedChecks"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(st["hooks"][0]["name"], "load");
    assert_eq!(st["hooks"][0]["startedAt"], "2026-11-22T12:01:30Z");
    assert!(st["hooks"][0]["finishedAt"].is_null());
    assert_eq!(
        st["message"],
        "check of step 1 waits for webhook load (rollout) running since 12:01:30"
    );
    assert_eq!(recv.next(5).await.json()["type"], "rollout");

    until_answered(&h).await;
    h.advance(1);
    h.ok().await;
    let st = h.status();
    assert_eq!(
        (st["currentStep"].as_i64(), st["canaryWeight"].as_i64()),
        (Some(2), Some(50)),
        "{st:#}"
    );
    assert_eq!(st["hooks"][0]["httpStatus"], 200);
    assert!(st["hooks"][0]["finishedAt"].is_string());
    let verdicts: Vec<(&str, &str)> = st["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        vec![("error-rate", "Pass"), ("webhook/load", "Pass")]
    );
    assert!(recv.rx.try_recv().is_err(), "called once for the check");
}

#[tokio::test]
async fn a_call_lost_with_the_old_process_is_made_again_by_the_new_one() {
    // The first call never answers within the test; the second answers at once.
    let mut recv = testrecv::start(vec![(200, Duration::from_secs(3600))]).await;
    let h = Harness::new(hooked_spec(&recv.url("/"))).with_webhooks();
    at_step_one(&h).await;
    h.advance(60);
    h.ok().await;
    recv.next(5).await;
    assert!(h.status()["hooks"][0]["finishedAt"].is_null());
    // A new process: same cluster and status, a runner that knows nothing.
    let h = h.with_webhooks();
    h.advance(5);
    h.ok().await;
    recv.next(5).await;
    assert_eq!(h.status()["hooks"][0]["startedAt"], "2026-11-22T12:01:35Z");
    until_answered(&h).await;
    h.ok().await;
    assert_eq!(h.status()["currentStep"], 2);
}

#[tokio::test]
async fn a_webhook_over_its_caps_is_a_config_error_named_precisely_and_never_called() {
    let recv = testrecv::start(vec![]).await;
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"},
        "webhooks": [{"name": "smoke", "type": "rollout", "url": recv.url("/")},
                     {"name": "load-test", "type": "pre-rollout", "url": recv.url("/"), "timeout": "1h"}]}))
    .with_webhooks();
    let (r, c) = h.reconcile().await;
    assert_eq!(r.unwrap(), Action::requeue(h.idle_recheck()));
    assert_eq!(c, vec![status_write()]);
    let cond = &h.status()["conditions"][0];
    assert_eq!(
        (
            cond["type"].as_str(),
            cond["status"].as_str(),
            cond["reason"].as_str()
        ),
        (Some("ConfigValid"), Some("False"), Some("InvalidWebhook"))
    );
    assert_eq!(
        cond["message"],
        "spec.webhooks[1].timeout \"1h\" of webhook \"load-test\" is over the limit; \
         accepted: a duration from 1ms to 5m per attempt (use retries for more attempts)"
    );
    let ev = h.events.take();
    assert_eq!(
        (ev[0].reason.as_str(), ev[0].warning),
        ("InvalidWebhook", true)
    );
    assert!(h.get(&dep("podinfo-primary")).is_null(), "nothing set up");
    assert_eq!(h.runner().held(), 0, "no call made");
}

/// The Service router, made to hang in one operation on demand.
struct HangRouter {
    inner: ServiceRouter,
    at: Arc<Mutex<Option<&'static str>>>,
}

impl HangRouter {
    async fn maybe_hang(&self, op: &'static str) {
        let hang = *self.at.lock().unwrap() == Some(op);
        if hang {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl TrafficRouter for HangRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Service
    }
    fn replica_weighting(&self, s: Strategy) -> bool {
        self.inner.replica_weighting(s)
    }
    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        self.maybe_hang("set_weight").await;
        self.inner.set_weight(t, weight).await
    }
    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        self.maybe_hang("observed_weight").await;
        self.inner.observed_weight(t).await
    }
    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        self.inner.finalize(t).await
    }
}

fn with_hang_router(h: Harness) -> (Harness, Arc<Mutex<Option<&'static str>>>) {
    let at = Arc::new(Mutex::new(None));
    let router = Arc::new(HangRouter {
        inner: ServiceRouter::new(h.ctx.client.clone()),
        at: at.clone(),
    });
    let h = h.with_ctx(|c| {
        c.routers.by_kind.insert(RouterKind::Service, router);
    });
    (h, at)
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_stuck_past_its_deadline_is_stopped_writes_nothing_and_says_where() {
    let (h, hang) = with_hang_router(Harness::new(release_spec()));
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.001));
    h.set_image("podinfo:2");
    *hang.lock().unwrap() = Some("observed_weight");
    let started = tokio::time::Instant::now();
    let (r, calls) = h.reconcile().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(21),
        "cut at the deadline: {took:?}"
    );
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        "reconcile stopped at its deadline (20s) while reading the router"
    );
    assert_eq!(err.category(), "deadline");
    assert!(
        !calls.iter().any(|c| c.starts_with("PATCH")),
        "decided nothing, wrote nothing: {calls:#?}"
    );
    assert_eq!(h.status()["phase"], "Initialized");
    let action = crate::controller::error_policy(
        Arc::new(serde_json::from_value(h.get(&canary("podinfo"))).unwrap()),
        &err,
        h.ctx.clone(),
    );
    assert_eq!(action, Action::requeue(crate::controller::DEADLINE_RETRY));
    // The Warning Event is sent in the background, bounded on its own.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ev = h.events.take();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].reason.as_str(), ev[0].warning),
        ("ReconcileDeadlineExceeded", true)
    );
    assert!(
        ev[0]
            .message
            .contains("while reading the router: nothing after that point was done"),
        "{}",
        ev[0].message
    );
    // Unstuck: the next reconcile does the whole step.
    *hang.lock().unwrap() = None;
    h.ok().await;
    assert_eq!(h.status()["phase"], "Progressing");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_during_the_actions_leaves_the_rest_to_the_next_reconcile() {
    let (h, hang) = with_hang_router(Harness::new(release_spec()));
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.advance(60);
    // Step 2: the canary scales to 3, then the route moves to 50% and hangs there.
    *hang.lock().unwrap() = Some("set_weight");
    let (r, calls) = h.reconcile().await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "reconcile stopped at its deadline (20s) while acting on the cluster"
    );
    assert!(calls.contains(&status_write()));
    assert_eq!(h.status()["currentStep"], 2, "decided and persisted first");
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    *hang.lock().unwrap() = None;
    assert_eq!(
        h.ok().await,
        with(observe(true), &[apply(&svc("podinfo"))]),
        "only the missing route, nothing decided again"
    );
    assert_eq!(
        h.get(&svc("podinfo"))["metadata"]["annotations"]["serin.dev/canary-weight"],
        "50"
    );
}

/// A metric source that never answers.
struct Silent;

#[async_trait]
impl MetricSource for Silent {
    async fn query_scalar(&self, _q: &str, _at: DateTime<Utc>) -> Result<f64, MetricError> {
        std::future::pending().await
    }
    async fn query_vector(&self, _q: &str, _at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        std::future::pending().await
    }
}

impl MetricSources for Silent {
    fn source(
        &self,
        _p: Option<&crate::crd::ProviderSpec>,
        _c: Option<&crate::providers::ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        Ok(Arc::new(Silent))
    }
}

#[tokio::test(start_paused = true)]
async fn a_check_longer_than_the_deadline_allows_is_cut_so_its_decision_is_still_written() {
    // Misconfigured on purpose: a check timeout of an hour inside a 20 s reconcile.
    let h = Harness::new(release_spec()).with_ctx(|c| {
        c.check_timeout = Duration::from_secs(3600);
        c.sources = Arc::new(Silent);
    });
    initialize(&h).await;
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.reasons();
    h.advance(60);
    let started = tokio::time::Instant::now();
    let calls = h.ok().await;
    // The deadline keeps a quarter (5 s) for the write and the actions.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(16),
        "{took:?}"
    );
    assert!(calls.contains(&status_write()));
    let st = h.status();
    assert_eq!(st["metrics"][0]["verdict"], "Error");
    assert_eq!(st["metrics"][0]["reason"], "check timed out after 15s");
    assert_eq!(h.reasons(), vec!["CheckError"]);
}
