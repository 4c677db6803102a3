use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::cli::decide::api_client;
use crate::gates::{
    api_router, serve_api, ApiState, ApiTransport, Authenticator, GateError, RateLimit,
    RateLimiter, ResourceCheck, TlsFiles, UserInfo,
};
use crate::testing::apiserver::FakeApiServer;

#[test]
fn image_flags_are_container_equals_reference() {
    assert_eq!(
        parse_image_arg("app=ghcr.io/acme/app:1.2.3").unwrap(),
        ("app".to_string(), "ghcr.io/acme/app:1.2.3".to_string())
    );
    // Only the first '=' splits; a digest keeps its ':'.
    let sha = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        parse_image_arg(&format!("proxy=envoy@{sha}")).unwrap().1,
        format!("envoy@{sha}")
    );
    for bad in [
        "app",
        "=ghcr.io/a:1",
        "app=",
        "app:ghcr.io/a:1",
        "app=a=b",
        "app=acme/App",
        "app=a b",
    ] {
        let e = parse_image_arg(bad).unwrap_err();
        assert!(
            e.contains("CONTAINER=IMAGE") || e.contains("image reference"),
            "{bad}: {e}"
        );
    }
    assert!(parse_image_arg("app=acme/App")
        .unwrap_err()
        .contains("expected [registry"));
}

#[test]
fn a_request_names_each_container_once_and_is_checked_like_the_api_does() {
    let two = [
        ("app".to_string(), "a:1".to_string()),
        ("proxy".to_string(), "p:2".to_string()),
    ];
    let r = release_request(&two, Some("  CI run 7 ")).unwrap();
    assert_eq!(r.images.len(), 2);
    assert_eq!(r.reason.as_deref(), Some("CI run 7"));
    assert_eq!(release_request(&two, Some(" ")).unwrap().reason, None);
    let twice = [two[0].clone(), ("app".to_string(), "a:2".to_string())];
    let e = release_request(&twice, None).unwrap_err().to_string();
    assert!(e.contains("container app twice"), "{e}");
    assert!(release_request(&[], None).is_err());
    assert!(release_request(&two, Some(&"r".repeat(300))).is_err());
    assert_eq!(
        release_url("https://serin:8081/", "shop", "podinfo"),
        "https://serin:8081/api/v1/namespaces/shop/canaries/podinfo/release"
    );
}

/// Knows token `t`, allows everything.
struct AllowT;

#[async_trait::async_trait]
impl Authenticator for AllowT {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError> {
        Ok((token == "t").then(|| UserInfo {
            username: "system:serviceaccount:shop:ci".into(),
            ..Default::default()
        }))
    }
    async fn authorize(&self, _u: &UserInfo, _c: &ResourceCheck) -> Result<bool, GateError> {
        Ok(true)
    }
}

#[tokio::test]
async fn cli_registers_through_the_controller_api_and_reports_refusals() {
    let server = FakeApiServer::new();
    server.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    let mut canary = crate::gates::test_canary_json("Succeeded", None);
    canary["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    server.insert(canary);
    server.insert(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "podinfo"}},
                 "template": {"metadata": {"labels": {"app": "podinfo"}},
                              "spec": {"containers": [{"name": "app", "image": "podinfo:1"}]}}}
    }));
    let app = api_router(ApiState {
        client: server.client(),
        auth: Arc::new(AllowT),
        limiter: Arc::new(RateLimiter::new(RateLimit::default())),
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let files = TlsFiles {
        cert: dir.join("a.crt"),
        key: dir.join("a.key"),
    };
    let ca = std::fs::read(dir.join("a-ca.crt")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_api(listener, app, ApiTransport::Tls(files)));
    let base = format!("https://localhost:{port}");
    let http = api_client(Some(&ca), Duration::from_secs(10)).unwrap();

    let args = [parse_image_arg("app=podinfo:2").unwrap()];
    let request = release_request(&args, Some("CI run 7")).unwrap();
    let out = register(&http, &base, "t", "shop", "podinfo", &request)
        .await
        .unwrap();
    assert!(out.changed, "{out:?}");
    assert_eq!(out.deployment, "shop/podinfo");
    assert!(out.message.contains("release policies"), "{}", out.message);
    let d = server
        .get("apps/v1", "deployments", Some("shop"), "podinfo")
        .unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:2"
    );

    let again = register(&http, &base, "t", "shop", "podinfo", &request)
        .await
        .unwrap();
    assert!(!again.changed);

    let args = [parse_image_arg("worker=podinfo:2").unwrap()];
    let request = release_request(&args, None).unwrap();
    let err = register(&http, &base, "t", "shop", "podinfo", &request)
        .await
        .unwrap_err();
    match err {
        DecideError::Refused {
            status,
            error,
            message,
        } => {
            assert_eq!((status, error.as_str()), (422, "invalid"));
            assert!(message.contains("no container worker"), "{message}");
        }
        other => panic!("{other}"),
    }
    let err = register(&http, &base, "wrong", "shop", "podinfo", &request)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecideError::Refused { status: 401, .. }),
        "{err}"
    );
}
