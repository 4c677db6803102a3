use chrono::{DateTime, Duration, Utc};

use super::actions::canary_up;
use super::text::{bound_status, one_line, HISTORY_REASON_MAX_CHARS, MESSAGE_MAX_CHARS};
use super::{desired_actions, Action, CheckOutcome, EventReason, Observation, ReleasePlan};
use crate::crd::{
    CanaryPhase, CanaryStatus, GateKind, ReleaseRecord, ReleaseResult, RELEASE_HISTORY_LIMIT,
};

/// The result of one transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: CanaryStatus,
    /// Carry these out in order, then write `status`.
    pub actions: Vec<Action>,
    /// One Kubernetes Event (and notification) each.
    pub notes: Vec<Note>,
    /// When to look again if nothing else wakes the controller.
    pub requeue_after: std::time::Duration,
    /// The check due now was not judged: it waits for its webhooks.
    pub held_for_hooks: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteType {
    Normal,
    Warning,
}

/// Something worth telling people: becomes an Event and a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: NoteType,
    pub reason: EventReason,
    pub message: String,
}

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

/// Compute the next status and the actions that realize it.
pub fn transition(
    current: &CanaryStatus,
    plan: &ReleasePlan,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let mut m = Machine {
        s: current.clone(),
        plan,
        obs,
        now,
        notes: Vec::new(),
        held_for_hooks: false,
    };
    m.s.hooks = obs.hook_runs.clone();
    let check_due = analysis_due(current, plan, now);
    if m.commands_or_pause() {
        // A command or the pause decided this step.
    } else {
        match current.phase {
            CanaryPhase::Initializing => m.initializing(),
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed => m.idle(),
            CanaryPhase::WaitingApproval => m.waiting(check_due),
            CanaryPhase::Progressing => m.progressing(check_due),
            CanaryPhase::Promoting => m.promoting(),
            CanaryPhase::Finalising => m.finalising(),
        }
    }
    // Bounded before the conditions copy it; the rest of the texts after.
    m.s.message = one_line(&m.s.message, MESSAGE_MAX_CHARS);
    m.track_world();
    m.update_conditions();
    let requeue_after = m.requeue_after();
    let Machine {
        mut s,
        mut notes,
        held_for_hooks,
        ..
    } = m;
    bound_status(&mut s);
    for n in &mut notes {
        // Events, notifications and webhooks tell the same text as the status.
        n.message = one_line(&n.message, MESSAGE_MAX_CHARS);
    }
    let actions = desired_actions(&s, plan, obs, now);
    Decision {
        status: s,
        actions,
        notes,
        requeue_after,
        held_for_hooks,
    }
}

pub(super) struct Machine<'a> {
    pub(super) s: CanaryStatus,
    pub(super) plan: &'a ReleasePlan,
    pub(super) obs: &'a Observation,
    pub(super) now: DateTime<Utc>,
    pub(super) notes: Vec<Note>,
    /// The check (or pre-rollout round) due now waits for its webhooks.
    pub(super) held_for_hooks: bool,
}

enum Gate {
    Open,
    Closed,
    Rejected(String),
}

impl Machine<'_> {
    pub(super) fn note(&mut self, type_: NoteType, reason: EventReason, message: String) {
        self.s.message = message.clone();
        self.notes.push(Note {
            type_,
            reason,
            message,
        });
    }

    fn enter(&mut self, phase: CanaryPhase) {
        if self.s.phase != phase {
            self.s.phase = phase;
            self.s.last_transition_time = Some(self.now);
        }
        self.s.step_label = Some(format!(
            "{}/{}",
            self.s.current_step,
            self.plan.step_count()
        ));
    }

    pub(super) fn past_deadline(&self) -> bool {
        self.s
            .step_started_at
            .is_some_and(|t| self.now - t > self.plan.progress_deadline)
    }

    pub(super) fn revision(&self) -> String {
        self.s.canary_revision.clone().unwrap_or_default()
    }

    fn new_revision(&self) -> bool {
        self.s.canary_revision.as_deref() != Some(self.obs.target_revision.as_str())
    }

    fn initializing(&mut self) {
        if !self.obs.primary_exists && self.obs.primary_revision.is_none() {
            // Nothing released yet: the user's Deployment serves, and whatever it runs
            // now is what onboarding takes over (a target that moved before the primary
            // existed would otherwise never get one).
            self.s.stable_revision = None;
        }
        if self.s.stable_revision.is_none() {
            // Resume from an existing primary; otherwise the user's current spec is stable.
            self.s.stable_revision = Some(
                self.obs
                    .primary_revision
                    .clone()
                    .unwrap_or_else(|| self.obs.target_revision.clone()),
            );
        }
        if self.s.step_started_at.is_none() {
            self.s.step_started_at = Some(self.now);
        }
        if self.obs.primary_exists && self.obs.primary_ready && self.obs.owned_missing.is_empty() {
            self.s.step_started_at = None;
            self.enter(CanaryPhase::Initialized);
            self.note(
                NoteType::Normal,
                EventReason::Initialized,
                "primary is ready and serves all traffic".into(),
            );
        } else {
            self.enter(CanaryPhase::Initializing);
            self.s.message = "waiting for the primary to become ready".into();
        }
    }

    fn idle(&mut self) {
        let target = self.obs.target_revision.clone();
        if self.s.stable_revision.as_deref() == Some(target.as_str()) {
            if self.s.phase == CanaryPhase::Failed {
                self.enter(CanaryPhase::Initialized);
                self.note(
                    NoteType::Normal,
                    EventReason::Reverted,
                    "the Deployment is back on the primary's revision".into(),
                );
            }
            return;
        }
        if self.s.phase == CanaryPhase::Failed
            && self.s.failed_revision.as_deref() == Some(target.as_str())
        {
            return;
        }
        if let Some(problem) = &self.obs.config_problem {
            // Starting would only fail its checks: the revision waits for a fix.
            self.s.message = format!("new revision {target} waits: {problem}");
            return;
        }
        self.start_release(EventReason::NewRevision);
    }

    pub(super) fn start_release(&mut self, reason: EventReason) {
        let target = self.obs.target_revision.clone();
        let restart = self.s.canary_revision.is_some() && !self.s.phase.is_idle();
        if restart {
            self.record(
                ReleaseResult::Superseded,
                format!("superseded by revision {target}"),
                self.s.canary_weight,
            );
        }
        self.s.canary_revision = Some(target.clone());
        self.s.release_started_at = Some(self.now);
        self.s.step_started_at = Some(self.now);
        self.s.last_analysis_at = None;
        self.s.last_look_at = None;
        self.s.current_step = 0;
        self.s.canary_weight = 0;
        self.s.step_checks = 0;
        self.s.failed_checks = 0;
        self.s.inconclusive_checks = 0;
        self.s.metrics.clear();
        self.s.pending_gate = None;
        let what = if restart {
            format!("new revision {target} during the release: restarting from the first step")
        } else {
            format!("new revision {target}: starting release")
        };
        self.note(NoteType::Normal, reason, what);
        if self.plan.gates.before_rollout {
            match self.gate(GateKind::BeforeRollout) {
                Gate::Open => {}
                Gate::Closed => return self.wait_at(GateKind::BeforeRollout),
                Gate::Rejected(why) => return self.rollback(why),
            }
        }
        self.enter(CanaryPhase::Progressing);
    }

    fn gate(&self, gate: GateKind) -> Gate {
        let rev = self.revision();
        // Only decisions about this release: a revision retried after a rejection
        // must not meet the old rejection at the same gate again.
        let started = self.s.release_started_at;
        let found = self
            .obs
            .approvals
            .iter()
            .filter(|a| a.gate == gate && a.revision == rev && a.step == self.s.current_step)
            .filter(|a| started.is_none_or(|t| a.at >= t))
            .max_by_key(|a| a.at);
        match found {
            Some(a) if a.approved => Gate::Open,
            Some(a) => Gate::Rejected(format!(
                "{} rejected by {} via {}",
                gate.as_str(),
                a.by,
                a.via
            )),
            None => Gate::Closed,
        }
    }

    fn wait_at(&mut self, gate: GateKind) {
        self.s.pending_gate = Some(gate);
        self.enter(CanaryPhase::WaitingApproval);
        self.note(
            NoteType::Normal,
            EventReason::WaitingApproval,
            format!(
                "waiting for approval ({}) of revision {} at step {}",
                gate.as_str(),
                self.revision(),
                self.s.current_step
            ),
        );
    }

    fn waiting(&mut self, check_due: bool) {
        if self.new_revision() {
            return self.start_release(EventReason::NewRevision);
        }
        let Some(gate) = self.s.pending_gate else {
            // Nothing to wait for (status edited by hand): carry on.
            return self.enter(CanaryPhase::Progressing);
        };
        if check_due {
            if !self.hold_for_hooks() {
                self.check_while_waiting();
            }
        } else {
            self.take_look();
        }
        if self.s.phase != CanaryPhase::WaitingApproval {
            return;
        }
        match self.gate(gate) {
            Gate::Closed => {
                let since = self.s.last_transition_time.unwrap_or(self.now);
                if let Some(limit) = self.plan.approval_timeout {
                    if self.now - since >= limit {
                        self.rollback(format!(
                            "{} was not approved within gates.approvalTimeout ({})",
                            gate.as_str(),
                            humantime_of(limit)
                        ));
                    }
                }
            }
            Gate::Rejected(why) => self.rollback(why),
            Gate::Open => {
                self.s.pending_gate = None;
                self.note(
                    NoteType::Normal,
                    EventReason::Approved,
                    format!(
                        "{} approved for revision {}",
                        gate.as_str(),
                        self.revision()
                    ),
                );
                match gate {
                    GateKind::BeforeRollout => {
                        self.s.step_started_at = Some(self.now);
                        self.enter(CanaryPhase::Progressing);
                    }
                    GateKind::BeforeTrafficIncrease => self.set_step(self.s.current_step + 1),
                    GateKind::BeforePromotion => self.begin_promotion(),
                }
            }
        }
    }

    fn progressing(&mut self, check_due: bool) {
        if self.new_revision() {
            return self.start_release(EventReason::NewRevision);
        }
        let serving = if self.plan.replica_weighting {
            self.obs.canary_available
        } else {
            self.obs.canary_ready
        };
        if !serving {
            if self.past_deadline() {
                return self.rollback(format!(
                    "canary not ready within the progress deadline ({})",
                    humantime_of(self.plan.progress_deadline)
                ));
            }
            self.s.message = "waiting for the canary to become ready".into();
            return;
        }
        if self.s.current_step == 0 {
            if let Some(problem) = &self.obs.config_problem {
                // No first traffic on a broken configuration; the deadline still runs.
                self.s.message = format!("holding before the first step: {problem}");
                if self.past_deadline() {
                    let why = format!(
                        "no progress within the progress deadline ({}): {problem}",
                        humantime_of(self.plan.progress_deadline)
                    );
                    self.rollback(why);
                }
                return;
            }
            if !self.plan.pre_rollout {
                return self.advance();
            }
            // Pre-rollout checks (conformance, load tests) gate the first traffic; a
            // failure counts as a failed check. Without a result yet: wait.
            match &self.obs.pre_rollout {
                Some(report) => {
                    self.s.last_analysis_at = Some(self.now);
                    let (outcome, summary) = (report.outcome(self.now), report.summary(self.now));
                    merge_metrics(&mut self.s.metrics, &report.metrics);
                    self.judge(outcome, summary, false);
                }
                None => self.wait_for_pre_rollout_hooks(),
            }
            if self.s.phase == CanaryPhase::Progressing
                && self.s.current_step == 0
                && self.past_deadline()
            {
                let why = format!(
                    "pre-rollout checks did not pass within the progress deadline: {}",
                    self.s.message
                );
                self.rollback(why);
            }
            return;
        }
        if !check_due && self.take_look() {
            return;
        }
        if check_due && !self.hold_for_hooks() {
            let (outcome, summary, early) = self.check_result();
            self.judge(outcome, summary, early);
            if self.s.phase != CanaryPhase::Progressing {
                return;
            }
        }
        if self.past_deadline() {
            let why = format!(
                "no progress within the progress deadline ({}): {}",
                humantime_of(self.plan.progress_deadline),
                self.s.message
            );
            self.rollback(why);
        }
    }

    /// A look of the sequential metrics between checks: the evidence is kept, and a
    /// rejection rolls back at once (it already bounds false rollbacks by alpha over
    /// every look). Anything else waits for the step's check. True when it decided.
    fn take_look(&mut self) -> bool {
        let Some(look) = &self.obs.look else {
            return false;
        };
        self.s.last_look_at = Some(self.now);
        merge_metrics(&mut self.s.metrics, &look.metrics);
        if look.outcome(self.now) == CheckOutcome::CriticalFail {
            let summary = look.summary(self.now);
            self.judge(CheckOutcome::CriticalFail, summary, false);
            return true;
        }
        false
    }

    /// The outcome of the check due now, merged into the status: a config problem is a
    /// failed check, a check the controller could not run is no evidence.
    fn check_result(&mut self) -> (CheckOutcome, String, bool) {
        self.s.last_analysis_at = Some(self.now);
        self.s.last_look_at = Some(self.now);
        if let Some(problem) = &self.obs.config_problem {
            return (
                CheckOutcome::Fail,
                format!("configuration: {problem}"),
                false,
            );
        }
        match (&self.obs.analysis, self.plan.skip_analysis) {
            (_, true) => (CheckOutcome::Pass, "analysis skipped".to_string(), false),
            (Some(report), false) => {
                merge_metrics(&mut self.s.metrics, &report.metrics);
                (
                    report.outcome(self.now),
                    report.summary(self.now),
                    report.advance_early(self.now),
                )
            }
            (None, false) => (
                CheckOutcome::Error,
                "the check did not run".to_string(),
                false,
            ),
        }
    }

    /// A check while a gate waits: failures count (and roll back) as at any step; a
    /// pass only says the canary is still fine, the gate decides what comes next.
    fn check_while_waiting(&mut self) {
        let (outcome, summary, _) = self.check_result();
        match outcome {
            CheckOutcome::Pass | CheckOutcome::Hold => {
                self.s.message = format!(
                    "waiting for approval ({}); the canary still passes: {summary}",
                    self.s.pending_gate.map_or("gate", |g| g.as_str())
                );
            }
            other => self.judge(other, summary, false),
        }
    }

    fn judge(&mut self, outcome: CheckOutcome, summary: String, early: bool) {
        let step = self.s.current_step;
        match outcome {
            CheckOutcome::Pass => {
                self.s.step_checks = self.s.step_checks.saturating_add(1);
                // Pre-rollout checks (step 0) pass once.
                let need = if step == 0 {
                    1
                } else {
                    self.plan.checks_per_step
                };
                let done = self.s.step_checks;
                if done >= need {
                    self.s.message = format!("step {step} passed: {summary}");
                    self.advance();
                } else if early {
                    self.s.message = format!(
                        "step {step} ends early after {done}/{need} passing checks: \
                         the sequential evidence shows the canary not worse: {summary}"
                    );
                    self.advance();
                } else {
                    self.s.message =
                        format!("step {step}: {done}/{need} passing checks: {summary}");
                }
            }
            CheckOutcome::CriticalFail => {
                self.s.failed_checks += 1;
                self.rollback(format!("critical metric failed: {summary}"));
            }
            CheckOutcome::Fail => {
                self.s.failed_checks += 1;
                if self.s.failed_checks >= self.plan.failure_limit {
                    self.rollback(format!(
                        "failed checks {}/{}: {summary}",
                        self.s.failed_checks, self.plan.failure_limit
                    ));
                } else {
                    self.note(
                        NoteType::Warning,
                        EventReason::CheckFailed,
                        format!(
                            "check failed ({}/{}), holding at step {step}: {summary}",
                            self.s.failed_checks, self.plan.failure_limit
                        ),
                    );
                }
            }
            CheckOutcome::Inconclusive => {
                self.s.inconclusive_checks += 1;
                match self.plan.inconclusive_limit {
                    Some(limit) if self.s.inconclusive_checks >= limit => {
                        self.rollback(format!(
                            "inconclusive checks {}/{limit}: {summary}",
                            self.s.inconclusive_checks
                        ));
                    }
                    _ if self.plan.strategy == crate::crd::Strategy::BlueGreen => self.note(
                        NoteType::Warning,
                        EventReason::CheckInconclusive,
                        format!(
                            "not enough traffic reached the preview, the switch waits: {summary}"
                        ),
                    ),
                    _ => self.note(
                        NoteType::Warning,
                        EventReason::CheckInconclusive,
                        format!("no evidence, holding at step {step}: {summary}"),
                    ),
                }
            }
            CheckOutcome::Hold => {
                self.s.message = format!("holding at step {step} until re-measured: {summary}");
            }
            CheckOutcome::Error => self.note(
                NoteType::Warning,
                EventReason::CheckError,
                format!("metrics unavailable, holding at step {step}: {summary}"),
            ),
        }
    }

    /// Move past a passed step: the next step, or promotion after the last.
    fn advance(&mut self) {
        let next = self.s.current_step + 1;
        if next > self.plan.step_count() {
            if self.plan.gates.before_promotion {
                match self.gate(GateKind::BeforePromotion) {
                    Gate::Open => {}
                    Gate::Closed => return self.wait_at(GateKind::BeforePromotion),
                    Gate::Rejected(why) => return self.rollback(why),
                }
            }
            return self.begin_promotion();
        }
        if self.plan.gates.before_traffic_increase
            && self.plan.weight_at(next) > self.s.canary_weight
        {
            match self.gate(GateKind::BeforeTrafficIncrease) {
                Gate::Open => {}
                Gate::Closed => return self.wait_at(GateKind::BeforeTrafficIncrease),
                Gate::Rejected(why) => return self.rollback(why),
            }
        }
        self.set_step(next);
    }

    fn set_step(&mut self, step: i32) {
        let weight = self.plan.weight_at(step);
        let raised = weight != self.s.canary_weight;
        // Each step needs its own evidence of traffic (minRequests).
        for seq in self
            .s
            .metrics
            .iter_mut()
            .filter_map(|m| m.sequential.as_mut())
        {
            seq.step_canary_requests = 0.0;
        }
        self.s.current_step = step;
        self.s.canary_weight = weight;
        self.s.step_checks = 0;
        self.s.step_started_at = Some(self.now);
        self.s.last_analysis_at = None;
        self.enter(CanaryPhase::Progressing);
        let msg = format!(
            "step {step}/{}: canary weight {weight}%",
            self.plan.step_count()
        );
        if raised || step == 1 {
            self.note(NoteType::Normal, EventReason::StepAdvanced, msg);
        } else {
            self.s.message = msg;
        }
    }

    fn begin_promotion(&mut self) {
        if self.plan.strategy == crate::crd::Strategy::BlueGreen {
            // The switch: all traffic to the new version while the primary catches up.
            self.s.canary_weight = 100;
        }
        self.s.step_started_at = Some(self.now);
        self.enter(CanaryPhase::Promoting);
        self.note(
            NoteType::Normal,
            EventReason::Promoting,
            format!("promoting revision {} to the primary", self.revision()),
        );
    }

    fn promoting(&mut self) {
        let rev = self.revision();
        if self.obs.primary_revision.as_deref() == Some(rev.as_str()) && self.obs.primary_ready {
            self.s.stable_revision = Some(rev.clone());
            self.s.canary_weight = 0;
            self.enter(CanaryPhase::Finalising);
            self.s.message = format!("primary serves revision {rev}; routing all traffic to it");
            return;
        }
        if self.new_revision() {
            // The target changed before the primary took the analysed revision; the
            // adapter refuses to copy an unanalysed spec, so start over.
            if let Some(p) = &self.obs.primary_revision {
                self.s.stable_revision = Some(p.clone());
            }
            return self.start_release(EventReason::NewRevision);
        }
        self.s.message = format!("waiting for the primary to roll out revision {rev}");
    }

    fn finalising(&mut self) {
        if self.obs.routed_weight == Some(0) && self.obs.canary_replicas == 0 {
            let steps = self.plan.step_count();
            let why = if self.plan.skip_analysis {
                format!("all {steps} steps done (analysis skipped)")
            } else if self.plan.no_analysis {
                format!("all {steps} steps done without any checks (analysis: none)")
            } else {
                format!("all {steps} steps passed")
            };
            self.record(ReleaseResult::Promoted, why, 100);
            self.s.current_step = 0;
            self.s.step_started_at = None;
            self.enter(CanaryPhase::Succeeded);
            let msg = if self.plan.no_analysis {
                format!(
                    "revision {} promoted without any checks (analysis: none)",
                    self.revision()
                )
            } else {
                format!("revision {} promoted", self.revision())
            };
            self.note(NoteType::Normal, EventReason::Promoted, msg);
        }
    }

    /// Facts of the world the status keeps: the primary's scale (a deleted primary
    /// comes back at it), and when the canary may scale down once traffic left it.
    fn track_world(&mut self) {
        if self.obs.primary_exists {
            self.s.primary_replicas = Some(self.obs.primary_replicas);
        }
        let down = !canary_up(&self.s);
        if !down || self.obs.canary_replicas == 0 {
            self.s.scale_down_at = None;
        } else if self.s.scale_down_at.is_none()
            && self.s.canary_weight == 0
            && self.obs.routed_weight == Some(0)
        {
            self.s.scale_down_at = Some(self.now + self.plan.scale_down_delay);
        }
    }

    pub(super) fn rollback(&mut self, why: String) {
        self.end_in_rollback(ReleaseResult::RolledBack, why)
    }

    /// Roll back, recording the release as `result` (rolled back or aborted).
    pub(super) fn end_in_rollback(&mut self, result: ReleaseResult, why: String) {
        self.record(result, why.clone(), self.s.canary_weight);
        self.s.canary_weight = 0;
        self.s.pending_gate = None;
        self.s.failed_revision = self.s.canary_revision.clone();
        self.s.step_started_at = None;
        self.enter(CanaryPhase::Failed);
        self.note(
            NoteType::Warning,
            EventReason::RolledBack,
            format!("revision {} rolled back: {why}", self.revision()),
        );
    }
}

impl Machine<'_> {
    /// Append the release of `canaryRevision` that just ended to `status.history`,
    /// keeping the newest [`RELEASE_HISTORY_LIMIT`]. A transition recomputed from the same
    /// status (a retried write) replaces its own record instead of adding a second one.
    fn record(&mut self, result: ReleaseResult, reason: String, weight: i32) {
        let Some(revision) = self.s.canary_revision.clone() else {
            return;
        };
        let record = ReleaseRecord {
            revision,
            started_at: self.s.release_started_at,
            finished_at: self.now,
            result,
            reason: one_line(&reason, HISTORY_REASON_MAX_CHARS),
            step: self.s.current_step,
            steps: self.plan.step_count(),
            weight,
        };
        let h = &mut self.s.history;
        match h.last_mut() {
            Some(last)
                if last.revision == record.revision
                    && last.started_at == record.started_at
                    && record.started_at.is_some() =>
            {
                *last = record
            }
            _ => h.push(record),
        }
        let excess = h.len().saturating_sub(RELEASE_HISTORY_LIMIT);
        h.drain(..excess);
    }
}

/// Replace metrics by name, keeping ones not measured this time.
fn merge_metrics(into: &mut Vec<crate::crd::MetricStatus>, fresh: &[crate::crd::MetricStatus]) {
    for m in fresh {
        match into.iter_mut().find(|x| x.name == m.name) {
            Some(x) => *x = m.clone(),
            None => into.push(m.clone()),
        }
    }
}

fn humantime_of(d: Duration) -> String {
    humantime::format_duration(d.to_std().unwrap_or_default()).to_string()
}
