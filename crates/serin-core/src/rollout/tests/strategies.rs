//! Blue/green, replica weighting, restarts between actions, plan validation, kept verdicts.

use super::*;

#[test]
fn blue_green_judges_the_preview_then_switches_and_promotes() {
    let mut sp = spec();
    sp.strategy = Strategy::BlueGreen;
    sp.analysis.iterations = 2;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    assert_eq!(p.steps, vec![0, 0]);
    let mut obs = releasing(0);
    let mut s = progressing(0, 0);
    s.canary_weight = 0;
    let d = transition(&s, &p, &obs, at(10));
    assert_eq!((d.status.current_step, d.status.canary_weight), (1, 0));
    assert!(d.actions.is_empty(), "the preview takes no live traffic");
    obs.analysis = report(&[("errors", MetricVerdict::Pass)]);
    let d = transition(&d.status, &p, &obs, at(70));
    assert_eq!((d.status.current_step, d.status.canary_weight), (2, 0));
    let d = transition(&d.status, &p, &obs, at(130));
    assert_eq!(d.status.phase, P::Promoting);
    assert_eq!(d.status.canary_weight, 100);
    assert_eq!(
        d.actions,
        vec![
            Action::PromotePrimary {
                revision: "r2".into()
            },
            Action::SetWeight { weight: 100 }
        ],
        "switch: all traffic to the new version while the primary catches up"
    );
}

#[test]
fn replica_weighting_scales_the_canary_to_the_weight() {
    let p = ReleasePlan::from_spec(&spec(), true).unwrap();
    assert_eq!(p.canary_replicas(0, 9), 1);
    assert_eq!(p.canary_replicas(10, 9), 1);
    assert_eq!(p.canary_replicas(25, 9), 3);
    assert_eq!(p.canary_replicas(50, 9), 9);
    assert_eq!(p.canary_replicas(100, 9), 9);
    let obs = Observation {
        canary_replicas: 1,
        primary_replicas: 9,
        ..releasing(10)
    };
    let mut s = progressing(1, 0);
    s.canary_weight = 10;
    let mut obs2 = obs.clone();
    obs2.analysis = report(&[("errors", MetricVerdict::Pass)]);
    let d = transition(&s, &p, &obs2, at(60));
    assert_eq!(
        d.actions,
        vec![
            Action::ScaleCanary { replicas: 3 },
            Action::SetWeight { weight: 25 }
        ],
        "scale up before routing more"
    );
}

/// A restart between any two actions: the decision was persisted before the first
/// action, so the next reconcile starts from that status and the partly changed world.
/// It must keep the decision and carry out exactly the actions still missing.
#[test]
fn restart_between_any_two_actions_resumes_with_the_remaining_actions() {
    let p = plan();
    let weighted = ReleasePlan::from_spec(&spec(), true).unwrap();
    let mut bg = spec();
    bg.strategy = Strategy::BlueGreen;
    bg.analysis.iterations = 1;
    let bg = ReleasePlan::from_spec(&bg, false).unwrap();
    let mut preview = progressing(1, 0);
    preview.canary_weight = 0;
    let mut failed = idle(P::Failed);
    failed.canary_revision = Some("r2".into());
    failed.failed_revision = Some("r2".into());
    let cases: Vec<(&str, CanaryStatus, Observation, i64, &ReleasePlan)> = vec![
        (
            "replica-weighted step: scale then route",
            progressing(1, 0),
            Observation {
                analysis: report(&[("errors", MetricVerdict::Pass)]),
                canary_replicas: 1,
                primary_replicas: 9,
                ..releasing(10)
            },
            60,
            &weighted,
        ),
        (
            "blue/green switch: promote then route",
            preview,
            Observation {
                analysis: report(&[("errors", MetricVerdict::Pass)]),
                ..releasing(0)
            },
            60,
            &bg,
        ),
        (
            "Failed with the primary on the rolled-back revision: repair, route back",
            failed,
            Observation {
                primary_revision: Some("r2".into()),
                ..releasing(25)
            },
            60,
            &p,
        ),
    ];
    for (case, status, obs, t, p) in cases {
        let full = transition(&status, p, &obs, at(t));
        assert!(
            full.actions.len() >= 2,
            "{case}: needs two actions: {:?}",
            full.actions
        );
        for k in 1..full.actions.len() {
            let mut partial = obs.clone();
            partial.analysis = None;
            apply(&mut partial, &full.actions[..k]);
            let again = transition(&full.status, p, &partial, at(t + 1));
            assert_eq!(again.status.phase, full.status.phase, "{case}");
            assert_eq!(
                again.status.canary_weight, full.status.canary_weight,
                "{case}"
            );
            assert_eq!(
                again.actions,
                full.actions[k..].to_vec(),
                "{case}: after {k} action(s) of {:?}",
                full.actions
            );
        }
    }
}

#[test]
fn plan_rejects_bad_specs_with_what_is_accepted() {
    let mut sp = spec();
    sp.analysis.steps = vec![10, 5];
    let e = ReleasePlan::from_spec(&sp, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "analysis.steps: \"10,5\" is not valid: strictly increasing weights"
    );
    sp.analysis.steps = vec![0, 50];
    assert!(ReleasePlan::from_spec(&sp, false)
        .unwrap_err()
        .expected
        .contains("1 to 100"));
    let mut sp = spec();
    sp.analysis.interval = "soon".into();
    assert_eq!(
        ReleasePlan::from_spec(&sp, false).unwrap_err().field,
        "analysis.interval"
    );
    let mut sp = spec();
    sp.analysis.progress_deadline = "30s".into();
    let e = ReleasePlan::from_spec(&sp, false).unwrap_err();
    assert!(e.expected.contains("longer than the interval"));
    let mut sp = spec();
    sp.analysis.failure_limit = 0;
    assert_eq!(
        ReleasePlan::from_spec(&sp, false).unwrap_err().field,
        "analysis.failureLimit"
    );
    let _ = Duration::zero();
}

#[test]
fn a_kept_verdict_of_a_slower_metric_blocks_advancing_but_is_not_counted_again() {
    let mut fresh = metric("errors", MetricVerdict::Pass);
    fresh.checked_at = at(60);
    let mut kept = metric("saturation", MetricVerdict::Fail);
    kept.checked_at = at(0);
    let obs = Observation {
        analysis: Some(AnalysisReport {
            metrics: vec![fresh, kept],
            critical: vec![],
        }),
        ..releasing(10)
    };
    let d = crate::rollout::transition(&progressing(1, 0), &plan(), &obs, at(60));
    assert_eq!((d.status.current_step, d.status.failed_checks), (1, 0));
    assert!(
        d.status.message.contains("until re-measured: saturation"),
        "{}",
        d.status.message
    );
    assert!(d.notes.is_empty());
}
