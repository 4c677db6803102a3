//! What check outcomes decide: passes walk a step, failures and missing evidence hold
//! and then roll back, dry-run metrics never decide.

use super::*;

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
