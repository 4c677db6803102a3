use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::gates::{
    api_router, serve_api, ApiState, ApiTransport, GateRef, KubeAuthenticator, RateLimit,
    RateLimiter, TlsFiles,
};
use crate::testing::{expect, fixture_response, Exchange, MockApi};

const TOKENREVIEW: &str = "/apis/authentication.k8s.io/v1/tokenreviews?";
const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews?";
const CANARY: &str = "/apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo";

fn tls(name: &str) -> (TlsFiles, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let files = TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    let ca = std::fs::read(dir.join(format!("{name}-ca.crt"))).unwrap();
    (files, ca)
}

fn token_for_serin() -> Exchange {
    let (code, mut review) = fixture_response("17-tokenreview-valid");
    review["status"]["audiences"] = json!(["serin"]);
    expect("POST", TOKENREVIEW, code, review)
}

/// The controller's API over TLS on loopback, answering from `script`.
async fn controller_api(script: Vec<Exchange>) -> (String, Vec<u8>, MockApi) {
    let (client, mock) = MockApi::start(script);
    let app = api_router(ApiState {
        auth: Arc::new(KubeAuthenticator::new(client.clone(), vec!["serin".into()])),
        client,
        limiter: Arc::new(RateLimiter::new(RateLimit::default())),
    });
    let (files, ca) = tls("a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_api(listener, app, ApiTransport::Tls(files)));
    (format!("https://localhost:{port}/"), ca, mock)
}

#[tokio::test]
async fn cli_approves_through_the_controller_api() {
    let waiting = crate::gates::test_canary_json("WaitingApproval", Some("beforePromotion"));
    let (base, ca, mock) = controller_api(vec![
        token_for_serin(),
        {
            let (code, body) = fixture_response("20-subjectaccessreview-allowed");
            expect("POST", SAR, code, body)
        },
        expect("GET", CANARY, 200, waiting.clone()),
        expect(
            "PATCH",
            format!("{CANARY}/status?&fieldManager=serin-approver"),
            200,
            waiting,
        ),
    ])
    .await;
    let http = api_client(Some(&ca), Duration::from_secs(10)).unwrap();
    let decision = DecisionRequest {
        expect: Some(GateRef {
            gate: crate::crd::GateKind::BeforePromotion,
            revision: "rev2".into(),
            step: 2,
        }),
        ..DecisionRequest::new(Verb::Approve)
    };
    let out = decide(&http, &base, "tok-serin", "shop", "podinfo", &decision)
        .await
        .unwrap();
    assert!(out.changed);
    assert!(
        out.message
            .ends_with("approved by system:serviceaccount:shop:release-bot"),
        "{}",
        out.message
    );
    let log = mock.finish();
    assert_eq!(log[0].body.as_ref().unwrap()["spec"]["token"], "tok-serin");
    assert_eq!(
        log[1].body.as_ref().unwrap()["spec"]["resourceAttributes"]["subresource"],
        "approve"
    );
    // Recorded as the token's user, by the controller.
    let rec = &log[3].body.as_ref().unwrap()["status"]["approvals"][0];
    assert_eq!(rec["by"], "system:serviceaccount:shop:release-bot");
    assert_eq!(rec["via"], "api");
}

#[tokio::test]
async fn cli_reports_the_api_refusal() {
    let (base, ca, mock) = controller_api(vec![token_for_serin(), {
        let (code, body) = fixture_response("19-subjectaccessreview-denied");
        expect("POST", SAR, code, body)
    }])
    .await;
    let http = api_client(Some(&ca), Duration::from_secs(10)).unwrap();
    let err = decide(
        &http,
        &base,
        "tok",
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Abort),
    )
    .await
    .unwrap_err();
    match &err {
        DecideError::Refused {
            status,
            error,
            message,
        } => {
            assert_eq!((*status, error.as_str()), (403, "forbidden"));
            assert!(
                message.contains("create canaries/abort.serin.dev"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    mock.finish();
    // A server whose certificate the CLI does not trust is not talked to.
    let (_, other_ca) = tls("b");
    let http = api_client(Some(&other_ca), Duration::from_secs(10)).unwrap();
    let err = decide(
        &http,
        &base,
        "tok",
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Abort),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DecideError::Transport { .. }), "{err:?}");
}

#[test]
fn action_urls() {
    assert_eq!(
        action_url("https://serin:8081/", "shop", "podinfo", Verb::Resume),
        "https://serin:8081/api/v1/namespaces/shop/canaries/podinfo/resume"
    );
    assert!(api_client(Some(b"not pem"), Duration::from_secs(1)).is_err());
}
