//! One transition: the current status, the plan, what was observed and `now` in; the
//! next status, the actions and the Events out. What each phase does is in
//! `phases.rs`, the way through steps and gates in `steps.rs`, judging checks in
//! `judging.rs`, rollbacks and the history in `ending.rs`.

use chrono::{DateTime, Utc};

use super::actions::canary_up;
use super::schedule::analysis_due;
use super::text::{bound_status, one_line, MESSAGE_MAX_CHARS};
use super::{desired_actions, Action, EventReason, Observation, ReleasePlan};
use crate::crd::{CanaryPhase, CanaryStatus, MetricStatus};

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
            CanaryPhase::Waiting => m.waiting_for_policies(),
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

impl Machine<'_> {
    pub(super) fn note(&mut self, type_: NoteType, reason: EventReason, message: String) {
        self.s.message = message.clone();
        self.notes.push(Note {
            type_,
            reason,
            message,
        });
    }

    pub(super) fn enter(&mut self, phase: CanaryPhase) {
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

    /// The step (or wait) outlasted the progress deadline. A release a policy holds
    /// has not stalled: it waits for its window, its approvers or its soak.
    pub(super) fn past_deadline(&self) -> bool {
        self.s.policy_wait.is_none()
            && self
                .s
                .step_started_at
                .is_some_and(|t| self.now - t > self.plan.progress_deadline)
    }

    pub(super) fn revision(&self) -> String {
        self.s.canary_revision.clone().unwrap_or_default()
    }

    pub(super) fn new_revision(&self) -> bool {
        self.s.canary_revision.as_deref() != Some(self.obs.target_revision.as_str())
    }

    /// Facts of the world the status keeps: the primary's scale (a deleted primary
    /// comes back at it), and when the canary may scale down once traffic left it.
    ///
    /// The delay counts from the decision that routes traffic off, which is persisted
    /// in the same write as the phase that takes the traffic away (no write of its own);
    /// while the route is not seen back at 0 (the write failed and is retried), every
    /// retry moves it on, so proxies always get the whole delay after the last route
    /// write. The scale-down itself waits for the route to be seen at 0.
    fn track_world(&mut self) {
        if self.obs.primary_exists {
            self.s.primary_replicas = Some(self.obs.primary_replicas);
        }
        let down = !canary_up(&self.s);
        if !down || self.obs.canary_replicas == 0 {
            self.s.scale_down_at = None;
        } else if self.s.canary_weight == 0 && self.s.phase != CanaryPhase::Initializing {
            let delay_from_now = Some(self.now + self.plan.scale_down_delay);
            if self.obs.routed_weight != Some(0) {
                // Routed off by this decision's action.
                self.s.scale_down_at = delay_from_now;
            } else if self.s.scale_down_at.is_none() {
                self.s.scale_down_at = delay_from_now;
            }
        }
    }
}

/// Replace metrics by name, keeping ones not measured this time.
pub(super) fn merge_metrics(into: &mut Vec<MetricStatus>, fresh: &[MetricStatus]) {
    for m in fresh {
        match into.iter_mut().find(|x| x.name == m.name) {
            Some(x) => {
                let points = crate::crd::merge_points(&x.points, &m.points);
                *x = m.clone();
                x.points = points;
            }
            None => into.push(m.clone()),
        }
    }
}
