//! The fixtures are the CLI's (`cli::tests`): interval 1m, progress deadline 10m, so
//! the grace is 2m.

use serde_json::json;

use super::*;
use crate::cli::render::{render_list, render_status};
use crate::cli::tests::{at, canary, progressing, ts};

/// `c` as the API server returns it after the controller's last status write at
/// `secs`, with later writes by others (the approval API, the spec) that do not count.
fn written_at(mut c: Canary, secs: i64) -> Canary {
    let entry = |manager: &str, subresource: Option<&str>, secs: i64| {
        let mut e = json!({"manager": manager, "operation": "Apply", "apiVersion": "serin.dev/v1alpha1",
                           "fieldsType": "FieldsV1", "fieldsV1": {}, "time": ts(secs)});
        if let Some(sub) = subresource {
            e["subresource"] = json!(sub);
        }
        serde_json::from_value(e).unwrap()
    };
    c.metadata.managed_fields = Some(vec![
        entry("kubectl", None, secs + 500),
        entry(FIELD_MANAGER, None, secs + 400),
        entry("serin-approver", Some("status"), secs + 300),
        entry(FIELD_MANAGER, Some("status"), secs),
    ]);
    c
}

fn with_status(phase: &str, extra: serde_json::Value) -> Canary {
    let mut status = json!({"phase": phase, "stableRevision": "r1", "canaryRevision": "r2",
                            "lastTransitionTime": ts(0)});
    for (k, v) in extra.as_object().unwrap() {
        status[k] = v.clone();
    }
    canary("shop", "podinfo", status)
}

#[test]
fn a_release_checked_on_time_is_live() {
    // Step 2 entered and checked at t=60, written then: the next check is due at 120.
    let c = written_at(progressing(), 60);
    let l = liveness(&c, at(90));
    assert_eq!(l.last_acted, Some(at(60)));
    assert_eq!(l.expected_by, Some(at(120)));
    assert_eq!(l.expected, Some(Expected::Check));
    assert!(!l.stalled);
    assert_eq!(l.message(at(90)), None);
    assert_eq!(l.silent_for(at(90)), None);
}

#[test]
fn a_check_overdue_beyond_the_grace_is_stalled_and_within_it_is_not() {
    let c = written_at(progressing(), 60);
    // Due at 120, grace 2 intervals: fine up to 240.
    for t in [120, 200, 240] {
        assert!(!liveness(&c, at(t)).stalled, "at {t}");
    }
    let late = liveness(&c, at(241));
    assert!(late.stalled);
    let now = at(60 + 12 * 60);
    assert_eq!(
        liveness(&c, now).message(now).as_deref(),
        Some("no controller has acted for 12m (a check was due 11m ago): is serin running?")
    );
    assert_eq!(
        liveness(&c, now).silent_for(now),
        Some(Duration::minutes(12))
    );
    // A longer interval has a longer grace.
    let mut slow = c.clone();
    slow.spec.analysis.interval = "5m".into();
    assert_eq!(liveness(&slow, at(241)).expected_by, Some(at(360)));
    assert!(!liveness(&slow, at(360 + 600)).stalled);
    assert!(liveness(&slow, at(360 + 601)).stalled);
}

#[test]
fn a_step_whose_pods_may_not_be_ready_is_not_blamed_before_its_deadline() {
    // Step 1 just entered (no check at this step yet), the controller said "waiting
    // for the canary to become ready" at t=5 and rightly writes nothing until the
    // progress deadline (10m from the step's start) rolls it back.
    let c = written_at(
        with_status(
            "Progressing",
            json!({"currentStep": 1, "canaryWeight": 10, "stepStartedAt": ts(0)}),
        ),
        5,
    );
    let l = liveness(&c, at(400));
    assert_eq!(l.expected, Some(Expected::ProgressDeadline));
    assert_eq!(l.expected_by, Some(at(600)));
    assert!(!l.stalled, "the check that was due at 60 is not blamed");
    assert!(!liveness(&c, at(720)).stalled);
    let dead = liveness(&c, at(721));
    assert!(dead.stalled);
    assert!(dead
        .message(at(721))
        .unwrap()
        .contains("(the progress deadline passed 2m1s ago)"));
    // Checked at 60, then the canary's pods went away: the controller wrote at 90 and
    // waits for the deadline (660) without a word; the check due at 120 does not count.
    let gone = written_at(progressing(), 90);
    let l = liveness(&gone, at(300));
    assert_eq!(
        (l.expected_by, l.expected),
        (Some(at(660)), Some(Expected::ProgressDeadline))
    );
    assert!(!l.stalled);
    // The write of the check itself, a moment after its time, is no such word.
    assert_eq!(
        liveness(&written_at(progressing(), 62), at(300)).expected,
        Some(Expected::Check)
    );
    // A release a policy holds at its step has no deadline: after such a word, nothing.
    let mut held = written_at(progressing(), 90);
    held.status.as_mut().unwrap().policy_wait = Some(
        serde_json::from_value(
            json!({"reason": "ApprovalsNeeded", "policy": "ReleasePolicy shop/p",
            "revision": "r2", "stage": "NextStep", "message": "", "since": ts(60)}),
        )
        .unwrap(),
    );
    assert_eq!(liveness(&held, at(86400)).expected_by, None);
}

#[test]
fn waits_on_people_are_never_stalled() {
    let year = at(365 * 86400);
    let paused = written_at(
        with_status(
            "Progressing",
            json!({"currentStep": 1, "stepStartedAt": ts(0), "lastAnalysisAt": ts(0), "pausedAt": ts(30)}),
        ),
        30,
    );
    let l = liveness(&paused, year);
    assert_eq!((l.expected_by, l.stalled), (None, false));
    let mut suspended = written_at(progressing(), 60);
    suspended.spec.suspend = true;
    assert!(!liveness(&suspended, year).stalled);
    let gate = written_at(
        with_status(
            "WaitingApproval",
            json!({"currentStep": 3, "canaryWeight": 50, "pendingGate": "beforePromotion",
                   "stepStartedAt": ts(0), "lastAnalysisAt": ts(0)}),
        ),
        0,
    );
    let l = liveness(&gate, year);
    assert_eq!(
        (l.expected_by, l.stalled, l.message(year)),
        (None, false, None)
    );
    // ... unless the gate times out: then the controller must roll back.
    let mut timed = gate.clone();
    timed.spec.gates.approval_timeout = Some("1h".into());
    let l = liveness(&timed, at(3600 + 121));
    assert_eq!(l.expected, Some(Expected::ApprovalTimeout));
    assert_eq!(l.expected_by, Some(at(3600)));
    assert!(l.stalled);
    // A queue without an end waits; a window that opens at a time is due then.
    let queued = written_at(
        with_status(
            "Waiting",
            json!({"policyWait": {"reason": "Queued", "policy": "ReleasePolicy shop/q",
                   "revision": "r2", "stage": "Start", "message": "", "since": ts(0)}}),
        ),
        0,
    );
    assert_eq!(liveness(&queued, year).expected_by, None);
    let mut window = queued.clone();
    window
        .status
        .as_mut()
        .unwrap()
        .policy_wait
        .as_mut()
        .unwrap()
        .until = Some(at(7200));
    let l = liveness(&window, at(7200 + 121));
    assert_eq!(l.expected, Some(Expected::PolicyWaitEnd));
    assert!(l.stalled);
    assert!(!liveness(&written_at(window, 7201), year).stalled);
}

#[test]
fn an_idle_canary_expects_nothing_but_its_scale_down() {
    let done = written_at(
        with_status("Succeeded", json!({"currentStep": 0, "canaryWeight": 0})),
        0,
    );
    let l = liveness(&done, at(30 * 86400));
    assert_eq!((l.expected_by, l.stalled), (None, false));
    let mut cooling = done.clone();
    cooling.status.as_mut().unwrap().scale_down_at = Some(at(60));
    let l = liveness(&cooling, at(181));
    assert_eq!(
        (l.expected_by, l.expected),
        (Some(at(60)), Some(Expected::ScaleDown))
    );
    assert!(l.stalled);
    assert!(!liveness(&cooling, at(180)).stalled);
}

#[test]
fn a_promotion_is_due_by_its_deadline_and_then_expects_nothing() {
    let promoting = with_status(
        "Promoting",
        json!({"currentStep": 3, "canaryWeight": 50, "stepStartedAt": ts(0)}),
    );
    let l = liveness(&written_at(promoting.clone(), 1), at(721));
    assert_eq!(l.expected, Some(Expected::ProgressDeadline));
    assert!(l.stalled);
    // At the deadline the controller marks it ProgressDeadlineExceeded (a write).
    let marked = liveness(&written_at(promoting, 601), at(86400));
    assert_eq!((marked.expected_by, marked.stalled), (None, false));
}

#[test]
fn the_controllers_own_status_write_is_preferred_over_status_clocks() {
    // Status clocks say 60; the controller's status write says 100; the approval API's
    // later write and the controller's spec-side entry do not count.
    let c = written_at(progressing(), 100);
    assert_eq!(liveness(&c, at(120)).last_acted, Some(at(100)));
    // Without managedFields: the latest status clock (a condition's here).
    let mut bare = progressing();
    bare.status.as_mut().unwrap().conditions[0].last_transition_time = at(75);
    let l = liveness(&bare, at(300));
    assert_eq!(l.last_acted, Some(at(75)));
    // Whether the controller said more after its check cannot be told then: only the
    // deadline counts, so an unready canary is not blamed.
    assert_eq!(
        (l.expected_by, l.expected, l.stalled),
        (Some(at(660)), Some(Expected::ProgressDeadline), false)
    );
}

#[test]
fn a_canary_never_written_is_stalled_after_the_grace() {
    let c = canary("shop", "podinfo", serde_json::Value::Null);
    let now = at(0);
    let l = liveness(&c, now);
    assert_eq!(l.last_acted, None);
    assert_eq!(l.expected, Some(Expected::FirstStatus));
    assert!(l.stalled);
    assert_eq!(
        l.message(now).as_deref(),
        Some("no controller has acted yet (the Canary was created 3d ago): is serin running?")
    );
    assert_eq!(l.silent_for(now), Some(Duration::days(3)));
}

#[test]
fn liveness_serializes_in_camel_case() {
    let v = serde_json::to_value(liveness(&written_at(progressing(), 60), at(90))).unwrap();
    assert_eq!(
        v,
        json!({"lastActed": "2027-01-15T08:01:00Z", "expectedBy": "2027-01-15T08:02:00Z",
               "expected": "check", "stalled": false})
    );
    let idle = liveness(&written_at(with_status("Succeeded", json!({})), 0), at(90));
    assert_eq!(
        serde_json::to_value(idle).unwrap(),
        json!({"lastActed": "2027-01-15T08:00:00Z", "expectedBy": null, "stalled": false})
    );
}

#[test]
fn status_says_when_the_controller_last_acted_and_warns_when_overdue() {
    let c = written_at(progressing(), 60);
    let out = render_status(&c, at(90));
    assert!(
        out.contains("\nLast acted: 2027-01-15 08:01:00Z (30s ago)\n"),
        "{out}"
    );
    assert!(!out.contains("WARNING"), "{out}");
    let now = at(60 + 12 * 60);
    let out = render_status(&c, now);
    assert!(
        out.contains("Last acted: 2027-01-15 08:01:00Z (12m ago)\n"),
        "{out}"
    );
    assert!(
        out.contains("\nWARNING:    no controller has acted for 12m (a check was due 11m ago): is serin running?\n"),
        "{out}"
    );
    // The warning follows the clocks it contradicts.
    assert!(out.find("; check due;").unwrap() < out.find("WARNING").unwrap());
    let never = render_status(&canary("shop", "podinfo", serde_json::Value::Null), at(0));
    assert!(
        never.contains("\nWARNING:    no controller has acted yet"),
        "{never}"
    );
}

#[test]
fn the_list_marks_stalled_canaries_after_their_phase() {
    // podinfo was checked at 700; cart's controller last acted at 60.
    let mut live = written_at(progressing(), 700);
    let s = live.status.as_mut().unwrap();
    (s.step_started_at, s.last_analysis_at) = (Some(at(700)), Some(at(700)));
    let mut stalled = written_at(progressing(), 60);
    stalled.metadata.name = Some("cart".into());
    let now = at(60 + 12 * 60);
    let out = render_list(&[live.clone(), stalled], false, now);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("cart      Progressing (stalled 12m)   25%"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("podinfo   Progressing                 25%"),
        "{out}"
    );
    let out = render_list(&[live], false, now);
    assert!(!out.contains("stalled"), "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("podinfo   Progressing   25%"),
        "{out}"
    );
}

#[test]
fn a_fresh_release_is_due_by_its_deadline_and_an_invalid_spec_expects_no_clock() {
    // Just started (step 0): the canary comes up, pre-rollout checks may run; the
    // controller must have moved on or rolled back by the progress deadline.
    let fresh = written_at(
        with_status(
            "Progressing",
            json!({"currentStep": 0, "releaseStartedAt": ts(0), "stepStartedAt": ts(0)}),
        ),
        0,
    );
    let l = liveness(&fresh, at(30));
    assert_eq!(
        (l.last_acted, l.expected_by, l.expected, l.stalled),
        (
            Some(at(0)),
            Some(at(600)),
            Some(Expected::ProgressDeadline),
            false
        )
    );
    // No plan, no clocks: only what the status itself schedules.
    let mut bad = fresh.clone();
    bad.spec.analysis.interval = "soon".into();
    assert_eq!(liveness(&bad, at(86400)).expected_by, None);
    bad.status.as_mut().unwrap().scale_down_at = Some(at(10));
    let l = liveness(&bad, at(71));
    assert_eq!((l.expected, l.stalled), (Some(Expected::ScaleDown), true));
}
