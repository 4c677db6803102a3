//! Statistical judges: pure functions from measurements and a config to a verdict
//! that says what was measured, how sure the test is, and why in one line.

mod compare;
mod format;
mod sequential;
mod threshold;

pub use compare::{judge_mann_whitney, judge_proportions, validate_compare, Counts};
pub use format::{pct_change, rate};
pub use sequential::{
    evidence_line, increments_since_last_look, judge_sequential, last_look_line, sequential_test,
    validate_sequential, SequentialObservation, HOLD_AT,
};
pub use threshold::{fmt, judge_threshold};

use chrono::{DateTime, Utc};

use crate::crd::{MetricStatus, MetricVerdict};

/// A judge's verdict with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeVerdict {
    pub outcome: MetricVerdict,
    /// The canary's value (mean of samples, error rate of counts).
    pub value: Option<f64>,
    /// The baseline's value, measured the same way.
    pub baseline: Option<f64>,
    /// Effect: Hodges-Lehmann shift for samples, rate difference for counts.
    pub effect: Option<f64>,
    /// Canary / baseline (mean ratio, or rate ratio).
    pub ratio: Option<f64>,
    /// Confidence interval of `effect`.
    pub interval: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    /// One line saying why.
    pub reason: String,
    /// Non-finite inputs that were dropped.
    pub dropped: usize,
    /// Sequential judge only: the evidence allows ending the step early.
    pub advance_early: bool,
}

impl JudgeVerdict {
    pub(crate) fn bare(outcome: MetricVerdict, reason: String) -> Self {
        JudgeVerdict {
            outcome,
            value: None,
            baseline: None,
            effect: None,
            ratio: None,
            interval: None,
            p_value: None,
            reason,
            dropped: 0,
            advance_early: false,
        }
    }

    /// The verdict as it goes into the Canary's status.
    pub fn to_metric_status(
        &self,
        name: &str,
        dry_run: bool,
        checked_at: DateTime<Utc>,
    ) -> MetricStatus {
        MetricStatus {
            points: Vec::new(),
            consecutive_errors: 0,
            sequential: None,
            name: name.to_string(),
            value: self.value.filter(|v| v.is_finite()),
            baseline: self.baseline.filter(|v| v.is_finite()),
            effect: self.effect.filter(|v| v.is_finite()),
            p_value: self.p_value.filter(|v| v.is_finite()),
            interval_low: self.interval.map(|i| i.0).filter(|v| v.is_finite()),
            interval_high: self.interval.map(|i| i.1).filter(|v| v.is_finite()),
            verdict: self.outcome,
            reason: self.reason.clone(),
            dry_run,
            checked_at,
        }
    }
}

/// A judge configuration that cannot be used.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum JudgeConfigError {
    #[error("{field} must be {expected}, got {value}")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
        value: f64,
    },
}

impl JudgeConfigError {
    pub fn category(&self) -> &'static str {
        match self {
            JudgeConfigError::OutOfRange { .. } => "judge_config_invalid",
        }
    }
}

pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<(), JudgeConfigError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(JudgeConfigError::OutOfRange {
            field,
            expected,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_drops_non_finite_numbers() {
        let mut v = JudgeVerdict::bare(MetricVerdict::Pass, "ok".into());
        v.value = Some(f64::INFINITY);
        v.interval = Some((1.0, f64::NAN));
        v.p_value = Some(0.5);
        let at = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        let s = v.to_metric_status("latency", true, at);
        assert_eq!(s.value, None);
        assert_eq!((s.interval_low, s.interval_high), (Some(1.0), None));
        assert_eq!(s.p_value, Some(0.5));
        assert!(s.dry_run);
        assert_eq!(s.verdict, MetricVerdict::Pass);
    }
}
