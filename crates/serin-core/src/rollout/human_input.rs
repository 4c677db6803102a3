//! A person's input recorded in the status that the controller has yet to act on: an
//! answer at the gate the release waits at, an abort of the release under way, a
//! retry of the revision rolled back. The machine reads these through the same
//! matchers, and the controller gives a Canary holding one a reconcile lane of its
//! own, so that a person is not kept waiting behind routine analysis.

use chrono::{DateTime, Utc};

use crate::crd::{Approval, CanaryPhase, CanaryStatus, Command, CommandKind, GateKind};

/// The latest answer at `gate` for this release (`started` onwards) of `revision`.
pub(super) fn gate_answer<'a>(
    approvals: &'a [Approval],
    gate: GateKind,
    revision: &str,
    step: i32,
    started: Option<DateTime<Utc>>,
) -> Option<&'a Approval> {
    // Only decisions about this release: a revision retried after a rejection must not
    // meet the old rejection at the same gate again.
    approvals
        .iter()
        .filter(|a| a.gate == gate && a.revision == revision && a.step == step)
        .filter(|a| started.is_none_or(|t| a.at >= t))
        .max_by_key(|a| a.at)
}

/// A command of `kind` for `revision`, given at `since` or later: an abort of the
/// release that started then, a retry of the revision rolled back then.
pub(super) fn command_since<'a>(
    commands: &'a [Command],
    kind: CommandKind,
    revision: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> Option<&'a Command> {
    commands.iter().find(|c| {
        c.kind == kind && Some(c.revision.as_str()) == revision && since.is_none_or(|t| c.at >= t)
    })
}

/// Whether `status` holds a person's input the next reconcile acts on. It may say yes
/// for a retry of a revision the Deployment no longer runs (the machine then ignores
/// it); it never says no to input the machine would act on.
pub fn awaits_action_on_input(s: &CanaryStatus) -> bool {
    let revision = s.canary_revision.as_deref();
    match s.phase {
        CanaryPhase::Progressing | CanaryPhase::WaitingApproval => {
            let answered = s.phase == CanaryPhase::WaitingApproval
                && s.pending_gate.is_some_and(|g| {
                    gate_answer(
                        &s.approvals,
                        g,
                        revision.unwrap_or_default(),
                        s.current_step,
                        s.release_started_at,
                    )
                    .is_some()
                });
            answered
                || command_since(
                    &s.commands,
                    CommandKind::Abort,
                    revision,
                    s.release_started_at,
                )
                .is_some()
        }
        CanaryPhase::Failed => command_since(
            &s.commands,
            CommandKind::Retry,
            s.failed_revision.as_deref(),
            s.last_transition_time,
        )
        .is_some(),
        _ => false,
    }
}
