//! The threshold judge: pass while `min <= value <= max`.

use crate::crd::{MetricVerdict, ThresholdSpec};

/// Judge a measured value against a threshold. A value that is not a finite number
/// is no evidence, never a pass. (A query that failed never reaches a judge: the
/// check turns its error into a verdict.)
pub fn judge_threshold(v: f64, spec: &ThresholdSpec) -> (MetricVerdict, String) {
    if !v.is_finite() {
        return (
            MetricVerdict::Inconclusive,
            format!("value {v} is not a finite number"),
        );
    }
    if let Some(min) = spec.min {
        if v < min {
            return (
                MetricVerdict::Fail,
                format!("{} < min {}", fmt(v), fmt(min)),
            );
        }
    }
    if let Some(max) = spec.max {
        if v > max {
            return (
                MetricVerdict::Fail,
                format!("{} > max {}", fmt(v), fmt(max)),
            );
        }
    }
    let reason = match (spec.min, spec.max) {
        (Some(lo), Some(hi)) => format!("{} within [{}, {}]", fmt(v), fmt(lo), fmt(hi)),
        (Some(lo), None) => format!("{} >= min {}", fmt(v), fmt(lo)),
        (None, Some(hi)) => format!("{} <= max {}", fmt(v), fmt(hi)),
        (None, None) => format!("{} (no threshold)", fmt(v)),
    };
    (MetricVerdict::Pass, reason)
}

/// Four significant digits, no exponent for everyday magnitudes.
pub fn fmt(v: f64) -> String {
    if v == 0.0 || (1e-3..1e6).contains(&v.abs()) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<f64>, max: Option<f64>) -> ThresholdSpec {
        ThresholdSpec { min, max }
    }

    #[test]
    fn bounds_are_inclusive() {
        let s = spec(Some(1.0), Some(2.0));
        assert_eq!(judge_threshold(1.0, &s).0, MetricVerdict::Pass);
        assert_eq!(judge_threshold(2.0, &s).0, MetricVerdict::Pass);
        let (v, why) = judge_threshold(2.5, &s);
        assert_eq!((v, why.as_str()), (MetricVerdict::Fail, "2.5 > max 2"));
        let (v, why) = judge_threshold(0.25, &s);
        assert_eq!((v, why.as_str()), (MetricVerdict::Fail, "0.25 < min 1"));
    }

    #[test]
    fn missing_evidence_never_passes() {
        let s = spec(None, Some(1.0));
        assert_eq!(judge_threshold(f64::NAN, &s).0, MetricVerdict::Inconclusive);
        assert_eq!(
            judge_threshold(f64::INFINITY, &s).0,
            MetricVerdict::Inconclusive
        );
    }

    #[test]
    fn formats_readably() {
        assert_eq!(fmt(0.0123456), "0.0123");
        assert_eq!(fmt(250.0), "250");
        assert_eq!(fmt(1.5e-7), "1.500e-7");
    }
}
