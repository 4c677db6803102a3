use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use serde_json::{json, Value};

use super::{canary_json, World, ALICE, TOKEN};
use crate::cli::decide::decide;
use crate::crd::Canary;
use crate::dashboard::view::EventRow;
use crate::dashboard::{Change, DashboardError, Listing, Source};
use crate::gates::{DecisionRequest, GateRef, Outcome, Verb};

fn status_of(w: &World, name: &str) -> Value {
    w.server
        .get("serin.dev/v1alpha1", "canaries", Some("shop"), name)
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

/// The record with its time, which differs between any two clicks, taken out.
fn timeless(mut records: Value) -> Value {
    for r in records.as_array_mut().into_iter().flatten() {
        r.as_object_mut().unwrap().remove("at");
    }
    records
}

#[tokio::test]
async fn each_action_writes_exactly_the_record_the_cli_writes() {
    let w = World::start(true).await;
    let http = reqwest::Client::new();
    let passage = json!({"gate": "beforePromotion", "revision": "rev2", "step": 2});
    let cases = [
        (
            Verb::Approve,
            "WaitingApproval",
            Some("beforePromotion"),
            Some(passage.clone()),
        ),
        (
            Verb::Reject,
            "WaitingApproval",
            Some("beforePromotion"),
            Some(passage),
        ),
        (Verb::Abort, "Progressing", None, None),
        (Verb::Retry, "Failed", None, None),
    ];
    for (verb, phase, gate, body) in cases {
        let v = verb.as_str();
        w.server
            .insert(canary_json(&format!("dash-{v}"), phase, gate));
        w.server
            .insert(canary_json(&format!("cli-{v}"), phase, gate));
        let (status, outcome) = w
            .page
            .act(&format!("shop/dash-{v}/{v}"), json!({"passage": body}))
            .await;
        assert_eq!(status, 200, "{v}: {outcome}");
        assert_eq!(outcome["changed"], true, "{v}: {outcome}");
        let decision = DecisionRequest {
            expect: body.map(|b| serde_json::from_value::<GateRef>(b).unwrap()),
            ..DecisionRequest::new(verb)
        };
        let cli = decide(
            &http,
            &w.api_base,
            TOKEN,
            "shop",
            &format!("cli-{v}"),
            &decision,
        )
        .await
        .unwrap();
        assert!(cli.changed);
        let (dash, by_cli) = (
            status_of(&w, &format!("dash-{v}")),
            status_of(&w, &format!("cli-{v}")),
        );
        for list in ["approvals", "commands"] {
            assert_eq!(
                timeless(dash[list].clone()),
                timeless(by_cli[list].clone()),
                "{v} {list}"
            );
        }
        let written = if matches!(verb, Verb::Approve | Verb::Reject) {
            &dash["approvals"][0]
        } else {
            &dash["commands"][0]
        };
        assert_eq!(written["by"], ALICE, "{v}: {dash}");
        assert_eq!(written["via"], "api", "{v}: {dash}");
    }
    // Pause sets spec.suspend, as the CLI's does.
    w.server
        .insert(canary_json("dash-pause", "Progressing", None));
    let (status, _) = w.page.act("shop/dash-pause/pause", json!({})).await;
    assert_eq!(status, 200);
    let c = w
        .server
        .get("serin.dev/v1alpha1", "canaries", Some("shop"), "dash-pause")
        .unwrap();
    assert_eq!(c["spec"]["suspend"], true);
    // The approval API was asked about the action's own subresource each time.
    let asked: Vec<String> = w
        .auth
        .checks
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.describe())
        .collect();
    assert!(
        asked.iter().any(|c| c.contains("canaries/approve")),
        "{asked:?}"
    );
    assert!(
        asked.iter().any(|c| c.contains("canaries/pause")),
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_refusal_of_the_approval_api_reaches_the_page_and_writes_nothing() {
    let w = World::start(false).await;
    w.server.insert(canary_json(
        "podinfo",
        "WaitingApproval",
        Some("beforePromotion"),
    ));
    let passage = json!({"gate": "beforePromotion", "revision": "rev2", "step": 2});
    let (status, body) = w
        .page
        .act("shop/podinfo/approve", json!({"passage": passage}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("canaries/approve"),
        "{body}"
    );
    assert!(status_of(&w, "podinfo").get("approvals").is_none());
}

#[tokio::test]
async fn a_stale_page_cannot_decide_a_later_gate_and_two_clicks_give_one_outcome() {
    let w = World::start(true).await;
    w.server.insert(canary_json(
        "podinfo",
        "WaitingApproval",
        Some("beforePromotion"),
    ));
    let stale = json!({"gate": "beforeTrafficIncrease", "revision": "rev2", "step": 1});
    let (status, body) = w
        .page
        .act("shop/podinfo/approve", json!({"passage": stale}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("stale"),
        "{body}"
    );
    // Approve and reject at once: one is recorded, the other is refused as a conflict.
    let passage = json!({"gate": "beforePromotion", "revision": "rev2", "step": 2});
    let (a, b) = tokio::join!(
        w.page
            .act("shop/podinfo/approve", json!({"passage": passage.clone()})),
        w.page
            .act("shop/podinfo/reject", json!({"passage": passage})),
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{a:?} {b:?}");
    assert_eq!(
        status_of(&w, "podinfo")["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn actions_need_the_pages_token_and_origin() {
    let w = World::start(true).await;
    w.server.insert(canary_json("podinfo", "Progressing", None));
    let url = format!("{}api/canaries/shop/podinfo/abort", w.page.url);
    let token = w.page.token().await;
    let send = |t: Option<&str>, origin: Option<&str>| {
        let mut r = w.page.http.post(&url).json(&json!({}));
        if let Some(t) = t {
            r = r.header(crate::dashboard::CSRF_HEADER, t);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(send(None, None).await.unwrap().status(), 403);
    let wrong = "0".repeat(64);
    assert_eq!(send(Some(&wrong), None).await.unwrap().status(), 403);
    let evil = send(Some(&token), Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    // A form post (no JSON) is refused even with the token.
    let form = w
        .page
        .http
        .post(&url)
        .header(crate::dashboard::CSRF_HEADER, &token)
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 422);
    assert!(status_of(&w, "podinfo").get("commands").is_none());
    let own = w.page.url.trim_end_matches('/').to_string();
    assert_eq!(send(Some(&token), Some(&own)).await.unwrap().status(), 200);
    // Approving needs the passage; the override is the CLI's (it needs a reason).
    let (status, _) = w.page.act("shop/podinfo/approve", json!({})).await;
    assert_eq!(status, 422);
    let (status, _) = w.page.act("shop/podinfo/override", json!({})).await;
    assert_eq!(status, 422);
}

/// Read the page's change stream until `want` shows up (or 10 s pass).
async fn stream_until(page: &super::Page, want: &str) -> String {
    let mut resp = page
        .http
        .get(format!("{}api/changes", page.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(want) {
                return;
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn the_canaries_watched_reach_the_page_as_server_sent_events() {
    let w = World::start(true).await;
    w.server.insert(canary_json("podinfo", "Progressing", None));
    // The fake serves a watch's list, then holds the watch open without events.
    w.server.set_hold_watches(true);
    let seen = stream_until(&w.page, "\"name\":\"podinfo\"").await;
    assert!(
        seen.contains("event: change\ndata: {\"namespace\":\"shop\",\"name\":\"podinfo\"}"),
        "{seen}"
    );
}

/// A source whose changes the test sends.
struct Pushed(
    std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Result<Change, DashboardError>>>>,
);

#[async_trait::async_trait]
impl Source for Pushed {
    fn describe(&self) -> String {
        "pushed".into()
    }
    async fn list(&self) -> Result<Listing, DashboardError> {
        Ok(Listing::default())
    }
    async fn get(&self, ns: &str, name: &str) -> Result<Canary, DashboardError> {
        Err(DashboardError::NotFound(format!("{ns}/{name}")))
    }
    async fn events(&self, _: &str, _: &str) -> Result<Vec<EventRow>, DashboardError> {
        Ok(Vec::new())
    }
    async fn act(&self, _: &str, _: &str, _: &DecisionRequest) -> Result<Outcome, DashboardError> {
        Err(DashboardError::Unavailable("read-only".into()))
    }
    fn changes(&self) -> BoxStream<'static, Result<Change, DashboardError>> {
        let rx = self.0.lock().unwrap().take().expect("one stream");
        tokio_stream_of(rx)
    }
}

fn tokio_stream_of(
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Change, DashboardError>>,
) -> BoxStream<'static, Result<Change, DashboardError>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

#[tokio::test]
async fn each_change_and_each_watch_failure_is_one_event_on_the_page() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let page = super::Page::open(Arc::new(Pushed(std::sync::Mutex::new(Some(rx))))).await;
    tx.send(Ok(Change {
        namespace: "shop".into(),
        name: "cart".into(),
    }))
    .unwrap();
    tx.send(Err(DashboardError::Unavailable(
        "watch: connection reset".into(),
    )))
    .unwrap();
    let seen = stream_until(&page, "connection reset").await;
    assert!(
        seen.contains("event: change\ndata: {\"namespace\":\"shop\",\"name\":\"cart\"}\n\n"),
        "{seen}"
    );
    assert!(
        seen.contains("event: trouble\ndata: unavailable: watch: connection reset\n\n"),
        "{seen}"
    );
}
