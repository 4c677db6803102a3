//! Human commands on a release: abort, retry, and pause/resume (`spec.suspend`).

use super::transition::Machine;
use super::{EventReason, NoteType};
use crate::crd::{CanaryPhase, CommandKind, ReleaseResult};

impl Machine<'_> {
    /// Abort, retry and pause/resume. Returns true when the step is decided.
    pub(super) fn commands_or_pause(&mut self) -> bool {
        let phase = self.s.phase;
        let rev = self.s.canary_revision.clone();
        let in_flight = matches!(
            phase,
            CanaryPhase::Progressing | CanaryPhase::WaitingApproval
        );
        if in_flight {
            let abort = super::human_input::command_since(
                &self.obs.commands,
                CommandKind::Abort,
                rev.as_deref(),
                self.s.release_started_at,
            );
            if let Some(c) = abort {
                let why = format!("aborted by {} via {}", c.by, c.via);
                self.s.paused_at = None;
                self.end_in_rollback(ReleaseResult::Aborted, why);
                return true;
            }
        }
        if phase == CanaryPhase::Failed {
            let target = self.obs.target_revision.as_str();
            let retry = super::human_input::command_since(
                &self.obs.commands,
                CommandKind::Retry,
                self.s.failed_revision.as_deref(),
                self.s.last_transition_time,
            )
            .filter(|c| c.revision == target)
            .cloned();
            if let Some(c) = retry {
                self.s.failed_revision = None;
                self.s.canary_revision = None;
                self.note(
                    NoteType::Normal,
                    EventReason::Retry,
                    format!(
                        "retry of revision {} requested by {} via {}",
                        c.revision, c.by, c.via
                    ),
                );
                self.begin(EventReason::Retry);
                return true;
            }
        }
        let holdable = in_flight || phase == CanaryPhase::Promoting;
        if self.plan.suspend && holdable {
            if self.s.paused_at.is_none() {
                self.s.paused_at = Some(self.now);
                self.note(
                    NoteType::Normal,
                    EventReason::Paused,
                    "release paused (spec.suspend)".into(),
                );
            }
            return true;
        }
        if let Some(paused_at) = self.s.paused_at.take() {
            // The deadline and check clocks stop while paused.
            let paused = self.now - paused_at;
            self.s.step_started_at = self.s.step_started_at.map(|t| t + paused);
            self.s.last_analysis_at = self.s.last_analysis_at.map(|t| t + paused);
            self.note(
                NoteType::Normal,
                EventReason::Resumed,
                "release resumed".into(),
            );
        }
        false
    }
}
