//! The registry on its own, then each adapter that records into it (Prometheus source,
//! check, webhook caller, notification queue) and `/metrics` over real HTTP.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::canaries::PHASES;
use super::*;
use crate::analysis::{run_check, CheckInput, MetricJudge, RenderVars, ResolvedMetric};
use crate::crd::{CanaryPhase, MetricStatus, MetricVerdict, ThresholdSpec};
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{MetricError, MetricSources, PrometheusSources};
use crate::rollout::{AnalysisReport, Note, NoteType};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn status(
    name: &str,
    verdict: MetricVerdict,
    value: Option<f64>,
    at: DateTime<Utc>,
) -> MetricStatus {
    MetricStatus {
        points: Vec::new(),
        name: name.into(),
        value,
        baseline: None,
        effect: None,
        p_value: None,
        interval_low: None,
        interval_high: None,
        verdict,
        reason: String::new(),
        dry_run: false,
        checked_at: at,
        consecutive_errors: 0,
        sequential: None,
    }
}

fn report(metrics: Vec<MetricStatus>) -> AnalysisReport {
    AnalysisReport {
        metrics,
        critical: vec![],
    }
}

const W: &str = r#"serin_canary_weight{namespace="shop",name="podinfo"}"#;

#[test]
fn a_fresh_registry_has_info_leader_and_every_phase_at_zero() {
    let m = ControllerMetrics::new();
    let text = m.encode();
    assert_eq!(
        sample(
            &text,
            &format!("serin_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "serin_leader"), Some(0.0));
    for p in PHASES {
        let series = format!("serin_canaries{{phase=\"{}\"}}", p.as_str());
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    assert!(text.contains("# TYPE serin_judge_duration_seconds histogram"));
    assert!(text.contains("# UNIT serin_judge_duration_seconds seconds"));
    assert_eq!(
        sample(
            &text,
            r#"serin_judge_duration_seconds_count{judge="sequential"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"serin_reconcile_duration_seconds_count{controller="materialize"}"#
        ),
        Some(0.0)
    );
    // A family with no series yet is not written at all.
    assert!(!text.contains("serin_metric_verdicts"));
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    m.reconciles.set_leader(true);
    assert_eq!(sample(&m.encode(), "serin_leader"), Some(1.0));
}

#[test]
fn phase_counts_move_with_the_canary_and_drop_when_it_is_forgotten() {
    let m = ControllerMetrics::new();
    m.canaries
        .observe("shop", "podinfo", CanaryPhase::Progressing, 20);
    m.canaries
        .observe("shop", "cart", CanaryPhase::Progressing, 150);
    m.canaries
        .observe("web", "podinfo", CanaryPhase::Succeeded, 0);
    let text = m.encode();
    assert_eq!(
        sample(&text, r#"serin_canaries{phase="Progressing"}"#),
        Some(2.0)
    );
    assert_eq!(sample(&text, W), Some(20.0));
    assert_eq!(
        sample(
            &text,
            r#"serin_canary_weight{namespace="shop",name="cart"}"#
        ),
        Some(100.0),
        "clamped to 0-100"
    );
    // Same phase again: not counted twice.
    m.canaries
        .observe("shop", "podinfo", CanaryPhase::Progressing, 50);
    m.canaries.observe("shop", "cart", CanaryPhase::Failed, 0);
    let text = m.encode();
    assert_eq!(
        sample(&text, r#"serin_canaries{phase="Progressing"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"serin_canaries{phase="Failed"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&text, W), Some(50.0));

    m.canaries.observe_report(
        "shop",
        "podinfo",
        &report(vec![status(
            "error-rate",
            MetricVerdict::Pass,
            Some(0.01),
            now(),
        )]),
        now(),
    );
    m.canaries.observe_notes(
        "shop",
        "podinfo",
        &[Note {
            type_: NoteType::Normal,
            reason: crate::rollout::EventReason::Promoted,
            message: String::new(),
        }],
    );
    m.canaries.forget("shop", "podinfo");
    m.canaries.forget("shop", "podinfo"); // twice: no double decrement
    m.canaries.forget("shop", "never-seen");
    let text = m.encode();
    assert!(
        !text.contains(r#"namespace="shop",name="podinfo""#),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"serin_canaries{phase="Progressing"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"serin_canaries{phase="Failed"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"serin_canaries{phase="Succeeded"}"#),
        Some(1.0)
    );
    assert!(
        text.contains(r#"namespace="web",name="podinfo""#),
        "same name in another namespace stays"
    );
}

#[test]
fn a_report_counts_only_metrics_measured_now_and_keeps_last_values() {
    let m = ControllerMetrics::new();
    let earlier = now() - chrono::Duration::minutes(5);
    let mut compared = status("latency", MetricVerdict::Fail, Some(0.3), now());
    compared.baseline = Some(0.2);
    m.canaries.observe_report(
        "shop",
        "podinfo",
        &report(vec![
            status("error-rate", MetricVerdict::Inconclusive, None, now()),
            compared,
            // Its own longer interval is not due: the previous status, repeated.
            status("saturation", MetricVerdict::Pass, Some(0.5), earlier),
            status("nan", MetricVerdict::Error, Some(f64::NAN), now()),
        ]),
        now(),
    );
    let text = m.encode();
    let v = |metric: &str, verdict: &str| {
        sample(
            &text,
            &format!(
                r#"serin_metric_verdicts_total{{namespace="shop",name="podinfo",metric="{metric}",verdict="{verdict}"}}"#
            ),
        )
    };
    assert_eq!(v("error-rate", "inconclusive"), Some(1.0));
    assert_eq!(v("latency", "fail"), Some(1.0));
    assert_eq!(v("nan", "error"), Some(1.0));
    assert_eq!(v("saturation", "pass"), None, "not measured at this check");
    let value = |metric: &str, variant: &str| {
        sample(
            &text,
            &format!(
                r#"serin_metric_value{{namespace="shop",name="podinfo",metric="{metric}",variant="{variant}"}}"#
            ),
        )
    };
    assert_eq!(value("latency", "canary"), Some(0.3));
    assert_eq!(value("latency", "baseline"), Some(0.2));
    assert_eq!(value("error-rate", "canary"), None, "no value, no series");
    assert_eq!(value("nan", "canary"), None, "NaN is not exported");
}

#[test]
fn histograms_count_observations_into_their_buckets() {
    let m = ControllerMetrics::new();
    m.reconciles
        .observe(ControllerKind::Canary, Duration::from_millis(30), None);
    m.reconciles
        .observe(ControllerKind::Canary, Duration::from_secs(2), Some("kube"));
    m.reconciles
        .observe(ControllerKind::Materialize, Duration::from_millis(1), None);
    let text = m.encode();
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"serin_reconcile_duration_seconds_count{controller="canary"}"#),
        Some(2.0)
    );
    assert_eq!(
        s(r#"serin_reconcile_duration_seconds_bucket{le="0.05",controller="canary"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"serin_reconcile_duration_seconds_bucket{le="2.5",controller="canary"}"#),
        Some(2.0)
    );
    assert_eq!(
        s(r#"serin_reconcile_errors_total{controller="canary",category="kube"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"serin_reconcile_duration_seconds_count{controller="materialize"}"#),
        Some(1.0)
    );
}

fn resolved(name: &str, query: &str) -> ResolvedMetric {
    ResolvedMetric {
        template: "t".into(),
        name: name.into(),
        query: query.into(),
        args: BTreeMap::new(),
        interval: None,
        judge: MetricJudge::Threshold(ThresholdSpec {
            min: None,
            max: Some(0.01),
        }),
        dry_run: false,
        critical: false,
        provider: None,
        credentials: None,
        failure_limit: None,
        inconclusive_limit: None,
        consecutive_error_limit: None,
    }
}

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn vars() -> RenderVars {
    RenderVars {
        namespace: "shop".into(),
        target: "podinfo".into(),
        primary: "podinfo-primary".into(),
        canary: "podinfo".into(),
        workload: "podinfo".into(),
        service: "podinfo".into(),
        interval: String::new(),
        args: BTreeMap::new(),
    }
}

#[tokio::test]
async fn prometheus_queries_are_timed_and_their_errors_counted_by_category() {
    let fake = FakePrometheus::start().await;
    let ts = now().timestamp();
    fake.on("ok", Reply::vector(ts, &[("{}", "0.002")]));
    fake.on("empty", Reply::vector(ts, &[]));
    // Anything unscripted answers 400 bad_data.
    let m = Arc::new(ControllerMetrics::new());
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2))
        .with_metrics(m.queries.clone());
    let source = sources.source(None, None).unwrap();
    assert_eq!(source.query_scalar("ok", now()).await, Ok(0.002));
    assert_eq!(
        source.query_scalar("empty", now()).await,
        Err(MetricError::NoData)
    );
    assert!(matches!(
        source.query_vector("rate(x[", now()).await,
        Err(MetricError::BadQuery(_))
    ));
    let text = m.encode();
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"serin_metric_query_duration_seconds_count{provider="prometheus"}"#),
        Some(3.0)
    );
    assert_eq!(
        s(r#"serin_metric_query_errors_total{provider="prometheus",category="no_data"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"serin_metric_query_errors_total{provider="prometheus",category="bad_query"}"#),
        Some(1.0)
    );
    // A source without metrics records nothing (the demo's and tests' default).
    let plain = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2));
    plain
        .source(None, None)
        .unwrap()
        .query_scalar("ok", now())
        .await
        .unwrap();
    assert_eq!(
        sample(
            &m.encode(),
            r#"serin_metric_query_duration_seconds_count{provider="prometheus"}"#
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_check_times_each_judge_and_its_queries() {
    let fake = FakePrometheus::start().await;
    let ts = now().timestamp();
    fake.on(
        "errors{pod=~\"podinfo-.*\"}",
        Reply::vector(ts, &[("{}", "0.001")]),
    );
    // Twenty pods per version with the same latencies: no difference to find.
    let pods = |prefix: &str| -> Vec<(String, String)> {
        (0..20)
            .map(|i| {
                let labels = format!(r#"{{"pod":"{prefix}-{i}"}}"#);
                (labels, format!("{}", 0.1 + f64::from(i) * 0.001))
            })
            .collect()
    };
    let (canary, primary) = (pods("podinfo"), pods("podinfo-primary"));
    fake.on(
        "lat{pod=~\"podinfo-.*\"}",
        Reply::vector(ts, &refs(&canary)),
    );
    fake.on(
        "lat{pod=~\"podinfo-primary-.*\"}",
        Reply::vector(ts, &refs(&primary)),
    );
    let mut latency = resolved("latency", "lat{pod=~\"{{workload}}-.*\"}");
    latency.judge = MetricJudge::Compare(
        serde_json::from_value(serde_json::json!({"kind": "samples", "allowedIncrease": 1.1}))
            .unwrap(),
    );
    let metrics = [
        resolved("error-rate", "errors{pod=~\"{{workload}}-.*\"}"),
        latency,
    ];
    let m = Arc::new(ControllerMetrics::new());
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2))
        .with_metrics(m.queries.clone());
    let vars = vars();
    let report = run_check(&CheckInput {
        observer: Some(&m.judges),
        ..CheckInput::new(
            &metrics,
            &vars,
            Duration::from_secs(60),
            &[],
            &sources,
            now(),
        )
    })
    .await;
    assert_eq!(
        report.metrics[0].verdict,
        MetricVerdict::Pass,
        "{:?}",
        report.metrics[0]
    );
    assert_eq!(
        report.metrics[1].verdict,
        MetricVerdict::Pass,
        "{:?}",
        report.metrics[1]
    );
    m.canaries.observe_report("shop", "podinfo", &report, now());
    let text = m.encode();
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"serin_judge_duration_seconds_count{judge="threshold"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"serin_judge_duration_seconds_count{judge="compare"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"serin_judge_duration_seconds_count{judge="sequential"}"#),
        Some(0.0)
    );
    assert_eq!(
        s(r#"serin_metric_query_duration_seconds_count{provider="prometheus"}"#),
        Some(3.0),
        "one threshold query, two compare queries"
    );
    assert!(
        s(r#"serin_metric_value{namespace="shop",name="podinfo",metric="latency",variant="baseline"}"#)
            .is_some(),
        "{text}"
    );
    assert_eq!(
        s(
            r#"serin_metric_value{namespace="shop",name="podinfo",metric="error-rate",variant="canary"}"#
        ),
        Some(0.001)
    );
}

#[tokio::test]
async fn webhook_calls_are_counted_by_type_and_result() {
    use crate::crd::{WebhookSpec, WebhookType};
    use crate::gates::{testrecv, WebhookCaller, WebhookPayload};
    let recv = testrecv::start(vec![(200, Duration::ZERO), (403, Duration::ZERO)]).await;
    let m = Arc::new(ControllerMetrics::new());
    let mut caller = WebhookCaller::new()
        .unwrap()
        .with_metrics(m.webhooks.clone());
    caller.base_backoff = Duration::from_millis(1);
    let hook = |kind, url: String| WebhookSpec {
        name: "h".into(),
        type_: kind,
        url,
        timeout: "2s".into(),
        retries: 0,
        metadata: BTreeMap::new(),
        secret_ref: None,
    };
    let st = crate::crd::CanaryStatus::default();
    for (kind, url) in [
        (WebhookType::PreRollout, recv.url("/")),
        (WebhookType::ConfirmPromotion, recv.url("/")),
        // Nothing listens on port 9 of loopback.
        (WebhookType::PreRollout, "http://127.0.0.1:9/".to_string()),
    ] {
        let h = hook(kind, url);
        caller
            .call(&h, None, &WebhookPayload::new("shop", "podinfo", &st, &h))
            .await;
    }
    let text = m.encode();
    let s = |t: &str, r: &str| {
        sample(
            &text,
            &format!(r#"serin_webhook_deliveries_total{{type="{t}",result="{r}"}}"#),
        )
    };
    assert_eq!(s("pre-rollout", "ok"), Some(1.0));
    assert_eq!(s("confirm-promotion", "rejected"), Some(1.0));
    assert_eq!(s("pre-rollout", "error"), Some(1.0));
}

#[tokio::test]
async fn notifications_are_counted_by_notifier_kind_and_result() {
    use crate::crd::{NotifierSpec, NotifierType, SecretKeyRef, Severity};
    use crate::gates::{testrecv, SecretString};
    use crate::notify::{
        notifier_queue_with_metrics, HttpNotifier, NotifierRegistry, NotifyEvent, QueueConfig,
    };
    let recv = testrecv::start(vec![(500, Duration::ZERO)]).await;
    let spec = NotifierSpec {
        type_: NotifierType::Teams,
        secret_ref: SecretKeyRef {
            name: "s".into(),
            key: "url".into(),
        },
        channel: None,
        severity: Severity::Info,
        canaries: vec![],
    };
    let notifier = HttpNotifier::from_spec(
        "n/teams",
        &spec,
        SecretString::new(recv.url("/")),
        reqwest::Client::new(),
    );
    let registry = NotifierRegistry::new();
    registry.set_namespace("shop", vec![Arc::new(notifier)]);
    let m = Arc::new(ControllerMetrics::new());
    let config = QueueConfig {
        capacity: 1,
        base_backoff: Duration::from_millis(5),
        ..Default::default()
    };
    let (h, _task) =
        notifier_queue_with_metrics(Arc::new(registry), config, m.notifications.clone());
    let canary: crate::crd::CanarySpec =
        serde_json::from_value(serde_json::json!({"targetRef": {"name": "podinfo"}})).unwrap();
    let event = |reason| {
        let note = Note {
            type_: NoteType::Normal,
            reason: crate::rollout::EventReason::parse(reason).expect("a reason serin sends"),
            message: String::new(),
        };
        NotifyEvent::from_note(
            "shop",
            "podinfo",
            &canary,
            &Default::default(),
            &note,
            now(),
        )
    };
    // The dispatcher has not run yet (one thread, no await): the second is dropped.
    assert!(h.send(event("StepAdvanced")));
    assert!(!h.send(event("Promoted")));
    for _ in 0..500 {
        if h.stats().delivered == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = m.encode();
    let s = |k: &str, r: &str| {
        sample(
            &text,
            &format!(r#"serin_notification_deliveries_total{{kind="{k}",result="{r}"}}"#),
        )
    };
    assert_eq!(s("teams", "retried"), Some(1.0), "{text}");
    assert_eq!(s("teams", "delivered"), Some(1.0));
    assert_eq!(s("none", "dropped"), Some(1.0));
    assert_eq!(s("teams", "failed"), None);
}

#[tokio::test]
async fn metrics_endpoint_serves_openmetrics_on_the_health_server() {
    let m = Arc::new(ControllerMetrics::new());
    m.canaries
        .observe("shop", "podinfo", CanaryPhase::Progressing, 20);
    let ready = Arc::new(AtomicBool::new(false));
    let app = crate::controller::run::health_router(ready, m.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("serin_info{version="), "{body}");
    assert_eq!(sample(&body, W), Some(20.0));
    assert!(body.ends_with("# EOF\n"));
    // The health endpoints are still there.
    let live = reqwest::get(format!("http://{addr}/live")).await.unwrap();
    assert_eq!(live.text().await.unwrap(), "ok");
    let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
}
