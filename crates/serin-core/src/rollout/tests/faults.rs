//! Every phase repairs drift toward what it states, config problems mid-release fail
//! checks instead of freezing traffic, and traffic only reaches a serving canary.

use super::*;

/// Regression (finding 4): a deleted primary is recreated at its former scale in every
/// phase, Failed included, at the revision the phase names.
#[test]
fn a_deleted_primary_is_recreated_at_its_former_scale_in_every_phase() {
    for phase in [
        P::Initialized,
        P::Succeeded,
        P::Failed,
        P::Progressing,
        P::WaitingApproval,
    ] {
        let mut s = idle(phase);
        s.primary_replicas = Some(4);
        s.canary_revision = Some("r2".into());
        if phase == P::Failed {
            s.failed_revision = Some("r2".into());
        }
        if phase == P::WaitingApproval {
            s.pending_gate = Some(GateKind::BeforePromotion);
            s.canary_weight = 50;
        }
        let obs = Observation {
            primary_exists: false,
            primary_revision: None,
            primary_ready: false,
            ..releasing(if phase == P::WaitingApproval { 50 } else { 0 })
        };
        let d = transition(&s, &plan(), &obs, at(0));
        assert_eq!(
            d.actions,
            vec![Action::InitializePrimary {
                revision: "r1".into(),
                replicas: Some(4),
            }],
            "{phase:?}: the stable revision at the former scale, nothing else first"
        );
        assert_eq!(d.status.primary_replicas, Some(4), "{phase:?}");
    }
}

#[test]
fn the_primary_scale_is_remembered_while_it_exists() {
    let obs = Observation {
        primary_replicas: 7,
        ..world("r1")
    };
    let d = transition(&idle(P::Initialized), &plan(), &obs, at(0));
    assert_eq!(d.status.primary_replicas, Some(7));
}

/// Failed means the primary runs the stable revision: one left on the aborted
/// revision (a decision acted on before it was persisted, on older versions) is put back.
#[test]
fn failed_repairs_a_primary_on_the_rolled_back_revision() {
    let mut s = idle(P::Failed);
    s.canary_revision = Some("r2".into());
    s.failed_revision = Some("r2".into());
    let obs = Observation {
        primary_revision: Some("r2".into()),
        ..world("r2")
    };
    let d = transition(&s, &plan(), &obs, at(0));
    assert_eq!(d.status.phase, P::Failed);
    assert_eq!(
        d.actions,
        vec![Action::PromotePrimary {
            revision: "r1".into()
        }]
    );
}

/// Regression (finding 3): Initialized means every owned object exists. A missing
/// Service (an initialization cut short by a 403) is re-applied, and Initializing does
/// not end before it is back.
#[test]
fn missing_owned_objects_are_reapplied_and_block_initialized() {
    let s = CanaryStatus {
        phase: P::Initializing,
        stable_revision: Some("r1".into()),
        ..Default::default()
    };
    let obs = Observation {
        owned_missing: vec!["Service podinfo-canary".into()],
        canary_replicas: 3,
        routed_weight: None,
        ..world("r1")
    };
    let d = transition(&s, &plan(), &obs, at(0));
    assert_eq!(d.status.phase, P::Initializing);
    assert_eq!(
        d.actions,
        vec![Action::InitializePrimary {
            revision: "r1".into(),
            replicas: Some(3),
        }]
    );
    let d = transition(&idle(P::Succeeded), &plan(), &obs, at(0));
    assert!(matches!(d.actions[0], Action::InitializePrimary { .. }));
}

#[test]
fn a_canary_on_stale_config_is_restarted() {
    let obs = Observation {
        canary_config_stale: true,
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &plan(), &obs, at(10));
    assert_eq!(d.actions, vec![Action::ScaleCanary { replicas: 3 }]);
    // Scaled to zero, stale config does not matter.
    let d = transition(
        &idle(P::Succeeded),
        &plan(),
        &Observation {
            canary_config_stale: true,
            ..world("r1")
        },
        at(0),
    );
    assert!(d.actions.is_empty());
}

/// Regression (code review): an orphaned rollback was undone by re-scaling and
/// re-weighting the canary before its pods were ready. Weight goes up only to a canary
/// that serves.
#[test]
fn weight_is_raised_only_for_a_serving_canary() {
    let obs = Observation {
        canary_replicas: 3,
        canary_ready: false,
        canary_available: false,
        routed_weight: Some(0),
        ..world("r2")
    };
    let d = transition(&progressing(2, 0), &plan(), &obs, at(10));
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { weight } if *weight > 0)),
        "{:?}",
        d.actions
    );
}

/// Regression (code review): a config error mid-release froze the split at its weight
/// (no checks, no deadline). It now fails each due check and rolls back at the limit.
#[test]
fn a_config_problem_mid_release_fails_checks_and_rolls_back() {
    let p = plan();
    let obs = Observation {
        config_problem: Some("AnalysisTemplate shop/error-rate not found".into()),
        ..releasing(25)
    };
    let d = transition(&progressing(2, 0), &p, &obs, at(30));
    assert_eq!(d.status.phase, P::Progressing);
    assert!(d.actions.is_empty());
    let d = transition(&d.status, &p, &obs, at(60));
    assert_eq!(d.status.failed_checks, 1);
    assert_eq!(reasons(&d), vec!["CheckFailed"]);
    assert!(
        d.status.message.contains("error-rate not found"),
        "{}",
        d.status.message
    );
    let d = transition(&d.status, &p, &obs, at(120));
    assert_eq!(d.status.phase, P::Failed);
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 0 }]);
}

#[test]
fn a_config_problem_holds_before_the_first_step_until_the_deadline() {
    let obs = Observation {
        config_problem: Some("Secret shop/hmac has no key \"token\"".into()),
        ..releasing(0)
    };
    let d = transition(&progressing(0, 0), &plan(), &obs, at(60));
    assert_eq!((d.status.phase, d.status.current_step), (P::Progressing, 0));
    assert!(d.actions.is_empty());
    let d = transition(&d.status, &plan(), &obs, at(10 * 60 + 1));
    assert_eq!(d.status.phase, P::Failed);
}

#[test]
fn a_config_problem_keeps_a_new_revision_from_starting() {
    let obs = Observation {
        config_problem: Some("AnalysisTemplate shop/error-rate not found".into()),
        ..world("r2")
    };
    let d = transition(&idle(P::Succeeded), &plan(), &obs, at(0));
    assert_eq!(d.status.phase, P::Succeeded);
    assert!(d.actions.is_empty());
    assert!(d.status.message.contains("waits"), "{}", d.status.message);
}

#[test]
fn an_invalid_spec_mid_release_gets_a_safe_fallback_plan() {
    let mut sp = spec();
    sp.analysis.steps = vec![50, 10];
    sp.analysis.interval = "often".into();
    assert!(ReleasePlan::from_spec(&sp, false).is_err());
    let p = ReleasePlan::fallback(&sp, false).expect("a plan to roll back with");
    assert_eq!(p.interval, Duration::minutes(1));
    assert_eq!(p.steps, vec![10, 25, 50]);
    assert_eq!(p.failure_limit, 2);
}
