//! Datadog's query API, answered by recorded responses over loopback HTTP. The bodies
//! follow the v1 "Query timeseries points" reference: 200 with `series[].pointlist`
//! of `[ms, value|null]`, and `{"errors": [...]}` with 400, 403 and 429.

use std::collections::BTreeMap;

use chrono::TimeZone;
use k8s_openapi::ByteString;

use super::*;
use crate::crd::{DatadogSecretRef, ProviderSpec};
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{AllowedAddresses, MetricSources, ProviderSources};

const TS: i64 = 1_800_000_000;

fn at() -> DateTime<Utc> {
    Utc.timestamp_opt(TS, 0).unwrap()
}

/// A 200 answer as Datadog writes it, one entry per `(expression, points)`.
fn ok(series: &[(&str, &str)]) -> Reply {
    let series: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, (expr, points))| {
            format!(
                r#"{{"aggr":"avg","display_name":"trace.http.request.errors","end":1800000000000,"expression":"{expr}","interval":60,"length":3,"metric":"trace.http.request.errors","pointlist":{points},"query_index":{i},"scope":"service:web","start":1799999700000,"tag_set":[],"unit":null}}"#
            )
        })
        .collect();
    Reply::json(
        200,
        format!(
            r#"{{"status":"ok","res_type":"time_series","resp_version":1,"query":"q","message":"","from_date":1799999700000,"to_date":1800000000000,"group_by":[],"series":[{}]}}"#,
            series.join(",")
        ),
    )
}

fn spec(address: &str) -> ProviderSpec {
    ProviderSpec {
        datadog: Some(DatadogProviderSpec {
            address: address.into(),
            secret_ref: DatadogSecretRef {
                name: "dd".into(),
                ..Default::default()
            },
            lookback: Some("2m".into()),
            timeout: Some("2s".into()),
        }),
        ..Default::default()
    }
}

fn keys() -> BTreeMap<String, ByteString> {
    [
        ("api-key", "dd-api-123\n"),
        ("application-key", "dd-app-456"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

async fn source(fake: &FakePrometheus) -> Arc<dyn MetricSource> {
    let spec = spec(&fake.address);
    let creds = crate::providers::registry::credential_keys(Some(&spec))
        .unwrap()
        .read(&keys())
        .unwrap();
    ProviderSources::new(None, Duration::from_secs(2))
        .source(Some(&spec), Some(&creds))
        .unwrap()
}

#[tokio::test]
async fn the_value_is_the_last_non_null_point_and_the_keys_go_in_headers() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "sum:errors{service:web}",
        ok(&[(
            "sum:errors{service:web}",
            "[[1799999880000,0.5],[1799999940000,0.25],[1800000000000,null]]",
        )]),
    );
    let s = source(&fake).await;
    assert_eq!(
        s.query_scalar("sum:errors{service:web}", at()).await,
        Ok(0.25)
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/v1/query");
    assert_eq!(seen[0].params["from"], (TS - 120).to_string());
    assert_eq!(seen[0].params["to"], TS.to_string());
    assert_eq!(seen[0].headers["dd-api-key"], "dd-api-123");
    assert_eq!(seen[0].headers["dd-application-key"], "dd-app-456");
    assert!(seen[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn no_series_only_nulls_and_several_series_are_never_a_value() {
    let fake = FakePrometheus::start().await;
    fake.on("none", ok(&[]));
    fake.on(
        "nulls",
        ok(&[("a", "[[1799999940000,null],[1800000000000,null]]")]),
    );
    fake.on("empty", ok(&[("a", "[]")]));
    fake.on(
        "two",
        ok(&[
            ("sum:e{service:web,pod:a}", "[[1800000000000,1]]"),
            ("sum:e{service:web,pod:b}", "[[1800000000000,2]]"),
        ]),
    );
    let s = source(&fake).await;
    for q in ["none", "nulls", "empty"] {
        let e = s.query_scalar(q, at()).await.unwrap_err();
        assert_eq!(e, MetricError::NoData, "{q}");
        assert!(e.is_no_evidence());
    }
    assert_eq!(
        s.query_scalar("two", at()).await,
        Err(MetricError::MultipleSeries {
            count: 2,
            example: "sum:e{service:web,pod:a}".into()
        })
    );
    // A vector takes each series' last point.
    assert_eq!(s.query_vector("two", at()).await, Ok(vec![1.0, 2.0]));
    assert_eq!(
        s.query_vector("nulls", at()).await,
        Err(MetricError::NoData)
    );
}

#[tokio::test]
async fn refusals_map_to_what_to_change_and_never_quote_the_body() {
    let fake = FakePrometheus::start().await;
    fake.on("forbidden", Reply::json(403, r#"{"errors":["Forbidden"]}"#));
    fake.on(
        "unauthorized",
        Reply::json(401, r#"{"errors":["Unauthorized"]}"#),
    );
    fake.on(
        "limited",
        Reply::json(429, r#"{"errors":["Too many requests"]}"#)
            .header("X-RateLimit-Limit", "100")
            .header("X-RateLimit-Period", "60")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset", "37"),
    );
    fake.on(
        "limited-bare",
        Reply::json(429, r#"{"errors":["Too many requests"]}"#),
    );
    let long = "x".repeat(5000);
    fake.on(
        "bad",
        Reply::json(
            400,
            format!(
                r#"{{"errors":["Error parsing query: \n unable to parse avg(: {long}", "second"]}}"#
            ),
        ),
    );
    fake.on(
        "status-error",
        Reply::json(200, r#"{"status":"error","res_type":"time_series","series":[],"error":"Rollup interval too small\u0007"}"#),
    );
    fake.on("html", Reply::text(200, "<html>secret page</html>"));
    fake.on("down", Reply::text(502, "upstream says: secret"));
    let s = source(&fake).await;

    let e = s.query_scalar("forbidden", at()).await.unwrap_err();
    assert_eq!(e.category(), "auth");
    assert!(
        e.to_string().contains("HTTP 403 Forbidden: Forbidden;"),
        "{e}"
    );
    let e = s.query_scalar("unauthorized", at()).await.unwrap_err();
    assert_eq!(e.category(), "auth");

    let e = s.query_scalar("limited", at()).await.unwrap_err();
    assert_eq!(
        e,
        MetricError::RateLimited {
            retry_in: Some(Duration::from_secs(37))
        }
    );
    assert_eq!(
        e.to_string(),
        "metrics provider rate-limited the query (HTTP 429), its limit resets in 37s; check less often or with fewer metrics"
    );
    assert_eq!(e.category(), "rate_limited");
    assert!(!e.is_no_evidence());
    assert_eq!(
        s.query_scalar("limited-bare", at()).await,
        Err(MetricError::RateLimited { retry_in: None })
    );

    let e = s.query_scalar("bad", at()).await.unwrap_err();
    let MetricError::BadQuery(text) = &e else {
        panic!("{e:?}")
    };
    assert!(
        text.starts_with("HTTP 400 Bad Request: Error parsing query: unable to parse avg("),
        "{text}"
    );
    assert!(
        text.chars().count() <= 230 && !text.contains("second"),
        "{text}"
    );

    assert_eq!(
        s.query_scalar("status-error", at()).await,
        Err(MetricError::BadQuery("Rollup interval too small".into()))
    );
    for (q, status) in [("html", "200 OK"), ("down", "502 Bad Gateway")] {
        let e = s.query_scalar(q, at()).await.unwrap_err();
        let text = e.to_string();
        assert_eq!(e.category(), "unreachable", "{q}");
        assert!(text.contains(status) && !text.contains("secret"), "{text}");
    }
}

#[tokio::test]
async fn range_queries_return_the_points_of_one_series() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "q",
        ok(&[("q", "[[1799999940000,0.5],[1800000000000,null]]")]),
    );
    let s = source(&fake).await;
    let start = Utc.timestamp_opt(TS - 60, 0).unwrap();
    let points = s
        .query_range("q", start, at(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0], (start, 0.5));
    assert!(points[1].1.is_nan());
    assert_eq!(fake.seen()[0].params["from"], (TS - 60).to_string());
}

#[test]
fn missing_keys_and_disallowed_sites_are_refused_before_anything_is_sent() {
    let spec = spec("https://api.datadoghq.com");
    let keys = crate::providers::registry::credential_keys(Some(&spec)).unwrap();
    assert_eq!(keys.name(), "dd");
    let mut data = self::keys();
    data.remove("application-key");
    let e = keys.read(&data).unwrap_err();
    assert_eq!(
        e.to_string(),
        "provider configuration: Secret \"dd\" has no key \"application-key\" (named by secretRef.applicationKeyKey)"
    );
    let sources = ProviderSources::new(None, Duration::from_secs(1))
        .with_allowed(AllowedAddresses::parse("https://api.datadoghq.eu").unwrap());
    let e = sources.check_provider(Some(&spec)).unwrap_err();
    assert!(
        e.to_string()
            .contains("provider.datadog.address \"https://api.datadoghq.com\" is not among"),
        "{e}"
    );
    // The keys must have been read: a spec alone gets no source.
    let e = ProviderSources::new(None, Duration::from_secs(1))
        .source(Some(&spec), None)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("secretRef \"dd\" has not been read"),
        "{e}"
    );
    // And a Debug of them never shows a value.
    let creds = keys.read(&self::keys()).unwrap();
    let shown = format!("{creds:?}");
    assert!(
        shown.contains("DD-API-KEY") && !shown.contains("dd-api-123"),
        "{shown}"
    );
}
