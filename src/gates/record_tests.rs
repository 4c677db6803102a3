use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::testing::{expect, fixture_response, not_found, MockApi};

pub(crate) fn canary_json(phase: &str, gate: Option<&str>) -> Value {
    let mut status = json!({
        "phase": phase,
        "canaryRevision": "rev2",
        "stableRevision": "rev1",
        "currentStep": 2,
        "canaryWeight": 25,
        "releaseStartedAt": "2026-11-22T10:00:00Z",
        "lastTransitionTime": "2026-11-22T10:05:00Z",
        "message": "waiting",
    });
    if let Some(g) = gate {
        status["pendingGate"] = json!(g);
    }
    if phase == "Failed" {
        status["failedRevision"] = json!("rev2");
    }
    json!({
        "apiVersion": "serin.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"targetRef": {"name": "podinfo"}},
        "status": status,
    })
}

pub(crate) fn canary(phase: &str, gate: Option<&str>) -> Canary {
    serde_json::from_value(canary_json(phase, gate)).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap()
}

#[test]
fn approve_builds_one_entry_patch() {
    let c = canary("WaitingApproval", Some("beforeTrafficIncrease"));
    let p = plan_decision(&c, &Decision::new(Verb::Approve), "alice", Via::Cli, now()).unwrap();
    let Planned::Status { id, patch, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(id, "beforeTrafficIncrease/rev2/2");
    assert_eq!(
        patch,
        json!({
            "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo"},
            "status": {"approvals": [{
                "id": "beforeTrafficIncrease/rev2/2", "gate": "beforeTrafficIncrease",
                "revision": "rev2", "step": 2, "approved": true, "by": "alice",
                "via": "cli", "at": "2026-11-22T11:00:00Z"
            }]}
        })
    );
}

#[test]
fn reject_records_approved_false() {
    let c = canary("WaitingApproval", Some("beforePromotion"));
    let p = plan_decision(&c, &Decision::new(Verb::Reject), "bob", Via::Slack, now()).unwrap();
    let Planned::Status { patch, .. } = p else {
        panic!()
    };
    let e = &patch["status"]["approvals"][0];
    assert_eq!(e["approved"], false);
    assert_eq!(e["via"], "slack");
    assert_eq!(e["gate"], "beforePromotion");
}

#[test]
fn approve_without_pending_gate_is_conflict() {
    for (phase, gate) in [
        ("Progressing", None),
        ("Succeeded", None),
        ("WaitingApproval", None),
    ] {
        let c = canary(phase, gate);
        let err =
            plan_decision(&c, &Decision::new(Verb::Approve), "a", Via::Api, now()).unwrap_err();
        assert_eq!(err.http_status(), 409, "{phase}: {err}");
        assert!(err.to_string().contains("no gate is pending"));
    }
}

#[test]
fn stale_gate_ref_is_conflict() {
    let c = canary("WaitingApproval", Some("beforeTrafficIncrease"));
    let mut d = Decision::new(Verb::Approve);
    d.expect = Some(GateRef {
        gate: GateKind::BeforeTrafficIncrease,
        revision: "rev2".into(),
        step: 1,
    });
    let err = plan_decision(&c, &d, "a", Via::Slack, now()).unwrap_err();
    assert!(matches!(err, GateError::Conflict(_)));
    d.expect.as_mut().unwrap().step = 2;
    assert!(plan_decision(&c, &d, "a", Via::Slack, now()).is_ok());
}

#[test]
fn repeat_is_unchanged_and_opposite_is_conflict() {
    let mut c = canary("WaitingApproval", Some("beforeRollout"));
    let Planned::Status { patch, .. } =
        plan_decision(&c, &Decision::new(Verb::Approve), "alice", Via::Cli, now()).unwrap()
    else {
        panic!()
    };
    // The server merged the record into the list.
    let rec: Approval = serde_json::from_value(patch["status"]["approvals"][0].clone()).unwrap();
    c.status.as_mut().unwrap().approvals.push(rec);
    let again = plan_decision(&c, &Decision::new(Verb::Approve), "carol", Via::Api, now());
    assert!(matches!(again, Ok(Planned::Unchanged { ref message }) if message.contains("alice")));
    let opposite = plan_decision(&c, &Decision::new(Verb::Reject), "carol", Via::Api, now());
    assert!(matches!(opposite, Err(GateError::Conflict(_))));
}

#[test]
fn abort_and_retry_ids_are_per_release() {
    let c = canary("Progressing", None);
    let Planned::Status { id, patch, .. } =
        plan_decision(&c, &Decision::new(Verb::Abort), "ops", Via::Api, now()).unwrap()
    else {
        panic!()
    };
    let started = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    assert_eq!(id, format!("abort/rev2/{}", started.timestamp()));
    assert_eq!(patch["status"]["commands"][0]["kind"], "abort");
    assert_eq!(patch["status"]["commands"][0]["revision"], "rev2");
    assert!(plan_decision(&c, &Decision::new(Verb::Retry), "ops", Via::Api, now()).is_err());

    let f = canary("Failed", None);
    let Planned::Status { patch, .. } =
        plan_decision(&f, &Decision::new(Verb::Retry), "ops", Via::Cli, now()).unwrap()
    else {
        panic!()
    };
    assert_eq!(patch["status"]["commands"][0]["kind"], "retry");
    assert!(matches!(
        plan_decision(&f, &Decision::new(Verb::Abort), "ops", Via::Cli, now()),
        Err(GateError::Conflict(_))
    ));
}

#[test]
fn pause_resume_are_idempotent() {
    let mut c = canary("Progressing", None);
    assert!(matches!(
        plan_decision(&c, &Decision::new(Verb::Pause), "a", Via::Cli, now()),
        Ok(Planned::Suspend { suspend: true, .. })
    ));
    assert!(matches!(
        plan_decision(&c, &Decision::new(Verb::Resume), "a", Via::Cli, now()),
        Ok(Planned::Unchanged { .. })
    ));
    c.spec.suspend = true;
    assert!(matches!(
        plan_decision(&c, &Decision::new(Verb::Pause), "a", Via::Cli, now()),
        Ok(Planned::Unchanged { .. })
    ));
}

#[test]
fn empty_actor_is_invalid() {
    let c = canary("WaitingApproval", Some("beforeRollout"));
    let err = plan_decision(&c, &Decision::new(Verb::Approve), "  ", Via::Api, now()).unwrap_err();
    assert_eq!(err.http_status(), 422);
}

#[test]
fn field_manager_is_per_record() {
    let a = approver_field_manager("beforeRollout/rev2/0");
    let b = approver_field_manager("beforeRollout/rev3/0");
    assert_ne!(a, b);
    assert!(a.starts_with("serin-approver-") && a.len() <= 128);
    assert_eq!(a, approver_field_manager("beforeRollout/rev2/0"));
}

const CANARY_PATH: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo";

#[tokio::test]
async fn apply_decision_applies_status_with_own_field_manager() {
    let id = "beforeTrafficIncrease/rev2/2";
    let fm = approver_field_manager(id);
    let (client, mock) = MockApi::start(vec![
        expect(
            "GET",
            CANARY_PATH,
            200,
            canary_json("WaitingApproval", Some("beforeTrafficIncrease")),
        ),
        expect(
            "PATCH",
            format!("{CANARY_PATH}/status?&fieldManager={fm}"),
            200,
            canary_json("WaitingApproval", Some("beforeTrafficIncrease")),
        ),
    ]);
    let out = apply_decision(
        &client,
        "shop",
        "podinfo",
        &Decision::new(Verb::Approve),
        "alice",
        Via::Cli,
    )
    .await
    .unwrap();
    assert!(out.changed);
    assert_eq!(out.id.as_deref(), Some(id));
    let log = mock.finish();
    assert_eq!(
        log[1].content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let body = log[1].body.as_ref().unwrap();
    assert_eq!(body["status"]["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(body["status"]["approvals"][0]["by"], "alice");
    // Only the approver's entry: no controller field is in the body.
    assert_eq!(body["status"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn apply_decision_unknown_canary_is_not_found() {
    let (client, mock) = MockApi::start(vec![expect(
        "GET",
        CANARY_PATH,
        404,
        not_found("canaries", "serin.dev", "podinfo"),
    )]);
    let err = apply_decision(
        &client,
        "shop",
        "podinfo",
        &Decision::new(Verb::Approve),
        "a",
        Via::Api,
    )
    .await
    .unwrap_err();
    assert_eq!(err.http_status(), 404);
    mock.finish();
}

#[tokio::test]
async fn apply_decision_pause_merge_patches_spec() {
    let (client, mock) = MockApi::start(vec![
        expect("GET", CANARY_PATH, 200, canary_json("Progressing", None)),
        expect(
            "PATCH",
            format!("{CANARY_PATH}?"),
            200,
            canary_json("Progressing", None),
        ),
    ]);
    let out = apply_decision(
        &client,
        "shop",
        "podinfo",
        &Decision::new(Verb::Pause),
        "a",
        Via::Cli,
    )
    .await
    .unwrap();
    assert!(out.changed);
    let log = mock.finish();
    assert_eq!(
        log[1].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(log[1].body, Some(json!({"spec": {"suspend": true}})));
}

#[tokio::test]
async fn apply_decision_concurrent_conflict_is_409() {
    // The server refuses an apply that would overwrite another manager's record.
    let (status, body) = fixture_response("07-deployment-ssa-conflict-409");
    let fm = approver_field_manager("beforeRollout/rev2/2");
    let (client, mock) = MockApi::start(vec![
        expect(
            "GET",
            CANARY_PATH,
            200,
            canary_json("WaitingApproval", Some("beforeRollout")),
        ),
        expect(
            "PATCH",
            format!("{CANARY_PATH}/status?&fieldManager={fm}"),
            status,
            body,
        ),
    ]);
    let err = apply_decision(
        &client,
        "shop",
        "podinfo",
        &Decision::new(Verb::Approve),
        "a",
        Via::Api,
    )
    .await
    .unwrap_err();
    assert_eq!(err.http_status(), 409);
    mock.finish();
}
