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

    // The user's pods served until the apex moved: they go after the scale-down delay,
    // counted from when the primary was seen taking all traffic.
    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &plan(), &obs, at(12));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.scale_down_at, Some(at(42)));
    let d = transition(&d.status, &plan(), &obs, at(42));
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
    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &p, &obs, at(now + 15));
    assert_eq!(
        d.status.phase,
        P::Finalising,
        "the canary keeps its pods a while"
    );
    assert!(d.actions.is_empty());
    let d = transition(&d.status, &p, &obs, at(now + 45));
    assert_eq!(d.actions, vec![Action::ScaleCanary { replicas: 0 }]);
    apply(&mut obs, &d.actions);
    let d = transition(&d.status, &p, &obs, at(now + 46));
    assert_eq!(d.status.phase, P::Succeeded);
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec!["Promoted"]);
}

#[test]
fn failed_checks_hold_until_the_failure_limit_then_roll_back() {
    let p = plan();
    let obs = Observation {
        analysis: report(&[
            ("errors", MetricVerdict::Fail),
            ("latency", MetricVerdict::Pass),
        ]),
        ..releasing(25)
    };
    let d = transition(&progressing(2, 0), &p, &obs, at(60));
    assert_eq!(d.status.phase, P::Progressing);
    assert_eq!(d.status.failed_checks, 1);
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec!["CheckFailed"]);
    assert!(!analysis_due(&d.status, &p, at(119)));
    let d = transition(&d.status, &p, &obs, at(120));
    assert_eq!(d.status.phase, P::Failed);
    assert_eq!(
        d.actions,
        vec![Action::SetWeight { weight: 0 }],
        "rollback puts all traffic on the primary before scaling the canary down"
    );
    assert!(
        d.status.message.contains("errors Fail"),
        "{}",
        d.status.message
    );
    assert_eq!(d.status.metrics.len(), 2);
}

#[test]
fn critical_metric_failure_rolls_back_at_once() {
    let mut r = report(&[("errors", MetricVerdict::Fail)]).unwrap();
    r.critical = vec!["errors".into()];
    let obs = Observation {
        analysis: Some(r),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &plan(), &obs, at(60));
    assert_eq!(d.status.phase, P::Failed);
    assert!(d.status.message.contains("critical"));
}

#[test]
fn dry_run_metrics_never_decide() {
    let mut r = report(&[
        ("errors", MetricVerdict::Pass),
        ("new", MetricVerdict::Fail),
    ])
    .unwrap();
    r.metrics[1].dry_run = true;
    let obs = Observation {
        analysis: Some(r),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &plan(), &obs, at(60));
    assert_eq!(d.status.current_step, 2);
    assert_eq!(
        d.status.metrics[1].verdict,
        MetricVerdict::Fail,
        "still reported"
    );
}

#[test]
fn long_reasons_leave_every_status_text_and_note_bounded() {
    use super::text::{MESSAGE_MAX_CHARS, METRIC_REASON_MAX_CHARS};
    let mut r = report(&[
        ("errors", MetricVerdict::Error),
        ("latency", MetricVerdict::Error),
    ])
    .unwrap();
    for m in &mut r.metrics {
        // As a webhook or an old provider error might say it: long, on several lines.
        m.reason = format!("unreachable:\n{}", "%7Bquery%7D ".repeat(200));
    }
    let obs = Observation {
        analysis: Some(r),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &plan(), &obs, at(60));
    assert_eq!(reasons(&d), vec!["CheckError"]);
    let count = |s: &str| s.chars().count();
    assert_eq!(count(&d.status.message), MESSAGE_MAX_CHARS);
    assert!(d
        .status
        .message
        .starts_with("metrics unavailable, holding at step 1: errors: unreachable: %7B"));
    assert!(d
        .notes
        .iter()
        .all(|n| count(&n.message) <= MESSAGE_MAX_CHARS && !n.message.contains('\n')));
    assert!(d
        .status
        .metrics
        .iter()
        .all(|m| count(&m.reason) <= METRIC_REASON_MAX_CHARS));
    assert!(d
        .status
        .conditions
        .iter()
        .all(|c| count(&c.message) <= MESSAGE_MAX_CHARS));
    // Recomputed from its own output the status does not change: no write per reconcile.
    let again = transition(
        &d.status,
        &plan(),
        &Observation {
            analysis: None,
            ..releasing(10)
        },
        at(61),
    );
    assert_eq!(again.status.message, d.status.message);
}

#[test]
fn provider_unreachable_holds_never_promotes_and_rolls_back_at_the_deadline() {
    let p = plan();
    let obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Error)]),
        ..releasing(50)
    };
    // Last step, so a pass would promote: errors must not.
    let mut s = progressing(3, 0);
    for minute in 1..=10 {
        let d = transition(&s, &p, &obs, at(minute * 60));
        assert_eq!(d.status.phase, P::Progressing, "minute {minute}");
        assert!(d.actions.is_empty());
        assert_eq!(reasons(&d), vec!["CheckError"]);
        let healthy =
            find_condition(&d.status.conditions, condition_type::ANALYSIS_HEALTHY).unwrap();
        assert_eq!(
            (healthy.status.as_str(), healthy.reason.as_str()),
            ("False", "ProviderError")
        );
        s = d.status;
    }
    let d = transition(&s, &p, &obs, at(11 * 60));
    assert_eq!(d.status.phase, P::Failed);
    assert!(d
        .status
        .message
        .contains("no progress within the progress deadline"));
    assert_eq!(d.status.failed_checks, 0, "errors are not failures");
}

#[test]
fn inconclusive_holds_and_rolls_back_at_the_configured_limit() {
    let obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Inconclusive)]),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &plan(), &obs, at(60));
    assert_eq!(
        (d.status.phase, d.status.inconclusive_checks),
        (P::Progressing, 1)
    );
    let c = find_condition(&d.status.conditions, condition_type::ANALYSIS_HEALTHY).unwrap();
    assert_eq!(c.reason, "NoData");

    let mut sp = spec();
    sp.analysis.inconclusive_limit = Some(2);
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let d = transition(&progressing(1, 0), &p, &obs, at(60));
    let d = transition(&d.status, &p, &obs, at(120));
    assert_eq!(d.status.phase, P::Failed);
    assert!(d.status.message.contains("inconclusive checks 2/2"));
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

mod evidence;
mod faults;
mod history;
mod hooks;
mod human;
mod strategies;

/// `checksPerStep: 3`: a step advances after its third passing check, not before; a
/// failed check in between does not reset the count of passes.
#[test]
fn a_step_needs_its_passing_checks_before_it_advances() {
    let mut p = plan();
    p.checks_per_step = 3;
    let mut s = progressing(1, 0);
    let obs = |v| Observation {
        analysis: report(&[("errors", v)]),
        ..releasing(10)
    };
    let mut now = 0;
    for (v, want_checks) in [
        (MetricVerdict::Pass, 1),
        (MetricVerdict::Fail, 1),
        (MetricVerdict::Pass, 2),
    ] {
        now += 60;
        let d = transition(&s, &p, &obs(v), at(now));
        assert_eq!(
            (d.status.current_step, d.status.step_checks),
            (1, want_checks),
            "{}",
            d.status.message
        );
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        s = d.status;
    }
    assert!(s.message.contains("2/3 passing checks"), "{}", s.message);
    now += 60;
    let d = transition(&s, &p, &obs(MetricVerdict::Pass), at(now));
    assert_eq!((d.status.current_step, d.status.canary_weight), (2, 25));
    assert_eq!(d.status.step_checks, 0, "the next step counts afresh");
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 25 }]);
}

/// A passing check whose sequential metrics all show "not worse than the margin" ends
/// the step early; one that does not (or a non-passing check) does not.
#[test]
fn sequential_evidence_of_not_worse_ends_a_step_early() {
    use crate::stats::SequentialState;
    let mut p = plan();
    p.checks_per_step = 5;
    let s = progressing(1, 0);
    let with = |not_worse: bool, verdict| {
        let mut m = metric("errors", verdict);
        m.sequential = Some(SequentialState {
            not_worse,
            ..Default::default()
        });
        m.checked_at = at(60);
        Observation {
            analysis: Some(AnalysisReport {
                metrics: vec![m, metric("latency", MetricVerdict::Pass)],
                critical: vec![],
            }),
            ..releasing(10)
        }
    };
    let d = transition(&s, &p, &with(true, MetricVerdict::Pass), at(60));
    assert_eq!(
        (
            d.status.current_step,
            d.status.canary_weight,
            d.status.step_checks
        ),
        (2, 25, 0),
        "{}",
        d.status.message
    );

    let d = transition(&s, &p, &with(false, MetricVerdict::Pass), at(60));
    assert_eq!((d.status.current_step, d.status.step_checks), (1, 1));

    // Not worse on errors, but another metric is inconclusive: no pass, no advance.
    let mut o = with(true, MetricVerdict::Pass);
    o.analysis.as_mut().unwrap().metrics[1] = metric("latency", MetricVerdict::Inconclusive);
    let d = transition(&s, &p, &o, at(60));
    assert_eq!((d.status.current_step, d.status.step_checks), (1, 0));
}
