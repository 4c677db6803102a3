//! Background webhooks as the core sees them: a check whose rollout hooks still run is
//! held (nothing counted) unless its metrics already fail; the hook records pass
//! through to the status; a waiting Canary is looked at again soon.

use super::*;
use crate::crd::{HookRun, WebhookType};

fn running(name: &str) -> HookRun {
    HookRun {
        name: name.into(),
        type_: WebhookType::Rollout,
        revision: "r2".into(),
        passage: "p".into(),
        started_at: at(60),
        finished_at: None,
        http_status: None,
        attempts: 0,
        error: None,
    }
}

fn waiting_for(analysis: Option<AnalysisReport>) -> Observation {
    Observation {
        analysis,
        hook_runs: vec![running("load")],
        hooks_pending: vec!["webhook load (rollout) running since 12:01:00".into()],
        ..releasing(10)
    }
}

#[test]
fn a_check_waiting_for_its_rollout_hooks_is_held_without_counting_anything() {
    let s = progressing(1, 0);
    let d = transition(
        &s,
        &plan(),
        &waiting_for(report(&[("errors", MetricVerdict::Pass)])),
        at(60),
    );
    assert_eq!(
        (
            d.status.current_step,
            d.status.step_checks,
            d.status.failed_checks
        ),
        (1, 0, 0)
    );
    assert_eq!(d.status.last_analysis_at, None, "the check is still due");
    assert!(d.held_for_hooks);
    assert_eq!(
        d.status.message,
        "check of step 1 waits for webhook load (rollout) running since 12:01:00"
    );
    assert!(d.actions.is_empty() && d.notes.is_empty());
    assert_eq!(d.status.hooks, vec![running("load")], "recorded in status");
    assert_eq!(d.requeue_after, HOOK_POLL);
    // Inconclusive or erroring metrics wait too: the hooks may still fail the check.
    let d = transition(
        &s,
        &plan(),
        &waiting_for(report(&[("errors", MetricVerdict::Error)])),
        at(60),
    );
    assert_eq!(d.status.last_analysis_at, None);
}

#[test]
fn failing_metrics_are_judged_at_once_whatever_the_hooks_do() {
    let mut s = progressing(1, 0);
    s.failed_checks = 1; // one more fails the release (failure limit 2)
    let d = transition(
        &s,
        &plan(),
        &waiting_for(report(&[("errors", MetricVerdict::Fail)])),
        at(60),
    );
    assert_eq!(d.status.phase, P::Failed);
    assert!(!d.held_for_hooks);
    assert!(d.status.message.contains("errors"), "{}", d.status.message);
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 0 }]);
}

#[test]
fn a_held_check_still_rolls_back_at_the_progress_deadline() {
    let s = progressing(1, 0);
    let d = transition(
        &s,
        &plan(),
        &waiting_for(report(&[("errors", MetricVerdict::Pass)])),
        at(601),
    );
    assert_eq!(d.status.phase, P::Failed);
    assert!(
        d.status
            .message
            .contains("no progress within the progress deadline")
            && d.status.message.contains("waits for webhook load"),
        "{}",
        d.status.message
    );
}

#[test]
fn the_check_is_judged_with_the_hooks_verdicts_once_they_answered() {
    let s = progressing(1, 0);
    let mut answered = running("load");
    answered.finished_at = Some(at(65));
    answered.http_status = Some(200);
    let obs = Observation {
        analysis: report(&[
            ("errors", MetricVerdict::Pass),
            ("webhook/load", MetricVerdict::Pass),
        ]),
        hook_runs: vec![answered.clone()],
        ..releasing(10)
    };
    let d = transition(&s, &plan(), &obs, at(66));
    assert_eq!((d.status.current_step, d.status.canary_weight), (2, 25));
    assert_eq!(d.status.hooks, vec![answered]);
    // A call still running elsewhere (a rollback hook) only shortens the requeue.
    let obs = Observation {
        hook_runs: vec![HookRun {
            type_: WebhookType::Rollback,
            ..running("stop")
        }],
        ..releasing(25)
    };
    let d2 = transition(&d.status, &plan(), &obs, at(70));
    assert_eq!(d2.requeue_after, HOOK_POLL);
}

#[test]
fn pre_rollout_says_which_hook_it_waits_for() {
    let mut p = plan();
    p.pre_rollout = true;
    let obs = Observation {
        hooks_pending: vec!["webhook conformance (pre-rollout) running since 12:00:05".into()],
        ..releasing(0)
    };
    let d = transition(&progressing(0, 0), &p, &obs, at(5));
    assert_eq!(
        d.status.message,
        "waiting for the pre-rollout checks: webhook conformance (pre-rollout) running since 12:00:05"
    );
    assert_eq!(d.requeue_after, HOOK_POLL);
}
