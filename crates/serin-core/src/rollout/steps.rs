//! The way through a release: its start, the gates, the steps, up to promotion.

use super::transition::Machine;
use super::{EventReason, NoteType};
use crate::crd::{CanaryPhase, GateKind, PolicyStage, ReleaseResult};

pub(super) enum Gate {
    Open,
    Closed,
    Rejected(String),
}

impl Machine<'_> {
    pub(super) fn start_release(&mut self, reason: EventReason) {
        let target = self.obs.target_revision.clone();
        let restart = self.s.canary_revision.is_some() && !self.s.phase.is_idle();
        if restart {
            self.record(
                ReleaseResult::Superseded,
                format!("superseded by revision {target}"),
                self.s.canary_weight,
            );
        }
        self.s.canary_revision = Some(target.clone());
        self.s.release_started_at = Some(self.now);
        self.s.step_started_at = Some(self.now);
        self.s.last_analysis_at = None;
        self.s.last_look_at = None;
        self.s.current_step = 0;
        self.s.canary_weight = 0;
        self.s.step_checks = 0;
        self.s.failed_checks = 0;
        self.s.inconclusive_checks = 0;
        self.s.metrics.clear();
        self.s.pending_gate = None;
        self.s.policy_wait = None;
        self.s.release_images = self.obs.target_images.clone();
        let what = if restart {
            format!("new revision {target} during the release: restarting from the first step")
        } else {
            format!("new revision {target}: starting release")
        };
        self.note(NoteType::Normal, reason, what);
        if self.plan.gates.before_rollout {
            match self.gate(GateKind::BeforeRollout) {
                Gate::Open => {}
                Gate::Closed => return self.wait_at(GateKind::BeforeRollout),
                Gate::Rejected(why) => return self.rollback(why),
            }
        }
        self.enter(CanaryPhase::Progressing);
    }

    pub(super) fn gate(&self, gate: GateKind) -> Gate {
        let rev = self.revision();
        let found = super::human_input::gate_answer(
            &self.obs.approvals,
            gate,
            &rev,
            self.s.current_step,
            self.s.release_started_at,
        );
        match found {
            Some(a) if a.approved => Gate::Open,
            Some(a) => Gate::Rejected(format!(
                "{} rejected by {} via {}",
                gate.as_str(),
                a.by,
                a.via
            )),
            None => Gate::Closed,
        }
    }

    fn wait_at(&mut self, gate: GateKind) {
        self.s.pending_gate = Some(gate);
        self.enter(CanaryPhase::WaitingApproval);
        self.note(
            NoteType::Normal,
            EventReason::WaitingApproval,
            format!(
                "waiting for approval ({}) of revision {} at step {}",
                gate.as_str(),
                self.revision(),
                self.s.current_step
            ),
        );
    }

    /// Move past a passed step: the next step, or promotion after the last.
    pub(super) fn advance(&mut self) {
        let next = self.s.current_step + 1;
        if next > self.plan.step_count() {
            if !self.policies_allow(PolicyStage::Promote) {
                return;
            }
            if self.plan.gates.before_promotion {
                match self.gate(GateKind::BeforePromotion) {
                    Gate::Open => {}
                    Gate::Closed => return self.wait_at(GateKind::BeforePromotion),
                    Gate::Rejected(why) => return self.rollback(why),
                }
            }
            return self.begin_promotion();
        }
        if !self.policies_allow(PolicyStage::NextStep) {
            return;
        }
        if self.plan.gates.before_traffic_increase
            && self.plan.weight_at(next) > self.s.canary_weight
        {
            match self.gate(GateKind::BeforeTrafficIncrease) {
                Gate::Open => {}
                Gate::Closed => return self.wait_at(GateKind::BeforeTrafficIncrease),
                Gate::Rejected(why) => return self.rollback(why),
            }
        }
        self.set_step(next);
    }

    pub(super) fn set_step(&mut self, step: i32) {
        let weight = self.plan.weight_at(step);
        let raised = weight != self.s.canary_weight;
        // Each step needs its own evidence of traffic (minRequests).
        for seq in self
            .s
            .metrics
            .iter_mut()
            .filter_map(|m| m.sequential.as_mut())
        {
            seq.step_canary_requests = 0.0;
        }
        self.s.current_step = step;
        self.s.canary_weight = weight;
        self.s.step_checks = 0;
        self.s.step_started_at = Some(self.now);
        self.s.last_analysis_at = None;
        self.enter(CanaryPhase::Progressing);
        let msg = format!(
            "step {step}/{}: canary weight {weight}%",
            self.plan.step_count()
        );
        if raised || step == 1 {
            self.note(NoteType::Normal, EventReason::StepAdvanced, msg);
        } else {
            self.s.message = msg;
        }
    }

    pub(super) fn begin_promotion(&mut self) {
        if self.plan.strategy == crate::crd::Strategy::BlueGreen {
            // The switch: all traffic to the new version while the primary catches up.
            self.s.canary_weight = 100;
        }
        self.s.step_started_at = Some(self.now);
        self.enter(CanaryPhase::Promoting);
        self.note(
            NoteType::Normal,
            EventReason::Promoting,
            format!("promoting revision {} to the primary", self.revision()),
        );
    }
}
