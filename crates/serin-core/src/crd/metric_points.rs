//! The measurements of one metric over a release (`status.metrics[].points`): what
//! the dashboard plots, canary beside primary, with the limit and the verdict of each.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MetricVerdict;

/// Points kept per metric and release. Bounded because the status is in every watch
/// cache: 40 points of one metric are about 3 KB of JSON.
pub const MAX_METRIC_POINTS: usize = 40;

/// One measurement of a metric.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricPoint {
    pub at: DateTime<Utc>,
    /// The canary's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The primary's value, measured the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// The value past which the canary fails, in the metric's units (a threshold's
    /// bound, or the baseline moved by the allowed change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Sequential metrics: the e-value, which rolls back at `1/alpha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    pub verdict: MetricVerdict,
}

/// `kept` followed by the points of `fresh` that are newer than its last, thinned to
/// [`MAX_METRIC_POINTS`] so the whole release stays in view: the point whose
/// neighbours are closest goes first, passing points before any other verdict, and
/// the first and last points always stay.
pub fn merge_points(kept: &[MetricPoint], fresh: &[MetricPoint]) -> Vec<MetricPoint> {
    let last = kept.last().map(|p| p.at);
    let mut out: Vec<MetricPoint> = kept.to_vec();
    out.extend(
        fresh
            .iter()
            .filter(|p| last.is_none_or(|l| p.at > l))
            .cloned(),
    );
    while out.len() > MAX_METRIC_POINTS {
        let drop = (1..out.len() - 1)
            .min_by_key(|&i| {
                let span = out[i + 1].at - out[i - 1].at;
                (out[i].verdict != MetricVerdict::Pass, span)
            })
            .unwrap_or(1);
        out.remove(drop);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn point(sec: i64, verdict: MetricVerdict) -> MetricPoint {
        MetricPoint {
            at: Utc.timestamp_opt(1_700_000_000 + sec, 0).unwrap(),
            value: Some(sec as f64),
            baseline: None,
            limit: None,
            evidence: None,
            verdict,
        }
    }

    #[test]
    fn a_repeated_status_adds_nothing_and_a_new_one_is_appended() {
        let kept = vec![
            point(0, MetricVerdict::Pass),
            point(10, MetricVerdict::Pass),
        ];
        assert_eq!(merge_points(&kept, &kept), kept);
        let out = merge_points(&kept, &[point(20, MetricVerdict::Fail)]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].verdict, MetricVerdict::Fail);
    }

    #[test]
    fn a_long_release_is_thinned_evenly_keeping_ends_and_failures() {
        let mut pts = Vec::new();
        for i in 0..200 {
            let v = if i == 77 {
                MetricVerdict::Fail
            } else {
                MetricVerdict::Pass
            };
            pts = merge_points(&pts, &[point(i * 10, v)]);
        }
        assert_eq!(pts.len(), MAX_METRIC_POINTS);
        assert_eq!(pts[0].at, point(0, MetricVerdict::Pass).at);
        assert_eq!(
            pts.last().map(|p| p.at),
            Some(point(1990, MetricVerdict::Pass).at)
        );
        assert!(pts.iter().any(|p| p.verdict == MetricVerdict::Fail));
        // Even coverage: no gap is more than three times the mean gap.
        let mean = 1990.0 / (MAX_METRIC_POINTS as f64 - 1.0);
        for w in pts.windows(2) {
            let gap = (w[1].at - w[0].at).num_seconds() as f64;
            assert!(gap <= 3.0 * mean, "gap {gap}s, mean {mean}s");
        }
    }
}
