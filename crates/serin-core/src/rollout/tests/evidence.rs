//! Evidence by default: sequential looks between checks, no pass without traffic, and
//! releases without checks only when asked for.

use super::*;
use crate::stats::SequentialState;

fn sequential_plan() -> ReleasePlan {
    let mut p = plan();
    p.sequential_looks = true;
    p
}

fn seq_metric(verdict: MetricVerdict, step_requests: f64) -> MetricStatus {
    MetricStatus {
        sequential: Some(SequentialState {
            step_canary_requests: step_requests,
            ..Default::default()
        }),
        ..metric("errors", verdict)
    }
}

fn seq_report(verdict: MetricVerdict) -> Option<AnalysisReport> {
    Some(AnalysisReport {
        metrics: vec![seq_metric(verdict, 150.0)],
        critical: vec!["errors".into()],
    })
}

#[test]
fn looks_are_due_on_their_own_cadence_between_checks() {
    let p = sequential_plan();
    let s = progressing(1, 0);
    // Traffic just started: the first look (recording the counters) is due at once.
    assert!(look_due(&s, &p, at(1)));
    let mut looked = s.clone();
    looked.last_look_at = Some(at(1));
    assert!(!look_due(&looked, &p, at(15)));
    assert!(look_due(&looked, &p, at(16)));
    // At the step's interval it is a check, not a look.
    assert!(!look_due(&looked, &p, at(60)));
    assert!(analysis_due(&looked, &p, at(60)));
    // No sequential metric: no looks.
    assert!(!look_due(&s, &plan(), at(30)));
    // The wake-up comes for the next look, not only for the next check.
    let d = transition(&looked, &p, &releasing(10), at(2));
    assert_eq!(d.requeue_after.as_secs(), 14);
}

/// Look often, decide sooner: a look whose evidence suffices rolls back at once,
/// without waiting for the step's check.
#[test]
fn a_rejecting_look_rolls_back_between_checks() {
    let p = sequential_plan();
    let obs = Observation {
        look: seq_report(MetricVerdict::Fail),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &p, &obs, at(20));
    assert_eq!(d.status.phase, P::Failed);
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 0 }]);
    assert_eq!(d.status.last_look_at, Some(at(20)));
}

#[test]
fn a_passing_look_keeps_the_evidence_and_changes_nothing_else() {
    let p = sequential_plan();
    let obs = Observation {
        look: seq_report(MetricVerdict::Pass),
        ..releasing(10)
    };
    let s = progressing(1, 0);
    let d = transition(&s, &p, &obs, at(20));
    assert_eq!((d.status.phase, d.status.current_step), (P::Progressing, 1));
    assert_eq!(d.status.step_checks, 0, "a look is not a check");
    assert_eq!(d.status.metrics.len(), 1);
    assert!(d.actions.is_empty());
}

#[test]
fn a_new_step_needs_its_own_traffic() {
    let p = sequential_plan();
    let obs = Observation {
        analysis: seq_report(MetricVerdict::Pass),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &p, &obs, at(60));
    assert_eq!(d.status.current_step, 2);
    let seq = d.status.metrics[0].sequential.as_ref().unwrap();
    assert_eq!(seq.step_canary_requests, 0.0, "reset when the step starts");
}

/// Regression (issue 12): a blue/green preview without traffic passed every look.
#[test]
fn a_blue_green_preview_without_traffic_never_switches() {
    let mut sp = spec();
    sp.strategy = Strategy::BlueGreen;
    sp.analysis.iterations = 1;
    let mut p = ReleasePlan::from_spec(&sp, false).unwrap();
    p.sequential_looks = true;
    let obs = Observation {
        analysis: seq_report(MetricVerdict::Inconclusive),
        ..releasing(0)
    };
    let mut s = progressing(1, 0);
    s.canary_weight = 0;
    let mut now = 60;
    for _ in 0..8 {
        let d = transition(&s, &p, &obs, at(now));
        assert_ne!(d.status.phase, P::Promoting, "switched without evidence");
        if d.status.phase == P::Failed {
            break;
        }
        assert!(
            d.status
                .message
                .contains("not enough traffic reached the preview"),
            "{}",
            d.status.message
        );
        s = d.status;
        now += 60;
    }
}

#[test]
fn releases_without_checks_say_so() {
    let mut sp = spec();
    sp.analysis.builtin = crate::crd::BuiltinAnalysis::None;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    assert!(p.no_analysis);
    let obs = Observation {
        analysis: Some(AnalysisReport::default()),
        ..releasing(50)
    };
    let mut s = progressing(3, 0);
    s.phase = P::Finalising;
    let obs_done = Observation {
        routed_weight: Some(0),
        canary_replicas: 0,
        ..obs
    };
    let d = transition(&s, &p, &obs_done, at(60));
    assert_eq!(d.status.phase, P::Succeeded);
    assert!(
        d.notes[0]
            .message
            .contains("without any checks (analysis: none)"),
        "{:?}",
        d.notes
    );
    assert!(
        d.status.history[0].reason.contains("analysis: none"),
        "{:?}",
        d.status.history
    );
}
