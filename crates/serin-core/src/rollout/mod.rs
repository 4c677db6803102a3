//! The rollout state machine. No I/O: it takes the Canary's status, what the adapters
//! observed and `now`, and returns the next status plus the actions that bring the
//! world in line with it.
//!
//! Actions are derived from the difference between what the new status wants (primary
//! revision, canary replicas, traffic weight) and what was observed, so a controller
//! restart between any two actions simply recomputes and redoes the missing ones.

mod actions;
mod commands;
mod conditions;
mod ending;
mod hooks;
mod human_input;
mod judging;
mod observation;
mod phases;
mod plan;
mod policies;
mod reason;
mod recheck;
mod schedule;
mod steps;
pub mod text;
mod transition;

pub use actions::{desired_actions, expected_primary_revision, Action};
pub use hooks::HOOK_POLL;
pub use human_input::awaits_action_on_input;
pub use observation::{AnalysisReport, CheckOutcome, Observation, PolicyInputs, Upstream};
pub use plan::validate_steps;
pub use plan::{PlanError, ReleasePlan};
pub use reason::{EventReason, ReleaseEnd};
pub use recheck::{Recheck, IDLE_RECHECK};
pub use schedule::{analysis_due, look_due, next_check_at, next_look_at, pre_rollout_due};
pub use transition::{transition, Decision, Note, NoteType};

#[cfg(test)]
mod tests;
