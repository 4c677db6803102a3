use crate::crd::{CanaryPhase, CanaryStatus};

use super::{Observation, ReleasePlan};

/// A change to the world, carried out by the adapters in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the primary (Deployment, Services) from the target's current spec.
    InitializePrimary { revision: String },
    /// Copy the target's spec onto the primary; the adapter refuses if the target
    /// no longer has `revision`.
    PromotePrimary { revision: String },
    /// Set the canary's `spec.replicas`.
    ScaleCanary { replicas: i32 },
    /// Route this percent of traffic to the canary.
    SetWeight { weight: i32 },
}

/// Actions that move the observed world to what `status` wants: routing off before
/// scaling down, scaling up before routing on.
pub fn desired_actions(
    status: &CanaryStatus,
    plan: &ReleasePlan,
    obs: &Observation,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let phase = status.phase;

    if !obs.primary_exists {
        if let Some(rev) = &status.stable_revision {
            actions.push(Action::InitializePrimary {
                revision: rev.clone(),
            });
        }
        // Nothing else can be done before the primary exists.
        return actions;
    }
    if phase == CanaryPhase::Initializing {
        // Traffic moves to the primary only once it is ready (the phase says so).
        return actions;
    }
    if phase == CanaryPhase::Promoting {
        if let Some(rev) = &status.canary_revision {
            if obs.primary_revision.as_deref() != Some(rev.as_str()) {
                actions.push(Action::PromotePrimary {
                    revision: rev.clone(),
                });
            }
        }
    }

    let weight = status.canary_weight;
    let canary_up = match phase {
        CanaryPhase::Progressing | CanaryPhase::Promoting => true,
        CanaryPhase::WaitingApproval => {
            status.pending_gate != Some(crate::crd::GateKind::BeforeRollout)
        }
        _ => false,
    };
    let replicas = if canary_up {
        plan.canary_replicas(weight, obs.primary_replicas)
    } else {
        0
    };
    let route = obs.routed_weight != Some(weight);
    let scale = obs.canary_replicas != replicas;
    let weight_down = obs.routed_weight.is_none_or(|w| weight < w);
    if route && weight_down {
        actions.push(Action::SetWeight { weight });
    }
    if scale {
        actions.push(Action::ScaleCanary { replicas });
    }
    if route && !weight_down {
        actions.push(Action::SetWeight { weight });
    }
    actions
}
