use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::crd::GatesSpec;
use crate::dashboard::{DashboardError, DemoFeed, LocalSource, Source};
use crate::demo::{app_template, initial_state, template, ReleaseSettings};
use crate::gates::{DecisionRequest, GateRef, Verb};
use crate::local::StateStore;

fn waiting_state(dir: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("serin-dash-{}-{dir}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let settings = ReleaseSettings {
        interval: Duration::from_secs(10),
        look_interval: Duration::from_secs(2),
        steps: vec![20, 50],
        failure_limit: 2,
        progress_deadline: Duration::from_secs(60),
        replicas: 2,
        gates: GatesSpec {
            before_promotion: true,
            ..GatesSpec::default()
        },
        template_name: template::NAME.into(),
        template: template::template(),
        template_args: template::demo_args(),
    };
    let mut st = initial_state(&settings, app_template("v1", 0.0, 0)).unwrap();
    st.status = serde_json::from_value(json!({
        "phase": "WaitingApproval", "pendingGate": "beforePromotion", "canaryRevision": "r2",
        "stableRevision": "r1", "currentStep": 2, "canaryWeight": 50,
        "releaseStartedAt": "2026-11-22T10:00:00Z",
    }))
    .unwrap();
    let path = dir.join("state.json");
    StateStore::new(&path).create(&st).unwrap();
    path
}

fn approve(verb: Verb) -> DecisionRequest {
    DecisionRequest {
        expect: Some(GateRef {
            gate: crate::crd::GateKind::BeforePromotion,
            revision: "r2".into(),
            step: 2,
        }),
        ..DecisionRequest::new(verb)
    }
}

#[tokio::test]
async fn the_demo_records_decisions_as_the_approval_api_plans_them() {
    let path = waiting_state("records");
    let src = LocalSource::new(&path, DemoFeed::default(), "ada");
    let listing = src.list().await.unwrap();
    assert_eq!(listing.canaries.len(), 1);
    let out = src
        .act("demo", "podinfo", &approve(Verb::Approve))
        .await
        .unwrap();
    assert!(out.changed, "{out:?}");
    let st = StateStore::new(&path).load().unwrap().status;
    assert_eq!(st.approvals.len(), 1);
    let a = &st.approvals[0];
    assert_eq!(
        (a.by.as_str(), a.via.as_str(), a.approved),
        ("ada", "dashboard", true)
    );
    // A repeat changes nothing; the opposite decision is a conflict, never a second
    // outcome.
    let again = src
        .act("demo", "podinfo", &approve(Verb::Approve))
        .await
        .unwrap();
    assert!(!again.changed);
    let other = src.act("demo", "podinfo", &approve(Verb::Reject)).await;
    assert!(
        matches!(other, Err(DashboardError::Conflict(_))),
        "{other:?}"
    );
    let missing = src.act("demo", "other", &approve(Verb::Approve)).await;
    assert!(
        matches!(missing, Err(DashboardError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn two_clicks_at_once_in_the_demo_give_one_outcome() {
    let path = waiting_state("race");
    let src = Arc::new(LocalSource::new(&path, DemoFeed::default(), "ada"));
    let (yes, no) = (approve(Verb::Approve), approve(Verb::Reject));
    let (a, b) = tokio::join!(
        src.act("demo", "podinfo", &yes),
        src.act("demo", "podinfo", &no),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let st = StateStore::new(&path).load().unwrap().status;
    assert_eq!(st.approvals.len(), 1);
}

#[tokio::test]
async fn pause_writes_the_spec_and_the_change_is_streamed() {
    let path = waiting_state("pause");
    let feed = DemoFeed::default();
    feed.record("Warning", "CheckFailed", "errors 3% > 1%");
    let src = LocalSource::new(&path, feed, "ada");
    let mut changes = src.changes();
    // The stream starts from the state as it is now.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let out = src
        .act("demo", "podinfo", &DecisionRequest::new(Verb::Pause))
        .await
        .unwrap();
    assert!(out.changed);
    assert!(StateStore::new(&path).load().unwrap().spec.suspend);
    let change = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
    let change = change
        .expect("a change within 5 s")
        .expect("stream open")
        .unwrap();
    assert_eq!(
        (change.namespace.as_str(), change.name.as_str()),
        ("demo", "podinfo")
    );
    let events = src.events("demo", "podinfo").await.unwrap();
    assert_eq!(events[0].reason, "CheckFailed");
}
