//! When checks, looks and pre-rollout checks are due: the transition asks, and so
//! does the controller to know when to run the next check.

use chrono::{DateTime, Utc};

use super::actions::canary_up;
use super::ReleasePlan;
use crate::crd::{CanaryPhase, CanaryStatus};

/// A check is due: the canary has been at its current step (or since the last check)
/// for one interval. Checks keep running while a gate waits for a human with traffic
/// on the canary: a canary that fails meanwhile is rolled back, not left at its weight.
pub fn analysis_due(status: &CanaryStatus, plan: &ReleasePlan, now: DateTime<Utc>) -> bool {
    let judged_phase = match status.phase {
        CanaryPhase::Progressing => true,
        CanaryPhase::WaitingApproval => canary_up(status) && status.canary_weight > 0,
        _ => false,
    };
    judged_phase
        && !plan.suspend
        && status.paused_at.is_none()
        && status.current_step >= 1
        && next_check_at(status, plan).is_some_and(|t| now >= t)
}

/// A look of the sequential metrics is due between checks: every `lookInterval`
/// (and at once when the release's traffic starts, to record the counters it is
/// measured from).
pub fn look_due(status: &CanaryStatus, plan: &ReleasePlan, now: DateTime<Utc>) -> bool {
    let judged_phase = match status.phase {
        CanaryPhase::Progressing => true,
        CanaryPhase::WaitingApproval => canary_up(status),
        _ => false,
    };
    plan.sequential_looks
        && !plan.skip_analysis
        && judged_phase
        && !plan.suspend
        && status.paused_at.is_none()
        && status.current_step >= 1
        && !analysis_due(status, plan, now)
        && next_look_at(status, plan).is_none_or(|t| now >= t)
}

/// When the next look between checks is due; `None`: at once.
pub fn next_look_at(status: &CanaryStatus, plan: &ReleasePlan) -> Option<DateTime<Utc>> {
    let last = [status.last_look_at, status.last_analysis_at]
        .into_iter()
        .flatten()
        .max()?;
    Some(last + plan.look_interval)
}

/// Pre-rollout checks are due at step 0 with the canary up, at most once per interval.
pub fn pre_rollout_due(status: &CanaryStatus, plan: &ReleasePlan, now: DateTime<Utc>) -> bool {
    plan.pre_rollout
        && status.phase == CanaryPhase::Progressing
        && status.current_step == 0
        && !plan.suspend
        && status.paused_at.is_none()
        && status
            .last_analysis_at
            .is_none_or(|t| now >= t + plan.interval)
}

/// When the next check of the current step is due; `None` before the step has a clock.
pub fn next_check_at(status: &CanaryStatus, plan: &ReleasePlan) -> Option<DateTime<Utc>> {
    let base = match (status.step_started_at, status.last_analysis_at) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b)?,
    };
    Some(base + plan.interval)
}
