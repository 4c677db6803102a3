//! What a template's provider may reach and what comes back into the status (issue
//! 13): no redirects, no response bodies, only allowed addresses. Loopback only.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{header::LOCATION, StatusCode};
use chrono::{TimeZone, Utc};
use k8s_openapi::ByteString;

use super::*;
use crate::crd::{PrometheusSecretRef, ProviderSpec};
use crate::gates::testrecv;
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{AllowedAddresses, MetricSources, PrometheusSources};

fn at() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn bearer(address: &str) -> (ProviderSpec, ProviderCredentials) {
    let sref = PrometheusSecretRef {
        name: "prom".into(),
        bearer_token_key: Some("token".into()),
        ..Default::default()
    };
    let data = BTreeMap::from([("token".to_string(), ByteString(b"s3cr3t".to_vec()))]);
    let creds = ProviderCredentials::from_secret_data(&sref, &data).unwrap();
    let spec = ProviderSpec {
        prometheus: Some(PrometheusProviderSpec {
            address: address.into(),
            secret_ref: Some(sref),
            ..Default::default()
        }),
        ..Default::default()
    };
    (spec, creds)
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_credential_goes_nowhere_else() {
    let mut target = testrecv::start(vec![]).await;
    for status in [301u16, 302, 307, 308] {
        let location = target.url("/api/v1/query");
        let redirector = axum::Router::new().fallback(move || {
            let location = location.clone();
            async move {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [(LOCATION, location)],
                )
            }
        });
        let addr = testrecv::serve(redirector).await;
        let (spec, creds) = bearer(&format!("http://{addr}"));
        let sources = PrometheusSources::new(None, Duration::from_secs(2));
        let src = sources.source(Some(&spec), Some(&creds)).unwrap();
        let e = src.query_scalar("up", at()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("HTTP {status}")), "{text}");
        assert!(text.contains("redirects are not followed"), "{text}");
        assert!(!text.contains(&target.addr.to_string()), "{text}");
    }
    // Nothing reached the redirect target: not the query, not the token.
    let nothing = tokio::time::timeout(Duration::from_millis(300), target.rx.recv()).await;
    assert!(nothing.is_err(), "the redirect was followed: {nothing:?}");
}

#[tokio::test]
async fn a_provider_error_body_never_reaches_the_error() {
    let fake = FakePrometheus::start().await;
    let secret_page = "<html>root:x:0:0:root:/root:/bin/bash internal</html>";
    fake.on("bad", Reply::text(502, secret_page));
    fake.on("ok-status", Reply::text(200, secret_page));
    fake.on("not-prom-json", Reply::json(200, r#"{"token": "hunter2"}"#));
    fake.on("err-json", Reply::json(500, r#"{"password": "hunter2"}"#));
    let long = format!("line one\u{1b}[31m\u{7}\nline two {}", "x".repeat(5000));
    let envelope = serde_json::json!({"status": "error", "errorType": "bad_data", "error": long});
    fake.on("prom-error", Reply::json(400, envelope.to_string()));
    let src = PrometheusSource::new(&PrometheusConfig::new(
        fake.address.clone(),
        Duration::from_secs(2),
    ))
    .unwrap();

    let e = src.query_scalar("bad", at()).await.unwrap_err();
    assert_eq!(
        e,
        MetricError::Unreachable("HTTP 502 Bad Gateway from the provider, body not shown".into())
    );
    for q in ["ok-status", "not-prom-json"] {
        let e = src.query_scalar(q, at()).await.unwrap_err().to_string();
        assert!(
            e.contains("HTTP 200 OK without a Prometheus API response (body not shown)"),
            "{e}"
        );
    }
    let e = src.query_scalar("err-json", at()).await.unwrap_err();
    assert_eq!(
        e,
        MetricError::Unreachable(
            "HTTP 500 Internal Server Error from the provider, body not shown".into()
        )
    );
    for q in ["bad", "ok-status", "not-prom-json", "err-json"] {
        let e = src.query_scalar(q, at()).await.unwrap_err().to_string();
        assert!(!e.contains("root:") && !e.contains("hunter2"), "{e}");
    }
    // Prometheus's own error fields are shown: bounded, without control characters.
    let MetricError::BadQuery(m) = src.query_scalar("prom-error", at()).await.unwrap_err() else {
        panic!("not a bad query");
    };
    assert!(m.starts_with("line one [31m line two xxx"), "{m}");
    assert!(!m.chars().any(char::is_control), "{m:?}");
    assert!(m.chars().count() < 260, "{} chars", m.chars().count());
}

#[tokio::test]
async fn an_address_outside_the_allow_list_is_refused_before_anything_is_sent() {
    let fake = FakePrometheus::start().await;
    fake.on("up", Reply::vector(1_800_000_000, &[("{}", "1")]));
    let allowed = AllowedAddresses::parse("http://prometheus.monitoring:9090").unwrap();
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2))
        .with_allowed(allowed);
    // An address of the template's choosing: refused, whoever asks.
    let elsewhere = fake.address.replace("127.0.0.1", "localhost");
    let (spec, creds) = bearer(&elsewhere);
    let e = sources.check_provider(Some(&spec)).unwrap_err();
    assert_eq!(e.category(), "config");
    assert!(e.to_string().contains("is not among the addresses"), "{e}");
    let refused = sources.source(Some(&spec), Some(&creds)).err().unwrap();
    assert_eq!(refused, e);
    assert!(fake.seen().is_empty());
    // The controller's own Prometheus is always allowed, with or without a template's
    // provider settings.
    let (own, creds) = bearer(&fake.address);
    assert_eq!(sources.check_provider(Some(&own)), Ok(()));
    let src = sources.source(Some(&own), Some(&creds)).unwrap();
    assert_eq!(src.query_scalar("up", at()).await, Ok(1.0));
    let src = sources.source(None, None).unwrap();
    assert_eq!(src.query_scalar("up", at()).await, Ok(1.0));
    assert_eq!(fake.seen().len(), 2);
}
