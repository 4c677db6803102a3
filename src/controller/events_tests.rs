//! The recorder against the scripted API server: which requests each publish makes.

use chrono::TimeZone;
use serde_json::{json, Value};

use super::*;
use crate::testing::{expect, not_found, Exchange, MockApi};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn canary() -> ObjectReference {
    ObjectReference {
        api_version: Some("serin.dev/v1alpha1".into()),
        kind: Some("Canary".into()),
        name: Some("podinfo".into()),
        namespace: Some("shop".into()),
        uid: Some("7c3a".into()),
        ..ObjectReference::default()
    }
}

fn note(reason: &'static str, message: &str) -> Note {
    Note {
        type_: NoteType::Normal,
        reason: crate::rollout::EventReason::parse(reason).expect("a reason serin sends"),
        message: message.into(),
    }
}

/// A recorder on `client` whose clock the test moves.
fn recorder(client: Client) -> (KubeEvents, Arc<Mutex<DateTime<Utc>>>) {
    let now = Arc::new(Mutex::new(start()));
    let clock = now.clone();
    let events = KubeEvents::new(client, Some("serin-0".into()))
        .with_clock(Arc::new(move || *clock.lock().unwrap()));
    (events, now)
}

fn advance(now: &Mutex<DateTime<Utc>>, d: chrono::Duration) {
    *now.lock().unwrap() += d;
}

/// The name the recorder gives its `seq`-th Event at time `t`.
fn name_at(t: DateTime<Utc>, seq: u64) -> String {
    format!("podinfo.{:x}-{seq:x}", t.timestamp_nanos_opt().unwrap())
}

/// What the server answers to a create or patch of Event `name`.
fn event(name: &str) -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
           "metadata": {"name": name, "namespace": "shop"}})
}

fn post(name: &str) -> Exchange {
    expect("POST", format!("{EVENTS}?"), 201, event(name))
}

fn patch(name: &str) -> Exchange {
    expect("PATCH", format!("{EVENTS}/{name}?"), 200, event(name))
}

#[tokio::test]
async fn different_messages_with_one_reason_are_two_events() {
    let t = start();
    let (client, mock) = MockApi::start(vec![post(&name_at(t, 0)), post(&name_at(t, 1))]);
    let (events, _) = recorder(client);
    events
        .publish(
            &canary(),
            "Succeeded",
            &note("Promoted", "revision a1b2 promoted"),
        )
        .await;
    events
        .publish(
            &canary(),
            "Succeeded",
            &note("Promoted", "revision b2c3 promoted"),
        )
        .await;
    let log = mock.finish();
    let notes: Vec<&Value> = log
        .iter()
        .map(|r| &r.body.as_ref().unwrap()["note"])
        .collect();
    assert_eq!(
        notes,
        vec!["revision a1b2 promoted", "revision b2c3 promoted"]
    );
    assert_eq!(
        log[0].body.as_ref().unwrap(),
        &json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name_at(t, 0), "namespace": "shop"},
            "action": "Succeeded",
            "reason": "Promoted",
            "note": "revision a1b2 promoted",
            "type": "Normal",
            "eventTime": "2025-03-01T12:00:00.000000Z",
            "regarding": {"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                          "name": "podinfo", "namespace": "shop", "uid": "7c3a"},
            "reportingController": "serin.dev/controller",
            "reportingInstance": "serin-0",
        }),
        "an isolated Event has no series"
    );
}

#[tokio::test]
async fn same_message_within_the_window_patches_the_series() {
    let t = start();
    let name = name_at(t, 0);
    let (client, mock) = MockApi::start(vec![post(&name), patch(&name), patch(&name)]);
    let (events, now) = recorder(client);
    let n = note("CheckError", "metrics unavailable, holding at step 1");
    events.publish(&canary(), "Progressing", &n).await;
    advance(&now, chrono::Duration::minutes(5));
    events.publish(&canary(), "Progressing", &n).await;
    advance(&now, chrono::Duration::minutes(5));
    events.publish(&canary(), "Progressing", &n).await;
    let log = mock.finish();
    assert_eq!(
        log[1].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        log[1].body.as_ref().unwrap(),
        &json!({"series": {"count": 2, "lastObservedTime": "2025-03-01T12:05:00.000000Z"}})
    );
    // The window runs from the last occurrence, so a steady repeat stays one Event.
    assert_eq!(
        log[2].body.as_ref().unwrap(),
        &json!({"series": {"count": 3, "lastObservedTime": "2025-03-01T12:10:00.000000Z"}})
    );
}

#[tokio::test]
async fn same_message_after_the_window_is_a_new_event() {
    let t = start();
    let later = t + chrono::Duration::minutes(7);
    let (client, mock) = MockApi::start(vec![post(&name_at(t, 0)), post(&name_at(later, 1))]);
    let (events, now) = recorder(client);
    let n = note("CheckError", "metrics unavailable, holding at step 1");
    events.publish(&canary(), "Progressing", &n).await;
    advance(&now, chrono::Duration::minutes(7));
    events.publish(&canary(), "Progressing", &n).await;
    let log = mock.finish();
    assert!(log[1].body.as_ref().unwrap().get("series").is_none());
    assert_eq!(
        log[1].body.as_ref().unwrap()["eventTime"],
        "2025-03-01T12:07:00.000000Z"
    );
}

#[tokio::test]
async fn an_expired_event_is_created_again() {
    let t = start();
    let first = name_at(t, 0);
    let second = name_at(t + chrono::Duration::minutes(1), 1);
    let (client, mock) = MockApi::start(vec![
        post(&first),
        expect(
            "PATCH",
            format!("{EVENTS}/{first}?"),
            404,
            not_found("events", "events.k8s.io", &first),
        ),
        post(&second),
        // The new Event is the one repeats extend from now on.
        patch(&second),
    ]);
    let (events, now) = recorder(client);
    let n = note("Paused", "release paused (spec.suspend)");
    events.publish(&canary(), "Progressing", &n).await;
    advance(&now, chrono::Duration::minutes(1));
    events.publish(&canary(), "Progressing", &n).await;
    advance(&now, chrono::Duration::minutes(1));
    events.publish(&canary(), "Progressing", &n).await;
    let log = mock.finish();
    assert_eq!(log[3].body.as_ref().unwrap()["series"]["count"], 2);
}

#[tokio::test]
async fn a_failed_create_is_not_remembered() {
    let t = start();
    let (client, mock) = MockApi::start(vec![
        expect(
            "POST",
            format!("{EVENTS}?"),
            500,
            crate::testing::status_body(500, "InternalError", "etcd timeout"),
        ),
        post(&name_at(t, 1)),
    ]);
    let (events, _) = recorder(client);
    let n = note("Promoted", "revision a1b2 promoted");
    events.publish(&canary(), "Succeeded", &n).await;
    events.publish(&canary(), "Succeeded", &n).await;
    mock.finish();
}

#[tokio::test]
async fn long_notes_are_cut_to_the_servers_limit() {
    let t = start();
    let (client, mock) = MockApi::start(vec![post(&name_at(t, 0))]);
    let (events, _) = recorder(client);
    // Multi-byte characters, so a byte cut would land inside one.
    let long = format!("rolled back: {}", "é".repeat(900));
    events
        .publish(&canary(), "Failed", &note("RolledBack", &long))
        .await;
    let log = mock.finish();
    let sent = log[0].body.as_ref().unwrap()["note"].as_str().unwrap();
    assert!(sent.len() <= NOTE_MAX_BYTES, "{} bytes", sent.len());
    assert!(sent.ends_with('…'));
    assert!(long.starts_with(sent.trim_end_matches('…')));
}

#[test]
fn bound_note_keeps_short_notes() {
    assert_eq!(bound_note("abc"), "abc");
    let exact = "x".repeat(NOTE_MAX_BYTES);
    assert_eq!(bound_note(&exact), exact);
}

#[tokio::test]
async fn the_cache_stays_bounded() {
    // Answers every create and patch; the test checks the sequence.
    let (client, mock) = MockApi::serve(|r| match r.method.as_str() {
        "POST" => (201, r.body.clone().unwrap()),
        _ => {
            let name = r.path.rsplit('/').next().unwrap().trim_end_matches('?');
            (200, event(name))
        }
    });
    let (events, now) = recorder(client);
    let events = events.with_cache_limit(8);
    for i in 0..20 {
        advance(&now, chrono::Duration::seconds(1));
        let n = note("StepAdvanced", &format!("step {i}"));
        events.publish(&canary(), "Progressing", &n).await;
    }
    assert_eq!(events.cached(), 8);
    mock.drain();
    // The newest is still aggregated; the oldest was evicted and starts a new Event.
    events
        .publish(&canary(), "Progressing", &note("StepAdvanced", "step 19"))
        .await;
    events
        .publish(&canary(), "Progressing", &note("StepAdvanced", "step 0"))
        .await;
    let methods: Vec<String> = mock.drain().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["PATCH", "POST"]);
    assert_eq!(events.cached(), 8);
    // Past the window every entry is dropped at the next publish.
    advance(&now, ISOLATION_WINDOW);
    events
        .publish(&canary(), "Progressing", &note("StepAdvanced", "step 20"))
        .await;
    assert_eq!(events.cached(), 1);
}

#[tokio::test]
async fn event_names_are_unique_and_valid() {
    let (client, _mock) = MockApi::start(vec![]);
    let events = KubeEvents::new(client, None);
    let t = start();
    let a = events.event_name(&canary(), t);
    let b = events.event_name(&canary(), t);
    assert_ne!(a, b, "same clock reading, still distinct");
    let mut long = canary();
    long.name = Some(format!("{}-", "a".repeat(260)));
    let n = events.event_name(&long, t);
    assert!(n.len() <= 253, "{}", n.len());
    assert!(!n.contains("-."), "{n}");
}

#[tokio::test]
async fn objects_without_uid_are_keyed_by_namespace_kind_name() {
    let t = start();
    let (client, mock) = MockApi::start(vec![post(&name_at(t, 0)), post(&name_at(t, 1))]);
    let (events, _) = recorder(client);
    let mut a = canary();
    a.uid = None;
    let mut b = a.clone();
    b.kind = Some("Deployment".into());
    let n = note("Promoted", "revision a1b2 promoted");
    events.publish(&a, "Succeeded", &n).await;
    events.publish(&b, "Succeeded", &n).await;
    mock.finish();
}

#[tokio::test]
async fn a_steady_repeat_is_sent_on_its_first_repeat_and_then_on_a_heartbeat() {
    let t = start();
    let name = name_at(t, 0);
    let (client, mock) =
        MockApi::start(vec![post(&name), patch(&name), patch(&name), patch(&name)]);
    let (events, now) = recorder(client);
    let n = note("CheckError", "metrics unavailable, holding at step 1");
    // Every 10 s for 4 minutes: the Event, its series at the first repeat, and nothing
    // more while the series is younger than the heartbeat.
    for _ in 0..25 {
        events.publish(&canary(), "Progressing", &n).await;
        advance(&now, chrono::Duration::seconds(10));
    }
    assert_eq!(mock.requests().len(), 2);
    // The heartbeat sends what was counted meanwhile, at its last occurrence.
    events.flush().await;
    // Nothing unsent: a second flush sends nothing.
    events.flush().await;
    // Repeats go on: the next one after the heartbeat's age is sent with it.
    for _ in 0..31 {
        events.publish(&canary(), "Progressing", &n).await;
        advance(&now, chrono::Duration::seconds(10));
    }
    let log = mock.finish();
    let series = |i: usize| log[i].body.as_ref().unwrap()["series"].clone();
    assert_eq!(series(1)["count"], 2);
    assert_eq!(
        series(2),
        json!({"count": 25, "lastObservedTime": "2025-03-01T12:04:00.000000Z"})
    );
    assert_eq!(series(3)["count"], 56);
}

#[tokio::test]
async fn a_series_that_ends_unsent_is_sent_by_the_next_flush() {
    let t = start();
    let (first, later) = (
        name_at(t, 0),
        name_at(t + chrono::Duration::seconds(450), 1),
    );
    let (client, mock) = MockApi::start(vec![
        post(&first),
        patch(&first),
        post(&later),
        patch(&first),
    ]);
    let (events, now) = recorder(client);
    let n = note("CheckError", "metrics unavailable, holding at step 1");
    for _ in 0..3 {
        events.publish(&canary(), "Progressing", &n).await;
        advance(&now, chrono::Duration::seconds(10));
    }
    // Past the window another note: the first series ends with its third occurrence
    // unsent, and the flush sends it.
    advance(&now, chrono::Duration::minutes(7));
    events
        .publish(&canary(), "Progressing", &note("Paused", "release paused"))
        .await;
    events.flush().await;
    let log = mock.finish();
    assert_eq!(
        log[3].body.as_ref().unwrap()["series"],
        json!({"count": 3, "lastObservedTime": "2025-03-01T12:00:20.000000Z"})
    );
}
