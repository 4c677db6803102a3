use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::crd::{CanaryPhase, CanarySpec, CanaryStatus, MetricStatus, PolicyStage, Severity};
use crate::gates::GateRef;
use crate::rollout::{EventReason, Note, NoteType};

/// Everything a message about one transition says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyEvent {
    pub namespace: String,
    pub name: String,
    /// The Deployment under release.
    pub target: String,
    /// The note's reason (`RolledBack`, `WaitingApproval`, ...).
    pub reason: String,
    pub message: String,
    pub severity: Severity,
    pub phase: CanaryPhase,
    /// Revision the primary serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<String>,
    /// Revision under release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<String>,
    pub step: i32,
    pub step_count: i32,
    pub weight: i32,
    pub metrics: Vec<MetricStatus>,
    /// Set while a gate waits: the passage the buttons approve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<GateRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl NotifyEvent {
    /// The event for a note the core emitted, with the status it produced.
    pub fn from_note(
        namespace: &str,
        name: &str,
        spec: &CanarySpec,
        status: &CanaryStatus,
        note: &Note,
        at: DateTime<Utc>,
    ) -> Self {
        let severity = match (note.reason, note.type_) {
            (EventReason::RolledBack, _) => Severity::Error,
            (_, NoteType::Warning) => Severity::Warning,
            (_, NoteType::Normal) => Severity::Info,
        };
        // A revision waiting for its release policies is the one the event is about.
        let waiting = status
            .policy_wait
            .as_ref()
            .filter(|w| w.stage == PolicyStage::Start);
        let to_revision = waiting
            .map(|w| w.revision.clone())
            .or_else(|| status.canary_revision.clone())
            .or_else(|| status.failed_revision.clone());
        let pending = match (note.reason, status.phase, status.pending_gate) {
            (EventReason::WaitingApproval, CanaryPhase::WaitingApproval, Some(gate)) => {
                Some(GateRef {
                    gate,
                    revision: to_revision.clone().unwrap_or_default(),
                    step: status.current_step,
                })
            }
            // Approvals a release policy waits for: the same buttons decide them.
            (EventReason::ReleaseWaiting | EventReason::ReleaseHeld, _, _) => {
                status.policy_wait.as_ref().and_then(|w| {
                    let need = w.approvals.as_ref()?;
                    Some(GateRef {
                        gate: need.gate,
                        revision: w.revision.clone(),
                        step: match w.stage {
                            PolicyStage::Start => 0,
                            _ => status.current_step,
                        },
                    })
                })
            }
            _ => None,
        };
        let rollback_reason = (note.reason == EventReason::RolledBack).then(|| {
            note.message
                .split_once(" rolled back: ")
                .map_or_else(|| note.message.clone(), |(_, why)| why.to_string())
        });
        let step_count = if spec.strategy == crate::crd::Strategy::BlueGreen {
            spec.analysis.iterations
        } else {
            i32::try_from(spec.analysis.steps.len()).unwrap_or(i32::MAX)
        };
        Self {
            namespace: namespace.into(),
            name: name.into(),
            target: spec.target_ref.name.clone(),
            reason: note.reason.as_str().into(),
            message: note.message.clone(),
            severity,
            phase: status.phase,
            from_revision: status.stable_revision.clone(),
            to_revision,
            step: status.current_step,
            step_count,
            weight: status.canary_weight,
            metrics: status.metrics.clone(),
            pending,
            rollback_reason,
            at,
        }
    }

    /// Identity of the transition: a repeat (a retried reconcile) is not sent again.
    pub fn dedupe_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(self.message.as_bytes());
        let short: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}/{}|{}|{}|{}|{short}",
            self.namespace,
            self.name,
            self.reason,
            self.to_revision.as_deref().unwrap_or("-"),
            self.step
        )
    }
}
