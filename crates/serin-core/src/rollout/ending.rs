//! How a release ends in a rollback, and the history record every end leaves.

use super::text::{one_line, HISTORY_REASON_MAX_CHARS};
use super::transition::Machine;
use super::{EventReason, NoteType};
use crate::crd::{CanaryPhase, ReleaseRecord, ReleaseResult, RELEASE_HISTORY_LIMIT};

impl Machine<'_> {
    pub(super) fn rollback(&mut self, why: String) {
        self.end_in_rollback(ReleaseResult::RolledBack, why)
    }

    /// Roll back, recording the release as `result` (rolled back or aborted).
    pub(super) fn end_in_rollback(&mut self, result: ReleaseResult, why: String) {
        self.record(result, why.clone(), self.s.canary_weight);
        self.s.canary_weight = 0;
        self.s.pending_gate = None;
        self.s.policy_wait = None;
        self.s.failed_revision = self.s.canary_revision.clone();
        self.s.step_started_at = None;
        self.enter(CanaryPhase::Failed);
        self.note(
            NoteType::Warning,
            EventReason::RolledBack,
            format!("revision {} rolled back: {why}", self.revision()),
        );
    }

    /// Append the release of `canaryRevision` that just ended to `status.history`,
    /// keeping the newest [`RELEASE_HISTORY_LIMIT`]. A transition recomputed from the same
    /// status (a retried write) replaces its own record instead of adding a second one.
    pub(super) fn record(&mut self, result: ReleaseResult, reason: String, weight: i32) {
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
