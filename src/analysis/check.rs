//! Running one check: query every due metric and judge it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::judges;
use super::render::{prometheus_duration, render_query, RenderVars};
use super::resolve::ResolvedMetric;
use super::threshold::judge_threshold;
use crate::crd::{MetricStatus, MetricVerdict};
use crate::metrics::{Judge, Metrics};
use crate::providers::{MetricError, MetricSources};
use crate::rollout::text::{one_line, METRIC_REASON_MAX_CHARS};
use crate::rollout::AnalysisReport;

/// Query and judge every metric for the canary. Never fails: a metric that cannot be
/// measured gets an `Inconclusive` or `Error` verdict saying why.
///
/// `previous` are the statuses of the last check in this release (`status.metrics`).
/// A metric whose own interval is longer than the Canary's is only queried when due;
/// until then its previous status is returned unchanged (same `checked_at`, so a
/// caller can tell it was not measured now). Consecutive `Error`s are counted from
/// `previous`, and past the template's `consecutiveErrorLimit` the verdict is `Fail`.
pub async fn run_check(
    metrics: &[ResolvedMetric],
    base: &RenderVars,
    canary_interval: Duration,
    previous: &[MetricStatus],
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
) -> AnalysisReport {
    run_check_at_weight(metrics, base, canary_interval, previous, 0, sources, now).await
}

/// [`run_check`] for a canary that took `canary_weight` percent of the traffic during
/// the interval: the sequential judge uses it as the canary's share when it has no
/// requests query.
pub async fn run_check_at_weight(
    metrics: &[ResolvedMetric],
    base: &RenderVars,
    canary_interval: Duration,
    previous: &[MetricStatus],
    canary_weight: i32,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
) -> AnalysisReport {
    run_check_observed(
        metrics,
        base,
        canary_interval,
        previous,
        canary_weight,
        sources,
        now,
        None,
        None,
    )
    .await
}

/// [`run_check_at_weight`] that also times each judge into `observer` (the
/// controller's metrics); the judges themselves stay free of clocks. With `timeout`,
/// each metric gets that long: one that does not answer in time is an `Error` (its
/// sequential evidence kept), while the metrics that finished keep their verdicts.
#[allow(clippy::too_many_arguments)]
pub async fn run_check_observed(
    metrics: &[ResolvedMetric],
    base: &RenderVars,
    canary_interval: Duration,
    previous: &[MetricStatus],
    canary_weight: i32,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
    observer: Option<&Metrics>,
    timeout: Option<Duration>,
) -> AnalysisReport {
    let checks = metrics.iter().map(|m| async move {
        let prev = previous.iter().find(|p| p.name == m.name);
        let check = check_metric(
            m,
            prev,
            base,
            canary_interval,
            canary_weight,
            sources,
            now,
            observer,
        );
        match timeout {
            None => check.await,
            Some(limit) => match tokio::time::timeout(limit, check).await {
                Ok(st) => st,
                Err(_) => timed_out(m, prev, limit, now),
            },
        }
    });
    let statuses = join_all(checks).await;
    AnalysisReport {
        critical: critical_metrics(metrics),
        metrics: statuses,
    }
}

/// Measure and judge one metric (or return its previous status when not due).
#[allow(clippy::too_many_arguments)]
async fn check_metric(
    m: &ResolvedMetric,
    prev: Option<&MetricStatus>,
    base: &RenderVars,
    canary_interval: Duration,
    canary_weight: i32,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
    observer: Option<&Metrics>,
) -> MetricStatus {
    if let Some(p) = prev.filter(|p| !is_due(m, p, canary_interval, now)) {
        return MetricStatus {
            dry_run: m.dry_run,
            ..p.clone()
        };
    }
    let judged = match (&m.sequential, &m.compare) {
        (Some(cfg), _) => Some(
            sequential(
                m,
                cfg,
                prev,
                base,
                canary_interval,
                canary_weight,
                sources,
                now,
                observer,
            )
            .await,
        ),
        (None, Some(cfg)) => {
            Some(compare(m, cfg, base, canary_interval, sources, now, observer).await)
        }
        (None, None) => None,
    };
    if let Some(mut st) = judged {
        st.dry_run = m.dry_run;
        return count_errors(st, prev, m);
    }
    let value = measure(m, base, canary_interval, sources, now).await;
    let (verdict, reason) = timed(observer, Judge::Threshold, || {
        judge_threshold(&value, &m.threshold)
    });
    tracing::debug!(metric = %m.name, ?value, ?verdict, "metric judged");
    let value = value.as_ref().ok().copied().filter(|v| v.is_finite());
    count_errors(plain_status(m, value, verdict, reason, now), prev, m)
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

/// Run a judge, timing it when there is an observer.
fn timed<T>(observer: Option<&Metrics>, judge: Judge, f: impl FnOnce() -> T) -> T {
    match observer {
        None => f(),
        Some(o) => {
            let start = std::time::Instant::now();
            let out = f();
            o.observe_judge(judge, start.elapsed());
            out
        }
    }
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

/// A metric that could not be measured: no evidence is inconclusive, anything else an error.
fn unmeasured(m: &ResolvedMetric, e: &MetricError, now: DateTime<Utc>) -> MetricStatus {
    let verdict = if e.is_no_evidence() {
        MetricVerdict::Inconclusive
    } else {
        MetricVerdict::Error
    };
    MetricStatus {
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

/// The sequential count test: this interval's errors (and requests) of both versions
/// are one more look; the evidence so far travels in the metric's status.
#[allow(clippy::too_many_arguments)]
async fn sequential(
    m: &ResolvedMetric,
    cfg: &crate::crd::SequentialSpec,
    prev: Option<&MetricStatus>,
    base: &RenderVars,
    canary_interval: Duration,
    canary_weight: i32,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
    observer: Option<&Metrics>,
) -> MetricStatus {
    let canary_vars = variant_vars(m, base, canary_interval, &base.canary);
    let baseline_vars = variant_vars(m, base, canary_interval, &base.primary);
    let state = prev.and_then(|p| p.sequential.as_ref());
    let result: Result<MetricStatus, MetricError> = async {
        let source = sources.source(m.provider.as_ref(), m.credentials.as_deref())?;
        let errors_q = cfg.errors_query.as_deref().unwrap_or(&m.query);
        let canary_errors = source
            .query_scalar(&render(errors_q, &canary_vars)?, now)
            .await?;
        let baseline_errors = source
            .query_scalar(&render(errors_q, &baseline_vars)?, now)
            .await?;
        let requests = match cfg.requests_query.as_deref() {
            Some(q) => Some((
                source.query_scalar(&render(q, &canary_vars)?, now).await?,
                source
                    .query_scalar(&render(q, &baseline_vars)?, now)
                    .await?,
            )),
            None => None,
        };
        let look = judges::SequentialObservation {
            canary_errors,
            baseline_errors,
            requests,
            weight: f64::from(canary_weight),
        };
        let (next, verdict) = timed(observer, Judge::Sequential, || {
            judges::judge_sequential(state, look, cfg)
        });
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
    observer: Option<&Metrics>,
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
#[path = "check_tests.rs"]
mod tests;

/// Metrics whose failure rolls back at once: those marked critical, and every
/// sequential one. A sequential rejection already bounds the false-rollback chance over
/// the whole release by alpha, and it is sticky, so counting it towards `failureLimit`
/// would only hold a bad canary for more intervals without adding certainty.
fn critical_metrics(metrics: &[ResolvedMetric]) -> Vec<String> {
    metrics
        .iter()
        .filter(|m| m.critical || m.sequential.is_some())
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
