use chrono::{DateTime, Utc};

use crate::crd::{CanaryPhase, CanaryStatus, GateKind};

use super::{Observation, ReleasePlan};

/// A change to the world, carried out by the adapters in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create, or repair, the primary and everything serin owns beside it (Services,
    /// HPA copy, config copies) at `revision`; `replicas` is its former scale when known.
    InitializePrimary {
        revision: String,
        replicas: Option<i32>,
    },
    /// Put the primary on `revision`: the target's spec when the target has it, else
    /// the recorded spec of that revision; refused if neither exists.
    PromotePrimary { revision: String },
    /// Set the canary's `spec.replicas` (and restart its pods on changed config).
    ScaleCanary { replicas: i32 },
    /// Route this percent of traffic to the canary.
    SetWeight { weight: i32 },
}

/// The revision the primary must run in `status`'s phase.
pub fn expected_primary_revision(status: &CanaryStatus) -> Option<&str> {
    match status.phase {
        CanaryPhase::Promoting => status.canary_revision.as_deref(),
        _ => status.stable_revision.as_deref(),
    }
}

/// Whether the canary runs pods in `status`'s phase.
pub fn canary_up(status: &CanaryStatus) -> bool {
    match status.phase {
        CanaryPhase::Progressing | CanaryPhase::Promoting => true,
        CanaryPhase::WaitingApproval => status.pending_gate != Some(GateKind::BeforeRollout),
        _ => false,
    }
}

/// Whether the canary may take traffic: its pods are ready (with replica weighting one
/// ready pod of the target revision is enough, the weight follows the ready pods).
pub fn canary_serving(plan: &ReleasePlan, obs: &Observation) -> bool {
    obs.canary_ready || (plan.replica_weighting && obs.canary_available)
}

/// Actions that move the observed world to what the persisted `status` says. Every
/// phase repairs drift toward its own statement: the primary exists with its owned
/// objects and runs the revision the phase names; traffic leaves the canary before it
/// scales down (and only after `scale_down_at`); traffic reaches it only once it serves.
pub fn desired_actions(
    status: &CanaryStatus,
    plan: &ReleasePlan,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let phase = status.phase;
    let expected = expected_primary_revision(status);

    if !obs.primary_exists || !obs.owned_missing.is_empty() {
        if let Some(rev) = expected {
            actions.push(Action::InitializePrimary {
                revision: rev.to_string(),
                replicas: status.primary_replicas,
            });
        }
        if !obs.primary_exists {
            // Nothing else can be done before the primary exists.
            return actions;
        }
    } else if let Some(rev) = expected {
        if phase != CanaryPhase::Initializing && obs.primary_revision.as_deref() != Some(rev) {
            actions.push(Action::PromotePrimary {
                revision: rev.to_string(),
            });
        }
    }
    if phase == CanaryPhase::Initializing {
        // Traffic moves to the primary only once it is ready (the phase says so).
        return actions;
    }

    let weight = status.canary_weight;
    let up = canary_up(status);
    let replicas = if up {
        plan.canary_replicas(weight, obs.primary_replicas)
    } else {
        0
    };
    let route = obs.routed_weight != Some(weight);
    let weight_down = obs.routed_weight.is_none_or(|w| weight < w);
    if route && weight_down {
        actions.push(Action::SetWeight { weight });
    }
    let scale = if replicas == 0 {
        // Down only once traffic is seen off and the delay for proxies to converge,
        // counted from the last write that routed it off, has passed.
        let traffic_off = obs.routed_weight == Some(0);
        obs.canary_replicas != 0 && traffic_off && status.scale_down_at.is_some_and(|t| now >= t)
    } else {
        obs.canary_replicas != replicas || obs.canary_config_stale
    };
    if scale {
        actions.push(Action::ScaleCanary { replicas });
    }
    // Up only to a canary that serves: a re-scaled canary gets traffic when it is ready.
    if route && !weight_down && canary_serving(plan, obs) {
        actions.push(Action::SetWeight { weight });
    }
    actions
}
