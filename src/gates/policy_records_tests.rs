use chrono::TimeZone;
use serde_json::{json, Value};

use super::*;
use crate::gates::{plan_decision, GateRef, OverrideRequest};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap()
}

/// r3 waits to start: a policy needs `have` of 2 approvals from release-managers.
fn waiting(have: u32, approvals: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "shop", "resourceVersion": "9"},
        "spec": {"targetRef": {"name": "podinfo"}},
        "status": {
            "phase": "Waiting",
            "stableRevision": "r2",
            "canaryRevision": "r2",
            "currentStep": 3,
            "approvals": approvals,
            "policyWait": {
                "reason": "ApprovalsNeeded",
                "policy": "ReleasePolicy shop/prod",
                "revision": "r3",
                "stage": "Start",
                "message": "0 of 2 approvals beforeRollout from release-managers required by ReleasePolicy shop/prod",
                "approvals": {"gate": "beforeRollout", "have": have, "need": 2, "groups": ["release-managers"]},
                "since": "2026-11-22T10:00:00Z"
            }
        }
    }))
    .unwrap()
}

fn by(user: &str, groups: &[&str], verb: Verb) -> DecisionRequest {
    DecisionRequest {
        approver: Some(Approver {
            username: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }),
        ..DecisionRequest::new(verb)
    }
}

fn records(p: &Planned) -> Vec<Value> {
    let Planned::Status { patch, .. } = p else {
        panic!("{p:?}")
    };
    patch["status"]["approvals"].as_array().unwrap().clone()
}

#[test]
fn each_approver_of_a_policy_gate_gets_a_record_with_their_groups() {
    let c = waiting(0, json!([]));
    let alice = by("alice", &["release-managers", "dev"], Verb::Approve);
    let p = plan_decision(&c, &alice, "alice", Via::Api, now()).unwrap();
    let Planned::Status { id, .. } = &p else {
        panic!("{p:?}")
    };
    assert_eq!(id, "beforeRollout/r3/0/alice");
    let r = records(&p);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["revision"], "r3");
    assert_eq!(r[0]["step"], 0);
    assert_eq!(r[0]["by"], "alice");
    assert_eq!(r[0]["groups"], json!(["release-managers", "dev"]));
    assert_eq!(r[0]["approved"], true);

    // Alice's record is in; Bob adds his own beside it, Alice again changes nothing,
    // Alice rejecting now contradicts her approval.
    let c = waiting(1, json!(r));
    let bob = plan_decision(
        &c,
        &by("bob", &["release-managers"], Verb::Approve),
        "bob",
        Via::Slack,
        now(),
    )
    .unwrap();
    let mut ids: Vec<String> = records(&bob)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["beforeRollout/r3/0/alice", "beforeRollout/r3/0/bob"]);
    assert!(matches!(
        plan_decision(&c, &alice, "alice", Via::Cli, now()).unwrap(),
        Planned::Unchanged { .. }
    ));
    let err = plan_decision(
        &c,
        &by("alice", &[], Verb::Reject),
        "alice",
        Via::Cli,
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, GateError::Conflict(_)), "{err}");
}

#[test]
fn a_policy_approval_for_another_passage_or_without_a_wait_is_refused() {
    let c = waiting(0, json!([]));
    let stale = DecisionRequest {
        expect: Some(GateRef {
            gate: crate::crd::GateKind::BeforeRollout,
            revision: "r2".into(),
            step: 0,
        }),
        ..by("alice", &[], Verb::Approve)
    };
    let err = plan_decision(&c, &stale, "alice", Via::Slack, now()).unwrap_err();
    assert!(err.to_string().contains("stale request"), "{err}");

    let mut idle = c.clone();
    idle.status.as_mut().unwrap().policy_wait = None;
    let err = plan_decision(
        &idle,
        &by("alice", &[], Verb::Approve),
        "alice",
        Via::Cli,
        now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no gate is pending"), "{err}");
}

fn override_by(user: &str, reason: &str, hours: Option<u64>) -> DecisionRequest {
    DecisionRequest {
        emergency: Some(OverrideRequest {
            reason: reason.into(),
            duration: hours.map(|h| std::time::Duration::from_secs(h * 3600)),
        }),
        ..by(user, &[], Verb::Override)
    }
}

#[test]
fn an_override_is_recorded_for_the_waiting_revision_and_bounded() {
    let c = waiting(0, json!([]));
    let p = plan_decision(
        &c,
        &override_by("oncall", "INC-42 hotfix", Some(2)),
        "oncall",
        Via::Cli,
        now(),
    )
    .unwrap();
    let Planned::Status { patch, message, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(
        patch,
        json!({
            "metadata": {"resourceVersion": "9"},
            "status": {"emergencyOverride": {
                "revision": "r3", "by": "oncall", "via": "cli", "reason": "INC-42 hotfix",
                "at": "2026-11-22T11:00:00Z", "until": "2026-11-22T13:00:00Z"
            }}
        })
    );
    assert!(message.contains("until 2026-11-22T13:00:00Z"), "{message}");

    // The same override again: unchanged.
    let mut done = c.clone();
    done.status.as_mut().unwrap().emergency_override = Some(Box::new(EmergencyOverrideRecord {
        revision: "r3".into(),
        by: "oncall".into(),
        via: "cli".into(),
        reason: "INC-42 hotfix".into(),
        at: now(),
        until: None,
    }));
    assert!(matches!(
        plan_decision(
            &done,
            &override_by("oncall", " INC-42 hotfix ", None),
            "oncall",
            Via::Api,
            now()
        )
        .unwrap(),
        Planned::Unchanged { .. }
    ));

    // Bad input: a clear 4xx, nothing planned.
    for (req, want) in [
        (override_by("oncall", "  ", None), "reason"),
        (override_by("oncall", "two\nlines", None), "reason"),
        (override_by("oncall", &"x".repeat(257), None), "reason"),
        (override_by("oncall", "why", Some(24 * 8)), "at most"),
        (override_by("oncall", "why", Some(0)), "more than 0"),
        (by("oncall", &[], Verb::Override), "needs a reason"),
    ] {
        let err = plan_decision(&c, &req, "oncall", Via::Api, now()).unwrap_err();
        assert!(matches!(err, GateError::Invalid(_)), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }

    // Nothing waits or is in flight: nothing to override.
    let mut idle = c.clone();
    let s = idle.status.as_mut().unwrap();
    s.phase = CanaryPhase::Succeeded;
    s.policy_wait = None;
    let err = plan_decision(
        &idle,
        &override_by("oncall", "why", None),
        "oncall",
        Via::Api,
        now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nothing to override"), "{err}");
}
