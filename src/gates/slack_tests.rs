use chrono::Utc;

use super::*;
use crate::gates::auth::KubeAuthenticator;
use crate::gates::record::tests::canary_json;
use crate::gates::sign::hmac_sha256_hex;
use crate::gates::slack_identity::SlackIdentities;
use crate::gates::testrecv;
use crate::testing::{expect, fixture_response, Exchange, MockApi};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CANARY: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo";
const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews?";

fn gate() -> GateRef {
    GateRef {
        gate: GateKind::BeforePromotion,
        revision: "rev2".into(),
        step: 2,
    }
}

fn fx(method: &'static str, path: &str, name: &str) -> Exchange {
    let (status, body) = fixture_response(name);
    expect(method, path, status, body)
}

fn form_body_in(ns: &str, user: &str, action: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone"},
        "team": {"id": "T1"},
        "response_url": response_url,
        "actions": [{"action_id": action, "block_id": "serin_gate", "type": "button",
                     "value": button_value(ns, "podinfo", &gate())}]
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

fn form_body(user: &str, action: &str, response_url: &str) -> String {
    form_body_in("shop", user, action, response_url)
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

/// U123 is alice (group release-managers) in Kubernetes; nobody else is mapped. The
/// SubjectAccessReviews go to the scripted API server like every other call.
async fn harness_with(script: Vec<Exchange>, tune: impl FnOnce(&mut SlackState)) -> Harness {
    let (client, mock) = MockApi::start(script);
    let recv = testrecv::start(vec![]).await;
    let ids = SlackIdentities::parse(
        "users: [{slackUserId: U123, username: alice, groups: [release-managers]}]",
    )
    .unwrap();
    let mut state = SlackState::new(
        client.clone(),
        Arc::new(KubeAuthenticator::new(client, vec![])),
        SecretString::new(SECRET),
        IdentitySource::fixed(ids),
    );
    state.response_url_prefix = format!("http://{}/", recv.addr);
    tune(&mut state);
    let addr = testrecv::serve(slack_router(state)).await;
    Harness {
        url: format!("http://{addr}/slack/interactions"),
        recv,
        mock,
    }
}

async fn harness(script: Vec<Exchange>) -> Harness {
    harness_with(script, |_| {}).await
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

/// Post `body` signed now.
async fn post_signed(url: &str, body: String) -> u16 {
    let ts = Utc::now().timestamp();
    post(url, &ts.to_string(), &sign(SECRET, ts, &body), body).await
}

async fn nothing_more(recv: &mut testrecv::Receiver) {
    assert!(
        tokio::time::timeout(Duration::from_millis(300), recv.rx.recv())
            .await
            .is_err(),
        "an unexpected reply was posted"
    );
}

#[tokio::test]
async fn valid_click_approves_as_the_mapped_identity_and_replaces_message() {
    let waiting = canary_json("WaitingApproval", Some("beforePromotion"));
    let mut h = harness(vec![
        fx("POST", SAR, "20-subjectaccessreview-allowed"),
        expect("GET", CANARY, 200, waiting.clone()),
        expect(
            "PATCH",
            format!("{CANARY}/status?&fieldManager=serin-approver"),
            200,
            waiting,
        ),
    ])
    .await;
    let body = form_body("U123", ACTION_APPROVE, &h.recv.url("/resp/1"));
    assert_eq!(post_signed(&h.url, body).await, 200);
    let update = h.recv.next(5).await;
    assert_eq!(update.path, "/resp/1");
    let update = update.json();
    assert_eq!(update["replace_original"], true);
    assert!(
        update["text"]
            .as_str()
            .unwrap()
            .contains("approved by alice (slack:U123)"),
        "{update}"
    );
    let log = h.mock.finish();
    // The same review as the API's, for the Kubernetes identity behind the Slack user.
    let sar = &log[0].body.as_ref().unwrap()["spec"];
    assert_eq!(sar["user"], "alice");
    assert_eq!(sar["groups"], json!(["release-managers"]));
    assert_eq!(
        sar["resourceAttributes"],
        json!({"namespace": "shop", "name": "podinfo", "verb": "create",
               "group": "serin.dev", "resource": "canaries", "subresource": "approve"})
    );
    let rec = &log[2].body.as_ref().unwrap()["status"]["approvals"][0];
    assert_eq!(rec["via"], "slack");
    assert_eq!(rec["by"], "alice (slack:U123)");
    assert_eq!(rec["approved"], true);
}

#[tokio::test]
async fn slack_user_without_rights_in_the_namespace_is_refused_and_nothing_recorded() {
    // alice may approve in shop, not in bank: RBAC (the review) says no for bank.
    let mut h = harness(vec![fx("POST", SAR, "19-subjectaccessreview-denied")]).await;
    let body = form_body_in("bank", "U123", ACTION_APPROVE, &h.recv.url("/resp/bank"));
    assert_eq!(post_signed(&h.url, body).await, 200);
    let reply = h.recv.next(5).await.json();
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(reply["replace_original"], false);
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("may not approve") && text.contains("create canaries/approve.serin.dev"),
        "{text}"
    );
    let log = h.mock.finish();
    // One review, in bank; no read, no write.
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].body.as_ref().unwrap()["spec"]["resourceAttributes"]["namespace"],
        "bank"
    );
    nothing_more(&mut h.recv).await;
}

#[tokio::test]
async fn unmapped_user_gets_ephemeral_refusal() {
    let mut h = harness(vec![]).await;
    let body = form_body("U999", ACTION_APPROVE, &h.recv.url("/resp/2"));
    assert_eq!(post_signed(&h.url, body).await, 200);
    let reply = h.recv.next(5).await.json();
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(reply["replace_original"], false);
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("U999") && text.contains("not mapped"),
        "{text}"
    );
    h.mock.finish();
}

async fn assert_refused(ts: i64, sig: String, body: String) {
    let mut h = harness(vec![]).await;
    let status = post(&h.url, &ts.to_string(), &sig, body).await;
    assert_eq!(status, 401);
    // Nothing decided, nothing posted back.
    nothing_more(&mut h.recv).await;
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
async fn the_same_request_twice_is_acted_on_once() {
    let waiting = canary_json("WaitingApproval", Some("beforePromotion"));
    let mut h = harness(vec![
        fx("POST", SAR, "20-subjectaccessreview-allowed"),
        expect("GET", CANARY, 200, waiting.clone()),
        expect(
            "PATCH",
            format!("{CANARY}/status?&fieldManager=serin-approver"),
            200,
            waiting,
        ),
    ])
    .await;
    let body = form_body("U123", ACTION_REJECT, &h.recv.url("/resp/3"));
    let ts = Utc::now().timestamp();
    let sig = sign(SECRET, ts, &body);
    assert_eq!(post(&h.url, &ts.to_string(), &sig, body.clone()).await, 200);
    h.recv.next(5).await;
    // Captured and sent again within the window: same timestamp, same signature.
    assert_eq!(post(&h.url, &ts.to_string(), &sig, body).await, 401);
    nothing_more(&mut h.recv).await;
    assert_eq!(h.mock.finish().len(), 3, "one review, one read, one write");
}

#[tokio::test]
async fn slack_route_is_rate_limited_per_user() {
    let mut h = harness_with(vec![], |s| {
        s.user_limiter = Arc::new(RateLimiter::new(RateLimit {
            burst: 2,
            per_second: 0.01,
        }))
    })
    .await;
    let mut codes = vec![];
    for i in 0..3 {
        // Distinct requests (each its own signature), from one Slack user.
        let body = form_body("U999", ACTION_APPROVE, &h.recv.url(&format!("/resp/{i}")));
        codes.push(post_signed(&h.url, body).await);
    }
    assert_eq!(codes, vec![200, 200, 429]);
    h.recv.next(5).await;
    h.recv.next(5).await;
    nothing_more(&mut h.recv).await;
    h.mock.finish();
}

#[tokio::test]
async fn a_button_naming_a_malformed_canary_is_refused_without_a_review() {
    let mut h = harness(vec![]).await;
    let body = form_body_in("<!channel>", "U123", ACTION_APPROVE, &h.recv.url("/resp/4"));
    assert_eq!(post_signed(&h.url, body).await, 200);
    let reply = h.recv.next(5).await.json();
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("Malformed button"), "{text}");
    assert!(!text.contains('<'), "echoed unescaped: {text}");
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
    assert!(parse_button_value(&button_value("Shop!", "podinfo", &gate())).is_err());
    let block = approval_blocks("shop", "podinfo", &gate());
    assert_eq!(block["elements"][0]["action_id"], ACTION_APPROVE);
    assert_eq!(block["elements"][1]["value"], v);
}
