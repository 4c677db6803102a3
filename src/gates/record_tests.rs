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
    let p = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Approve),
        "alice",
        Via::Cli,
        now(),
    )
    .unwrap();
    let Planned::Status { id, patch, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(id, "beforeTrafficIncrease/rev2/2");
    assert_eq!(
        patch,
        json!({
            "metadata": {"resourceVersion": "7"},
            "status": {"approvals": [{
                "id": "beforeTrafficIncrease/rev2/2", "gate": "beforeTrafficIncrease",
                "revision": "rev2", "step": 2, "approved": true, "by": "alice",
                "via": "cli", "at": "2026-11-22T11:00:00Z"
            }], "commands": []}
        })
    );
}

#[test]
fn reject_records_approved_false() {
    let c = canary("WaitingApproval", Some("beforePromotion"));
    let p = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Reject),
        "bob",
        Via::Slack,
        now(),
    )
    .unwrap();
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
        let err = plan_decision(
            &c,
            &DecisionRequest::new(Verb::Approve),
            "a",
            Via::Api,
            now(),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 409, "{phase}: {err}");
        assert!(err.to_string().contains("no gate is pending"));
    }
}

#[test]
fn stale_gate_ref_is_conflict() {
    let c = canary("WaitingApproval", Some("beforeTrafficIncrease"));
    let mut d = DecisionRequest::new(Verb::Approve);
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
    let Planned::Status { patch, .. } = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Approve),
        "alice",
        Via::Cli,
        now(),
    )
    .unwrap() else {
        panic!()
    };
    // The server merged the record into the list.
    let rec: Approval = serde_json::from_value(patch["status"]["approvals"][0].clone()).unwrap();
    c.status.as_mut().unwrap().approvals.push(rec);
    let again = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Approve),
        "carol",
        Via::Api,
        now(),
    );
    assert!(matches!(again, Ok(Planned::Unchanged { ref message }) if message.contains("alice")));
    let opposite = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Reject),
        "carol",
        Via::Api,
        now(),
    );
    assert!(matches!(opposite, Err(GateError::Conflict(_))));
}

#[test]
fn abort_and_retry_ids_are_per_release() {
    let c = canary("Progressing", None);
    let Planned::Status { id, patch, .. } = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Abort),
        "ops",
        Via::Api,
        now(),
    )
    .unwrap() else {
        panic!()
    };
    let started = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    assert_eq!(id, format!("abort/rev2/{}", started.timestamp()));
    assert_eq!(patch["status"]["commands"][0]["kind"], "abort");
    assert_eq!(patch["status"]["commands"][0]["revision"], "rev2");
    assert!(plan_decision(
        &c,
        &DecisionRequest::new(Verb::Retry),
        "ops",
        Via::Api,
        now()
    )
    .is_err());

    let f = canary("Failed", None);
    let Planned::Status { patch, .. } = plan_decision(
        &f,
        &DecisionRequest::new(Verb::Retry),
        "ops",
        Via::Cli,
        now(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(patch["status"]["commands"][0]["kind"], "retry");
    assert!(matches!(
        plan_decision(
            &f,
            &DecisionRequest::new(Verb::Abort),
            "ops",
            Via::Cli,
            now()
        ),
        Err(GateError::Conflict(_))
    ));
}

#[test]
fn pause_resume_are_idempotent() {
    let mut c = canary("Progressing", None);
    assert!(matches!(
        plan_decision(&c, &DecisionRequest::new(Verb::Pause), "a", Via::Cli, now()),
        Ok(Planned::Suspend { suspend: true, .. })
    ));
    assert!(matches!(
        plan_decision(
            &c,
            &DecisionRequest::new(Verb::Resume),
            "a",
            Via::Cli,
            now()
        ),
        Ok(Planned::Unchanged { .. })
    ));
    c.spec.suspend = true;
    assert!(matches!(
        plan_decision(&c, &DecisionRequest::new(Verb::Pause), "a", Via::Cli, now()),
        Ok(Planned::Unchanged { .. })
    ));
}

#[test]
fn empty_actor_is_invalid() {
    let c = canary("WaitingApproval", Some("beforeRollout"));
    let err = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Approve),
        "  ",
        Via::Api,
        now(),
    )
    .unwrap_err();
    assert_eq!(err.http_status(), 422);
}

const CANARY_PATH: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo";
const STATUS_PATCH: &str =
    "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo/status?&fieldManager=serin-approver";

#[tokio::test]
async fn apply_decision_writes_the_records_under_one_manager_and_the_read_version() {
    let id = "beforeTrafficIncrease/rev2/2";
    let (client, mock) = MockApi::start(vec![
        expect(
            "GET",
            CANARY_PATH,
            200,
            canary_json("WaitingApproval", Some("beforeTrafficIncrease")),
        ),
        expect(
            "PATCH",
            STATUS_PATCH,
            200,
            canary_json("WaitingApproval", Some("beforeTrafficIncrease")),
        ),
    ]);
    let out = apply_decision(
        &client,
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Approve),
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
        Some("application/merge-patch+json")
    );
    let body = log[1].body.as_ref().unwrap();
    // Conditional on the version read: a write in between makes it fail, not overwrite.
    assert_eq!(body["metadata"], json!({"resourceVersion": "7"}));
    assert_eq!(body["status"]["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(body["status"]["approvals"][0]["by"], "alice");
    // Only the two record lists: no controller field is in the body.
    let keys: Vec<&String> = body["status"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["approvals", "commands"]);
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
        &DecisionRequest::new(Verb::Approve),
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
            format!("{CANARY_PATH}?&fieldManager=serin-approver"),
            200,
            canary_json("Progressing", None),
        ),
    ]);
    let out = apply_decision(
        &client,
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Pause),
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
    assert_eq!(
        log[1].body,
        Some(json!({"metadata": {"resourceVersion": "7"}, "spec": {"suspend": true}}))
    );
}

/// Two people decide the same gate at once, differently: both read version 7; the
/// first write lands, the second is refused (409) and planned again from a fresh read,
/// which now holds the first decision. One outcome, and the loser is told.
#[tokio::test]
async fn two_clicks_at_once_cannot_produce_two_outcomes() {
    let (conflict_status, conflict) = fixture_response("05-deployment-put-stale-409");
    let mut decided = canary_json("WaitingApproval", Some("beforeRollout"));
    decided["metadata"]["resourceVersion"] = json!("8");
    decided["status"]["approvals"] = json!([{
        "id": "beforeRollout/rev2/2", "gate": "beforeRollout", "revision": "rev2", "step": 2,
        "approved": true, "by": "alice", "via": "slack", "at": "2026-11-22T10:30:00Z"}]);
    let (client, mock) = MockApi::start(vec![
        expect(
            "GET",
            CANARY_PATH,
            200,
            canary_json("WaitingApproval", Some("beforeRollout")),
        ),
        expect("PATCH", STATUS_PATCH, conflict_status, conflict),
        expect("GET", CANARY_PATH, 200, decided.clone()),
    ]);
    let err = apply_decision(
        &client,
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Reject),
        "bob",
        Via::Api,
    )
    .await
    .unwrap_err();
    assert_eq!(err.http_status(), 409);
    assert!(
        err.to_string().contains("already approved by alice"),
        "{err}"
    );
    let log = mock.finish();
    assert_eq!(log.len(), 3, "no second write");
    // The same decision a second time is a repeat, not a second record.
    let (client, mock) = MockApi::start(vec![expect("GET", CANARY_PATH, 200, decided)]);
    let out = apply_decision(
        &client,
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Approve),
        "carol",
        Via::Api,
    )
    .await
    .unwrap();
    assert!(!out.changed);
    mock.finish();
}

/// 100 releases, each with a gate passage per step and an abort or retry now and
/// then: the status keeps the records of the release in flight and the last
/// RECORD_HISTORY others, however long the Canary lives.
#[test]
fn records_stay_bounded_over_100_releases() {
    let mut c = canary("WaitingApproval", Some("beforeTrafficIncrease"));
    let t0 = now();
    let mut writes = 0;
    for release in 0..100 {
        let rev = format!("rev{release}");
        let started = t0 + chrono::Duration::hours(release);
        {
            let s = c.status.as_mut().unwrap();
            s.canary_revision = Some(rev.clone());
            s.release_started_at = Some(started);
            s.phase = CanaryPhase::WaitingApproval;
        }
        for step in 0..3 {
            let s = c.status.as_mut().unwrap();
            s.current_step = step;
            s.pending_gate = Some(GateKind::BeforeTrafficIncrease);
            let at = started + chrono::Duration::minutes(i64::from(step) + 1);
            let p = plan_decision(
                &c,
                &DecisionRequest::new(Verb::Approve),
                "alice",
                Via::Api,
                at,
            );
            let Ok(Planned::Status { patch, .. }) = p else {
                panic!("{p:?}")
            };
            // The server replaces both lists with what the merge patch holds.
            let s = c.status.as_mut().unwrap();
            s.approvals = serde_json::from_value(patch["status"]["approvals"].clone()).unwrap();
            s.commands = serde_json::from_value(patch["status"]["commands"].clone()).unwrap();
            writes += 1;
            assert!(
                s.approvals.len() <= 3 + RECORD_HISTORY,
                "{}",
                s.approvals.len()
            );
        }
        if release % 7 == 0 {
            c.status.as_mut().unwrap().phase = CanaryPhase::Progressing;
            let at = started + chrono::Duration::minutes(30);
            let Ok(Planned::Status { patch, .. }) =
                plan_decision(&c, &DecisionRequest::new(Verb::Abort), "ops", Via::Cli, at)
            else {
                panic!()
            };
            let s = c.status.as_mut().unwrap();
            s.approvals = serde_json::from_value(patch["status"]["approvals"].clone()).unwrap();
            s.commands = serde_json::from_value(patch["status"]["commands"].clone()).unwrap();
            writes += 1;
        }
    }
    let s = c.status.as_ref().unwrap();
    assert_eq!(writes, 300 + 15);
    // The release in flight (rev99): its three passages, plus the 20 newest others.
    assert_eq!(s.approvals.len(), 3 + RECORD_HISTORY);
    assert_eq!(
        s.approvals.iter().filter(|a| a.revision == "rev99").count(),
        3
    );
    assert_eq!(
        s.approvals.first().unwrap().revision,
        "rev92",
        "oldest kept"
    );
    assert!(
        s.approvals.windows(2).all(|w| w[0].at <= w[1].at),
        "in time order"
    );
    assert!(
        s.commands.len() <= RECORD_HISTORY + 1,
        "{}",
        s.commands.len()
    );
    // Encoded, the whole status stays small (etcd refuses objects over 1.5 MiB).
    let bytes = serde_json::to_vec(s).unwrap().len();
    assert!(bytes < 16 * 1024, "{bytes} bytes");
}

#[test]
fn a_retried_revision_is_decided_again_not_by_the_old_rejection() {
    let mut c = canary("WaitingApproval", Some("beforeRollout"));
    let s = c.status.as_mut().unwrap();
    s.current_step = 0;
    s.approvals = vec![Approval {
        id: "beforeRollout/rev2/0".into(),
        gate: GateKind::BeforeRollout,
        revision: "rev2".into(),
        step: 0,
        approved: false,
        by: "bob".into(),
        via: "cli".into(),
        // Before this release started (10:00): the release that was rolled back.
        at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
        groups: Vec::new(),
    }];
    let p = plan_decision(
        &c,
        &DecisionRequest::new(Verb::Approve),
        "alice",
        Via::Cli,
        now(),
    )
    .unwrap();
    let Planned::Status { patch, .. } = p else {
        panic!("{p:?}")
    };
    // The new record replaces the stale one of the same id.
    let approvals = patch["status"]["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["approved"], true);
    assert_eq!(approvals[0]["by"], "alice");
}
