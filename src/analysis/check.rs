//! Running one check: query every due metric and judge it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::judges;
use super::judges::judge_threshold;
use super::render::{prometheus_duration, render_query, RenderVars};
use super::resolve::{MetricJudge, ResolvedMetric};
use crate::crd::{MetricStatus, MetricVerdict};
use crate::limits::KeyedLimiter;
use crate::metrics::{Judge, JudgeMetrics};
use crate::providers::{MetricError, MetricSources};
use crate::rollout::text::{one_line, METRIC_REASON_MAX_CHARS};
use crate::rollout::AnalysisReport;

/// Everything one check needs.
#[derive(Clone, Copy)]
pub struct CheckInput<'a> {
    pub metrics: &'a [ResolvedMetric],
    pub vars: &'a RenderVars,
    /// The Canary's check interval (a metric may have a longer one of its own).
    pub interval: Duration,
    /// The statuses of the last check in this release (`status.metrics`).
    pub previous: &'a [MetricStatus],
    pub sources: &'a dyn MetricSources,
    pub now: DateTime<Utc>,
    /// The controller's metrics, to time each judge; the judges stay free of clocks.
    pub observer: Option<&'a JudgeMetrics>,
    /// Time each metric gets: one that does not answer in time is an `Error` (its
    /// sequential evidence kept), while the metrics that finished keep their verdicts.
    pub timeout: Option<Duration>,
    /// Only the sequential metrics take a look (between two checks); the others keep
    /// their previous status.
    pub looks_only: bool,
    /// Queries in flight across all reconciles; each query waits for a permit keyed by
    /// the Canary's namespace (`vars.namespace`), within the check's timeout.
    pub limiter: Option<&'a Arc<KeyedLimiter>>,
}

impl<'a> CheckInput<'a> {
    pub fn new(
        metrics: &'a [ResolvedMetric],
        vars: &'a RenderVars,
        interval: Duration,
        previous: &'a [MetricStatus],
        sources: &'a dyn MetricSources,
        now: DateTime<Utc>,
    ) -> Self {
        CheckInput {
            metrics,
            vars,
            interval,
            previous,
            sources,
            now,
            observer: None,
            timeout: None,
            looks_only: false,
            limiter: None,
        }
    }
}

/// Query and judge every metric for the canary. Never fails: a metric that cannot be
/// measured gets an `Inconclusive` or `Error` verdict saying why.
///
/// A metric whose own interval is longer than the Canary's is only queried when due;
/// until then its previous status is returned unchanged (same `checked_at`, so a
/// caller can tell it was not measured now). Consecutive `Error`s are counted from
/// `previous`, and past the template's `consecutiveErrorLimit` the verdict is `Fail`.
pub async fn run_check(input: &CheckInput<'_>) -> AnalysisReport {
    let mut i = *input;
    let limited;
    if let Some(limiter) = i.limiter {
        limited = super::limited::Limited {
            inner: i.sources,
            limiter: limiter.clone(),
            namespace: i.vars.namespace.clone(),
        };
        i.sources = &limited;
    }
    let checks = i.metrics.iter().map(|m| async move {
        let prev = i.previous.iter().find(|p| p.name == m.name);
        if i.looks_only && m.sequential().is_none() {
            if let Some(p) = prev {
                return MetricStatus {
                    dry_run: m.dry_run,
                    ..p.clone()
                };
            }
        }
        let check = check_metric(m, prev, i.vars, i.interval, i.sources, i.now, i.observer);
        match i.timeout {
            None => check.await,
            Some(limit) => match tokio::time::timeout(limit, check).await {
                Ok(st) => st,
                Err(_) => timed_out(m, prev, limit, i.now),
            },
        }
    });
    let mut statuses = join_all(checks).await;
    // A status measured now gets its plot point; one carried over keeps its points.
    for (st, m) in statuses.iter_mut().zip(i.metrics) {
        if st.checked_at == i.now {
            st.points = vec![super::points::point_of(m, st)];
        }
    }
    AnalysisReport {
        critical: critical_metrics(i.metrics),
        metrics: statuses,
    }
}

/// Run a judge, timing it when there is an observer.
fn timed<T>(observer: Option<&JudgeMetrics>, judge: Judge, f: impl FnOnce() -> T) -> T {
    match observer {
        None => f(),
        Some(o) => {
            let start = std::time::Instant::now();
            let out = f();
            o.observe(judge, start.elapsed());
            out
        }
    }
}

/// Measure and judge one metric (or return its previous status when not due).
#[allow(clippy::too_many_arguments)]
async fn check_metric(
    m: &ResolvedMetric,
    prev: Option<&MetricStatus>,
    base: &RenderVars,
    canary_interval: Duration,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
    observer: Option<&JudgeMetrics>,
) -> MetricStatus {
    if let Some(p) = prev.filter(|p| !is_due(m, p, canary_interval, now)) {
        return MetricStatus {
            dry_run: m.dry_run,
            ..p.clone()
        };
    }
    let mut st = match &m.judge {
        MetricJudge::Sequential(cfg) => {
            sequential(m, cfg, prev, base, canary_interval, sources, now, observer).await
        }
        MetricJudge::Compare(cfg) => {
            compare(m, cfg, base, canary_interval, sources, now, observer).await
        }
        MetricJudge::Threshold(bounds) => {
            let value = measure(m, base, canary_interval, sources, now).await;
            let (verdict, reason) = match measured(&value) {
                Ok(v) => timed(observer, Judge::Threshold, || judge_threshold(v, bounds)),
                Err(instead) => instead,
            };
            tracing::debug!(metric = %m.name, ?value, ?verdict, "metric judged");
            let value = value.as_ref().ok().copied().filter(|v| v.is_finite());
            plain_status(m, value, verdict, reason, now)
        }
    };
    st.dry_run = m.dry_run;
    count_errors(st, prev, m)
}

/// A metric that did not answer within the check's time: an error, counted like one,
/// with the sequential evidence so far kept (a missed look merges into the next, so
/// alpha is not spent twice).
fn timed_out(
    m: &ResolvedMetric,
    prev: Option<&MetricStatus>,
    limit: Duration,
    now: DateTime<Utc>,
) -> MetricStatus {
    let reason = format!("check timed out after {}", prometheus_duration(limit));
    let mut st = plain_status(m, None, MetricVerdict::Error, reason, now);
    st.sequential = prev.and_then(|p| p.sequential.clone());
    count_errors(st, prev, m)
}

/// The variables of `m`'s queries when measuring `workload` (canary or primary).
fn variant_vars(
    m: &ResolvedMetric,
    base: &RenderVars,
    canary_interval: Duration,
    workload: &str,
) -> RenderVars {
    RenderVars {
        workload: workload.to_string(),
        interval: prometheus_duration(m.interval.unwrap_or(canary_interval)),
        args: m.args.clone(),
        ..base.clone()
    }
}

fn render(query: &str, vars: &RenderVars) -> Result<String, MetricError> {
    render_query(query, vars).map_err(|e| MetricError::BadQuery(e.to_string()))
}

/// A measurement, or the verdict and reason that stand in for it when the query failed:
/// no evidence is inconclusive, anything else an error. Never a pass.
pub(crate) fn measured(value: &Result<f64, MetricError>) -> Result<f64, (MetricVerdict, String)> {
    match value {
        Ok(v) => Ok(*v),
        Err(e) if e.is_no_evidence() => Err((MetricVerdict::Inconclusive, e.to_string())),
        Err(e) => Err((MetricVerdict::Error, e.to_string())),
    }
}

/// A metric that could not be measured: no evidence is inconclusive, anything else an error.
fn unmeasured(m: &ResolvedMetric, e: &MetricError, now: DateTime<Utc>) -> MetricStatus {
    let verdict = if e.is_no_evidence() {
        MetricVerdict::Inconclusive
    } else {
        MetricVerdict::Error
    };
    MetricStatus {
        points: Vec::new(),
        name: m.name.clone(),
        value: None,
        baseline: None,
        effect: None,
        p_value: None,
        interval_low: None,
        interval_high: None,
        verdict,
        reason: e.to_string(),
        dry_run: m.dry_run,
        checked_at: now,
        consecutive_errors: 0,
        sequential: None,
    }
}

/// The sequential count test. Its queries return counter totals of both versions;
/// this look's increments are the difference from the totals of the previous look
/// (kept in the metric's status), so looks never overlap and need no window.
#[allow(clippy::too_many_arguments)]
async fn sequential(
    m: &ResolvedMetric,
    cfg: &crate::crd::SequentialSpec,
    prev: Option<&MetricStatus>,
    base: &RenderVars,
    canary_interval: Duration,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
    observer: Option<&JudgeMetrics>,
) -> MetricStatus {
    let canary_vars = variant_vars(m, base, canary_interval, &base.canary);
    let baseline_vars = variant_vars(m, base, canary_interval, &base.primary);
    let state = prev.and_then(|p| p.sequential.as_ref());
    let result: Result<MetricStatus, MetricError> = async {
        let source = sources.source(m.provider.as_ref(), m.credentials.as_deref())?;
        let errors_q = cfg.errors_query.as_deref().unwrap_or(&m.query);
        let requests_q = cfg.requests_query.as_deref().ok_or_else(|| {
            MetricError::Config(
                "sequential.requestsQuery is missing: every look needs the measured requests of both versions".into(),
            )
        })?;
        let ask = |q: &str, vars: &RenderVars| {
            let q = render(q, vars);
            let source = source.clone();
            async move { source.query_scalar(&q?, now).await }
        };
        let baseline_errors_q = cfg.baseline_errors_query.as_deref().unwrap_or(errors_q);
        let baseline_requests_q = cfg.baseline_requests_query.as_deref().unwrap_or(requests_q);
        let totals = judges::SequentialObservation {
            canary_errors: ask(errors_q, &canary_vars).await?,
            canary_requests: ask(requests_q, &canary_vars).await?,
            baseline_errors: ask(baseline_errors_q, &baseline_vars).await?,
            baseline_requests: ask(baseline_requests_q, &baseline_vars).await?,
        };
        let mut kept = state.cloned().unwrap_or_default();
        let Some(look) = judges::increments_since_last_look(&mut kept, totals) else {
            // First look of the release, or a counter reset: the totals are the new
            // baseline; nothing is judged on them.
            let mut st = plain_status(
                m,
                None,
                MetricVerdict::Inconclusive,
                "counters recorded; the next look measures from here".into(),
                now,
            );
            st.sequential = Some(kept);
            return Ok(st);
        };
        let (mut next, verdict) = timed(observer, Judge::Sequential, || {
            judges::judge_sequential(Some(&kept), look, cfg)
        });
        next.totals = kept.totals;
        let mut st = verdict.to_metric_status(&m.name, m.dry_run, now);
        st.sequential = Some(next);
        Ok(st)
    }
    .await;
    result.unwrap_or_else(|e| {
        // A missed look merges into the next one: keep the evidence gathered so far.
        let mut st = unmeasured(m, &e, now);
        st.sequential = state.cloned();
        st
    })
}

/// Canary against primary: the same query rendered for each (or `baselineQuery`),
/// judged by Mann-Whitney (samples) or the two-proportion test (counts).
async fn compare(
    m: &ResolvedMetric,
    cfg: &crate::crd::CompareSpec,
    base: &RenderVars,
    canary_interval: Duration,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
    observer: Option<&JudgeMetrics>,
) -> MetricStatus {
    let canary_vars = variant_vars(m, base, canary_interval, &base.canary);
    let baseline_vars = variant_vars(m, base, canary_interval, &base.primary);
    let result: Result<MetricStatus, MetricError> = async {
        let source = sources.source(m.provider.as_ref(), m.credentials.as_deref())?;
        let baseline_q = cfg.baseline_query.as_deref().unwrap_or(&m.query);
        match cfg.kind {
            crate::crd::CompareKind::Samples => {
                let c = source
                    .query_vector(&render(&m.query, &canary_vars)?, now)
                    .await?;
                let b = source
                    .query_vector(&render(baseline_q, &baseline_vars)?, now)
                    .await?;
                let verdict = timed(observer, Judge::Compare, || {
                    judges::judge_mann_whitney(&c, &b, cfg)
                });
                Ok(verdict.to_metric_status(&m.name, m.dry_run, now))
            }
            crate::crd::CompareKind::Counts => {
                let requests = cfg.requests_query.as_deref().unwrap_or_default();
                let counts = |errors: f64, requests: f64| judges::Counts { errors, requests };
                let c = counts(
                    source
                        .query_scalar(&render(&m.query, &canary_vars)?, now)
                        .await?,
                    source
                        .query_scalar(&render(requests, &canary_vars)?, now)
                        .await?,
                );
                let b = counts(
                    source
                        .query_scalar(&render(baseline_q, &baseline_vars)?, now)
                        .await?,
                    source
                        .query_scalar(&render(requests, &baseline_vars)?, now)
                        .await?,
                );
                let verdict = timed(observer, Judge::Compare, || {
                    judges::judge_proportions(c, b, cfg)
                });
                Ok(verdict.to_metric_status(&m.name, m.dry_run, now))
            }
        }
    }
    .await;
    result.unwrap_or_else(|e| unmeasured(m, &e, now))
}

/// Render the metric's query for the canary and ask its provider.
async fn measure(
    m: &ResolvedMetric,
    base: &RenderVars,
    canary_interval: Duration,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
) -> Result<f64, MetricError> {
    let query = render(
        &m.query,
        &variant_vars(m, base, canary_interval, &base.canary),
    )?;
    let source = sources.source(m.provider.as_ref(), m.credentials.as_deref())?;
    source.query_scalar(&query, now).await
}

/// Whether a metric with its own (longer) interval should be measured at `now`.
///
/// Checks run every Canary interval with some jitter, so a metric is due once the
/// next check would overshoot its interval by more than half a Canary interval.
/// A failed measurement (`Error`) is retried at the next check regardless.
pub(crate) fn is_due(
    m: &ResolvedMetric,
    prev: &MetricStatus,
    canary_interval: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(own) = m.interval.filter(|i| *i > canary_interval) else {
        return true;
    };
    if prev.verdict == MetricVerdict::Error || prev.checked_at > now {
        return true;
    }
    let elapsed = (now - prev.checked_at).to_std().unwrap_or_default();
    elapsed + canary_interval / 2 >= own
}

fn escalate_errors(
    verdict: MetricVerdict,
    reason: String,
    consecutive: i32,
    m: &ResolvedMetric,
) -> (MetricVerdict, String) {
    match m.consecutive_error_limit {
        Some(limit) if verdict == MetricVerdict::Error && consecutive > limit => {
            let why = format!(
                " ({consecutive} errors in a row, more than consecutiveErrorLimit {limit})"
            );
            // Cut the error, not the part that says why it now fails.
            let room = METRIC_REASON_MAX_CHARS.saturating_sub(why.chars().count());
            (
                MetricVerdict::Fail,
                format!("{}{why}", one_line(&reason, room)),
            )
        }
        _ => (verdict, reason),
    }
}

#[cfg(test)]
#[path = "check_prometheus_tests.rs"]
mod prometheus_tests;
#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;

/// Metrics whose failure rolls back at once: those marked critical, and every
/// sequential one. A sequential rejection already bounds the false-rollback chance over
/// the whole release by alpha, and it is sticky, so counting it towards `failureLimit`
/// would only hold a bad canary for more intervals without adding certainty.
fn critical_metrics(metrics: &[ResolvedMetric]) -> Vec<String> {
    metrics
        .iter()
        .filter(|m| m.critical || m.sequential().is_some())
        .map(|m| m.name.clone())
        .collect()
}

/// Carry `prev`'s run of `Error` verdicts on (or reset it), escalate past the
/// metric's consecutive-error limit, and bound the reason. Every measured status
/// passes here.
fn count_errors(
    mut st: MetricStatus,
    prev: Option<&MetricStatus>,
    m: &ResolvedMetric,
) -> MetricStatus {
    st.consecutive_errors = match st.verdict {
        MetricVerdict::Error => prev.map_or(0, |p| p.consecutive_errors).saturating_add(1),
        _ => 0,
    };
    let (verdict, reason) = escalate_errors(st.verdict, st.reason, st.consecutive_errors, m);
    st.verdict = verdict;
    // Provider and webhook errors can be long; the status keeps one bounded line.
    st.reason = one_line(&reason, METRIC_REASON_MAX_CHARS);
    st
}

/// A status with a value only: the threshold judge's, or a check that did not run.
fn plain_status(
    m: &ResolvedMetric,
    value: Option<f64>,
    verdict: MetricVerdict,
    reason: String,
    now: DateTime<Utc>,
) -> MetricStatus {
    MetricStatus {
        points: Vec::new(),
        name: m.name.clone(),
        value,
        baseline: None,
        effect: None,
        p_value: None,
        interval_low: None,
        interval_high: None,
        verdict,
        reason,
        dry_run: m.dry_run,
        checked_at: now,
        consecutive_errors: 0,
        sequential: None,
    }
}
