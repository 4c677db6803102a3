//! What the static policy would have seen: the canary's errors and requests in each
//! check window of a release, read from the same Prometheus series serin judged.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::static_policy::WindowCounts;
use crate::providers::{MetricSource, PrometheusConfig, PrometheusSource};

/// The canary's counter totals (errors, requests) at `at`: the app's own
/// `http_request_duration_seconds_count` (what the static error-rate check of
/// `analysis-templates/app-http.yaml` divides), summed over the instances of this
/// release's revision only. The local backend names instances
/// `<workload>-<revision>-<suffix>`, so an earlier release's canary cannot leak in.
fn totals_queries(namespace: &str, workload: &str, revision: &str) -> (String, String) {
    let sel = format!(r#"namespace="{namespace}", pod=~"{workload}-{revision}-[a-z0-9]+""#);
    (
        format!(r#"sum(http_request_duration_seconds_count{{{sel}, code=~"5.."}}) or vector(0)"#),
        format!(r#"sum(http_request_duration_seconds_count{{{sel}}}) or vector(0)"#),
    )
}

/// Where one release's canary is.
#[derive(Clone, Debug)]
pub struct CanarySeries {
    pub namespace: String,
    pub workload: String,
    pub revision: String,
}

/// The canary's counts in consecutive windows of `interval` from `start`, every window
/// that ended by `until`. Each count is the difference of counter totals at the
/// window's ends (no `increase()` extrapolation: whole requests, as the load
/// generator counted them); before the canary's first scrape its totals are 0.
pub async fn canary_windows(
    prometheus_url: &str,
    series: &CanarySeries,
    start: DateTime<Utc>,
    interval: Duration,
    until: DateTime<Utc>,
) -> Result<Vec<WindowCounts>, String> {
    let prom = PrometheusSource::new(&PrometheusConfig::new(
        prometheus_url,
        Duration::from_secs(5),
    ))
    .map_err(|e| e.to_string())?;
    let (errors_q, requests_q) =
        totals_queries(&series.namespace, &series.workload, &series.revision);
    let step = chrono::Duration::from_std(interval).map_err(|e| e.to_string())?;
    if step <= chrono::Duration::zero() {
        return Err("the check interval must be positive".into());
    }
    let mut bounds = vec![start];
    while let Some(next) = bounds.last().map(|t| *t + step).filter(|t| *t <= until) {
        bounds.push(next);
    }
    let mut totals = Vec::with_capacity(bounds.len());
    for at in &bounds {
        let q = |query: &str| {
            let prom = &prom;
            let query = query.to_string();
            async move {
                prom.query_scalar(&query, *at)
                    .await
                    .map_err(|e| format!("{query}: {e}"))
            }
        };
        totals.push((q(&errors_q).await?, q(&requests_q).await?));
    }
    Ok(totals
        .windows(2)
        .map(|w| WindowCounts {
            errors: w[1].0 - w[0].0,
            requests: w[1].1 - w[0].1,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_select_this_revisions_canary_instances_only() {
        let (e, r) = totals_queries("demo", "podinfo", "3941ecfc2c");
        assert_eq!(
            e,
            r#"sum(http_request_duration_seconds_count{namespace="demo", pod=~"podinfo-3941ecfc2c-[a-z0-9]+", code=~"5.."}) or vector(0)"#
        );
        assert_eq!(
            r,
            r#"sum(http_request_duration_seconds_count{namespace="demo", pod=~"podinfo-3941ecfc2c-[a-z0-9]+"}) or vector(0)"#
        );
    }
}
