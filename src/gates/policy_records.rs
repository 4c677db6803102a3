//! Decisions about release policies, planned like every other record: an approval of
//! a policy gate (one record per approver, with the groups they were authenticated
//! in, so a policy can count distinct people and require groups) and the emergency
//! override of windows and blackouts.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::record::{
    bounded_records, records_patch, repeated, Approver, DecisionRequest, GateRef, Planned, Via,
};
use super::{GateError, Verb};
use crate::crd::{
    Approval, Canary, CanaryPhase, CanaryStatus, EmergencyOverrideRecord, PolicyStage,
};

/// The longest an override may be given for.
pub const OVERRIDE_MAX: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Whether a release policy waits for approvals now, first or among other things (a
/// revision waiting for its window may be approved ahead of it).
pub fn waits_for_approvals(status: &CanaryStatus) -> bool {
    status
        .policy_wait
        .as_ref()
        .is_some_and(|w| w.approvals.is_some())
}

/// The policy gate passage the release waits at, when a policy waits for approvals.
fn policy_passage(status: &CanaryStatus) -> Option<GateRef> {
    let wait = status.policy_wait.as_ref()?;
    let need = wait.approvals.as_ref()?;
    Some(GateRef {
        gate: need.gate,
        revision: wait.revision.clone(),
        step: match wait.stage {
            PolicyStage::Start => 0,
            PolicyStage::NextStep | PolicyStage::Promote => status.current_step,
        },
    })
}

/// The gate passage an approve or reject decides now (the one `expect` must name):
/// the spec gate the release waits at, else a release policy's.
pub fn pending_passage(status: &CanaryStatus) -> Option<GateRef> {
    match (status.phase, status.pending_gate) {
        (CanaryPhase::WaitingApproval, Some(gate)) => Some(GateRef {
            gate,
            revision: status.canary_revision.clone().unwrap_or_default(),
            step: status.current_step,
        }),
        _ => policy_passage(status),
    }
}

fn person(decision: &DecisionRequest, actor: &str) -> Approver {
    decision.approver.clone().unwrap_or_else(|| Approver {
        username: actor.to_string(),
        groups: Vec::new(),
    })
}

/// Approve or reject the policy gate the release waits at.
pub fn plan_policy_approval(
    canary: &Canary,
    decision: &DecisionRequest,
    actor: &str,
    via: Via,
    now: DateTime<Utc>,
) -> Result<Planned, GateError> {
    let status = canary.status.clone().unwrap_or_default();
    let name = canary.metadata.name.clone().unwrap_or_default();
    let (Some(wait), true) = (&status.policy_wait, waits_for_approvals(&status)) else {
        return Err(GateError::Conflict(format!(
            "no gate is pending: canary {name} is {}",
            status.phase.as_str()
        )));
    };
    let (
        Some(need),
        Some(GateRef {
            gate,
            revision,
            step,
        }),
    ) = (&wait.approvals, policy_passage(&status))
    else {
        return Err(GateError::Conflict(format!(
            "canary {name} waits for no approval"
        )));
    };
    if let Some(want) = &decision.expect {
        if want.gate != gate || want.revision != revision || want.step != step {
            return Err(GateError::Conflict(format!(
                "stale request: canary {name} now waits at {} for revision {revision} step {step}, \
                 not {} for revision {} step {}",
                gate.as_str(),
                want.gate.as_str(),
                want.revision,
                want.step
            )));
        }
    }
    let who = person(decision, actor);
    let approved = decision.verb == Verb::Approve;
    // One record per person and gate passage: a second click by the same person
    // changes nothing, two people make two records.
    let id = format!("{}/{}", Approval::key(gate, &revision, step), who.username);
    let cutoff = match wait.stage {
        PolicyStage::Start => wait.since,
        _ => status.release_started_at.unwrap_or(wait.since),
    };
    if let Some(prev) = status
        .approvals
        .iter()
        .find(|a| a.id == id && a.at >= cutoff)
    {
        return repeated(prev, approved);
    }
    let record = Approval {
        id: id.clone(),
        gate,
        revision: revision.clone(),
        step,
        approved,
        by: who.username.clone(),
        via: via.as_str().to_string(),
        at: now.max(cutoff),
        groups: who.groups,
    };
    let (approvals, commands) = bounded_records(&status, Some(record), None);
    let verdict = if approved { "approved" } else { "rejected" };
    let groups = if need.groups.is_empty() {
        String::new()
    } else {
        format!(" from {}", need.groups.join(" or "))
    };
    Ok(Planned::Status {
        patch: records_patch(canary, &approvals, &commands),
        message: format!(
            "{} of revision {revision} {verdict} by {} for {} (it needs {} distinct approvers{groups}; {} counted before)",
            gate.as_str(),
            who.username,
            wait.policy,
            need.need,
            need.have
        ),
        id,
    })
}

/// Record an emergency override for the revision that waits, or is in flight.
pub fn plan_override(
    canary: &Canary,
    decision: &DecisionRequest,
    actor: &str,
    via: Via,
    now: DateTime<Utc>,
) -> Result<Planned, GateError> {
    let invalid = |m: String| GateError::Invalid(m);
    let Some(req) = &decision.emergency else {
        return Err(invalid(
            "an override needs a reason: {\"reason\": \"...\"}".into(),
        ));
    };
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 256 || reason.chars().any(char::is_control) {
        return Err(invalid(
            "reason: 1 to 256 characters on one line, saying why the windows are overridden".into(),
        ));
    }
    if req
        .duration
        .is_some_and(|d| d.is_zero() || d > OVERRIDE_MAX)
    {
        return Err(invalid(format!(
            "for: more than 0 and at most {}; leave it out to last until the release ends",
            humantime::format_duration(OVERRIDE_MAX)
        )));
    }
    let status = canary.status.clone().unwrap_or_default();
    let name = canary.metadata.name.clone().unwrap_or_default();
    let revision = match (status.phase, &status.policy_wait, &status.canary_revision) {
        (CanaryPhase::Waiting, Some(w), _) => w.revision.clone(),
        (
            CanaryPhase::Progressing | CanaryPhase::WaitingApproval | CanaryPhase::Promoting,
            _,
            Some(r),
        ) => r.clone(),
        _ => {
            return Err(GateError::Conflict(format!(
                "nothing to override: canary {name} is {} (no release waits or is in flight)",
                status.phase.as_str()
            )))
        }
    };
    let who = person(decision, actor).username;
    if let Some(o) = status
        .emergency_override
        .as_ref()
        .filter(|o| o.revision == revision && o.by == who && o.reason == reason)
        .filter(|o| o.until.is_none_or(|u| now < u))
    {
        return Ok(Planned::Unchanged {
            message: format!(
                "already overridden by {} via {} ({:?})",
                o.by, o.via, o.reason
            ),
        });
    }
    let until = req
        .duration
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| now + d);
    let record = EmergencyOverrideRecord {
        revision: revision.clone(),
        by: who.clone(),
        via: via.as_str().to_string(),
        reason: reason.to_string(),
        at: now,
        until,
    };
    let lasts = match until {
        Some(u) => format!("until {}", u.format("%Y-%m-%dT%H:%M:%SZ")),
        None => "until the release ends".into(),
    };
    Ok(Planned::Status {
        id: format!("override/{revision}/{}", now.timestamp()),
        patch: json!({
            "metadata": {"resourceVersion": canary.metadata.resource_version},
            "status": {"emergencyOverride": record},
        }),
        message: format!(
            "emergency override of release windows and blackouts for revision {revision} by {who} ({reason:?}), {lasts}"
        ),
    })
}

#[cfg(test)]
#[path = "policy_records_tests.rs"]
mod tests;
