//! Conditions and the next wake-up, derived from the status a transition produced.

use chrono::Duration;

use super::schedule::{next_check_at, next_look_at};
use super::transition::Machine;
use super::{CheckOutcome, EventReason, Note, NoteType};
use crate::crd::{condition_type, find_condition, set_condition, CanaryPhase, Condition};

impl Machine<'_> {
    pub(super) fn update_conditions(&mut self) {
        let now = self.now;
        let cond = |type_: &str, ok: bool, reason: &str, message: String| Condition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            last_transition_time: now,
            observed_generation: None,
        };
        let phase = self.s.phase;
        let ready = self.obs.primary_exists && self.obs.primary_ready;
        set_condition(
            &mut self.s.conditions,
            cond(
                condition_type::READY,
                ready,
                if ready {
                    "PrimaryReady"
                } else {
                    "PrimaryNotReady"
                },
                String::new(),
            ),
        );
        let in_flight =
            !phase.is_idle() && !matches!(phase, CanaryPhase::Initializing | CanaryPhase::Waiting);
        let stalled = in_flight && phase != CanaryPhase::WaitingApproval && self.past_deadline();
        let (reason, msg) = if stalled {
            (
                EventReason::ProgressDeadlineExceeded.as_str(),
                self.s.message.clone(),
            )
        } else {
            let why = match (&self.s.policy_wait, phase) {
                (Some(w), CanaryPhase::Waiting) => w.message.clone(),
                _ => String::new(),
            };
            (phase.as_str(), why)
        };
        // Read back typed: the decision below matches the enum, not its wire string.
        let before = find_condition(&self.s.conditions, condition_type::PROGRESSING)
            .and_then(|c| EventReason::parse(&c.reason));
        set_condition(
            &mut self.s.conditions,
            cond(
                condition_type::PROGRESSING,
                in_flight && !stalled,
                reason,
                msg.clone(),
            ),
        );
        if stalled && before != Some(EventReason::ProgressDeadlineExceeded) {
            // Only the primary can stall here (canary stalls roll back); say so once.
            self.notes.push(Note {
                type_: NoteType::Warning,
                reason: EventReason::ProgressDeadlineExceeded,
                message: msg,
            });
        }
        let waiting = self.s.pending_gate.is_some();
        set_condition(
            &mut self.s.conditions,
            cond(
                condition_type::WAITING_APPROVAL,
                waiting,
                self.s.pending_gate.map_or("NoGate", |g| g.as_str()),
                String::new(),
            ),
        );
        if self.s.last_analysis_at == Some(now) {
            let outcome = self.obs.analysis.as_ref().map(|r| r.outcome(now));
            let (ok, reason) = match outcome {
                Some(CheckOutcome::Error) => (false, "ProviderError"),
                Some(CheckOutcome::Inconclusive) => (false, "NoData"),
                _ => (true, "EvidenceAvailable"),
            };
            let msg = self
                .obs
                .analysis
                .as_ref()
                .map(|r| r.summary(now))
                .unwrap_or_default();
            set_condition(
                &mut self.s.conditions,
                cond(
                    condition_type::ANALYSIS_HEALTHY,
                    ok,
                    reason,
                    if ok { String::new() } else { msg },
                ),
            );
        }
        self.s.step_label = Some(format!(
            "{}/{}",
            self.s.current_step,
            self.plan.step_count()
        ));
    }

    pub(super) fn requeue_after(&self) -> std::time::Duration {
        let mut by_phase = self.requeue_for_phase();
        if self.held_for_hooks {
            // A finished call wakes the Canary; this is the fallback.
            by_phase = super::HOOK_POLL;
        } else if self.s.hooks.iter().any(crate::crd::HookRun::running) {
            by_phase = by_phase.min(super::HOOK_POLL);
        }
        // A pending scale-down is due at its own time.
        match self.s.scale_down_at {
            Some(t) => {
                let wait = (t - self.now)
                    .to_std()
                    .unwrap_or_default()
                    .max(std::time::Duration::from_secs(1));
                by_phase.min(wait)
            }
            None => by_phase,
        }
        .min(self.policy_wake())
    }

    /// A policy wait ends at its `until` (a window opens, a soak ends); queues and
    /// approvals are looked at again every 30 s, and at once when the Canary changes.
    fn policy_wake(&self) -> std::time::Duration {
        let Some(w) = &self.s.policy_wait else {
            return std::time::Duration::MAX;
        };
        let poll = std::time::Duration::from_secs(30);
        match w.until {
            Some(t) => (t - self.now)
                .to_std()
                .unwrap_or_default()
                .clamp(std::time::Duration::from_secs(1), super::IDLE_RECHECK),
            None => poll,
        }
    }

    fn requeue_for_phase(&self) -> std::time::Duration {
        let secs = |d: Duration| d.to_std().unwrap_or_default();
        let short = std::time::Duration::from_secs(5);
        match self.s.phase {
            CanaryPhase::Progressing
                if self.s.current_step >= 1
                    && (self.obs.canary_ready || self.obs.canary_available) =>
            {
                let mut next = next_check_at(&self.s, self.plan).unwrap_or(self.now);
                if self.plan.sequential_looks && !self.plan.skip_analysis {
                    let look = next_look_at(&self.s, self.plan).unwrap_or(self.now);
                    next = next.min(look);
                }
                secs(next - self.now)
                    .clamp(std::time::Duration::from_secs(1), secs(self.plan.interval))
            }
            // Idle: at this Canary's own place in the period, so idle Canaries do
            // not all re-check together (and a due re-check is never put off).
            CanaryPhase::Initialized
            | CanaryPhase::Succeeded
            | CanaryPhase::Failed
            | CanaryPhase::Waiting => self.obs.recheck.after(self.now),
            CanaryPhase::WaitingApproval => {
                let mut wait = std::time::Duration::from_secs(30);
                if let Some(next) = next_check_at(&self.s, self.plan) {
                    if super::analysis_due(&self.s, self.plan, next) {
                        wait =
                            wait.min(secs(next - self.now).max(std::time::Duration::from_secs(1)));
                    }
                }
                if let (Some(limit), Some(since)) =
                    (self.plan.approval_timeout, self.s.last_transition_time)
                {
                    wait = wait
                        .min(secs(since + limit - self.now).max(std::time::Duration::from_secs(1)));
                }
                wait
            }
            _ => short,
        }
    }
}
