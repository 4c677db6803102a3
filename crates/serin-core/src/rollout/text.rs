//! Bounds on the free text serin writes into a Canary's status.
//!
//! Texts carry error messages from outside (Prometheus, webhooks, the API server),
//! which can be arbitrarily long: a whole URL-encoded query once filled
//! `status.message` with 2,095 characters. Everything a person reads in the status is
//! one line of at most these many characters, cut with "…".

use crate::crd::CanaryStatus;

/// `status.message` and every condition's `message`.
pub const MESSAGE_MAX_CHARS: usize = 512;

/// A metric's `reason` in `status.metrics`.
pub const METRIC_REASON_MAX_CHARS: usize = 300;

/// A release record's `reason` in `status.history`.
pub const HISTORY_REASON_MAX_CHARS: usize = 200;

/// `s` on one line (whitespace runs become one space), cut to `max` characters with "…".
pub fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Bound every free text of `status` (message, conditions, metric reasons, history).
/// Idempotent, so a bounded status compares equal to itself bounded again.
pub fn bound_status(status: &mut CanaryStatus) {
    bound(&mut status.message, MESSAGE_MAX_CHARS);
    for c in &mut status.conditions {
        bound(&mut c.message, MESSAGE_MAX_CHARS);
    }
    for m in &mut status.metrics {
        bound(&mut m.reason, METRIC_REASON_MAX_CHARS);
    }
    for r in &mut status.history {
        bound(&mut r.reason, HISTORY_REASON_MAX_CHARS);
    }
}

fn bound(s: &mut String, max: usize) {
    *s = one_line(s, max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Condition, MetricStatus};

    #[test]
    fn one_line_flattens_and_cuts_on_char_boundaries() {
        assert_eq!(one_line("a\n  b\tc ", 10), "a b c");
        let short = "step 1 passed: error-rate: 0.001 <= max 0.01";
        assert_eq!(one_line(short, MESSAGE_MAX_CHARS), short);
        let cut = one_line(&"é".repeat(600), 512);
        assert_eq!(cut.chars().count(), 512);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn bound_status_bounds_every_text_and_is_idempotent() {
        let long = format!("metrics provider unreachable: {}", "x%7B".repeat(600));
        let mut st = CanaryStatus {
            message: long.clone(),
            conditions: vec![Condition {
                message: long.clone(),
                ..Condition::default()
            }],
            metrics: vec![MetricStatus {
                points: Vec::new(),
                name: "error-rate".into(),
                value: None,
                baseline: None,
                effect: None,
                p_value: None,
                interval_low: None,
                interval_high: None,
                verdict: crate::crd::MetricVerdict::Error,
                reason: long.clone(),
                dry_run: false,
                checked_at: chrono::DateTime::UNIX_EPOCH,
                consecutive_errors: 0,
                sequential: None,
            }],
            ..CanaryStatus::default()
        };
        bound_status(&mut st);
        assert_eq!(st.message.chars().count(), MESSAGE_MAX_CHARS);
        assert_eq!(st.conditions[0].message.chars().count(), MESSAGE_MAX_CHARS);
        assert_eq!(
            st.metrics[0].reason.chars().count(),
            METRIC_REASON_MAX_CHARS
        );
        let again = {
            let mut s = st.clone();
            bound_status(&mut s);
            s
        };
        assert_eq!(again, st);
    }
}
