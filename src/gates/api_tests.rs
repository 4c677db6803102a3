use std::sync::Mutex;

use axum::body::Body;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::gates::auth::KubeAuthenticator;
use crate::gates::ratelimit::RateLimit;
use crate::gates::record::tests::canary_json;
use crate::testing::{expect, fixture_response, not_found, Exchange, MockApi};

const TOKENREVIEW: &str = "/apis/authentication.k8s.io/v1/tokenreviews?";
const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews?";
const CANARY: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo";

fn fx(method: &'static str, path: &str, name: &str) -> Exchange {
    let (status, body) = fixture_response(name);
    expect(method, path, status, body)
}

fn state(client: Client, limit: RateLimit) -> ApiState {
    state_for(client, limit, &[])
}

/// With the TokenReview asking for `audiences`.
fn state_for(client: Client, limit: RateLimit, audiences: &[&str]) -> ApiState {
    let audiences = audiences.iter().map(|a| a.to_string()).collect();
    ApiState {
        auth: Arc::new(KubeAuthenticator::new(client.clone(), audiences)),
        client,
        limiter: Arc::new(RateLimiter::new(limit)),
    }
}

async fn call(
    router: Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const APPROVE: &str = "/api/v1/namespaces/shop/canaries/podinfo/approve";

#[tokio::test]
async fn approve_with_valid_token_and_rbac_records_approval() {
    let waiting = canary_json("WaitingApproval", Some("beforePromotion"));
    let (client, mock) = MockApi::start(vec![
        fx("POST", TOKENREVIEW, "17-tokenreview-valid"),
        fx("POST", SAR, "20-subjectaccessreview-allowed"),
        expect("GET", CANARY, 200, waiting.clone()),
        expect(
            "PATCH",
            format!("{CANARY}/status?&fieldManager=serin-approver"),
            200,
            waiting,
        ),
    ]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], true);
    let log = mock.finish();
    assert_eq!(log[0].body.as_ref().unwrap()["spec"]["token"], "tok");
    let sar = &log[1].body.as_ref().unwrap()["spec"];
    assert_eq!(sar["user"], "system:serviceaccount:shop:release-bot");
    // Exactly the right to approve this Canary: a virtual subresource, not the status.
    assert_eq!(
        sar["resourceAttributes"],
        serde_json::json!({"namespace": "shop", "name": "podinfo", "verb": "create",
            "group": "serin.dev", "resource": "canaries", "subresource": "approve"})
    );
    // The token's extra (here its credential id) is judged too, not dropped.
    assert_eq!(
        sar["extra"],
        serde_json::json!({"authentication.kubernetes.io/credential-id":
            ["JTI=3d619fe6-f8ca-42b4-90b5-c5b56c6cc72c"]})
    );
    assert_eq!(sar["uid"], "93ae445c-9871-477a-88dd-182d2d8b6c5d");
    let rec = &log[3].body.as_ref().unwrap()["status"]["approvals"][0];
    assert_eq!(rec["by"], "system:serviceaccount:shop:release-bot");
    assert_eq!(rec["via"], "api");
}

#[tokio::test]
async fn missing_token_is_401_without_calling_the_cluster() {
    let (client, mock) = MockApi::start(vec![]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        None,
        "",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthenticated");
    assert!(body["message"].as_str().unwrap().contains("Bearer"));
    mock.finish();
}

#[tokio::test]
async fn invalid_token_is_401() {
    // The real server answers 201 for an invalid token; the verdict is in the body.
    let (client, mock) = MockApi::start(vec![fx("POST", TOKENREVIEW, "18-tokenreview-invalid")]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("not-a-real-token"),
        "",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthenticated");
    mock.finish();
}

#[tokio::test]
async fn denied_by_rbac_is_403_and_writes_nothing() {
    let (client, mock) = MockApi::start(vec![
        fx("POST", TOKENREVIEW, "17-tokenreview-valid"),
        fx("POST", SAR, "19-subjectaccessreview-denied"),
    ]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "forbidden");
    assert!(body["message"].as_str().unwrap().contains("release-bot"));
    mock.finish();
}

#[tokio::test]
async fn no_pending_gate_is_409() {
    let (client, mock) = MockApi::start(vec![
        fx("POST", TOKENREVIEW, "17-tokenreview-valid"),
        fx("POST", SAR, "20-subjectaccessreview-allowed"),
        expect("GET", CANARY, 200, canary_json("Progressing", None)),
    ]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "conflict");
    mock.finish();
}

#[tokio::test]
async fn unknown_canary_is_404() {
    let (client, mock) = MockApi::start(vec![
        fx("POST", TOKENREVIEW, "17-tokenreview-valid"),
        fx("POST", SAR, "20-subjectaccessreview-allowed"),
        expect(
            "GET",
            CANARY,
            404,
            not_found("canaries", "serin.dev", "podinfo"),
        ),
    ]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    mock.finish();
}

#[tokio::test]
async fn malformed_body_is_422() {
    let (client, mock) = MockApi::start(vec![
        fx("POST", TOKENREVIEW, "17-tokenreview-valid"),
        fx("POST", SAR, "20-subjectaccessreview-allowed"),
    ]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("tok"),
        r#"{"gate":"beforeRollout"}"#,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid");
    mock.finish();
}

#[tokio::test]
async fn every_action_is_authorized_on_its_own_virtual_subresource() {
    for (action, sub) in [
        ("approve", "approve"),
        ("reject", "approve"),
        ("abort", "abort"),
        ("retry", "retry"),
        ("pause", "pause"),
        ("resume", "pause"),
        ("override", "override"),
    ] {
        let (client, mock) = MockApi::start(vec![
            fx("POST", TOKENREVIEW, "17-tokenreview-valid"),
            fx("POST", SAR, "19-subjectaccessreview-denied"),
        ]);
        let (status, body) = call(
            api_router(state(client, RateLimit::default())),
            "POST",
            &format!("/api/v1/namespaces/shop/canaries/podinfo/{action}"),
            Some("tok"),
            "",
        )
        .await;
        assert_eq!(status, 403, "{action}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("create canaries/{sub}.serin.dev")),
            "{body}"
        );
        let log = mock.finish();
        let attrs = &log[1].body.as_ref().unwrap()["spec"]["resourceAttributes"];
        assert_eq!(
            (&attrs["verb"], &attrs["resource"], &attrs["subresource"]),
            (&json!("create"), &json!("canaries"), &json!(sub)),
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    // A valid token, but the API server reports it good for its own audience only
    // (an ordinary service-account token): not one issued for serin.
    let (client, mock) = MockApi::start(vec![fx("POST", TOKENREVIEW, "17-tokenreview-valid")]);
    let (status, body) = call(
        api_router(state_for(client, RateLimit::default(), &["serin"])),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthenticated");
    let log = mock.finish();
    // The review asked for serin's audience; no SubjectAccessReview, nothing written.
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].body.as_ref().unwrap()["spec"]["audiences"],
        json!(["serin"])
    );
}

#[tokio::test]
async fn a_token_for_serins_audience_is_admitted() {
    let (code, mut review) = fixture_response("17-tokenreview-valid");
    review["status"]["audiences"] = json!(["serin"]);
    let (client, mock) = MockApi::start(vec![
        expect("POST", TOKENREVIEW, code, review),
        fx("POST", SAR, "19-subjectaccessreview-denied"),
    ]);
    let (status, _) = call(
        api_router(state_for(client, RateLimit::default(), &["serin"])),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    // Past authentication: RBAC (denied here) decides.
    assert_eq!(status, 403);
    mock.finish();
}

#[test]
fn an_answer_without_audiences_does_not_count_for_ours() {
    let (_, body) = fixture_response("17-tokenreview-valid");
    let mut review: k8s_openapi::api::authentication::v1::TokenReview =
        serde_json::from_value(body).unwrap();
    let ours = ["serin".to_string()];
    assert!(crate::gates::reviewed_user(&review, &ours).is_none());
    // Without audiences configured the API server's own answer is enough.
    assert!(crate::gates::reviewed_user(&review, &[]).is_some());
    review.status.as_mut().unwrap().audiences = None;
    assert!(crate::gates::reviewed_user(&review, &ours).is_none());
    review.status.as_mut().unwrap().audiences = Some(vec!["serin".into()]);
    let user = crate::gates::reviewed_user(&review, &ours).unwrap();
    assert_eq!(user.username, "system:serviceaccount:shop:release-bot");
    assert_eq!(user.extra.len(), 1);
}

#[tokio::test]
async fn rate_limited_per_client_is_429() {
    let (client, mock) = MockApi::start(vec![]);
    let router = api_router(state(
        client,
        RateLimit {
            burst: 2,
            per_second: 0.01,
        },
    ));
    let mut codes = vec![];
    for _ in 0..3 {
        codes.push(call(router.clone(), "POST", APPROVE, None, "").await.0);
    }
    assert_eq!(codes, vec![401, 401, 429]);
    mock.finish();
}

/// A fake authenticator that lets everyone in and records the checks it was asked.
struct AllowAll(Mutex<Vec<ResourceCheck>>);

#[async_trait::async_trait]
impl Authenticator for AllowAll {
    async fn authenticate(&self, _token: &str) -> Result<Option<UserInfo>, GateError> {
        Ok(Some(UserInfo {
            username: "u".into(),
            ..Default::default()
        }))
    }
    async fn authorize(&self, _user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError> {
        self.0.lock().unwrap().push(check.clone());
        Ok(false)
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let doc = crate::gates::openapi_document();
    let paths = doc["paths"].as_object().unwrap();
    // GET, every verb, release, and the document itself.
    assert_eq!(paths.len(), 1 + Verb::ALL.len() + 1 + 1);
    assert!(paths["/api/v1/namespaces/{ns}/canaries/{name}/release"]["post"].is_object());
    for verb in Verb::ALL {
        let p = format!(
            "/api/v1/namespaces/{{ns}}/canaries/{{name}}/{}",
            verb.as_str()
        );
        assert!(
            paths[&p]["post"].is_object(),
            "{p} missing from the document"
        );
    }
    let (client, _mock) = MockApi::start(vec![]);
    let auth = Arc::new(AllowAll(Mutex::new(vec![])));
    let router = api_router(ApiState {
        client,
        auth: auth.clone(),
        limiter: Arc::new(RateLimiter::new(RateLimit {
            burst: 100,
            per_second: 1.0,
        })),
    });
    for (path, ops) in paths {
        let uri = path.replace("{ns}", "shop").replace("{name}", "podinfo");
        for method in ops.as_object().unwrap().keys() {
            let (status, _) =
                call(router.clone(), &method.to_uppercase(), &uri, Some("t"), "").await;
            // The fake denies everything: a served API route answers 403, never 404/405.
            let want = if path == "/openapi.json" { 200 } else { 403 };
            assert_eq!(status, want, "{method} {uri}");
        }
    }
    let checks = auth.0.lock().unwrap().clone();
    assert_eq!(checks.len(), 1 + Verb::ALL.len() + 1);
    // `release` has its own route and check, not the `{action}` one.
    assert!(checks.contains(&ResourceCheck::for_release("shop", "podinfo")));
    let (status, _) = call(
        router,
        "POST",
        "/api/v1/namespaces/shop/canaries/podinfo/explode",
        Some("t"),
        "",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn review_failure_is_503_not_403() {
    // The controller's own ServiceAccount may not create TokenReviews.
    let forbidden = crate::testing::status_body(
        403,
        "Forbidden",
        "tokenreviews.authentication.k8s.io is forbidden",
    );
    let (client, mock) = MockApi::start(vec![expect("POST", TOKENREVIEW, 403, forbidden)]);
    let (status, body) = call(
        api_router(state(client, RateLimit::default())),
        "POST",
        APPROVE,
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "unavailable");
    mock.finish();
}

#[test]
fn an_override_body_needs_a_reason_and_takes_a_duration() {
    let d = decision_of(Verb::Override, br#"{"reason": "INC-42", "for": "90m"}"#).unwrap();
    let o = d.emergency.unwrap();
    assert_eq!(o.reason, "INC-42");
    assert_eq!(o.duration, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(
        decision_of(Verb::Override, br#"{"reason": "INC-42"}"#)
            .unwrap()
            .emergency
            .unwrap()
            .duration,
        None
    );
    for (verb, body, want) in [
        (Verb::Override, &b""[..], "needs a reason"),
        (Verb::Override, br#"{"for": "2h"}"#, "for needs a reason"),
        (
            Verb::Override,
            br#"{"reason": "x", "for": "soon"}"#,
            "not a duration",
        ),
        (Verb::Approve, br#"{"reason": "x"}"#, "override only"),
        (
            Verb::Override,
            br#"{"reason": "x", "gate": "beforeRollout", "revision": "r", "step": 0}"#,
            "approve and reject only",
        ),
    ] {
        let e = decision_of(verb, body).unwrap_err();
        assert!(
            e.message().contains(want),
            "{}: {}",
            verb.as_str(),
            e.message()
        );
    }
}
