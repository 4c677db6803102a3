//! Release policies in the release: a new revision starts, a release takes its next
//! step, and a canary is promoted only when the policies selecting the Canary allow it
//! (and, with `serin.dev/promote-from`, its upstream environment promoted the same
//! images long enough ago). The decision itself is `crate::policy::evaluate`; here it
//! is asked at the right moments and its answer kept in `status.policyWait`.

use chrono::{DateTime, Utc};

use super::transition::Machine;
use super::{EventReason, NoteType};
use crate::crd::{
    ApprovalsStillNeeded, CanaryPhase, GateKind, PolicyStage, PolicyWait, PolicyWaitReason,
    ReleaseResult,
};
use crate::policy::{
    evaluate, soak_until, EmergencyOverride, PolicyDecision, PolicyGate, PolicyRef, PolicyRules,
    RecordedApproval, ReleaseFacts, Stage, Wait, WaitReason,
};

/// A wait as the status records it, before the bookkeeping fields.
struct Held {
    reason: PolicyWaitReason,
    policy: String,
    message: String,
    until: Option<DateTime<Utc>>,
    queue_position: Option<u32>,
    approvals: Option<ApprovalsStillNeeded>,
}

fn gate_kind(g: PolicyGate) -> GateKind {
    match g {
        PolicyGate::BeforeRollout => GateKind::BeforeRollout,
        PolicyGate::BeforePromotion => GateKind::BeforePromotion,
    }
}

fn policy_gate(g: GateKind) -> Option<PolicyGate> {
    match g {
        GateKind::BeforeRollout => Some(PolicyGate::BeforeRollout),
        GateKind::BeforePromotion => Some(PolicyGate::BeforePromotion),
        GateKind::BeforeTrafficIncrease => None,
    }
}

fn held_from(w: &Wait) -> Held {
    let reason = match &w.reason {
        WaitReason::OutsideWindow { .. } => PolicyWaitReason::OutsideWindow,
        WaitReason::Blackout { .. } => PolicyWaitReason::Blackout,
        WaitReason::Queued { .. } => PolicyWaitReason::Queued,
        WaitReason::ApprovalsNeeded { .. } => PolicyWaitReason::ApprovalsNeeded,
        WaitReason::Soaking { .. } => PolicyWaitReason::Soaking,
        WaitReason::Invalid { .. } => PolicyWaitReason::PolicyInvalid,
    };
    // The queue position and approvals still needed, from whichever blocker has them.
    let all = std::iter::once(&w.reason).chain(w.also.iter().map(|b| &b.reason));
    let (mut queue_position, mut approvals) = (None, None);
    for r in all {
        match r {
            WaitReason::Queued { position, .. } => {
                queue_position = queue_position.max(Some(*position));
            }
            WaitReason::ApprovalsNeeded {
                gate,
                have,
                need,
                groups,
            } if approvals.is_none() => {
                approvals = Some(ApprovalsStillNeeded {
                    gate: gate_kind(*gate),
                    have: *have,
                    need: *need,
                    groups: groups.clone(),
                });
            }
            _ => {}
        }
    }
    Held {
        reason,
        policy: w.policy.to_string(),
        message: w.to_string(),
        until: w.until,
        queue_position,
        approvals,
    }
}

impl Machine<'_> {
    fn has_policies(&self) -> bool {
        !self.obs.policy.selected.is_empty() || self.obs.policy.upstream.is_some()
    }

    /// Start the release of the target revision if the policies allow it now;
    /// otherwise the revision waits (a release in flight is superseded first).
    pub(super) fn begin(&mut self, reason: EventReason) {
        if self.policies_allow(PolicyStage::Start) {
            return self.start_release(reason);
        }
        if self.s.policy_wait.is_none() {
            // An approver rejected it at the policy gate: it ended there.
            return;
        }
        if !self.s.phase.is_idle() && self.s.phase != CanaryPhase::Waiting {
            let target = self.obs.target_revision.clone();
            self.record(
                ReleaseResult::Superseded,
                format!("superseded by revision {target}"),
                self.s.canary_weight,
            );
            self.s.canary_weight = 0;
            self.s.current_step = 0;
            self.s.pending_gate = None;
            self.s.metrics.clear();
        }
        // Waiting says more than Failed now: the failed revision is history.
        self.s.failed_revision = None;
        self.enter(CanaryPhase::Waiting);
    }

    /// Phase `Waiting`: the new revision starts once its policies allow it.
    pub(super) fn waiting_for_policies(&mut self) {
        let target = self.obs.target_revision.clone();
        if self.s.stable_revision.as_deref() == Some(target.as_str()) {
            self.s.policy_wait = None;
            self.enter(CanaryPhase::Initialized);
            self.note(
                NoteType::Normal,
                EventReason::Reverted,
                "the Deployment is back on the primary's revision: nothing waits any more".into(),
            );
            return;
        }
        if let Some(problem) = &self.obs.config_problem {
            self.s.message = format!("new revision {target} waits: {problem}");
            return;
        }
        self.begin(EventReason::NewRevision);
    }

    /// Whether the policies let the release go on at `stage`. When they do not, the
    /// wait is recorded in `status.policyWait` (announced when it changes) and the
    /// caller stays where it is; a policy gate rejected by an approver ends it.
    pub(super) fn policies_allow(&mut self, stage: PolicyStage) -> bool {
        if !self.has_policies() {
            self.s.policy_wait = None;
            return true;
        }
        let revision = match stage {
            PolicyStage::Start => self.obs.target_revision.clone(),
            PolicyStage::NextStep | PolicyStage::Promote => self.revision(),
        };
        // A waiting Canary keeps its place in queues across revisions and restarts.
        let since = match &self.s.policy_wait {
            Some(w) if w.stage == stage => w.since,
            _ => self.now,
        };
        let core_stage = match stage {
            PolicyStage::Start => Stage::Start { since },
            PolicyStage::NextStep => Stage::NextStep,
            PolicyStage::Promote => Stage::Promote {
                last_step_since: self.s.step_started_at.unwrap_or(self.now),
            },
        };
        // Decisions about this revision since it started waiting (or its release).
        let cutoff = match stage {
            PolicyStage::Start => since,
            _ => self.s.release_started_at.unwrap_or(since),
        };
        let gate = match stage {
            PolicyStage::Start => Some(PolicyGate::BeforeRollout),
            PolicyStage::Promote => Some(PolicyGate::BeforePromotion),
            PolicyStage::NextStep => None,
        };
        let decided = self
            .obs
            .approvals
            .iter()
            .filter(|a| a.revision == revision && a.at >= cutoff)
            .filter(|a| gate.is_some() && policy_gate(a.gate) == gate);
        if let Some(r) = decided.clone().find(|a| !a.approved) {
            let why = format!("{} rejected by {} via {}", r.gate.as_str(), r.by, r.via);
            self.reject_waiting(stage, revision, why);
            return false;
        }
        let approvals: Vec<RecordedApproval> = decided
            .filter_map(|a| {
                Some(RecordedApproval {
                    gate: policy_gate(a.gate)?,
                    by: a.by.clone(),
                    groups: a.groups.clone(),
                })
            })
            .collect();
        let emergency_override = self
            .s
            .emergency_override
            .as_ref()
            .filter(|o| o.revision == revision)
            .map(|o| EmergencyOverride {
                by: o.by.clone(),
                reason: o.reason.clone(),
                at: o.at,
                until: o.until,
            });
        let facts = ReleaseFacts {
            canary: self.obs.policy.canary.clone(),
            stage: core_stage,
            emergency_override,
            approvals,
        };
        let held = match evaluate(&self.obs.policy.selected, &facts, self.now) {
            PolicyDecision::Proceed(p) => {
                if let (Some(used), Some(o)) = (&p.override_used, &self.s.emergency_override) {
                    if self.s.override_announced != Some(o.at) {
                        self.s.override_announced = Some(o.at);
                        let lifted: Vec<String> =
                            used.lifted.iter().map(|b| b.to_string()).collect();
                        self.note(
                            NoteType::Warning,
                            EventReason::EmergencyOverride,
                            format!(
                                "emergency override by {} ({:?}) for revision {revision} lifts: {}",
                                used.by,
                                used.reason,
                                lifted.join("; ")
                            ),
                        );
                    }
                }
                match stage {
                    PolicyStage::Start => self.upstream_wait(),
                    _ => None,
                }
            }
            PolicyDecision::Wait(w) | PolicyDecision::HoldInFlight(w) => Some(held_from(&w)),
        };
        match held {
            None => {
                self.s.policy_wait = None;
                true
            }
            Some(h) => {
                self.hold(stage, revision, since, h);
                false
            }
        }
    }

    fn hold(&mut self, stage: PolicyStage, revision: String, since: DateTime<Utc>, h: Held) {
        let changed = self.s.policy_wait.as_ref().is_none_or(|w| {
            (w.reason, &w.policy, &w.revision, w.stage) != (h.reason, &h.policy, &revision, stage)
        });
        let (reason, what) = match stage {
            PolicyStage::Start => (
                EventReason::ReleaseWaiting,
                format!("new revision {revision} waits"),
            ),
            PolicyStage::NextStep => (
                EventReason::ReleaseHeld,
                format!("revision {revision} holds at step {}", self.s.current_step),
            ),
            PolicyStage::Promote => (
                EventReason::ReleaseHeld,
                format!("revision {revision} holds before promotion"),
            ),
        };
        let message = format!("{what}: {}", h.message);
        self.s.policy_wait = Some(Box::new(PolicyWait {
            reason: h.reason,
            policy: h.policy,
            revision,
            stage,
            message: h.message,
            until: h.until,
            queue_position: h.queue_position,
            approvals: h.approvals,
            since,
        }));
        if changed {
            self.note(NoteType::Normal, reason, message);
        } else {
            self.s.message = message;
        }
    }

    /// An approver rejected a policy gate: the waiting revision is not released (it
    /// is retried like a rolled-back one), a release in flight is rolled back.
    fn reject_waiting(&mut self, stage: PolicyStage, revision: String, why: String) {
        self.s.policy_wait = None;
        if stage == PolicyStage::Start {
            self.s.canary_revision = Some(revision);
            self.s.release_started_at = Some(self.now);
            self.s.current_step = 0;
            self.s.canary_weight = 0;
        }
        self.rollback(why);
    }

    /// `serin.dev/promote-from`: the target's images must be what the upstream Canary
    /// promoted, at least the longest `minSoak` of the policies ago.
    fn upstream_wait(&self) -> Option<Held> {
        let up = self.obs.policy.upstream.as_ref()?;
        let images = &self.obs.target_images;
        let policy = format!("Canary {}", up.canary);
        let shown = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(c, i)| format!("{c}={i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let promoted = up
            .promoted
            .as_ref()
            .filter(|p| !images.is_empty() && &p.images == images);
        let Some(p) = promoted else {
            let upstream_has = match &up.promoted {
                Some(p) => format!("it last promoted {} ({})", shown(&p.images), p.revision),
                None => "it has promoted nothing yet".into(),
            };
            return Some(Held {
                reason: PolicyWaitReason::UpstreamNotPromoted,
                message: format!(
                    "images {} were not promoted upstream in {policy} ({upstream_has})",
                    shown(images)
                ),
                policy,
                until: None,
                queue_position: None,
                approvals: None,
            });
        };
        let rules: Vec<(&PolicyRef, &PolicyRules)> = self
            .obs
            .policy
            .selected
            .iter()
            .map(|s| (&s.policy, &s.rules))
            .collect();
        let (until, by) = soak_until(&rules, p.at)?;
        (self.now < until).then(|| Held {
            reason: PolicyWaitReason::UpstreamSoaking,
            message: format!(
                "images promoted upstream in {policy} at {}, soaking until {} (minSoak of {by})",
                p.at.format("%Y-%m-%dT%H:%M:%SZ"),
                until.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            policy,
            until: Some(until),
            queue_position: None,
            approvals: None,
        })
    }
}
