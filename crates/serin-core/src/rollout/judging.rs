//! A check's (or a look's) outcome against the plan: count it, advance, hold or roll
//! back.

use super::transition::{merge_metrics, Machine};
use super::{CheckOutcome, EventReason, NoteType};

impl Machine<'_> {
    /// A look of the sequential metrics between checks: the evidence is kept, and a
    /// rejection rolls back at once (it already bounds false rollbacks by alpha over
    /// every look). Anything else waits for the step's check. True when it decided.
    pub(super) fn take_look(&mut self) -> bool {
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
    pub(super) fn check_result(&mut self) -> (CheckOutcome, String, bool) {
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
    pub(super) fn check_while_waiting(&mut self) {
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

    pub(super) fn judge(&mut self, outcome: CheckOutcome, summary: String, early: bool) {
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
}
