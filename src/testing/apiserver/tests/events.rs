//! events.k8s.io Events: created by POST, counted by PATCH, limited in size.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use super::*;
use crate::controller::events::{EventSink, KubeEvents};
use crate::rollout::{Note, NoteType};
use crate::testing::fixture;

fn regarding() -> ObjectReference {
    ObjectReference {
        api_version: Some("serin.dev/v1alpha1".into()),
        kind: Some("Canary".into()),
        name: Some("podinfo".into()),
        namespace: Some(NS.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_repeated_event_is_one_event_with_a_series_count() {
    let s = FakeApiServer::new();
    let sink = KubeEvents::new(s.client(), Some("serin-0".into()));
    let held = Note {
        type_: NoteType::Warning,
        reason: crate::rollout::EventReason::CheckInconclusive,
        message: "no data for error-rate".into(),
    };
    sink.publish(&regarding(), "Analyse", &held).await;
    sink.publish(&regarding(), "Analyse", &held).await;
    sink.publish(&regarding(), "Analyse", &held).await;
    // The third occurrence is counted locally until the series' heartbeat sends it.
    assert_eq!(s.events_for(NS, "Canary", "podinfo")[0].count, 2);
    sink.flush().await;
    let promoted = Note {
        type_: NoteType::Normal,
        reason: crate::rollout::EventReason::Promoted,
        message: "error-rate 0.2% <= 1%".into(),
    };
    sink.publish(&regarding(), "Promote", &promoted).await;
    let verbs: Vec<String> = s
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.verb, r.status))
        .collect();
    assert_eq!(
        verbs,
        ["create 201", "patch 200", "patch 200", "create 201"]
    );
    let evs = s.events_for(NS, "Canary", "podinfo");
    let seen: Vec<(&str, &str, &str, i64)> = evs
        .iter()
        .map(|e| {
            (
                e.type_.as_str(),
                e.reason.as_str(),
                e.note.as_str(),
                e.count,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("Warning", "CheckInconclusive", "no data for error-rate", 3),
            ("Normal", "Promoted", "error-rate 0.2% <= 1%", 1)
        ]
    );
    assert_eq!(evs[0].action, "Analyse");
    assert!(s.events_for(NS, "Deployment", "podinfo").is_empty());
}

#[tokio::test]
async fn a_note_over_1024_bytes_is_rejected() {
    let s = FakeApiServer::new();
    let api: Api<Event> = Api::namespaced(s.client(), NS);
    let mut body = fixture("23-event-create")["request"]["body"].clone();
    body["metadata"] = json!({"name": "podinfo.1", "namespace": NS});
    body["note"] = json!("x".repeat(1025));
    let ev: Event = serde_json::from_value(body.clone()).unwrap();
    let (code, msg) = api_error(api.create(&PostParams::default(), &ev).await);
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Event \"podinfo.1\" is invalid: note: Too long: may not be more than 1024 bytes"
    );
    assert!(
        last_response(&s)["details"].get("group").is_none(),
        "Events validate as the core type"
    );
    body["note"] = json!("x".repeat(1024));
    let ev: Event = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &ev).await.unwrap();
}

#[tokio::test]
async fn a_generate_name_ending_in_a_dot_is_fixture_23() {
    let s = FakeApiServer::new();
    let f = fixture("23-event-create-bad-generatename-422");
    let (code, body) = raw(
        &s,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        "application/json",
        Some(f["request"]["body"].clone()),
    )
    .await;
    assert_eq!(code, 422);
    let real = &f["response"]["body"];
    // The generated suffix is random on a real server; everything else matches.
    let name = body["details"]["name"].as_str().unwrap().to_string();
    let expected = real.to_string().replace("podinfo.kh2mh", &name);
    assert_eq!(body, serde_json::from_str::<Value>(&expected).unwrap());
    // The good one (fixture 23) is stored with its generated name.
    let good = fixture("23-event-create");
    let (code, body) = raw(
        &s,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        "application/json",
        Some(good["request"]["body"].clone()),
    )
    .await;
    assert_eq!(code, 201);
    assert!(body["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("podinfo-"));
    assert_eq!(
        body["metadata"]["managedFields"][0]["fieldsV1"],
        good["response"]["body"]["metadata"]["managedFields"][0]["fieldsV1"]
    );
    assert_eq!(
        s.events_for(NS, "Deployment", "podinfo")[0].reason,
        "Promoted"
    );
}
