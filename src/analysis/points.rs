//! The plot point of a fresh measurement (`status.metrics[].points`): the canary's
//! and the primary's values with the limit the judge applied, in the metric's units.

use super::resolve::{MetricJudge, ResolvedMetric};
use crate::crd::{CompareSpec, Direction, MetricPoint, MetricStatus};

/// The point of `st`, a status measured just now.
pub(crate) fn point_of(m: &ResolvedMetric, st: &MetricStatus) -> MetricPoint {
    MetricPoint {
        at: st.checked_at,
        value: st.value,
        baseline: st.baseline,
        limit: limit_of(&m.judge, st.baseline).filter(|v| v.is_finite()),
        evidence: st
            .sequential
            .as_ref()
            .map(|s| s.e_value)
            .filter(|v| v.is_finite()),
        verdict: st.verdict,
    }
}

/// The canary value past which `judge` fails, given the primary's value. For the
/// statistical judges this is where the *allowed* change ends; a significant change
/// within it passes, and a change past it fails only once it is significant.
pub(crate) fn limit_of(judge: &MetricJudge, baseline: Option<f64>) -> Option<f64> {
    match judge {
        MetricJudge::Threshold(t) => t.max.or(t.min),
        MetricJudge::Compare(c) => compare_limit(c, baseline?),
        MetricJudge::Sequential(s) => Some(baseline? * s.allowed_increase.number()),
    }
}

fn compare_limit(c: &CompareSpec, baseline: f64) -> Option<f64> {
    match c.direction {
        Direction::Increase | Direction::Either => Some(match c.allowed_absolute_increase {
            Some(a) => baseline + a,
            None => baseline * c.allowed_increase.as_ref().map_or(1.0, |r| r.number()),
        }),
        Direction::Decrease => Some(match c.allowed_absolute_decrease {
            Some(a) => baseline - a,
            None => baseline * c.allowed_decrease.unwrap_or(1.0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ThresholdSpec, ThresholdValue};

    fn compare(json: serde_json::Value) -> MetricJudge {
        MetricJudge::Compare(serde_json::from_value(json).expect("compare spec"))
    }

    #[test]
    fn each_judge_draws_its_own_limit() {
        let t = MetricJudge::Threshold(ThresholdSpec {
            min: None,
            max: Some(0.5),
        });
        assert_eq!(limit_of(&t, None), Some(0.5));
        // A ratio moves with the baseline; an absolute allowance adds to it.
        let rel = compare(serde_json::json!({"allowedIncrease": 1.1}));
        assert!((limit_of(&rel, Some(200.0)).unwrap() - 220.0).abs() < 1e-9);
        assert_eq!(limit_of(&rel, None), None);
        let abs = compare(
            serde_json::json!({"kind": "counts", "allowedAbsoluteIncrease": 0.005,
            "allowedIncrease": 3}),
        );
        assert!((limit_of(&abs, Some(0.01)).unwrap() - 0.015).abs() < 1e-12);
        let down = compare(serde_json::json!({"direction": "decrease", "allowedDecrease": 0.9}));
        assert!((limit_of(&down, Some(100.0)).unwrap() - 90.0).abs() < 1e-9);
        let seq: crate::crd::SequentialSpec = serde_json::from_value(serde_json::json!({
            "requestsQuery": "r", "allowedIncrease": 1.5}))
        .expect("sequential spec");
        assert_eq!(seq.allowed_increase, ThresholdValue::Number(1.5));
        let seq = MetricJudge::Sequential(seq);
        assert!((limit_of(&seq, Some(0.02)).unwrap() - 0.03).abs() < 1e-12);
    }
}
