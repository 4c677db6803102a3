use serde_json::Value;

use super::schema::assert_valid;
use super::*;
use crate::crd::RequestMatch;
use crate::testing::fixture;
use crate::traffic::{RouterError, SmiRouter, TrafficRouter};

const TS: &str = "/apis/split.smi-spec.io/v1alpha2/namespaces/shop/trafficsplits";
const AV: &str = "split.smi-spec.io/v1alpha2";

async fn set(t: &RouteTarget, existing: Option<&Value>, weight: i32) -> Value {
    let (client, mock) = start(vec![
        get(TS, "podinfo", existing),
        apply(TS, "podinfo", AV, "TrafficSplit"),
    ]);
    SmiRouter::new(client).set_weight(t, weight).await.unwrap();
    let body = applied(&mock.finish(), 1);
    assert_valid(&body);
    body
}

async fn observe(t: &RouteTarget, held: Option<&Value>) -> Option<i32> {
    let (client, mock) = start(vec![get(TS, "podinfo", held)]);
    let w = SmiRouter::new(client).observed_weight(t).await.unwrap();
    mock.finish();
    w
}

#[tokio::test]
async fn steps_match_what_a_real_server_accepted() {
    let t = target();
    let mut held = None;
    assert_eq!(observe(&t, None).await, None);
    for w in [0, 10, 60, 100, 0] {
        let body = set(&t, held.as_ref(), w).await;
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], owner().uid);
        if w == 10 {
            assert_eq!(
                body["spec"],
                fixture("16-trafficsplit-create")["request"]["body"]["spec"]
            );
        }
        let b = &body["spec"]["backends"];
        assert_eq!(
            (b[0]["weight"].as_i64(), b[1]["weight"].as_i64()),
            (Some(i64::from(100 - w)), Some(i64::from(w)))
        );
        held = Some(merged(held.as_ref(), &body));
        assert_eq!(observe(&t, held.as_ref()).await, Some(w));
    }
    let (client, mock) = start(vec![
        get(TS, "podinfo", held.as_ref()),
        delete(TS, "podinfo"),
    ]);
    SmiRouter::new(client).finalize(&t).await.unwrap();
    mock.finish();
}

#[tokio::test]
async fn ab_is_refused_before_any_call() {
    let mut t = target();
    t.routing.matches = vec![RequestMatch {
        header: Some("x".into()),
        exact: Some("y".into()),
        ..Default::default()
    }];
    let (client, mock) = start(vec![]);
    let e = SmiRouter::new(client).set_weight(&t, 10).await.unwrap_err();
    mock.finish();
    assert!(matches!(e, RouterError::Config(_)));
    assert!(
        e.to_string().contains("A/B matching (spec.routing.match)")
            && e.to_string().contains("router smi"),
        "{e}"
    );
}

#[tokio::test]
async fn a_foreign_split_is_not_clobbered() {
    let foreign = fixture("16-trafficsplit-create")["response"]["body"].clone();
    let (client, mock) = start(vec![get(TS, "podinfo", Some(&foreign))]);
    let e = SmiRouter::new(client)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(e.to_string().contains("not created by serin"), "{e}");
    // ...nor deleted on finalize.
    let (client, mock) = start(vec![get(TS, "podinfo", Some(&foreign))]);
    SmiRouter::new(client).finalize(&target()).await.unwrap();
    mock.finish();
}

#[tokio::test]
async fn rejection_by_the_server_is_a_clear_config_error() {
    let body = crate::testing::status_body(
        422,
        "Invalid",
        "TrafficSplit.split.smi-spec.io \"podinfo\" is invalid: spec.backends[0].weight: Invalid value",
    );
    let (client, mock) = start(vec![
        get(TS, "podinfo", None),
        crate::testing::expect("PATCH", apply_path(TS, "podinfo"), 422, body),
    ]);
    let e = SmiRouter::new(client)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert_eq!(e.category(), "config");
    assert!(
        e.to_string().contains("rejected TrafficSplit shop/podinfo")
            && e.to_string().contains("weight"),
        "{e}"
    );
}
