//! Decision records: pure builders and validation, plus the one async function every
//! door (CLI, API, Slack) calls.

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::GateError;
use crate::crd::{Approval, Canary, CanaryPhase, CanaryStatus, Command, CommandKind, GateKind};

/// The one field manager decision records are written with.
pub const APPROVER_FIELD_MANAGER: &str = "serin-approver";

/// Records (per list) of revisions other than the one in flight (or last failed)
/// that are kept when a record is written; older ones are pruned.
pub const RECORD_HISTORY: usize = 20;

/// At most this many records (per list) of the current revision: a gate passage per
/// step and gate, an abort per release, a retry per failure.
pub const CURRENT_RECORDS_MAX: usize = 64;

/// How often a write that lost a race (409: the Canary changed since it was read) is
/// planned again from a fresh read.
const WRITE_ATTEMPTS: usize = 5;

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
    /// Lift the release windows and blackouts for the revision waiting or in flight.
    Override,
}

impl Verb {
    pub const ALL: [Verb; 7] = [
        Verb::Approve,
        Verb::Reject,
        Verb::Abort,
        Verb::Retry,
        Verb::Pause,
        Verb::Resume,
        Verb::Override,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Approve => "approve",
            Verb::Reject => "reject",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Override => "override",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Pause and resume change `spec.suspend`; the others add a status record.
    pub fn writes_spec(self) -> bool {
        matches!(self, Verb::Pause | Verb::Resume)
    }

    /// The virtual subresource of `canaries` (group serin.dev) whose `create` RBAC
    /// grants this action: `canaries/approve` decides a gate (approve or reject),
    /// `canaries/abort`, `canaries/retry`, and `canaries/pause` (pause and resume).
    /// No such subresource is served: the controller asks a SubjectAccessReview for
    /// it, so a Role can grant exactly one action and nothing else on the Canary.
    pub fn subresource(self) -> &'static str {
        match self {
            Verb::Approve | Verb::Reject => "approve",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
            Verb::Pause | Verb::Resume => "pause",
            Verb::Override => "override",
        }
    }
}

/// The RBAC verb checked on [`Verb::subresource`].
pub const ACTION_RBAC_VERB: &str = "create";

/// The door a decision came through; recorded as `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
    Slack,
    Webhook,
    /// The demo's dashboard, which records locally (a cluster's dashboard goes
    /// through the approval API, recorded as `api`).
    Dashboard,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::Slack => "slack",
            Via::Webhook => "webhook",
            Via::Dashboard => "dashboard",
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
pub struct DecisionRequest {
    pub verb: Verb,
    pub expect: Option<GateRef>,
    /// The deciding person as authenticated (Kubernetes username and groups): release
    /// policies count distinct usernames and may require groups. `None`: the actor
    /// string stands for the person, without groups.
    pub approver: Option<Approver>,
    /// What an [`Verb::Override`] asks for.
    pub emergency: Option<OverrideRequest>,
}

/// A person deciding, as TokenReview (or the Slack identity mapping) names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approver {
    pub username: String,
    pub groups: Vec<String>,
}

/// An emergency override: why, and for how long (`None`: until the release ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideRequest {
    pub reason: String,
    pub duration: Option<std::time::Duration>,
}

impl DecisionRequest {
    pub fn new(verb: Verb) -> Self {
        Self {
            verb,
            expect: None,
            approver: None,
            emergency: None,
        }
    }
}

/// What recording a decision takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Planned {
    /// Merge `patch` into the status subresource as field manager
    /// [`APPROVER_FIELD_MANAGER`]: both record lists whole (the new record added, old
    /// ones pruned) and the resourceVersion read, so a concurrent write makes it fail
    /// (409) instead of overwriting.
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

/// Id of a command: one abort per release, one retry per failure.
pub fn command_id(kind: CommandKind, revision: &str, anchor: Option<DateTime<Utc>>) -> String {
    let kind = match kind {
        CommandKind::Abort => "abort",
        CommandKind::Retry => "retry",
    };
    let anchor = anchor.map_or(0, |t| t.timestamp());
    format!("{kind}/{revision}/{anchor}")
}

/// The merge patch that writes both record lists whole, conditional on the
/// resourceVersion they were read at.
pub fn records_patch(canary: &Canary, approvals: &[Approval], commands: &[Command]) -> Value {
    json!({
        "metadata": {"resourceVersion": canary.metadata.resource_version},
        "status": {"approvals": approvals, "commands": commands},
    })
}

/// Keep the records of `current` revisions (newest [`CURRENT_RECORDS_MAX`]) and the
/// newest [`RECORD_HISTORY`] of all others; order by time, oldest first.
fn prune<T: Clone>(
    records: &[T],
    current: &[&str],
    revision: impl Fn(&T) -> &str,
    at: impl Fn(&T) -> DateTime<Utc>,
) -> Vec<T> {
    let mut sorted: Vec<&T> = records.iter().collect();
    // Newest first; the sort is stable, so equal times keep their order.
    sorted.sort_by_key(|r| std::cmp::Reverse(at(r)));
    let (mut now, mut old) = (0, 0);
    let mut kept: Vec<&T> = sorted
        .into_iter()
        .filter(|r| {
            let (seen, limit) = if current.contains(&revision(r)) {
                (&mut now, CURRENT_RECORDS_MAX)
            } else {
                (&mut old, RECORD_HISTORY)
            };
            *seen += 1;
            *seen <= limit
        })
        .collect();
    kept.reverse();
    kept.into_iter().cloned().collect()
}

/// Both record lists of `status` with `approval` or `command` added (replacing a
/// record of the same id) and pruned to the current release plus a short history.
pub fn bounded_records(
    status: &CanaryStatus,
    approval: Option<Approval>,
    command: Option<Command>,
) -> (Vec<Approval>, Vec<Command>) {
    let mut approvals = status.approvals.clone();
    if let Some(a) = approval {
        approvals.retain(|x| x.id != a.id);
        approvals.push(a);
    }
    let mut commands = status.commands.clone();
    if let Some(c) = command {
        commands.retain(|x| x.id != c.id);
        commands.push(c);
    }
    let current: Vec<&str> = [&status.canary_revision, &status.failed_revision]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    (
        prune(&approvals, &current, |a| &a.revision, |a| a.at),
        prune(&commands, &current, |c| &c.revision, |c| c.at),
    )
}

/// A decision on a gate passage `prev` already decided: the same one changes nothing,
/// the opposite one is a conflict (never two outcomes).
pub(crate) fn repeated(prev: &Approval, approved: bool) -> Result<Planned, GateError> {
    let what = if prev.approved {
        "approved"
    } else {
        "rejected"
    };
    let message = format!(
        "{} already {what} by {} via {}",
        prev.gate.as_str(),
        prev.by,
        prev.via
    );
    if prev.approved == approved {
        Ok(Planned::Unchanged { message })
    } else {
        Err(conflict(message))
    }
}

fn conflict(msg: String) -> GateError {
    GateError::Conflict(msg)
}

/// Validate `decision` against the Canary as it is and say what to write.
pub fn plan_decision(
    canary: &Canary,
    decision: &DecisionRequest,
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
        Verb::Override => super::policy_records::plan_override(canary, decision, actor, via, now),
        Verb::Approve | Verb::Reject
            if !(phase == CanaryPhase::WaitingApproval && status.pending_gate.is_some())
                && super::policy_records::waits_for_approvals(&status) =>
        {
            super::policy_records::plan_policy_approval(canary, decision, actor, via, now)
        }
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
            // A record from an earlier release of the same revision (before a retry)
            // is not a decision about this one.
            let this_release =
                |at: DateTime<Utc>| status.release_started_at.is_none_or(|t| at >= t);
            if let Some(prev) = status
                .approvals
                .iter()
                .find(|a| a.id == id && this_release(a.at))
            {
                return repeated(prev, approved);
            }
            let record = Approval {
                id: id.clone(),
                gate,
                revision: revision.clone(),
                step,
                approved,
                by: actor.to_string(),
                via: via.as_str().to_string(),
                // Never before the release it decides (a replica's clock may lag).
                at: status.release_started_at.map_or(now, |t| now.max(t)),
                groups: Vec::new(),
            };
            let (approvals, commands) = bounded_records(&status, Some(record), None);
            Ok(Planned::Status {
                patch: records_patch(canary, &approvals, &commands),
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
            let (approvals, commands) = bounded_records(&status, None, Some(record));
            Ok(Planned::Status {
                patch: records_patch(canary, &approvals, &commands),
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

/// Read the Canary, validate, and record the decision with the controller's client,
/// once the caller is authorized (the API, Slack and, through the API, the CLI).
///
/// Race-free: the write carries the resourceVersion it was planned from, so of two
/// people deciding the same gate at once one write fails with 409; it is planned
/// again from a fresh read, which now sees the first decision (a repeat answers
/// "unchanged", the opposite decision a conflict). Never two outcomes.
pub async fn apply_decision(
    client: &Client,
    ns: &str,
    name: &str,
    decision: &DecisionRequest,
    actor: &str,
    via: Via,
) -> Result<Outcome, GateError> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let canary = get_canary(client, ns, name).await?;
        let written = match plan_decision(&canary, decision, actor, via, Utc::now())? {
            Planned::Unchanged { message } => {
                return Ok(Outcome {
                    changed: false,
                    id: None,
                    message,
                })
            }
            Planned::Status { id, patch, message } => {
                let pp = PatchParams {
                    field_manager: Some(APPROVER_FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.patch_status(name, &pp, &Patch::Merge(&patch))
                    .await
                    .map(|_| (Some(id), message))
            }
            Planned::Suspend { suspend, message } => {
                // A merge patch: spec.suspend is usually owned by whoever wrote the
                // Canary, and an apply from another manager would conflict with them.
                let patch = json!({
                    "metadata": {"resourceVersion": canary.metadata.resource_version},
                    "spec": {"suspend": suspend},
                });
                let pp = PatchParams {
                    field_manager: Some(APPROVER_FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.patch(name, &pp, &Patch::Merge(&patch))
                    .await
                    .map(|_| (None, message))
            }
        };
        match written {
            Ok((id, message)) => {
                return Ok(Outcome {
                    changed: true,
                    id,
                    message,
                })
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < WRITE_ATTEMPTS => {
                tracing::debug!(namespace = %ns, name = %name, attempt, "record write raced; planning again");
            }
            Err(e) => return Err(map_kube(e, ns, name)),
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
