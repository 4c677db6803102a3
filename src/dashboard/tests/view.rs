use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::crd::{Canary, GateKind};
use crate::dashboard::view::{actions, row, timeline, EventRow};
use crate::gates::{plan_decision, DecisionRequest, GateRef, Planned, Verb, Via};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 6, 0).unwrap()
}

fn canary(phase: &str, gate: Option<&str>) -> Canary {
    serde_json::from_value(super::canary_json("podinfo", phase, gate)).unwrap()
}

#[test]
fn a_waiting_gate_offers_approve_and_reject_of_that_exact_passage() {
    let c = canary("WaitingApproval", Some("beforePromotion"));
    let offered = actions(&c);
    let verbs: Vec<Verb> = offered.iter().map(|a| a.verb).collect();
    assert_eq!(
        verbs,
        [Verb::Approve, Verb::Reject, Verb::Abort, Verb::Pause]
    );
    let want = GateRef {
        gate: GateKind::BeforePromotion,
        revision: "rev2".into(),
        step: 2,
    };
    assert_eq!(offered[0].passage.as_ref(), Some(&want));
    assert_eq!(
        offered[0].confirm,
        "Approve gate beforePromotion of revision rev2 at step 2 of shop/podinfo?"
    );
    // The passage shown is the one the approval API accepts now.
    let d = DecisionRequest {
        expect: offered[0].passage.clone(),
        ..DecisionRequest::new(Verb::Approve)
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    assert!(matches!(
        plan_decision(&c, &d, "alice", Via::Dashboard, now),
        Ok(Planned::Status { .. })
    ));
}

#[test]
fn a_policy_waiting_for_approvals_offers_its_gate() {
    let mut v = super::canary_json("podinfo", "Waiting", None);
    v["status"]["policyWait"] = json!({
        "reason": "ApprovalsNeeded", "policy": "ReleasePolicy shop/prod", "revision": "rev3",
        "stage": "Start", "message": "needs 2 approvals", "since": "2026-11-22T10:00:00Z",
        "approvals": {"gate": "beforeRollout", "need": 2, "have": 1, "groups": []},
    });
    let c: Canary = serde_json::from_value(v).unwrap();
    let offered = actions(&c);
    assert_eq!(offered[0].verb, Verb::Approve);
    assert_eq!(
        offered[0].passage,
        Some(GateRef {
            gate: GateKind::BeforeRollout,
            revision: "rev3".into(),
            step: 0
        })
    );
    assert_eq!(
        row(&c, now()).waiting.as_deref(),
        Some("ApprovalsNeeded (ReleasePolicy shop/prod)")
    );
}

#[test]
fn what_is_offered_follows_the_phase() {
    let verbs = |c: &Canary| actions(c).iter().map(|a| a.verb).collect::<Vec<_>>();
    assert_eq!(
        verbs(&canary("Progressing", None)),
        [Verb::Abort, Verb::Pause]
    );
    assert_eq!(verbs(&canary("Failed", None)), [Verb::Retry, Verb::Pause]);
    assert_eq!(verbs(&canary("Succeeded", None)), [Verb::Pause]);
    let mut paused = canary("Succeeded", None);
    paused.spec.suspend = true;
    assert_eq!(verbs(&paused), [Verb::Resume]);
    assert_eq!(row(&paused, now()).waiting.as_deref(), Some("paused"));
}

#[test]
fn the_list_row_says_step_weight_and_the_worst_verdict() {
    let mut v = super::canary_json("podinfo", "Progressing", None);
    v["spec"]["analysis"] = json!({"steps": [10, 25, 50]});
    v["status"]["metrics"] = json!([
        {"name": "errors", "verdict": "Fail", "reason": "x", "checkedAt": "2026-11-22T10:04:00Z"},
        {"name": "latency", "verdict": "Pass", "reason": "y", "checkedAt": "2026-11-22T10:04:00Z"},
        {"name": "cpu", "verdict": "Fail", "reason": "z", "dryRun": true,
         "checkedAt": "2026-11-22T10:04:00Z"},
    ]);
    let r = row(&serde_json::from_value(v).unwrap(), now());
    assert_eq!(
        (r.phase, r.weight, r.step, r.steps),
        ("Progressing", 25, 2, 3)
    );
    // Dry-run metrics do not decide, so they are not the verdict.
    assert_eq!(r.last_verdict.as_deref(), Some("Fail (errors)"));
    // Idle: the last release's result.
    let mut v = super::canary_json("podinfo", "Succeeded", None);
    v["status"]["history"] = json!([{"revision": "rev2", "finishedAt": "2026-11-22T10:09:00Z",
        "result": "promoted", "reason": "all checks passed", "step": 3, "steps": 3}]);
    let r = row(&serde_json::from_value(v).unwrap(), now());
    assert_eq!((r.step, r.last_verdict.as_deref()), (0, Some("promoted")));
}

#[test]
fn the_timeline_puts_records_and_events_in_time_order() {
    let mut v = super::canary_json("podinfo", "Progressing", None);
    v["status"]["approvals"] = json!([{"id": "a", "gate": "beforeTrafficIncrease",
        "revision": "rev2", "step": 1, "approved": true, "by": "bob", "via": "slack",
        "at": "2026-11-22T10:03:00Z"}]);
    v["status"]["stepStartedAt"] = "2026-11-22T10:04:00Z".into();
    let c: Canary = serde_json::from_value(v).unwrap();
    let event = EventRow::from_event(&json!({
        "type": "Warning", "reason": "CheckFailed", "note": "errors 3% > 1%",
        "series": {"count": 4, "lastObservedTime": "2026-11-22T10:04:30.000000Z"},
        "eventTime": "2026-11-22T10:01:00.000000Z",
    }));
    assert_eq!(event.count, 4);
    let lines: Vec<(String, &str, String)> = timeline(&c, &[event])
        .into_iter()
        .map(|e| (e.at.format("%H:%M:%S").to_string(), e.kind, e.text))
        .collect();
    assert_eq!(
        lines,
        [
            (
                "10:00:00".into(),
                "release",
                "release of revision rev2 started".into()
            ),
            (
                "10:03:00".into(),
                "approval",
                "beforeTrafficIncrease of revision rev2 at step 1 approved by bob via slack".into()
            ),
            ("10:04:00".into(), "step", "step 2 at 25% weight".into()),
            // A series is placed at its last occurrence, with its count.
            (
                "10:04:30".into(),
                "warning",
                "CheckFailed: errors 3% > 1% (×4)".into()
            ),
        ]
    );
}

#[test]
fn a_release_no_controller_acts_on_is_marked_in_the_list() {
    let mut v = super::canary_json("podinfo", "Progressing", None);
    v["status"]["stepStartedAt"] = "2026-11-22T10:00:00Z".into();
    let c: Canary = serde_json::from_value(v).unwrap();
    assert_eq!(row(&c, now()).stalled, None);
    let late = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    let r = row(&c, late);
    assert!(r.liveness.stalled);
    let said = r.stalled.unwrap_or_default();
    assert!(said.contains("no controller has acted"), "{said}");
}
