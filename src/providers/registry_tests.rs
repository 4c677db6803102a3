use super::*;
use crate::crd::{
    DatadogProviderSpec, GraphiteProviderSpec, InfluxDbProviderSpec, PrometheusProviderSpec,
};
use crate::metrics::ControllerMetrics;
use crate::providers::fake_prometheus::{FakePrometheus, Reply};

fn graphite(address: &str) -> ProviderSpec {
    ProviderSpec {
        graphite: Some(GraphiteProviderSpec {
            address: address.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_provider_spec_names_exactly_one_provider() {
    let none = ProviderSpec::default();
    assert_eq!(
        none.kind().unwrap_err(),
        "the template's provider sets no provider; accepted: exactly one of prometheus, datadog, influxdb, graphite (or no provider field for the controller's default Prometheus)"
    );
    let mut two = graphite("http://g:8080");
    two.influxdb = Some(InfluxDbProviderSpec {
        address: "http://i:8086".into(),
        database: "db".into(),
        ..Default::default()
    });
    assert_eq!(
        two.kind().unwrap_err(),
        "the template's provider sets influxdb and graphite; accepted: exactly one of prometheus, datadog, influxdb, graphite"
    );
    // The registry refuses both before anything else, as a configuration error.
    let sources = ProviderSources::new(None, Duration::from_secs(1));
    for spec in [&none, &two] {
        let e = sources.check_provider(Some(spec)).unwrap_err();
        assert_eq!(e.category(), "config");
        assert!(sources.source(Some(spec), None).is_err());
    }
    for (spec, kind) in [
        (graphite("http://g:8080"), ProviderKind::Graphite),
        (
            ProviderSpec::prometheus(PrometheusProviderSpec::default()),
            ProviderKind::Prometheus,
        ),
        (
            ProviderSpec {
                datadog: Some(DatadogProviderSpec::default()),
                ..Default::default()
            },
            ProviderKind::Datadog,
        ),
    ] {
        assert_eq!(spec.kind(), Ok(kind));
        assert_eq!(provider_of(&spec).unwrap().kind, kind);
    }
    // Every kind has exactly one entry in the table.
    for kind in ProviderKind::ALL {
        assert_eq!(
            PROVIDERS.iter().filter(|p| p.kind == kind).count(),
            1,
            "{kind}"
        );
    }
}

#[test]
fn the_yaml_shape_of_a_prometheus_provider_is_unchanged() {
    let yaml = "prometheus:\n  address: http://prometheus:9090\n  secretRef:\n    name: creds\n    bearerTokenKey: token\n";
    let spec: ProviderSpec = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(spec.kind(), Ok(ProviderKind::Prometheus));
    assert_eq!(spec.secret_name(), Some("creds"));
    let back = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        back,
        serde_json::json!({"prometheus": {"address": "http://prometheus:9090", "secretRef": {"name": "creds", "bearerTokenKey": "token"}, "insecureSkipVerify": false}})
    );
    assert_eq!(
        credential_keys(Some(&spec)),
        Some(CredentialKeys::Http(
            spec.prometheus.unwrap().secret_ref.unwrap()
        ))
    );
    // An unknown provider field is ignored by serde, so it selects nothing: an error.
    let unknown: ProviderSpec = serde_yaml::from_str("newrelic:\n  address: x\n").unwrap();
    assert!(unknown.kind().is_err());
}

#[tokio::test]
async fn every_provider_gets_the_allow_list_the_cap_the_cache_and_labelled_metrics() {
    let fake = FakePrometheus::start().await;
    fake.on(
        "big",
        Reply::json(
            200,
            format!(
                r#"[{{"target":"{}","datapoints":[[1.0,1800000000]]}}]"#,
                "x".repeat(400)
            ),
        ),
    );
    fake.on(
        "ok",
        Reply::json(200, r#"[{"target":"ok","datapoints":[[0.5,1800000000]]}]"#),
    );
    let metrics = Arc::new(ControllerMetrics::new());
    let sources = ProviderSources::new(None, Duration::from_secs(2))
        .with_max_body(256)
        .with_metrics(metrics.queries.clone())
        .with_allowed(AllowedAddresses::parse(&fake.address).unwrap());
    let spec = graphite(&fake.address);
    let at = chrono::TimeZone::timestamp_opt(&Utc, 1_800_000_000, 0).unwrap();
    let s = sources.source(Some(&spec), None).unwrap();
    assert_eq!(s.query_scalar("ok", at).await, Ok(0.5));
    assert_eq!(
        s.query_scalar("big", at).await,
        Err(MetricError::TooLarge { limit: 256 })
    );
    // One source per configuration.
    assert!(Arc::ptr_eq(&s, &sources.source(Some(&spec), None).unwrap()));
    let other = graphite(&format!("{}/other", fake.address));
    assert!(!Arc::ptr_eq(
        &s,
        &sources.source(Some(&other), None).unwrap()
    ));
    // Not allowed: refused by name, nothing sent.
    let before = fake.seen().len();
    let e = sources
        .source(Some(&graphite("http://127.0.0.2:1")), None)
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with(
            "provider configuration: provider.graphite.address \"http://127.0.0.2:1\" is not among"
        ),
        "{e}"
    );
    assert_eq!(fake.seen().len(), before);
    let text = metrics.encode();
    assert!(
        text.contains(r#"serin_metric_query_duration_seconds_count{provider="graphite"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"serin_metric_query_errors_total{provider="graphite",category="too_large"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_provider_times_out_within_its_timeout() {
    let fake = FakePrometheus::start().await;
    fake.otherwise(
        Reply::json(200, r#"[{"target":"t","datapoints":[[1.0,1800000000]]}]"#)
            .delayed(Duration::from_secs(3)),
    );
    let mut spec = graphite(&fake.address);
    spec.graphite.as_mut().unwrap().timeout = Some("300ms".into());
    let s = ProviderSources::new(None, Duration::from_secs(10))
        .source(Some(&spec), None)
        .unwrap();
    let at = chrono::TimeZone::timestamp_opt(&Utc, 1_800_000_000, 0).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        s.query_scalar("t", at).await,
        Err(MetricError::Timeout(Duration::from_millis(300)))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
