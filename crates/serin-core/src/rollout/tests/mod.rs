//! The transition table: every phase and edge, plus a restart between any two actions.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::crd::{
    condition_type, find_condition, Approval, CanaryPhase as P, CanarySpec, CanaryStatus, Command,
    CommandKind, GateKind, MetricStatus, MetricVerdict, Strategy, TargetRef,
};

/// As the controller calls it: a check's metrics are stamped with the time it ran.
fn transition(
    status: &CanaryStatus,
    plan: &ReleasePlan,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let mut obs = obs.clone();
    for r in [
        obs.analysis.as_mut(),
        obs.look.as_mut(),
        obs.pre_rollout.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for m in &mut r.metrics {
            m.checked_at = now;
        }
    }
    super::transition(status, plan, &obs, now)
}

fn spec() -> CanarySpec {
    CanarySpec {
        target_ref: TargetRef {
            name: "podinfo".into(),
        },
        strategy: Strategy::Canary,
        service: Default::default(),
        router: None,
        routing: Default::default(),
        analysis: Default::default(), // steps 10,25,50; 1m; limit 2; deadline 10m
        gates: Default::default(),
        skip_analysis: false,
        suspend: false,
        webhooks: vec![],
    }
}

fn plan() -> ReleasePlan {
    ReleasePlan::from_spec(&spec(), false).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

/// A steady world: primary on "r1" ready with 3 replicas, canary scaled to zero.
fn world(target: &str) -> Observation {
    Observation {
        target_revision: target.into(),
        primary_exists: true,
        primary_revision: Some("r1".into()),
        primary_ready: true,
        primary_replicas: 3,
        canary_replicas: 0,
        canary_ready: false,
        routed_weight: Some(0),
        ..Default::default()
    }
}

fn metric(name: &str, verdict: MetricVerdict) -> MetricStatus {
    MetricStatus {
        points: Vec::new(),
        name: name.into(),
        value: Some(0.5),
        baseline: None,
        effect: None,
        p_value: None,
        interval_low: None,
        interval_high: None,
        verdict,
        reason: format!("{name} {}", verdict.as_str()),
        dry_run: false,
        consecutive_errors: 0,
        sequential: None,
        checked_at: at(0),
    }
}

fn report(verdicts: &[(&str, MetricVerdict)]) -> Option<AnalysisReport> {
    Some(AnalysisReport {
        metrics: verdicts.iter().map(|(n, v)| metric(n, *v)).collect(),
        critical: vec![],
    })
}

/// Apply actions to the simulated world, as the adapters would.
fn apply(obs: &mut Observation, actions: &[Action]) {
    for a in actions {
        match a {
            Action::InitializePrimary { revision, .. } | Action::PromotePrimary { revision } => {
                obs.primary_exists = true;
                obs.primary_revision = Some(revision.clone());
                obs.primary_ready = false;
            }
            Action::ScaleCanary { replicas } => {
                obs.canary_replicas = *replicas;
                obs.canary_ready = false;
                // Pods already running stay ready while more start.
                obs.canary_available &= *replicas > 0;
            }
            Action::SetWeight { weight } => obs.routed_weight = Some(*weight),
        }
    }
}

fn idle(phase: P) -> CanaryStatus {
    CanaryStatus {
        phase,
        stable_revision: Some("r1".into()),
        ..Default::default()
    }
}

/// A release of r2 at `step`, started at t=0, step entered at `step_at`.
fn progressing(step: i32, step_at: i64) -> CanaryStatus {
    CanaryStatus {
        phase: P::Progressing,
        stable_revision: Some("r1".into()),
        canary_revision: Some("r2".into()),
        current_step: step,
        canary_weight: plan().weight_at(step),
        release_started_at: Some(at(0)),
        step_started_at: Some(at(step_at)),
        ..Default::default()
    }
}

/// The world during a release of r2 at `weight`, canary up and ready.
fn releasing(weight: i32) -> Observation {
    Observation {
        canary_replicas: 3,
        canary_ready: true,
        canary_available: true,
        routed_weight: Some(weight),
        ..world("r2")
    }
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.notes.iter().map(|n| n.reason.as_str()).collect()
}

mod checks;
mod evidence;
mod faults;
mod history;
mod hooks;
mod human;
mod lifecycle;
mod policies;
mod recheck;
mod strategies;
