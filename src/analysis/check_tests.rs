use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::TimeZone;

use super::*;
use crate::crd::{ProviderSpec, ThresholdSpec};
use crate::providers::{MetricSource, ProviderCredentials};

/// Answers by rendered query; records every query asked.
#[derive(Default)]
pub(super) struct Scripted {
    answers: BTreeMap<String, Result<f64, MetricError>>,
    vectors: BTreeMap<String, Vec<f64>>,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl MetricSource for Scripted {
    async fn query_scalar(&self, query: &str, _at: DateTime<Utc>) -> Result<f64, MetricError> {
        self.asked.lock().unwrap().push(query.to_string());
        self.answers
            .get(query)
            .cloned()
            .unwrap_or(Err(MetricError::NoData))
    }
    async fn query_vector(&self, q: &str, _at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.asked.lock().unwrap().push(q.to_string());
        self.vectors.get(q).cloned().ok_or(MetricError::NoData)
    }
}

pub(super) struct Sources(Arc<Scripted>);

impl MetricSources for Sources {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn crate::providers::MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

pub(super) fn sources(answers: &[(&str, Result<f64, MetricError>)]) -> (Sources, Arc<Scripted>) {
    let s = Arc::new(Scripted {
        answers: answers
            .iter()
            .map(|(q, a)| (q.to_string(), a.clone()))
            .collect(),
        vectors: BTreeMap::new(),
        asked: Mutex::default(),
    });
    (Sources(s.clone()), s)
}

/// One check with the defaults (one-minute interval, no timeout).
pub(super) async fn check(
    metrics: &[ResolvedMetric],
    previous: &[MetricStatus],
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
) -> AnalysisReport {
    let vars = base();
    run_check(&CheckInput::new(
        metrics, &vars, MIN, previous, sources, now,
    ))
    .await
}

pub(super) fn metric(name: &str, query: &str, max: f64) -> ResolvedMetric {
    ResolvedMetric {
        template: "t".into(),
        name: name.into(),
        query: query.into(),
        args: BTreeMap::new(),
        interval: None,
        judge: MetricJudge::Threshold(ThresholdSpec {
            min: None,
            max: Some(max),
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

fn base() -> RenderVars {
    RenderVars {
        namespace: "shop".into(),
        target: "podinfo".into(),
        primary: "podinfo-primary".into(),
        canary: "podinfo".into(),
        workload: "ignored".into(),
        service: "podinfo".into(),
        interval: String::new(),
        args: BTreeMap::new(),
    }
}

pub(super) fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn renders_for_the_canary_with_the_metric_interval() {
    let mut slow = metric("slow", "s{w=\"{{workload}}\"}[{{interval}}]", 1.0);
    slow.interval = Some(Duration::from_secs(300));
    let fast = metric(
        "fast",
        "f{w=\"{{workload}}\",ns=\"{{namespace}}\"}[{{interval}}]",
        1.0,
    );
    let (src, rec) = sources(&[
        ("s{w=\"podinfo\"}[5m]", Ok(0.5)),
        ("f{w=\"podinfo\",ns=\"shop\"}[1m]", Ok(2.0)),
    ]);
    let report = check(&[slow, fast], &[], &src, t(0)).await;
    assert_eq!(rec.asked.lock().unwrap().len(), 2);
    let by = |n: &str| report.metrics.iter().find(|m| m.name == n).unwrap().clone();
    assert_eq!(by("slow").verdict, MetricVerdict::Pass);
    assert_eq!(by("slow").value, Some(0.5));
    assert_eq!(by("fast").verdict, MetricVerdict::Fail);
    assert_eq!(by("fast").reason, "2 > max 1");
    assert_eq!(by("fast").checked_at, t(0));
}

#[tokio::test]
async fn a_slow_metric_is_only_queried_when_due_and_keeps_its_verdict_meanwhile() {
    let mut slow = metric("slow", "s", 1.0);
    slow.interval = Some(Duration::from_secs(300));
    slow.dry_run = true;
    let fast = metric("fast", "f", 1.0);
    let metrics = [slow, fast];
    let (src, rec) = sources(&[("s", Ok(3.0)), ("f", Ok(0.1))]);

    let first = check(&metrics, &[], &src, t(0)).await;
    assert_eq!(rec.asked.lock().unwrap().clone(), vec!["s", "f"]);
    let mut prev = first.metrics.clone();
    // Checks at 1..4 minutes (with a little jitter) ask only the fast metric.
    for (minute, jitter) in [(1, 2), (2, -1), (3, 0), (4, 1)] {
        rec.asked.lock().unwrap().clear();
        let r = check(&metrics, &prev, &src, t(minute * 60 + jitter)).await;
        assert_eq!(
            rec.asked.lock().unwrap().clone(),
            vec!["f"],
            "minute {minute}"
        );
        let s = r.metrics.iter().find(|m| m.name == "slow").unwrap();
        assert_eq!(s.verdict, MetricVerdict::Fail);
        assert_eq!(s.checked_at, t(0), "kept status keeps its time");
        assert!(s.dry_run);
        prev = r.metrics;
    }
    // Five minutes minus jitter: due.
    rec.asked.lock().unwrap().clear();
    let r = check(&metrics, &prev, &src, t(5 * 60 - 3)).await;
    assert_eq!(rec.asked.lock().unwrap().clone(), vec!["s", "f"]);
    assert_eq!(
        r.metrics
            .iter()
            .find(|m| m.name == "slow")
            .unwrap()
            .checked_at,
        t(297)
    );
}

#[tokio::test]
async fn an_errored_slow_metric_is_retried_at_the_next_check() {
    let mut slow = metric("slow", "s", 1.0);
    slow.interval = Some(Duration::from_secs(600));
    let (src, rec) = sources(&[("s", Err(MetricError::Unreachable("refused".into())))]);
    let r = check(std::slice::from_ref(&slow), &[], &src, t(0)).await;
    assert_eq!(r.metrics[0].verdict, MetricVerdict::Error);
    let _ = check(std::slice::from_ref(&slow), &r.metrics, &src, t(60)).await;
    assert_eq!(rec.asked.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn consecutive_errors_count_reset_and_escalate_past_the_limit() {
    let mut m = metric("m", "q", 1.0);
    m.consecutive_error_limit = Some(2);
    m.critical = true;
    let (bad, _) = sources(&[("q", Err(MetricError::Unreachable("refused".into())))]);
    let (good, _) = sources(&[("q", Ok(0.5))]);
    let ms = std::slice::from_ref(&m);
    let mut prev = vec![];
    let mut seen = vec![];
    for (i, src) in [&bad, &bad, &good, &bad, &bad, &bad, &bad]
        .into_iter()
        .enumerate()
    {
        let r = check(ms, &prev, src, t(60 * i as i64)).await;
        assert_eq!(r.critical, vec!["m".to_string()]);
        seen.push((r.metrics[0].consecutive_errors, r.metrics[0].verdict));
        prev = r.metrics;
    }
    use MetricVerdict::*;
    assert_eq!(
        seen,
        vec![
            (1, Error),
            (2, Error),
            (0, Pass),
            (1, Error),
            (2, Error),
            (3, Fail),
            (4, Fail)
        ]
    );
    assert!(prev[0]
        .reason
        .ends_with("(4 errors in a row, more than consecutiveErrorLimit 2)"));
    assert!(prev[0]
        .reason
        .starts_with("metrics provider unreachable: refused"));
}

#[tokio::test]
async fn no_data_is_inconclusive_and_not_an_error() {
    let mut m = metric("m", "missing", 1.0);
    m.consecutive_error_limit = Some(0);
    let (src, _) = sources(&[]);
    let r = check(&[m], &[], &src, t(0)).await;
    assert_eq!(r.metrics[0].verdict, MetricVerdict::Inconclusive);
    assert_eq!(r.metrics[0].consecutive_errors, 0);
    assert_eq!(r.metrics[0].value, None);
}

#[tokio::test]
async fn an_unrenderable_query_is_an_error_verdict() {
    let m = metric("m", "x{{args.gone}}", 1.0);
    let (src, rec) = sources(&[]);
    let r = check(&[m], &[], &src, t(0)).await;
    assert_eq!(r.metrics[0].verdict, MetricVerdict::Error);
    assert!(r.metrics[0].reason.contains("\"gone\""));
    assert!(rec.asked.lock().unwrap().is_empty());
}

/// Answers every query at once except those containing "slow", which never answer.
struct HalfHanging(Arc<Scripted>);

#[async_trait]
impl MetricSource for HalfHanging {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        if query.contains("slow") {
            std::future::pending::<()>().await;
        }
        self.0.query_scalar(query, at).await
    }
    async fn query_vector(&self, q: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.query_scalar(q, at).await.map(|v| vec![v])
    }
}

impl MetricSources for HalfHanging {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn crate::providers::MetricSource>, MetricError> {
        Ok(Arc::new(HalfHanging(self.0.clone())))
    }
}

/// Regression: a check timeout used to discard every metric's result and reset the
/// sequential evidence. Now the metrics that answered keep their verdicts, the one that
/// hung is an error that counts towards its consecutive-error limit, and its evidence
/// so far is kept.
#[tokio::test(start_paused = true)]
async fn a_timeout_keeps_finished_metrics_and_sequential_evidence() {
    let fast = metric("fast", "fast_q", 1.0);
    let mut slow = metric("slow", "slow_q", 1.0);
    slow.consecutive_error_limit = Some(1);
    let (_, rec) = sources(&[("fast_q", Ok(0.5))]);
    let src = HalfHanging(rec);
    let evidence = crate::analysis::stats::SequentialState {
        looks: 3,
        canary_requests: 120.0,
        ..Default::default()
    };
    let mut before = plain_status(&slow, Some(0.1), MetricVerdict::Pass, "ok".into(), t(0));
    before.sequential = Some(evidence.clone());
    let metrics = [fast, slow];
    let vars = base();
    let input = |previous, now| CheckInput {
        timeout: Some(Duration::from_secs(30)),
        ..CheckInput::new(&metrics, &vars, MIN, previous, &src, now)
    };
    let first = run_check(&input(std::slice::from_ref(&before), t(60))).await;
    assert_eq!(
        first.metrics[0].verdict,
        MetricVerdict::Pass,
        "{:?}",
        first.metrics[0]
    );
    assert_eq!(first.metrics[0].value, Some(0.5));
    let hung = &first.metrics[1];
    assert_eq!(hung.verdict, MetricVerdict::Error);
    assert_eq!(hung.reason, "check timed out after 30s");
    assert_eq!(
        hung.sequential,
        Some(evidence),
        "evidence kept across the timeout"
    );
    let second = run_check(&input(&first.metrics, t(120))).await;
    assert_eq!(second.metrics[1].consecutive_errors, 2);
    assert_eq!(second.metrics[1].verdict, MetricVerdict::Fail);
}

/// Canary against primary: the query is rendered once per variant, and the samples are
/// judged by Mann-Whitney with the verdict's statistics in the status.
#[tokio::test]
async fn compare_judges_canary_samples_against_the_primary() {
    let canary_q = "lat{pod=~\"podinfo-.*\"}";
    let primary_q = "lat{pod=~\"podinfo-primary-.*\"}";
    let baseline: Vec<f64> = (0..40).map(|i| 0.100 + f64::from(i % 10) * 0.002).collect();
    let slow: Vec<f64> = baseline.iter().map(|v| v * 1.5).collect();
    let cfg: crate::crd::CompareSpec =
        serde_json::from_value(serde_json::json!({"kind": "samples", "allowedIncrease": 1.1}))
            .unwrap();
    let mut m = metric("latency", "lat{pod=~\"{{workload}}-.*\"}", 0.0);
    m.judge = MetricJudge::Compare(cfg);
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    for (canary, expect) in [
        (slow, MetricVerdict::Fail),
        (baseline.clone(), MetricVerdict::Pass),
    ] {
        let scripted = Arc::new(Scripted {
            vectors: BTreeMap::from([
                (canary_q.to_string(), canary),
                (primary_q.to_string(), baseline.clone()),
            ]),
            ..Default::default()
        });
        let report = check(&[m.clone()], &[], &Sources(scripted.clone()), now).await;
        let st = &report.metrics[0];
        assert_eq!(st.verdict, expect, "{}", st.reason);
        assert!(st.baseline.is_some() && st.p_value.is_some(), "{st:?}");
        assert_eq!(st.checked_at, now);
        assert_eq!(
            *scripted.asked.lock().unwrap(),
            vec![canary_q.to_string(), primary_q.to_string()]
        );
    }
}

/// The sequential judge: each check is one look. Its queries return counter totals;
/// the increments since the previous look (kept in the status) are judged, a missed
/// look keeps the evidence, and a clearly worse canary fails.
#[tokio::test]
async fn sequential_judge_accumulates_looks_through_the_status() {
    let cfg: crate::crd::SequentialSpec = serde_json::from_value(serde_json::json!({
        "requestsQuery": "req{pod=~\"{{workload}}-.*\"}", "minRequests": 100
    }))
    .unwrap();
    let mut m = metric("errors", "err{pod=~\"{{workload}}-.*\"}", 0.0);
    m.judge = MetricJudge::Sequential(cfg);
    // Counter totals of canary and primary: errors and requests.
    let totals = |ce: f64, cn: f64, be: f64, bn: f64| {
        Arc::new(Scripted {
            answers: BTreeMap::from([
                ("err{pod=~\"podinfo-.*\"}".to_string(), Ok(ce)),
                ("err{pod=~\"podinfo-primary-.*\"}".to_string(), Ok(be)),
                ("req{pod=~\"podinfo-.*\"}".to_string(), Ok(cn)),
                ("req{pod=~\"podinfo-primary-.*\"}".to_string(), Ok(bn)),
            ]),
            ..Default::default()
        })
    };
    let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    let at = |mins: i64| t0 + chrono::Duration::minutes(mins);
    // The first look records the counters; nothing is judged on them.
    let first = check(
        &[m.clone()],
        &[],
        &Sources(totals(5.0, 1000.0, 5.0, 1000.0)),
        t0,
    )
    .await;
    let st = &first.metrics[0];
    assert_eq!(st.verdict, MetricVerdict::Inconclusive, "{}", st.reason);
    assert_eq!(st.sequential.as_ref().unwrap().looks, 0);
    let second = check(
        &[m.clone()],
        &first.metrics,
        &Sources(totals(10.0, 2000.0, 10.0, 2000.0)),
        at(1),
    )
    .await;
    let st = &second.metrics[0];
    assert_eq!(st.verdict, MetricVerdict::Pass, "{}", st.reason);
    let seq = st.sequential.as_ref().unwrap();
    assert_eq!((seq.looks, seq.canary_requests), (1, 1000.0));
    assert!(
        st.reason.starts_with(
            "canary 5/1000 errors (0.50%) vs primary 5/1000 errors (0.50%), evidence "
        ),
        "{}",
        st.reason
    );

    // Prometheus had nothing this time: the look is missed, the evidence kept.
    let missed = check(
        &[m.clone()],
        &second.metrics,
        &Sources(Arc::new(Scripted::default())),
        at(2),
    )
    .await;
    assert_eq!(missed.metrics[0].verdict, MetricVerdict::Inconclusive);
    assert_eq!(missed.metrics[0].sequential, second.metrics[0].sequential);

    let bad = check(
        &[m],
        &missed.metrics,
        &Sources(totals(70.0, 3000.0, 15.0, 3000.0)),
        at(3),
    )
    .await;
    let st = &bad.metrics[0];
    assert_eq!(st.verdict, MetricVerdict::Fail, "{}", st.reason);
    assert_eq!(st.sequential.as_ref().unwrap().looks, 2);
    assert!(st.p_value.is_some_and(|p| p <= 0.01), "{st:?}");
    // Conclusive over the whole release: rolls back at once, whatever failureLimit says.
    assert_eq!(bad.critical, vec!["errors".to_string()]);
    assert_eq!(
        bad.outcome(at(3)),
        crate::rollout::CheckOutcome::CriticalFail
    );
}

/// A sequential metric without a requests query cannot measure evidence: an error
/// naming the missing field, never a pass on the planned weight.
#[tokio::test]
async fn a_sequential_metric_without_requests_query_is_an_error() {
    let mut m = metric("errors", "err", 0.0);
    m.judge = MetricJudge::Sequential(crate::crd::SequentialSpec::default());
    let r = check(&[m], &[], &Sources(Arc::new(Scripted::default())), t(0)).await;
    assert_eq!(r.metrics[0].verdict, MetricVerdict::Error);
    assert!(
        r.metrics[0].reason.contains("sequential.requestsQuery"),
        "{}",
        r.metrics[0].reason
    );
}
