//! The rollout core's view of the background webhooks: a check (or pre-rollout round)
//! whose hooks still run is held, unless its metrics already fail; their answers arrive
//! as observations and are judged like any check.

use super::transition::Machine;
use super::CheckOutcome;

/// How often a Canary waiting for a webhook is looked at when no finished call wakes it.
pub const HOOK_POLL: std::time::Duration = std::time::Duration::from_secs(15);

impl Machine<'_> {
    /// True when the check due now waits for its rollout webhooks: nothing is counted
    /// and the step stays. Metrics that already fail are judged at once (a slow hook
    /// never delays a rollback), and a configuration problem is judged as always.
    pub(super) fn hold_for_hooks(&mut self) -> bool {
        if self.obs.hooks_pending.is_empty() || self.obs.config_problem.is_some() {
            return false;
        }
        let failing = self.obs.analysis.as_ref().is_some_and(|r| {
            matches!(
                r.outcome(self.now),
                CheckOutcome::Fail | CheckOutcome::CriticalFail
            )
        });
        if failing {
            return false;
        }
        self.held_for_hooks = true;
        self.s.message = format!(
            "check of step {} waits for {}",
            self.s.current_step,
            self.obs.hooks_pending.join("; ")
        );
        true
    }

    /// No pre-rollout verdict yet: say what it waits for.
    pub(super) fn wait_for_pre_rollout_hooks(&mut self) {
        if self.obs.hooks_pending.is_empty() {
            self.s.message = "waiting for the pre-rollout checks".into();
        } else {
            self.held_for_hooks = true;
            self.s.message = format!(
                "waiting for the pre-rollout checks: {}",
                self.obs.hooks_pending.join("; ")
            );
        }
    }
}
