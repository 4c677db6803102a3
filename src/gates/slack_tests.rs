use std::collections::BTreeMap;

use chrono::Utc;

use super::*;
use crate::gates::record::approver_field_manager;
use crate::gates::record::tests::canary_json;
use crate::gates::sign::hmac_sha256_hex;
use crate::gates::testrecv;
use crate::testing::{expect, Exchange, MockApi};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CANARY: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo";

fn gate() -> GateRef {
    GateRef {
        gate: GateKind::BeforePromotion,
        revision: "rev2".into(),
        step: 2,
    }
}

fn form_body(user: &str, action: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone"},
        "response_url": response_url,
        "actions": [{"action_id": action, "block_id": "serin_gate", "type": "button",
                     "value": button_value("shop", "podinfo", &gate())}]
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

fn sign(secret: &str, ts: i64, body: &str) -> String {
    format!(
        "v0={}",
        hmac_sha256_hex(
            secret.as_bytes(),
            &[b"v0:", ts.to_string().as_bytes(), b":", body.as_bytes()]
        )
    )
}

struct Harness {
    url: String,
    recv: testrecv::Receiver,
    mock: MockApi,
}

async fn harness(script: Vec<Exchange>) -> Harness {
    let (client, mock) = MockApi::start(script);
    let recv = testrecv::start(vec![]).await;
    let mut state = SlackState::new(
        client,
        SecretString::new(SECRET),
        BTreeMap::from([("U123".to_string(), "alice".to_string())]),
    );
    state.response_url_prefix = format!("http://{}/", recv.addr);
    let addr = testrecv::serve(slack_router(state)).await;
    Harness {
        url: format!("http://{addr}/slack/interactions"),
        recv,
        mock,
    }
}

async fn post(url: &str, ts: &str, sig: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn valid_click_approves_and_replaces_message() {
    let fm = approver_field_manager("beforePromotion/rev2/2");
    let waiting = canary_json("WaitingApproval", Some("beforePromotion"));
    let mut h = harness(vec![
        expect("GET", CANARY, 200, waiting.clone()),
        expect(
            "PATCH",
            format!("{CANARY}/status?&fieldManager={fm}"),
            200,
            waiting,
        ),
    ])
    .await;
    let body = form_body("U123", ACTION_APPROVE, &h.recv.url("/resp/1"));
    let ts = Utc::now().timestamp();
    let status = post(&h.url, &ts.to_string(), &sign(SECRET, ts, &body), body).await;
    assert_eq!(status, 200);
    let update = h.recv.next(5).await;
    assert_eq!(update.path, "/resp/1");
    let update = update.json();
    assert_eq!(update["replace_original"], true);
    assert!(
        update["text"]
            .as_str()
            .unwrap()
            .contains("approved by alice"),
        "{update}"
    );
    let log = h.mock.finish();
    let rec = &log[1].body.as_ref().unwrap()["status"]["approvals"][0];
    assert_eq!(rec["via"], "slack");
    assert_eq!(rec["by"], "alice (slack:U123)");
    assert_eq!(rec["approved"], true);
}

async fn assert_refused(ts: i64, sig: String, body: String) {
    let mut h = harness(vec![]).await;
    let status = post(&h.url, &ts.to_string(), &sig, body).await;
    assert_eq!(status, 401);
    // Nothing decided, nothing posted back.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), h.recv.rx.recv())
            .await
            .is_err()
    );
    h.mock.finish();
}

#[tokio::test]
async fn forged_signature_is_refused() {
    let body = form_body("U123", ACTION_APPROVE, "http://127.0.0.1:1/x");
    let ts = Utc::now().timestamp();
    assert_refused(ts, sign("not-the-secret", ts, &body), body).await;
}

#[tokio::test]
async fn replayed_old_request_is_refused() {
    let body = form_body("U123", ACTION_APPROVE, "http://127.0.0.1:1/x");
    // Correctly signed, but six minutes old.
    let ts = Utc::now().timestamp() - 360;
    assert_refused(ts, sign(SECRET, ts, &body), body).await;
}

#[tokio::test]
async fn tampered_body_is_refused() {
    let body = form_body("U123", ACTION_REJECT, "http://127.0.0.1:1/x");
    let ts = Utc::now().timestamp();
    let sig = sign(SECRET, ts, &body);
    let tampered = form_body("U123", ACTION_APPROVE, "http://127.0.0.1:1/x");
    assert_refused(ts, sig, tampered).await;
}

#[tokio::test]
async fn unknown_user_gets_ephemeral_refusal() {
    let mut h = harness(vec![]).await;
    let body = form_body("U999", ACTION_APPROVE, &h.recv.url("/resp/2"));
    let ts = Utc::now().timestamp();
    assert_eq!(
        post(&h.url, &ts.to_string(), &sign(SECRET, ts, &body), body).await,
        200
    );
    let reply = h.recv.next(5).await.json();
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(reply["replace_original"], false);
    assert!(reply["text"].as_str().unwrap().contains("not allowed"));
    h.mock.finish();
}

#[test]
fn signature_window_and_format() {
    let body = b"payload=x";
    let good = |ts: i64| sign(SECRET, ts, "payload=x");
    let now = 1_700_000_000;
    assert_eq!(
        verify_slack_signature(SECRET.as_bytes(), &now.to_string(), &good(now), body, now),
        Ok(())
    );
    // Inside the window on both sides; outside by one second refused.
    for (ts, ok) in [
        (now - 300, true),
        (now + 300, true),
        (now - 301, false),
        (now + 301, false),
    ] {
        let r = verify_slack_signature(SECRET.as_bytes(), &ts.to_string(), &good(ts), body, now);
        assert_eq!(r.is_ok(), ok, "ts offset {}", ts - now);
    }
    let sig = good(now);
    assert_eq!(
        verify_slack_signature(
            SECRET.as_bytes(),
            &now.to_string(),
            &sig.replace("v0=", "v1="),
            body,
            now
        ),
        Err(SlackError::BadSignature)
    );
    assert_eq!(
        verify_slack_signature(SECRET.as_bytes(), "soon", &sig, body, now),
        Err(SlackError::BadTimestamp)
    );
    // A signature for another timestamp does not verify.
    assert_eq!(
        verify_slack_signature(SECRET.as_bytes(), &(now + 1).to_string(), &sig, body, now),
        Err(SlackError::BadSignature)
    );
}

#[test]
fn button_value_round_trips() {
    let v = button_value("shop", "podinfo", &gate());
    assert_eq!(
        parse_button_value(&v).unwrap(),
        ("shop".into(), "podinfo".into(), gate())
    );
    assert!(parse_button_value("shop/podinfo").is_err());
    let block = approval_blocks("shop", "podinfo", &gate());
    assert_eq!(block["elements"][0]["action_id"], ACTION_APPROVE);
    assert_eq!(block["elements"][1]["value"], v);
}

#[test]
fn allow_list_parses_and_rejects() {
    let m = parse_slack_allow_list(" U1=alice , U2=Bob Smith,").unwrap();
    assert_eq!(m.get("U1").map(String::as_str), Some("alice"));
    assert_eq!(m.get("U2").map(String::as_str), Some("Bob Smith"));
    assert!(parse_slack_allow_list("U1").is_err());
    assert!(parse_slack_allow_list("=alice").is_err());
    assert!(parse_slack_allow_list("U 1=alice").is_err());
    assert!(parse_slack_allow_list("").unwrap().is_empty());
}
