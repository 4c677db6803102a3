//! Decision records: pure builders and validation, plus the one async function every
//! door (CLI, API, Slack) calls.

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::GateError;
use crate::crd::{Approval, Canary, CanaryPhase, Command, CommandKind, GateKind, GROUP};

/// Prefix of the field managers approvers apply status records with.
pub const APPROVER_FIELD_MANAGER: &str = "serin-approver";

/// What a human asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Approve,
    Reject,
    Abort,
    Retry,
    Pause,
    Resume,
}

impl Verb {
    pub const ALL: [Verb; 6] = [
        Verb::Approve,
        Verb::Reject,
        Verb::Abort,
        Verb::Retry,
        Verb::Pause,
        Verb::Resume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Approve => "approve",
            Verb::Reject => "reject",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Pause and resume change `spec.suspend`; the others add a status record.
    pub fn writes_spec(self) -> bool {
        matches!(self, Verb::Pause | Verb::Resume)
    }
}

/// The door a decision came through; recorded as `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
    Slack,
    Webhook,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::Slack => "slack",
            Via::Webhook => "webhook",
        }
    }
}

/// The exact gate passage a decision was made for (a Slack button carries one), so a
/// click on a stale message never approves a later gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRef {
    pub gate: GateKind,
    pub revision: String,
    pub step: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verb: Verb,
    pub expect: Option<GateRef>,
}

impl Decision {
    pub fn new(verb: Verb) -> Self {
        Self { verb, expect: None }
    }
}

/// What recording a decision takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Planned {
    /// Server-side apply `patch` on the status subresource as field manager
    /// [`approver_field_manager`]`(id)`.
    Status {
        id: String,
        patch: Value,
        message: String,
    },
    /// Set `spec.suspend`.
    Suspend { suspend: bool, message: String },
    /// Already recorded: nothing to write (idempotent repeat).
    Unchanged { message: String },
}

/// The result of a decision, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// False when the same decision was already recorded.
    pub changed: bool,
    /// The status record's id (approvals/commands), if one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub message: String,
}

/// One field manager per record: an apply by a manager replaces everything that
/// manager applied before, so a shared manager would delete earlier records. With one
/// manager per id, a repeat is a no-op and a concurrent different decision on the same
/// id is refused by the server (409) instead of overwriting the first.
pub fn approver_field_manager(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{APPROVER_FIELD_MANAGER}-{short}")
}

/// Id of a command: one abort per release, one retry per failure.
pub fn command_id(kind: CommandKind, revision: &str, anchor: Option<DateTime<Utc>>) -> String {
    let kind = match kind {
        CommandKind::Abort => "abort",
        CommandKind::Retry => "retry",
    };
    let anchor = anchor.map_or(0, |t| t.timestamp());
    format!("{kind}/{revision}/{anchor}")
}

/// The SSA body that adds one entry to `status.<list>` (approvals or commands).
pub fn status_patch(name: &str, list: &str, entry: Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1alpha1"),
        "kind": "Canary",
        "metadata": {"name": name},
        "status": {list: [entry]},
    })
}

fn conflict(msg: String) -> GateError {
    GateError::Conflict(msg)
}

/// Validate `decision` against the Canary as it is and say what to write.
pub fn plan_decision(
    canary: &Canary,
    decision: &Decision,
    actor: &str,
    via: Via,
    now: DateTime<Utc>,
) -> Result<Planned, GateError> {
    let actor = actor.trim();
    if actor.is_empty() || actor.len() > 256 {
        return Err(GateError::Invalid(
            "the actor must be 1 to 256 characters".into(),
        ));
    }
    let name = canary.metadata.name.clone().unwrap_or_default();
    let status = canary.status.clone().unwrap_or_default();
    let phase = status.phase;
    match decision.verb {
        Verb::Approve | Verb::Reject => {
            let approved = decision.verb == Verb::Approve;
            let gate = match (phase, status.pending_gate) {
                (CanaryPhase::WaitingApproval, Some(g)) => g,
                _ => {
                    return Err(conflict(format!(
                        "no gate is pending: canary {name} is {}",
                        phase.as_str()
                    )))
                }
            };
            let revision = status.canary_revision.clone().unwrap_or_default();
            let step = status.current_step;
            if let Some(want) = &decision.expect {
                if want.gate != gate || want.revision != revision || want.step != step {
                    return Err(conflict(format!(
                        "stale request: canary {name} now waits at {} for revision {revision} \
                         step {step}, not {} for revision {} step {}",
                        gate.as_str(),
                        want.gate.as_str(),
                        want.revision,
                        want.step
                    )));
                }
            }
            let id = Approval::key(gate, &revision, step);
            if let Some(prev) = status.approvals.iter().find(|a| a.id == id) {
                let what = if prev.approved {
                    "approved"
                } else {
                    "rejected"
                };
                let msg = format!(
                    "{} already {what} by {} via {}",
                    gate.as_str(),
                    prev.by,
                    prev.via
                );
                return if prev.approved == approved {
                    Ok(Planned::Unchanged { message: msg })
                } else {
                    Err(conflict(msg))
                };
            }
            let record = Approval {
                id: id.clone(),
                gate,
                revision: revision.clone(),
                step,
                approved,
                by: actor.to_string(),
                via: via.as_str().to_string(),
                at: now,
            };
            let entry = serde_json::to_value(&record)
                .map_err(|e| GateError::Invalid(format!("cannot encode approval: {e}")))?;
            Ok(Planned::Status {
                patch: status_patch(&name, "approvals", entry),
                message: format!(
                    "{} of revision {revision} at step {step} {} by {actor}",
                    gate.as_str(),
                    if approved { "approved" } else { "rejected" }
                ),
                id,
            })
        }
        Verb::Abort | Verb::Retry => {
            let (kind, revision, anchor) = if decision.verb == Verb::Abort {
                if !matches!(
                    phase,
                    CanaryPhase::Progressing | CanaryPhase::WaitingApproval
                ) {
                    return Err(conflict(format!(
                        "nothing to abort: canary {name} is {}",
                        phase.as_str()
                    )));
                }
                let rev = status.canary_revision.clone().unwrap_or_default();
                (CommandKind::Abort, rev, status.release_started_at)
            } else {
                let rev = match (phase, &status.failed_revision) {
                    (CanaryPhase::Failed, Some(r)) => r.clone(),
                    _ => {
                        return Err(conflict(format!(
                            "nothing to retry: canary {name} is {}",
                            phase.as_str()
                        )))
                    }
                };
                (CommandKind::Retry, rev, status.last_transition_time)
            };
            let id = command_id(kind, &revision, anchor);
            if let Some(prev) = status.commands.iter().find(|c| c.id == id) {
                return Ok(Planned::Unchanged {
                    message: format!(
                        "{} of revision {revision} already requested by {} via {}",
                        decision.verb.as_str(),
                        prev.by,
                        prev.via
                    ),
                });
            }
            let record = Command {
                id: id.clone(),
                kind,
                revision: revision.clone(),
                by: actor.to_string(),
                via: via.as_str().to_string(),
                at: now,
            };
            let entry = serde_json::to_value(&record)
                .map_err(|e| GateError::Invalid(format!("cannot encode command: {e}")))?;
            Ok(Planned::Status {
                patch: status_patch(&name, "commands", entry),
                message: format!(
                    "{} of revision {revision} requested by {actor}",
                    decision.verb.as_str()
                ),
                id,
            })
        }
        Verb::Pause | Verb::Resume => {
            let suspend = decision.verb == Verb::Pause;
            let word = if suspend { "paused" } else { "resumed" };
            if canary.spec.suspend == suspend {
                Ok(Planned::Unchanged {
                    message: format!("canary {name} is already {word}"),
                })
            } else {
                Ok(Planned::Suspend {
                    suspend,
                    message: format!("canary {name} {word} by {actor}"),
                })
            }
        }
    }
}

fn map_kube(e: kube::Error, ns: &str, name: &str) -> GateError {
    match e {
        kube::Error::Api(s) if s.code == 404 => GateError::NotFound {
            namespace: ns.into(),
            name: name.into(),
        },
        kube::Error::Api(s) if s.code == 409 => GateError::Conflict(format!(
            "decided concurrently by someone else: {}",
            s.message
        )),
        kube::Error::Api(s) if s.code == 403 => GateError::Forbidden(s.message.clone()),
        kube::Error::Api(s) if s.code == 422 => GateError::Invalid(s.message.clone()),
        e => GateError::Kube(e),
    }
}

/// Read the Canary, validate, and record the decision. Shared by CLI, API and Slack;
/// the client's identity is what the cluster authorizes.
pub async fn apply_decision(
    client: &Client,
    ns: &str,
    name: &str,
    decision: &Decision,
    actor: &str,
    via: Via,
) -> Result<Outcome, GateError> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    let canary = get_canary(client, ns, name).await?;
    match plan_decision(&canary, decision, actor, via, Utc::now())? {
        Planned::Unchanged { message } => Ok(Outcome {
            changed: false,
            id: None,
            message,
        }),
        Planned::Status { id, patch, message } => {
            let pp = PatchParams::apply(&approver_field_manager(&id));
            api.patch_status(name, &pp, &Patch::Apply(&patch))
                .await
                .map_err(|e| map_kube(e, ns, name))?;
            Ok(Outcome {
                changed: true,
                id: Some(id),
                message,
            })
        }
        Planned::Suspend { suspend, message } => {
            // A merge patch: spec.suspend is usually owned by whoever wrote the Canary,
            // and an apply from another manager would conflict with them.
            let patch = json!({"spec": {"suspend": suspend}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| map_kube(e, ns, name))?;
            Ok(Outcome {
                changed: true,
                id: None,
                message,
            })
        }
    }
}

/// Read a Canary, mapping a 404 to [`GateError::NotFound`].
pub async fn get_canary(client: &Client, ns: &str, name: &str) -> Result<Canary, GateError> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    api.get(name).await.map_err(|e| map_kube(e, ns, name))
}

/// What the API's GET returns: the parts of a Canary a human decides on.
pub fn canary_view(canary: &Canary) -> Value {
    let status = canary.status.clone().unwrap_or_default();
    json!({
        "namespace": canary.metadata.namespace,
        "name": canary.metadata.name,
        "phase": status.phase.as_str(),
        "suspend": canary.spec.suspend,
        "skipAnalysis": canary.spec.skip_analysis,
        "pendingGate": status.pending_gate.map(|g| g.as_str()),
        "stableRevision": status.stable_revision,
        "canaryRevision": status.canary_revision,
        "failedRevision": status.failed_revision,
        "currentStep": status.current_step,
        "canaryWeight": status.canary_weight,
        "message": status.message,
        "metrics": status.metrics,
        "approvals": status.approvals,
        "commands": status.commands,
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
pub(crate) mod tests;
