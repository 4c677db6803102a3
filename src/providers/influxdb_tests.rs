//! InfluxDB 1.x answers as `/query` writes them (recorded from influxd 1.6), over
//! loopback HTTP. tests/providers_real_influxdb.rs asks a real influxd.

use std::collections::BTreeMap;

use chrono::TimeZone;
use k8s_openapi::ByteString;

use super::*;
use crate::crd::{PrometheusSecretRef, ProviderSpec};
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{MetricSources, ProviderSources};

fn at() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn spec(address: &str, secret_ref: Option<PrometheusSecretRef>) -> ProviderSpec {
    ProviderSpec {
        influxdb: Some(InfluxDbProviderSpec {
            address: address.into(),
            database: "telemetry".into(),
            timeout: Some("2s".into()),
            secret_ref,
            insecure_skip_verify: false,
        }),
        ..Default::default()
    }
}

fn source(fake: &FakePrometheus) -> Arc<dyn MetricSource> {
    ProviderSources::new(None, Duration::from_secs(2))
        .source(Some(&spec(&fake.address, None)), None)
        .unwrap()
}

fn one(columns: &str, values: &str) -> Reply {
    Reply::json(
        200,
        format!(
            r#"{{"results":[{{"statement_id":0,"series":[{{"name":"http","columns":{columns},"values":{values}}}]}}]}}"#
        ),
    )
}

#[tokio::test]
async fn one_field_of_one_series_is_the_value_and_the_request_is_db_q_epoch() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "SELECT mean(\"error_rate\") FROM \"http\" WHERE time > now() - 5m",
        one(r#"["time","mean"]"#, "[[1799999700,0.0125]]"),
    );
    fake.on(
        "grouped",
        one(
            r#"["time","mean"]"#,
            "[[1799999640,0.5],[1799999700,0.25],[1799999760,null]]",
        ),
    );
    let s = source(&fake);
    assert_eq!(
        s.query_scalar(
            "SELECT mean(\"error_rate\") FROM \"http\" WHERE time > now() - 5m",
            at()
        )
        .await,
        Ok(0.0125)
    );
    assert_eq!(s.query_scalar("grouped", at()).await, Ok(0.25));
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/query");
    assert_eq!(seen.params["db"], "telemetry");
    assert_eq!(seen.params["epoch"], "s");
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn empty_and_several_series_and_wrong_columns_are_clear_errors() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "empty",
        Reply::json(200, r#"{"results":[{"statement_id":0}]}"#),
    );
    fake.on("nulls", one(r#"["time","mean"]"#, "[[1799999700,null]]"));
    fake.on(
        "by-pod",
        Reply::json(
            200,
            r#"{"results":[{"statement_id":0,"series":[{"name":"http","tags":{"pod":"a"},"columns":["time","mean"],"values":[[1799999700,1]]},{"name":"http","tags":{"pod":"b"},"columns":["time","mean"],"values":[[1799999700,3]]}]}]}"#,
        ),
    );
    fake.on(
        "two-fields",
        one(r#"["time","a","b"]"#, "[[1799999700,1,2]]"),
    );
    fake.on(
        "text",
        one(r#"["time","host"]"#, r#"[[1799999700,"web-1"]]"#),
    );
    fake.on(
        "two-statements",
        Reply::json(
            200,
            r#"{"results":[{"statement_id":0},{"statement_id":1}]}"#,
        ),
    );
    let s = source(&fake);
    assert_eq!(
        s.query_scalar("empty", at()).await,
        Err(MetricError::NoData)
    );
    assert_eq!(
        s.query_vector("empty", at()).await,
        Err(MetricError::NoData)
    );
    assert_eq!(
        s.query_scalar("nulls", at()).await,
        Err(MetricError::NoData)
    );
    assert_eq!(
        s.query_scalar("by-pod", at()).await,
        Err(MetricError::MultipleSeries {
            count: 2,
            example: "http{pod=\"a\"}".into()
        })
    );
    assert_eq!(s.query_vector("by-pod", at()).await, Ok(vec![1.0, 3.0]));
    assert_eq!(
        s.query_scalar("two-fields", at()).await,
        Err(MetricError::BadQuery(
            "the query returns columns time, a, b; accepted: time and exactly one field, e.g. SELECT mean(\"value\") FROM ...".into()
        ))
    );
    assert_eq!(
        s.query_scalar("text", at()).await,
        Err(MetricError::BadQuery(
            "field \"host\" of the query is not numeric".into()
        ))
    );
    assert_eq!(
        s.query_scalar("two-statements", at()).await,
        Err(MetricError::BadQuery(
            "the query has 2 statements; accepted: exactly one SELECT".into()
        ))
    );
}

#[tokio::test]
async fn influx_errors_say_what_to_change_and_never_quote_the_body() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "nodb",
        Reply::json(
            200,
            r#"{"results":[{"statement_id":0,"error":"database not found: telemetry"}]}"#,
        ),
    );
    fake.on(
        "parse",
        Reply::json(
            400,
            r#"{"error":"error parsing query: found EOF, expected FROM at line 1, char 9"}"#,
        ),
    );
    fake.on(
        "auth",
        Reply::json(401, r#"{"error":"authorization failed"}"#),
    );
    fake.on(
        "boom",
        Reply::json(500, r#"{"error":"timeout\u0000 waiting for shard"}"#),
    );
    fake.on("proxy", Reply::text(503, "secret upstream page"));
    fake.on("html", Reply::text(200, "<html>secret</html>"));
    let s = source(&fake);
    assert_eq!(
        s.query_scalar("nodb", at()).await,
        Err(MetricError::BadQuery(
            "database not found: telemetry".into()
        ))
    );
    assert_eq!(
        s.query_scalar("parse", at()).await,
        Err(MetricError::BadQuery(
            "HTTP 400 Bad Request: error parsing query: found EOF, expected FROM at line 1, char 9"
                .into()
        ))
    );
    assert_eq!(
        s.query_scalar("auth", at()).await,
        Err(MetricError::Auth(
            "HTTP 401 Unauthorized: authorization failed".into()
        ))
    );
    assert_eq!(
        s.query_scalar("boom", at()).await,
        Err(MetricError::Unreachable(
            "HTTP 500 Internal Server Error from InfluxDB: timeout waiting for shard".into()
        ))
    );
    for q in ["proxy", "html"] {
        let e = s.query_scalar(q, at()).await.unwrap_err();
        assert_eq!(e.category(), "unreachable");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}

#[tokio::test]
async fn basic_auth_and_tokens_come_from_the_opted_in_secret() {
    let fake = FakePrometheus::start().await;
    fake.otherwise(one(r#"["time","v"]"#, "[[1799999700,2]]"));
    let data: BTreeMap<String, ByteString> =
        [("user", "serin"), ("pass", "s3cret\n"), ("tok", "t0k")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
    let sources = ProviderSources::new(None, Duration::from_secs(2));
    for (secret_ref, expected) in [
        (
            PrometheusSecretRef {
                name: "influx".into(),
                username_key: Some("user".into()),
                password_key: Some("pass".into()),
                ..Default::default()
            },
            "Basic c2VyaW46czNjcmV0",
        ),
        (
            PrometheusSecretRef {
                name: "influx".into(),
                bearer_token_key: Some("tok".into()),
                ..Default::default()
            },
            "Token t0k",
        ),
    ] {
        let spec = spec(&fake.address, Some(secret_ref));
        let creds = crate::providers::registry::credential_keys(Some(&spec))
            .unwrap()
            .read(&data)
            .unwrap();
        let s = sources.source(Some(&spec), Some(&creds)).unwrap();
        assert_eq!(s.query_scalar("SELECT last(v) FROM m", at()).await, Ok(2.0));
        assert_eq!(
            fake.seen().last().unwrap().headers["authorization"],
            expected
        );
    }
    let e = sources
        .source(
            Some(&spec(
                &fake.address,
                Some(PrometheusSecretRef {
                    name: "influx".into(),
                    ..Default::default()
                }),
            )),
            None,
        )
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("provider.influxdb.secretRef \"influx\" has not been read"),
        "{e}"
    );
    let mut no_db = spec(&fake.address, None);
    no_db.influxdb.as_mut().unwrap().database = " ".into();
    let e = sources.source(Some(&no_db), None).err().unwrap();
    assert!(
        e.to_string()
            .contains("provider.influxdb.database is empty"),
        "{e}"
    );
}
