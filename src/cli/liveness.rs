//! Is a controller still acting on a Canary? The status alone cannot say "all is well":
//! a crashed controller leaves the last status in place, "check due" and all. This
//! derives, without any extra write by the controller (a reconcile that changes nothing
//! writes nothing), when the controller last acted and by when it must act again, from
//! what is already there: the time of its status writes in `metadata.managedFields`,
//! and the clocks of the status. Pure: it takes the Canary and `now`.
//!
//! Only deadlines the controller must meet with a write count (a check, the progress
//! deadline, an approval timeout, the end of a policy wait, a scale-down). Waits on
//! people (a gate, a pause, a queue) expect nothing, and where the controller may
//! rightly say nothing until the progress deadline (canary pods not ready, a check held
//! for its webhooks) only that deadline counts: no false alarms, at the cost of a later
//! one.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::render::human_duration;
use crate::crd::{Canary, CanaryPhase, CanaryStatus, FIELD_MANAGER};
use crate::rollout::{next_check_at, ReleasePlan};

/// The least time past a deadline before the controller is said to have missed it.
pub const MIN_GRACE: Duration = Duration::seconds(60);

/// A controller write later than the last check by more than this said something
/// else since (canary pods not ready, a check waiting for its webhooks). The status
/// write of a check lands after its queries (the check's time is taken before them);
/// a slower check only makes the rule cautious (the deadline counts), never wrong.
const SAID_MORE_AFTER: Duration = Duration::seconds(10);

/// What the controller is expected to do by [`Liveness::expected_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Expected {
    /// Write a first status on a new Canary.
    FirstStatus,
    /// Run the next check of the step.
    Check,
    /// Move on or roll back: the step (or promotion) reached its progress deadline.
    ProgressDeadline,
    /// Roll back a gate nobody decided within `gates.approvalTimeout`.
    ApprovalTimeout,
    /// Look at the release policies again: their wait ends (`policyWait.until`).
    PolicyWaitEnd,
    /// Scale the canary down (`scaleDownAt`).
    ScaleDown,
}

impl Expected {
    fn words(self) -> &'static str {
        match self {
            Expected::FirstStatus => "the Canary was created",
            Expected::Check => "a check was due",
            Expected::ProgressDeadline => "the progress deadline passed",
            Expected::ApprovalTimeout => "the approval timeout passed",
            Expected::PolicyWaitEnd => "the release policy wait ended",
            Expected::ScaleDown => "the canary's scale-down was due",
        }
    }
}

/// When the controller last acted on a Canary, and whether it is overdue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    /// The controller's last status write (unknown for an object never written).
    pub last_acted: Option<DateTime<Utc>>,
    /// The controller must act by then (`None`: nothing it must do by any time).
    pub expected_by: Option<DateTime<Utc>>,
    /// What it must do by `expected_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Expected>,
    /// `expected_by` passed, plus a grace, with no controller write since.
    pub stalled: bool,
}

impl Liveness {
    /// The warning for a stalled Canary, e.g. "no controller has acted for 12m (a check
    /// was due 11m ago): is serin running?"; `None` when not stalled.
    pub fn message(&self, now: DateTime<Utc>) -> Option<String> {
        if !self.stalled {
            return None;
        }
        let due = self.expected_by?;
        let silent = match self.last_acted {
            Some(t) => format!("no controller has acted for {}", human_duration(now - t)),
            None => "no controller has acted yet".to_string(),
        };
        let what = self.expected.map_or("it was due", Expected::words);
        Some(format!(
            "{silent} ({what} {} ago): is serin running?",
            human_duration(now - due)
        ))
    }

    /// How long a stalled Canary has gone without a controller: since its last write,
    /// or since the controller was due when it never wrote. `None` when not stalled.
    pub fn silent_for(&self, now: DateTime<Utc>) -> Option<Duration> {
        if !self.stalled {
            return None;
        }
        Some(now - self.last_acted.or(self.expected_by)?)
    }
}

/// When the controller last acted, and whether the time is that of its own write (from
/// `managedFields`) rather than the latest clock of the status.
fn acted(c: &Canary) -> Option<(DateTime<Utc>, bool)> {
    let written = c
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .filter(|e| e.subresource.as_deref() == Some("status"))
        .filter_map(|e| e.time.as_ref())
        .filter_map(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
        .max();
    if let Some(t) = written {
        return Some((t, true));
    }
    let s = c.status.as_ref()?;
    [
        s.last_transition_time,
        s.last_analysis_at,
        s.last_look_at,
        s.step_started_at,
    ]
    .into_iter()
    .flatten()
    .chain(s.conditions.iter().map(|c| c.last_transition_time))
    .max()
    .map(|t| (t, false))
}

/// When the controller last acted on `c`, by when it must act again, and whether it is
/// overdue at `now` (see the module docs for which deadlines count).
pub fn liveness(c: &Canary, now: DateTime<Utc>) -> Liveness {
    let acted = acted(c);
    let last_acted = acted.map(|(t, _)| t);
    let plan = ReleasePlan::from_spec(&c.spec, false).ok();
    let grace = plan
        .as_ref()
        .map_or(MIN_GRACE, |p| (p.interval * 2).max(MIN_GRACE));
    let due = match &c.status {
        None => c
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
            .map(|t| vec![(t, Expected::FirstStatus)])
            .unwrap_or_default(),
        Some(s) => deadlines(s, plan.as_ref(), acted),
    };
    // A deadline the controller wrote after has been met.
    let next = due
        .into_iter()
        .filter(|(t, _)| last_acted.is_none_or(|a| a < *t))
        .min_by_key(|(t, _)| *t);
    Liveness {
        last_acted,
        expected_by: next.map(|(t, _)| t),
        expected: next.map(|(_, e)| e),
        stalled: next.is_some_and(|(t, _)| now > t + grace),
    }
}

/// Every time by which the controller must write, whatever it observes.
fn deadlines(
    s: &CanaryStatus,
    plan: Option<&ReleasePlan>,
    acted: Option<(DateTime<Utc>, bool)>,
) -> Vec<(DateTime<Utc>, Expected)> {
    let mut due = Vec::new();
    // Traffic left the canary: it scales down then, in any phase, and clears this.
    if let Some(t) = s.scale_down_at {
        due.push((t, Expected::ScaleDown));
    }
    // At its end the policies are asked again: the release starts or moves on, or the
    // wait (and its `until`) changes. A wait without an end waits on people or queues.
    if let Some(t) = s.policy_wait.as_ref().and_then(|w| w.until) {
        due.push((t, Expected::PolicyWaitEnd));
    }
    let Some(plan) = plan else {
        return due;
    };
    if s.paused_at.is_some() || plan.suspend {
        // Paused by people: no clock runs.
        return due;
    }
    // A step (or promotion) past its deadline is rolled back (or, promoting, marked
    // ProgressDeadlineExceeded): a write, unless a policy holds the release.
    let deadline = s
        .step_started_at
        .filter(|_| s.policy_wait.is_none())
        .map(|t| (t + plan.progress_deadline, Expected::ProgressDeadline));
    match s.phase {
        CanaryPhase::Progressing => {
            due.extend(deadline);
            if let Some(t) = checks_due(s, plan, acted) {
                due.push((t, Expected::Check));
            }
        }
        CanaryPhase::Promoting | CanaryPhase::Finalising => due.extend(deadline),
        // Checks go on while a gate waits with traffic, but nothing says whether the
        // canary's pods serve (held checks write nothing): only the timeout counts.
        CanaryPhase::WaitingApproval => {
            if let (Some(limit), Some(since)) = (plan.approval_timeout, s.last_transition_time) {
                due.push((since + limit, Expected::ApprovalTimeout));
            }
        }
        // Initializing waits for the primary (no deadline); idle phases wait for a new
        // revision, and Waiting for its policies (their `until` is above).
        _ => {}
    }
    due
}

/// When the next check must be written, when the status says the controller checks at
/// this step: the canary serves (a check of this step happened) and no controller
/// write since the check said otherwise. Before the step's first check the canary's
/// pods may not be ready yet (a raised step scales it up, right after the step's own
/// write, so a word about it cannot be told from that write), and a later write may say
/// they no longer are or that the check waits for its webhooks: then the controller
/// writes nothing until the progress deadline, which is the only one that counts. Without the time of the controller's
/// own write (no `managedFields`) those later writes cannot be ruled out: no checks.
fn checks_due(
    s: &CanaryStatus,
    plan: &ReleasePlan,
    acted: Option<(DateTime<Utc>, bool)>,
) -> Option<DateTime<Utc>> {
    if s.current_step < 1 {
        // Pre-rollout checks wait for webhooks and the canary: the deadline counts.
        return None;
    }
    let analysed = s
        .last_analysis_at
        .filter(|a| s.step_started_at.is_none_or(|st| *a >= st))?;
    let clock = [Some(analysed), s.last_look_at, s.step_started_at]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(analysed);
    match acted {
        Some((t, true)) if t <= clock + SAID_MORE_AFTER => next_check_at(s, plan),
        _ => None,
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
