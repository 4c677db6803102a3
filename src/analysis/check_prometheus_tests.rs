//! A check against real HTTP answers of a Prometheus: down, partial, oversized, and
//! the length of what reaches the status.

use super::tests::{check, metric, sources, t};
use chrono::TimeZone;

use super::*;

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn prometheus_down_gives_a_short_reason_without_the_query() {
    let port = closed_port();
    let sources = crate::providers::PrometheusSources::new(
        Some(format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
    );
    // The shape of the query that once filled status.message with 2 kB of %7B.
    let query = format!(
        "sum(rate(istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"{{{{namespace}}}}\",destination_workload=\"{{{{workload}}}}\",response_code!~\"5.*\"}}[{{{{interval}}}}])) / sum(rate(istio_requests_total{{reporter=\"destination\",destination_workload=\"{{{{workload}}}}\"}}[{{{{interval}}}}])) {}",
        "+ 0 ".repeat(300)
    );
    let mut m = metric("error-rate", &query, 0.01);
    m.consecutive_error_limit = Some(0);
    let r = check(&[m], &[], &sources, t(0)).await;
    let reason = &r.metrics[0].reason;
    assert_eq!(r.metrics[0].verdict, MetricVerdict::Fail, "{reason}");
    for leak in ["query=", "%7B", "/api/v1/", "istio_requests_total"] {
        assert!(!reason.contains(leak), "{leak} in {reason}");
    }
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
    assert!(
        reason.ends_with("more than consecutiveErrorLimit 0)"),
        "{reason}"
    );
    assert!(
        reason.chars().count() <= crate::rollout::text::METRIC_REASON_MAX_CHARS,
        "{reason}"
    );
}

#[tokio::test]
async fn long_reasons_are_bounded_and_keep_the_escalation() {
    let long = MetricError::Unreachable(format!("refused {}", "x ".repeat(400)));
    let (s, _) = sources(&[("q", Err(long))]);
    let mut m = metric("m", "q", 1.0);
    m.consecutive_error_limit = Some(0);
    let r = check(&[m], &[], &s, t(0)).await;
    let reason = &r.metrics[0].reason;
    assert_eq!(
        reason.chars().count(),
        crate::rollout::text::METRIC_REASON_MAX_CHARS
    );
    assert!(reason.ends_with("… (1 errors in a row, more than consecutiveErrorLimit 0)"));
}

/// A partial answer (a warning in a success, as Thanos gives during a store outage) is
/// no evidence: the metric is inconclusive, the warning quoted in its reason, for a
/// threshold and for a compare judge alike.
#[tokio::test]
async fn a_partial_answer_is_inconclusive_and_quotes_the_warning() {
    use crate::providers::fake_prometheus::{FakePrometheus, Reply};
    let fake = FakePrometheus::start().await;
    let warned = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1800000000,"0.001"]}]},"warnings":["partial response: store gateway 10.0.0.7:10901 unavailable"]}"#;
    for q in ["errors", "lat{w=\"podinfo\"}", "lat{w=\"podinfo-primary\"}"] {
        fake.on(q, Reply::json(200, warned));
    }
    let sources = crate::providers::PrometheusSources::new(
        Some(fake.address.clone()),
        Duration::from_secs(2),
    );
    let threshold = metric("error-rate", "errors", 0.01);
    let mut compare = metric("latency", "lat{w=\"{{workload}}\"}", 0.0);
    compare.judge = MetricJudge::Compare(crate::crd::CompareSpec::default());
    let r = check(&[threshold, compare], &[], &sources, t(0)).await;
    for st in &r.metrics {
        assert_eq!(
            st.verdict,
            MetricVerdict::Inconclusive,
            "{}: {}",
            st.name,
            st.reason
        );
        assert!(
            st.reason
                .contains("the provider warned \"partial response: store gateway 10.0.0.7:10901 unavailable\""),
            "{}",
            st.reason
        );
        assert_eq!(st.value, None);
    }
}

#[tokio::test]
async fn an_oversized_prometheus_answer_is_an_error_verdict_naming_the_metric() {
    use crate::providers::fake_prometheus::{FakePrometheus, Reply};
    let fake = FakePrometheus::start().await;
    let q = "sum(rate(http_requests_total[1m]))";
    let series = vec![r#"{"metric":{"pod":"p"},"value":[1800000000,"1"]}"#; 30_000].join(",");
    fake.on(
        q,
        Reply::json(
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{series}]}}}}"#
            ),
        ),
    );
    let sources = crate::providers::PrometheusSources::new(
        Some(fake.address.clone()),
        std::time::Duration::from_secs(5),
    );
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let report = check(&[metric("error-rate", q, 0.01)], &[], &sources, now).await;
    let m = &report.metrics[0];
    assert_eq!(m.verdict, MetricVerdict::Error);
    assert_eq!(
        m.reason,
        "response larger than 1048576 bytes (the controller's --prometheus-max-body); \
         the query selects too many series: aggregate it, e.g. sum(...)"
    );
    assert_eq!(report.outcome(now), crate::rollout::CheckOutcome::Error);
    assert!(
        report
            .summary(now)
            .starts_with("error-rate: response larger than 1048576 bytes"),
        "{}",
        report.summary(now)
    );
}

#[test]
fn a_failed_query_never_reaches_a_judge_and_never_passes() {
    assert_eq!(measured(&Ok(0.5)), Ok(0.5));
    assert_eq!(
        measured(&Err(MetricError::NoData)).unwrap_err().0,
        MetricVerdict::Inconclusive
    );
    assert_eq!(
        measured(&Err(MetricError::Unreachable("refused".into())))
            .unwrap_err()
            .0,
        MetricVerdict::Error
    );
    assert_eq!(
        measured(&Err(MetricError::MultipleSeries {
            count: 3,
            example: "{pod=\"a\"}".into()
        }))
        .unwrap_err()
        .0,
        MetricVerdict::Error
    );
}
