//! A release from start to end: initialization, the steps, promotion, and a new
//! revision at any point of it.

use super::*;

#[test]
fn initialization_creates_primary_then_moves_traffic_then_scales_target_down() {
    let fresh = CanaryStatus::default();
    let mut obs = Observation {
        target_revision: "r1".into(),
        canary_replicas: 3,
        canary_ready: true,
        routed_weight: None,
        ..Default::default()
    };
    let d = transition(&fresh, &plan(), &obs, at(0));
    assert_eq!(d.status.phase, P::Initializing);
    assert_eq!(d.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(
        d.actions,
        vec![Action::InitializePrimary {
            revision: "r1".into(),
            replicas: None,
        }]
    );

    // Primary exists but is not ready: nothing moves, the user's pods keep serving.
    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &plan(), &obs, at(5));
    assert_eq!(d.status.phase, P::Initializing);
    assert!(d.actions.is_empty());

    obs.primary_ready = true;
    obs.primary_replicas = 3;
    let d = transition(&d.status, &plan(), &obs, at(10));
    assert_eq!(d.status.phase, P::Initialized);
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 0 }]);
    assert_eq!(reasons(&d), vec!["Initialized"]);
    let ready = find_condition(&d.status.conditions, condition_type::READY).unwrap();
    assert_eq!(ready.status, "True");
    // The user's pods serve until the apex moves: they go after the scale-down delay,
    // counted from this decision, persisted with it (no write of its own).
    assert_eq!(d.status.scale_down_at, Some(at(40)));

    // The route write failed: the retry routes again and the delay starts again, so
    // proxies get all of it after the write that took.
    let retried = transition(&d.status, &plan(), &obs, at(20));
    assert_eq!(retried.actions, vec![Action::SetWeight { weight: 0 }]);
    assert_eq!(retried.status.scale_down_at, Some(at(50)));
    // Past the delay but the route not seen at 0: no scale-down yet.
    let unseen = transition(&d.status, &plan(), &obs, at(45));
    assert_eq!(unseen.actions, vec![Action::SetWeight { weight: 0 }]);

    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &plan(), &obs, at(12));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.scale_down_at, Some(at(40)));
    let d = transition(&d.status, &plan(), &obs, at(40));
    assert_eq!(d.actions, vec![Action::ScaleCanary { replicas: 0 }]);
    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &plan(), &obs, at(43));
    assert_eq!(d.status.scale_down_at, None);
    assert!(d.actions.is_empty());
}

#[test]
fn idle_with_same_revision_does_nothing() {
    for phase in [P::Initialized, P::Succeeded] {
        let d = transition(&idle(phase), &plan(), &world("r1"), at(0));
        assert_eq!(d.status.phase, phase);
        assert!(d.actions.is_empty(), "{phase:?}: {:?}", d.actions);
        assert!(d.notes.is_empty());
        assert_eq!(d.requeue_after.as_secs(), 300);
    }
}

#[test]
fn new_revision_starts_release_and_scales_canary_up_without_traffic() {
    let d = transition(&idle(P::Succeeded), &plan(), &world("r2"), at(0));
    assert_eq!(d.status.phase, P::Progressing);
    assert_eq!(d.status.canary_revision.as_deref(), Some("r2"));
    assert_eq!((d.status.current_step, d.status.canary_weight), (0, 0));
    assert_eq!(d.actions, vec![Action::ScaleCanary { replicas: 3 }]);
    assert_eq!(reasons(&d), vec!["NewRevision"]);
}

#[test]
fn canary_not_ready_holds_then_rolls_back_at_the_deadline() {
    let s = progressing(0, 0);
    let obs = Observation {
        canary_replicas: 3,
        ..world("r2")
    };
    let d = transition(&s, &plan(), &obs, at(9 * 60));
    assert_eq!(d.status.phase, P::Progressing);
    assert!(d.actions.is_empty());
    let d = transition(&s, &plan(), &obs, at(10 * 60 + 1));
    assert_eq!(d.status.phase, P::Failed);
    assert_eq!(d.status.failed_revision.as_deref(), Some("r2"));
    // No traffic reached it; its pods still go only after the scale-down delay.
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.scale_down_at, Some(at(10 * 60 + 1 + 30)));
    assert_eq!(d.requeue_after.as_secs(), 30);
    let later = transition(&d.status, &plan(), &obs, at(10 * 60 + 31));
    assert_eq!(later.actions, vec![Action::ScaleCanary { replicas: 0 }]);
    assert!(d
        .status
        .message
        .contains("not ready within the progress deadline"));
    assert_eq!(reasons(&d), vec!["RolledBack"]);
}

#[test]
fn ready_canary_gets_first_step_weight() {
    let d = transition(&progressing(0, 0), &plan(), &releasing(0), at(30));
    assert_eq!((d.status.current_step, d.status.canary_weight), (1, 10));
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 10 }]);
    assert_eq!(d.status.step_label.as_deref(), Some("1/3"));
    assert_eq!(d.status.step_started_at, Some(at(30)));
}

#[test]
fn check_is_due_only_after_an_interval_at_the_step() {
    let s = progressing(1, 0);
    assert!(!analysis_due(&s, &plan(), at(59)));
    assert!(analysis_due(&s, &plan(), at(60)));
    // Before it is due, a report handed in is ignored.
    let obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Fail)]),
        ..releasing(10)
    };
    let d = transition(&s, &plan(), &obs, at(30));
    assert_eq!(d.status, {
        let mut x = d.status.clone();
        x.failed_checks = 0;
        x
    });
    assert_eq!(d.status.current_step, 1);
    assert!(d.actions.is_empty());
    assert_eq!(d.requeue_after.as_secs(), 30);
}

#[test]
fn passing_checks_walk_the_steps_then_promote_and_finalise() {
    let p = plan();
    let mut s = progressing(1, 0);
    let mut obs = releasing(10);
    let mut now = 0;
    for (step, weight) in [(2, 25), (3, 50)] {
        now += 60;
        obs.analysis = report(&[("errors", MetricVerdict::Pass)]);
        let d = transition(&s, &p, &obs, at(now));
        assert_eq!(
            (d.status.current_step, d.status.canary_weight),
            (step, weight)
        );
        assert_eq!(d.actions, vec![Action::SetWeight { weight }]);
        apply(&mut obs, &d.actions);
        obs.canary_ready = true;
        s = d.status;
    }
    now += 60;
    let d = transition(&s, &p, &obs, at(now));
    assert_eq!(d.status.phase, P::Promoting);
    assert_eq!(
        d.actions,
        vec![Action::PromotePrimary {
            revision: "r2".into()
        }]
    );
    assert_eq!(reasons(&d), vec!["Promoting"]);
    apply(&mut obs, &d.actions);
    s = d.status;

    // Primary rolling out: the canary keeps its share meanwhile.
    let d = transition(&s, &p, &obs, at(now + 5));
    assert_eq!(d.status.phase, P::Promoting);
    assert!(d.actions.is_empty());

    obs.primary_ready = true;
    let d = transition(&d.status, &p, &obs, at(now + 10));
    assert_eq!(d.status.phase, P::Finalising);
    assert_eq!(d.status.stable_revision.as_deref(), Some("r2"));
    assert_eq!(
        d.actions,
        vec![Action::SetWeight { weight: 0 }],
        "traffic leaves the canary before it scales down"
    );
    // When its pods may go is decided with the phase: one status write, not two.
    assert_eq!(d.status.scale_down_at, Some(at(now + 40)));
    apply(&mut obs, &d.actions);
    let finalising = d.status.clone();
    let d = transition(&d.status, &p, &obs, at(now + 15));
    assert_eq!(
        d.status.phase,
        P::Finalising,
        "the canary keeps its pods a while"
    );
    assert!(d.actions.is_empty());
    assert_eq!(
        d.status, finalising,
        "the route seen back at 0 needs no write"
    );
    let d = transition(&d.status, &p, &obs, at(now + 45));
    assert_eq!(d.actions, vec![Action::ScaleCanary { replicas: 0 }]);
    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &p, &obs, at(now + 46));
    assert_eq!(d.status.phase, P::Succeeded);
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec!["Promoted"]);
}

#[test]
fn new_revision_mid_release_restarts_from_the_first_step() {
    let mut s = progressing(2, 0);
    s.failed_checks = 1;
    let obs = Observation {
        target_revision: "r3".into(),
        ..releasing(25)
    };
    let d = transition(&s, &plan(), &obs, at(30));
    assert_eq!(d.status.phase, P::Progressing);
    assert_eq!(d.status.canary_revision.as_deref(), Some("r3"));
    assert_eq!(
        (
            d.status.current_step,
            d.status.canary_weight,
            d.status.failed_checks
        ),
        (0, 0, 0)
    );
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 0 }]);
    assert!(d.notes[0].message.contains("restarting"));
}

#[test]
fn new_revision_while_promoting_keeps_the_analysed_one_off_the_primary() {
    let mut s = progressing(3, 0);
    s.phase = P::Promoting;
    let obs = Observation {
        target_revision: "r3".into(),
        ..releasing(50)
    };
    let d = transition(&s, &plan(), &obs, at(30));
    assert_eq!(d.status.canary_revision.as_deref(), Some("r3"));
    assert_eq!(d.status.phase, P::Progressing);
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Action::PromotePrimary { .. })));
}

#[test]
fn primary_not_ready_during_promotion_holds_and_warns_once_past_the_deadline() {
    let mut s = progressing(3, 0);
    s.phase = P::Promoting;
    let obs = Observation {
        primary_revision: Some("r2".into()),
        primary_ready: false,
        ..releasing(50)
    };
    let d = transition(&s, &plan(), &obs, at(60));
    assert_eq!(d.status.phase, P::Promoting);
    assert!(d.notes.is_empty());
    let d = transition(&d.status, &plan(), &obs, at(11 * 60));
    assert_eq!(
        d.status.phase,
        P::Promoting,
        "a half-promoted primary is not rolled back blindly"
    );
    assert_eq!(reasons(&d), vec!["ProgressDeadlineExceeded"]);
    let d = transition(&d.status, &plan(), &obs, at(12 * 60));
    assert!(d.notes.is_empty(), "warned once");
    let c = find_condition(&d.status.conditions, condition_type::PROGRESSING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ProgressDeadlineExceeded")
    );
}
