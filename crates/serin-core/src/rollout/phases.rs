//! What each phase does with the world it observes.

use chrono::Duration;

use super::steps::Gate;
use super::transition::{merge_metrics, Machine};
use super::{EventReason, NoteType};
use crate::crd::{CanaryPhase, GateKind, PolicyStage, PromotedImages, ReleaseResult};

impl Machine<'_> {
    pub(super) fn initializing(&mut self) {
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

    pub(super) fn idle(&mut self) {
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
        self.begin(EventReason::NewRevision);
    }

    pub(super) fn waiting(&mut self, check_due: bool) {
        if self.new_revision() {
            return self.begin(EventReason::NewRevision);
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
                    // The policies have their say after the gate too: a window may
                    // have closed while people decided. Held, the release goes on
                    // being judged at its step and asks again after the next check.
                    GateKind::BeforeTrafficIncrease => {
                        if self.policies_allow(PolicyStage::NextStep) {
                            self.set_step(self.s.current_step + 1)
                        } else if self.s.phase == CanaryPhase::WaitingApproval {
                            self.enter(CanaryPhase::Progressing);
                        }
                    }
                    GateKind::BeforePromotion => {
                        if self.policies_allow(PolicyStage::Promote) {
                            self.begin_promotion()
                        } else if self.s.phase == CanaryPhase::WaitingApproval {
                            self.enter(CanaryPhase::Progressing);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn progressing(&mut self, check_due: bool) {
        if self.new_revision() {
            return self.begin(EventReason::NewRevision);
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

    pub(super) fn promoting(&mut self) {
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
            return self.begin(EventReason::NewRevision);
        }
        self.s.message = format!("waiting for the primary to roll out revision {rev}");
    }

    pub(super) fn finalising(&mut self) {
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
            if !self.s.release_images.is_empty() {
                self.s.promoted = Some(Box::new(PromotedImages {
                    revision: self.revision(),
                    images: std::mem::take(&mut self.s.release_images),
                    at: self.now,
                }));
            }
            self.s.policy_wait = None;
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
}

fn humantime_of(d: Duration) -> String {
    humantime::format_duration(d.to_std().unwrap_or_default()).to_string()
}
