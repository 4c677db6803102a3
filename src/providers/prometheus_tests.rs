use std::collections::BTreeMap;

use chrono::TimeZone;
use k8s_openapi::ByteString;

use super::*;
use crate::crd::{HttpHeader, PrometheusSecretRef, ProviderSpec};
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{MetricSources, PrometheusSources, ProviderAuth};

const TS: i64 = 1_800_000_000;

fn at() -> DateTime<Utc> {
    Utc.timestamp_opt(TS, 0).unwrap()
}

fn source(fake: &FakePrometheus, timeout_ms: u64) -> PrometheusSource {
    PrometheusSource::new(&PrometheusConfig::new(
        fake.address.clone(),
        Duration::from_millis(timeout_ms),
    ))
    .unwrap()
}

#[tokio::test]
async fn instant_query_sends_query_time_and_timeout_and_reads_one_sample() {
    let fake = FakePrometheus::start().await;
    let q = r#"sum(rate(x{ns="shop"}[1m]))"#;
    fake.on(q, Reply::vector(TS, &[("{}", "0.0123")]));
    let v = source(&fake, 1500).query_scalar(q, at()).await.unwrap();
    assert_eq!(v, 0.0123);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/v1/query");
    assert_eq!(seen[0].params["query"], q);
    assert_eq!(seen[0].params["time"], TS.to_string());
    assert_eq!(seen[0].params["timeout"], "1500ms");
    assert!(seen[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn scalar_results_are_accepted() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "scalar(up)",
        Reply::json(
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[{TS},"42"]}}}}"#
            ),
        ),
    );
    assert_eq!(
        source(&fake, 1000).query_scalar("scalar(up)", at()).await,
        Ok(42.0)
    );
}

#[tokio::test]
async fn empty_nan_inf_and_several_series_are_clear_errors() {
    let fake = FakePrometheus::start().await;
    fake.on("empty", Reply::vector(TS, &[]));
    fake.on("nan", Reply::vector(TS, &[("{}", "NaN")]));
    fake.on("inf", Reply::vector(TS, &[("{}", "+Inf")]));
    fake.on(
        "many",
        Reply::vector(
            TS,
            &[
                (r#"{"pod":"web-1","code":"200"}"#, "1"),
                (r#"{"pod":"web-2","code":"200"}"#, "2"),
                (r#"{"pod":"web-3","code":"200"}"#, "3"),
            ],
        ),
    );
    let s = source(&fake, 1000);
    let empty = s.query_scalar("empty", at()).await.unwrap_err();
    assert_eq!(empty, MetricError::NoData);
    assert!(empty.to_string().contains("check that its labels match"));
    let nan = s.query_scalar("nan", at()).await.unwrap_err();
    assert!(matches!(nan, MetricError::NotFinite(v) if v.is_nan()));
    assert!(nan.to_string().contains("no requests in the interval"));
    assert!(matches!(
        s.query_scalar("inf", at()).await,
        Err(MetricError::NotFinite(v)) if v == f64::INFINITY
    ));
    let many = s.query_scalar("many", at()).await.unwrap_err();
    assert_eq!(
        many,
        MetricError::MultipleSeries {
            count: 3,
            example: r#"{code="200",pod="web-1"}"#.into()
        }
    );
    assert!(many.to_string().contains("aggregate it, e.g. sum(...)"));
    assert_eq!(many.category(), "multiple_series");
    // A vector query keeps every finite series and drops NaN ones.
    fake.on(
        "per-pod",
        Reply::vector(
            TS,
            &[
                (r#"{"pod":"a"}"#, "1.5"),
                (r#"{"pod":"b"}"#, "NaN"),
                (r#"{"pod":"c"}"#, "2"),
            ],
        ),
    );
    assert_eq!(s.query_vector("per-pod", at()).await, Ok(vec![1.5, 2.0]));
    assert_eq!(
        s.query_vector("empty", at()).await,
        Err(MetricError::NoData)
    );
}

/// A subquery answered at an instant is a matrix: every point is a sample.
#[tokio::test]
async fn a_subquery_gives_one_sample_per_step() {
    let fake = FakePrometheus::start().await;
    let points = vec![
        (TS - 60, "0.2".to_string()),
        (TS - 30, "NaN".to_string()),
        (TS, "0.3".to_string()),
    ];
    fake.on("p99[1m:30s]", Reply::matrix(&[("{}", points)]));
    let s = source(&fake, 1000);
    assert_eq!(
        s.query_vector("p99[1m:30s]", at()).await,
        Ok(vec![0.2, 0.3])
    );
    // A scalar still needs one value.
    assert_eq!(
        s.query_scalar("p99[1m:30s]", at())
            .await
            .unwrap_err()
            .category(),
        "bad_query"
    );
}

/// Thanos, Cortex and Mimir answer `success` with `warnings` when a store is down: the
/// value may lack series, so it is no evidence (the first warning is quoted, bounded).
/// `infos` are annotations of a complete answer.
#[tokio::test]
async fn warnings_make_an_answer_partial_and_infos_do_not() {
    let fake = FakePrometheus::start().await;
    let ok = r#"{"resultType":"vector","result":[{"metric":{},"value":[1800000000,"0.5"]}]}"#;
    let warning = format!("store unavailable: 10.0.0.7:10901 {}", "x".repeat(400));
    fake.on(
        "warned",
        Reply::json(
            200,
            format!(
                r#"{{"status":"success","data":{ok},"warnings":["{warning}","second"],"infos":["metric might not be a counter"]}}"#
            ),
        ),
    );
    fake.on(
        "informed",
        Reply::json(
            200,
            format!(
                r#"{{"status":"success","data":{ok},"warnings":[],"infos":["metric might not be a counter"]}}"#
            ),
        ),
    );
    let s = source(&fake, 1000);
    let e = s.query_scalar("warned", at()).await.unwrap_err();
    let MetricError::Partial(quoted) = &e else {
        panic!("{e:?}")
    };
    assert!(
        quoted.starts_with("store unavailable: 10.0.0.7:10901 x"),
        "{quoted}"
    );
    assert!(quoted.chars().count() <= 200, "{quoted}");
    assert!(e.is_no_evidence());
    assert_eq!(e.category(), "partial");
    assert!(
        e.to_string().starts_with(
            "partial answer, not counted as evidence: the provider warned \"store unavailable"
        ),
        "{e}"
    );
    assert!(matches!(
        s.query_vector("warned", at()).await,
        Err(MetricError::Partial(_))
    ));
    assert_eq!(s.query_scalar("informed", at()).await, Ok(0.5));
}

#[tokio::test]
async fn prometheus_errors_map_to_what_to_change() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "sum(rate(x[1m])",
        Reply::json(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:16: parse error: unclosed left parenthesis"}"#,
        ),
    );
    fake.on(
        "heavy",
        Reply::json(
            503,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
        ),
    );
    fake.on(
        "exec",
        Reply::json(
            422,
            r#"{"status":"error","errorType":"execution","error":"vector cannot contain metrics with the same labelset"}"#,
        ),
    );
    fake.on("starting", Reply::text(503, "Service Unavailable"));
    fake.on("login", Reply::text(200, "<html>Sign in</html>"));
    fake.on("denied", Reply::text(401, "Unauthorized"));
    let s = source(&fake, 2000);

    let bad = s.query_scalar("sum(rate(x[1m])", at()).await.unwrap_err();
    assert_eq!(
        bad,
        MetricError::BadQuery(
            "invalid parameter \"query\": 1:16: parse error: unclosed left parenthesis (errorType bad_data)".into()
        )
    );
    assert_eq!(bad.category(), "bad_query");
    assert_eq!(
        s.query_scalar("heavy", at()).await,
        Err(MetricError::Timeout(Duration::from_secs(2)))
    );
    assert!(
        matches!(s.query_scalar("exec", at()).await, Err(MetricError::BadQuery(m)) if m.contains("same labelset"))
    );
    let unavailable = s.query_scalar("starting", at()).await.unwrap_err();
    assert_eq!(
        unavailable,
        MetricError::Unreachable(
            "HTTP 503 Service Unavailable from the provider, body not shown".into()
        )
    );
    let login = s.query_scalar("login", at()).await.unwrap_err();
    assert!(
        matches!(&login, MetricError::Unreachable(m) if m.contains("is the address the Prometheus server itself?")),
        "{login}"
    );
    let denied = s.query_scalar("denied", at()).await.unwrap_err();
    assert_eq!(denied, MetricError::Auth("HTTP 401 Unauthorized".into()));
    assert!(denied
        .to_string()
        .contains("check the provider's secretRef"));
}

#[tokio::test]
async fn a_slow_answer_times_out_within_the_configured_timeout() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "slow",
        Reply::vector(TS, &[("{}", "1")]).delayed(Duration::from_secs(5)),
    );
    let started = std::time::Instant::now();
    let r = source(&fake, 300).query_scalar("slow", at()).await;
    assert_eq!(r, Err(MetricError::Timeout(Duration::from_millis(300))));
    // Bounded: well below the server's 5s delay.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn unreachable_address_says_so() {
    // Bind then drop a listener: the port is (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = PrometheusSource::new(&PrometheusConfig::new(
        format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
    ))
    .unwrap();
    let e = s.query_scalar("up", at()).await.unwrap_err();
    assert_eq!(e.category(), "unreachable", "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn range_query_returns_one_series_points() {
    let fake = FakePrometheus::start().await;
    let points = vec![
        (TS - 120, "0.01".to_string()),
        (TS - 60, "NaN".into()),
        (TS, "0.03".into()),
    ];
    fake.on_range("r", Reply::matrix(&[(r#"{"pod":"a"}"#, points)]));
    fake.on_range(
        "r2",
        Reply::matrix(&[
            (r#"{"pod":"a"}"#, vec![(TS, "1".into())]),
            (r#"{"pod":"b"}"#, vec![(TS, "1".into())]),
        ]),
    );
    fake.on_range("r0", Reply::matrix(&[]));
    let s = source(&fake, 1000);
    let start = at() - chrono::Duration::seconds(120);
    let got = s
        .query_range("r", start, at(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (start, 0.01));
    assert!(got[1].1.is_nan());
    assert_eq!(got[2], (at(), 0.03));
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/api/v1/query_range");
    assert_eq!(seen[0].params["start"], (TS - 120).to_string());
    assert_eq!(seen[0].params["end"], TS.to_string());
    assert_eq!(seen[0].params["step"], "60");
    assert_eq!(seen[0].params["timeout"], "1000ms");
    assert!(matches!(
        s.query_range("r2", start, at(), Duration::from_secs(60))
            .await,
        Err(MetricError::MultipleSeries { count: 2, .. })
    ));
    assert_eq!(
        s.query_range("r0", start, at(), Duration::from_secs(60))
            .await,
        Err(MetricError::NoData)
    );
    assert!(matches!(
        s.query_range("r", at(), start, Duration::from_secs(60))
            .await,
        Err(MetricError::Config(_))
    ));
}

fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

fn provider(address: &str, secret_ref: Option<PrometheusSecretRef>) -> ProviderSpec {
    ProviderSpec {
        prometheus: Some(PrometheusProviderSpec {
            address: address.into(),
            timeout: Some("2s".into()),
            secret_ref,
            headers: vec![HttpHeader {
                name: "X-Scope-OrgID".into(),
                value: "team-a".into(),
            }],
            insecure_skip_verify: false,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn bearer_token_and_headers_from_the_secret_are_sent() {
    let fake = FakePrometheus::start().await;
    fake.on("up", Reply::vector(TS, &[("{}", "1")]));
    let sref = PrometheusSecretRef {
        name: "prom".into(),
        bearer_token_key: Some("token".into()),
        ..Default::default()
    };
    let creds =
        ProviderCredentials::from_secret_data(&sref, &secret(&[("token", "s3cr3t\n")])).unwrap();
    let sources = PrometheusSources::new(None, Duration::from_secs(1));
    let spec = provider(&fake.address, Some(sref));
    let src = sources.source(Some(&spec), Some(&creds)).unwrap();
    assert_eq!(src.query_scalar("up", at()).await, Ok(1.0));
    let h = &fake.seen()[0].headers;
    assert_eq!(h["authorization"], "Bearer s3cr3t");
    assert_eq!(h["x-scope-orgid"], "team-a");
    // The same settings reuse the client; a rotated token builds a new one.
    let again = sources.source(Some(&spec), Some(&creds)).unwrap();
    assert!(Arc::ptr_eq(&src, &again));
    let rotated =
        ProviderCredentials::from_secret_data(spec_ref(&spec), &secret(&[("token", "new")]))
            .unwrap();
    let other = sources.source(Some(&spec), Some(&rotated)).unwrap();
    assert!(!Arc::ptr_eq(&src, &other));
}

fn spec_ref(spec: &ProviderSpec) -> &PrometheusSecretRef {
    spec.prometheus
        .as_ref()
        .unwrap()
        .secret_ref
        .as_ref()
        .unwrap()
}

#[tokio::test]
async fn basic_auth_is_base64_of_user_colon_password() {
    let fake = FakePrometheus::start().await;
    fake.on("up", Reply::vector(TS, &[("{}", "1")]));
    let sref = PrometheusSecretRef {
        name: "prom".into(),
        username_key: Some("user".into()),
        password_key: Some("pass".into()),
        ..Default::default()
    };
    let creds = ProviderCredentials::from_secret_data(
        &sref,
        &secret(&[("user", "Aladdin"), ("pass", "open sesame")]),
    )
    .unwrap();
    let sources = PrometheusSources::new(None, Duration::from_secs(1));
    let src = sources
        .source(Some(&provider(&fake.address, Some(sref))), Some(&creds))
        .unwrap();
    src.query_scalar("up", at()).await.unwrap();
    // RFC 7617's example credentials.
    assert_eq!(
        fake.seen()[0].headers["authorization"],
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}

#[test]
fn secret_errors_name_the_key_and_never_the_values() {
    let sref = PrometheusSecretRef {
        name: "prom".into(),
        bearer_token_key: Some("token".into()),
        ..Default::default()
    };
    let e =
        ProviderCredentials::from_secret_data(&sref, &secret(&[("tok", "hunter2")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "provider configuration: Secret \"prom\" has no key \"token\" (named by secretRef.bearerTokenKey)"
    );
    assert!(!e.to_string().contains("tok\""), "{e}");
    let half = PrometheusSecretRef {
        name: "prom".into(),
        username_key: Some("u".into()),
        ..Default::default()
    };
    assert!(
        ProviderCredentials::from_secret_data(&half, &secret(&[("u", "x")]))
            .unwrap_err()
            .to_string()
            .contains("basic auth needs both")
    );
    let both = PrometheusSecretRef {
        name: "prom".into(),
        bearer_token_key: Some("t".into()),
        username_key: Some("u".into()),
        password_key: Some("p".into()),
        ..Default::default()
    };
    assert!(ProviderCredentials::from_secret_data(&both, &secret(&[]))
        .unwrap_err()
        .to_string()
        .contains("accepted: one of them"));
}

#[test]
fn debug_output_redacts_credentials_and_header_values() {
    let creds = ProviderCredentials {
        auth: ProviderAuth::Basic {
            username: "svc".into(),
            password: "hunter2".into(),
        },
        ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
    };
    let config = PrometheusConfig {
        address: "http://p:9090".into(),
        timeout: Duration::from_secs(1),
        headers: vec![("X-Api-Key".into(), "topsecretkey".into())],
        insecure_skip_verify: false,
        credentials: creds.clone(),
    };
    let text = format!("{config:?} {creds:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("topsecretkey"), "{text}");
    assert!(text.contains("X-Api-Key") && text.contains("svc"), "{text}");
    let bearer = format!("{:?}", ProviderAuth::Bearer("tok-123".into()));
    assert_eq!(bearer, "Bearer(<redacted>)");
}

#[test]
fn configuration_errors_say_what_is_accepted() {
    let sources = PrometheusSources::new(None, Duration::from_secs(1));
    let e = sources.source(None, None).err().unwrap();
    assert!(e.to_string().contains("--prometheus-url"), "{e}");

    let mut spec = provider("http://p:9090", None);
    spec.prometheus.as_mut().unwrap().timeout = Some("soon".into());
    let e = sources.source(Some(&spec), None).err().unwrap();
    assert!(
        e.to_string()
            .contains("timeout \"soon\" is not a positive duration"),
        "{e}"
    );

    let spec = provider(
        "http://p:9090",
        Some(PrometheusSecretRef {
            name: "prom".into(),
            ..Default::default()
        }),
    );
    let e = sources.source(Some(&spec), None).err().unwrap();
    assert!(
        e.to_string()
            .contains("secretRef \"prom\" has not been read"),
        "{e}"
    );

    let mut spec = provider("http://p:9090", None);
    spec.prometheus.as_mut().unwrap().headers[0].name = "Bad Header".into();
    let e = sources.source(Some(&spec), None).err().unwrap();
    assert!(
        e.to_string()
            .contains("\"Bad Header\" is not a valid HTTP header name"),
        "{e}"
    );

    let e = sources
        .source(Some(&provider("not a url", None)), None)
        .err()
        .unwrap();
    assert!(e.to_string().contains("accepted: an http(s) URL"), "{e}");
}

#[test]
fn ca_bundle_must_be_pem_certificates() {
    let mut config = PrometheusConfig::new("https://p:9090", Duration::from_secs(1));
    config.credentials.ca_pem = Some(b"not a certificate".to_vec());
    let e = PrometheusSource::new(&config).unwrap_err();
    assert!(
        e.to_string().contains("does not hold PEM certificates"),
        "{e}"
    );
    config.credentials.ca_pem = Some(include_bytes!("testdata/ca.pem").to_vec());
    PrometheusSource::new(&config).unwrap();
}

#[tokio::test]
async fn prometheus_down_never_quotes_the_request_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A path prefix and a query on the address must not show either.
    let s = PrometheusSource::new(&PrometheusConfig::new(
        format!("http://127.0.0.1:{port}/prometheus"),
        Duration::from_secs(2),
    ))
    .unwrap();
    let q = format!(
        r#"sum(rate(istio_requests_total{{reporter="destination",response_code!~"5.*"}}[1m])){}"#,
        " + 0".repeat(400)
    );
    for e in [
        s.query_scalar(&q, at()).await.unwrap_err(),
        s.query_range(&q, at(), at(), Duration::from_secs(60))
            .await
            .unwrap_err(),
    ] {
        let text = e.to_string();
        assert_eq!(e.category(), "unreachable", "{text}");
        for leak in [
            "query=",
            "%7B",
            "/api/v1/",
            "/prometheus",
            "istio_requests_total",
        ] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        assert!(
            text.chars().count() <= crate::rollout::text::METRIC_REASON_MAX_CHARS,
            "{} chars: {text}",
            text.chars().count()
        );
    }
}
