//! Graphite render answers (`format=json`) as graphite-web writes them, over loopback
//! HTTP. Recorded responses only: no real graphite-web runs in the tests.

use chrono::TimeZone;

use super::*;
use crate::crd::ProviderSpec;
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{MetricSources, ProviderSources};

const TS: i64 = 1_800_000_000;

fn at() -> DateTime<Utc> {
    Utc.timestamp_opt(TS, 0).unwrap()
}

fn source(fake: &FakePrometheus, prefix: &str) -> Arc<dyn MetricSource> {
    let spec = ProviderSpec {
        graphite: Some(GraphiteProviderSpec {
            address: format!("{}{prefix}", fake.address),
            lookback: Some("10m".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    ProviderSources::new(None, Duration::from_secs(2))
        .source(Some(&spec), None)
        .unwrap()
}

#[tokio::test]
async fn the_value_is_the_last_non_null_datapoint_of_one_target() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "asPercent(sumSeries(web.errors),sumSeries(web.requests))",
        Reply::json(
            200,
            r#"[{"target":"asPercent(sumSeries(web.errors),sumSeries(web.requests))","tags":{"name":"x"},"datapoints":[[1.5,1799999400],[0.75,1799999700],[null,1800000000]]}]"#,
        ),
    );
    let s = source(&fake, "/graphite");
    assert_eq!(
        s.query_scalar(
            "asPercent(sumSeries(web.errors),sumSeries(web.requests))",
            at()
        )
        .await,
        Ok(0.75)
    );
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/graphite/render");
    assert_eq!(seen.params["from"], (TS - 600).to_string());
    assert_eq!(seen.params["until"], TS.to_string());
    assert_eq!(seen.params["format"], "json");
}

#[tokio::test]
async fn no_target_only_nulls_several_targets_and_errors() {
    let fake = FakePrometheus::start().await;
    fake.on("none", Reply::json(200, "[]"));
    fake.on(
        "nulls",
        Reply::json(
            200,
            r#"[{"target":"a","datapoints":[[null,1799999700],[null,1800000000]]}]"#,
        ),
    );
    fake.on(
        "two",
        Reply::json(
            200,
            r#"[{"target":"web.a.errors","datapoints":[[1,1800000000]]},{"target":"web.b.errors","datapoints":[[2,1800000000]]}]"#,
        ),
    );
    fake.on("bad", Reply::text(400, "Invalid target: secret detail"));
    fake.on("boom", Reply::text(500, "<html>Traceback secret</html>"));
    fake.on("notjson", Reply::text(200, "<html>secret</html>"));
    let s = source(&fake, "");
    assert_eq!(s.query_scalar("none", at()).await, Err(MetricError::NoData));
    assert_eq!(
        s.query_scalar("nulls", at()).await,
        Err(MetricError::NoData)
    );
    assert_eq!(
        s.query_scalar("two", at()).await,
        Err(MetricError::MultipleSeries {
            count: 2,
            example: "web.a.errors".into()
        })
    );
    assert_eq!(s.query_vector("two", at()).await, Ok(vec![1.0, 2.0]));
    let e = s.query_scalar("bad", at()).await.unwrap_err();
    assert_eq!(e.category(), "bad_query");
    for q in ["bad", "boom", "notjson"] {
        let text = s.query_scalar(q, at()).await.unwrap_err().to_string();
        assert!(!text.contains("secret") && text.contains("HTTP "), "{text}");
    }
}
