//! The shipped templates against a real Prometheus (the Debian `prometheus` binary)
//! scraping a loopback exporter that serves each mesh's metrics with known rates:
//! 100 requests/s, 2% of them 5xx, and latency buckets holding 50% / 90% / 100% of
//! requests at 50 / 100 / 250 ms. Expected values follow from Prometheus's documented
//! histogram_quantile interpolation: p50 = 0.05 s, p95 = 0.1 + 0.15 * (0.05 / 0.1)
//! = 0.175 s, p99 = 0.1 + 0.15 * (0.09 / 0.1) = 0.235 s. Skipped when the binary is
//! absent. Bounded: about 15 s (40 s at most), one Prometheus on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serin::analysis::history::load_template;
use serin::analysis::{render_query, resolve_metrics, RenderVars};
use serin::crd::TemplateRef;
use serin::providers::{MetricSource, PrometheusConfig, PrometheusSource};

/// One template's series for one variant: (labels of the 2xx series, labels of the
/// 5xx series, labels of the buckets, request metric, bucket metric, buckets in ms?).
struct Family {
    ok: &'static str,
    err: &'static str,
    bucket: &'static str,
    requests: &'static str,
    buckets: &'static str,
    millis: bool,
}

const FAMILIES: &[Family] = &[
    Family {
        requests: "istio_requests_total",
        ok: r#"reporter="destination",destination_workload="podinfo",destination_workload_namespace="shop",response_code="200""#,
        err: r#"reporter="destination",destination_workload="podinfo",destination_workload_namespace="shop",response_code="503""#,
        buckets: "istio_request_duration_milliseconds_bucket",
        bucket: r#"reporter="destination",destination_workload="podinfo",destination_workload_namespace="shop""#,
        millis: true,
    },
    // The primary: healthy, no 5xx series at all.
    Family {
        requests: "istio_requests_total",
        ok: r#"reporter="destination",destination_workload="podinfo-primary",destination_workload_namespace="shop",response_code="200""#,
        err: "",
        buckets: "istio_request_duration_milliseconds_bucket",
        bucket: r#"reporter="destination",destination_workload="podinfo-primary",destination_workload_namespace="shop""#,
        millis: true,
    },
    Family {
        requests: "response_total",
        ok: r#"namespace="shop",deployment="podinfo",direction="inbound",classification="success",status_code="200""#,
        err: r#"namespace="shop",deployment="podinfo",direction="inbound",classification="failure",status_code="503""#,
        buckets: "response_latency_ms_bucket",
        bucket: r#"namespace="shop",deployment="podinfo",direction="inbound""#,
        millis: true,
    },
    Family {
        requests: "nginx_ingress_controller_requests",
        ok: r#"namespace="shop",ingress="podinfo",service="podinfo",canary="shop-podinfo-canary-80",status="200""#,
        err: r#"namespace="shop",ingress="podinfo",service="podinfo",canary="shop-podinfo-canary-80",status="503""#,
        buckets: "nginx_ingress_controller_response_duration_seconds_bucket",
        bucket: r#"namespace="shop",ingress="podinfo",service="podinfo",canary="shop-podinfo-canary-80""#,
        millis: false,
    },
    Family {
        requests: "envoy_cluster_upstream_rq_xx",
        ok: r#"envoy_cluster_name="shop_podinfo-canary_80",envoy_response_code_class="2""#,
        err: r#"envoy_cluster_name="shop_podinfo-canary_80",envoy_response_code_class="5""#,
        buckets: "envoy_cluster_upstream_rq_time_bucket",
        bucket: r#"envoy_cluster_name="shop_podinfo-canary_80""#,
        millis: true,
    },
    Family {
        requests: "http_request_duration_seconds_count",
        ok: r#"namespace="shop",pod="podinfo-7d9f8b6c5-x2x4z",code="200""#,
        err: r#"namespace="shop",pod="podinfo-7d9f8b6c5-x2x4z",code="503""#,
        buckets: "http_request_duration_seconds_bucket",
        bucket: r#"namespace="shop",pod="podinfo-7d9f8b6c5-x2x4z""#,
        millis: false,
    },
];

/// The exposition at `t` seconds after the exporter started.
fn exposition(t: f64) -> String {
    let mut out = String::new();
    for f in FAMILIES {
        let errors = if f.err.is_empty() { 0.0 } else { 2.0 };
        out.push_str(&format!(
            "{}{{{}}} {}\n",
            f.requests,
            f.ok,
            (100.0 - errors) * t
        ));
        if !f.err.is_empty() {
            out.push_str(&format!("{}{{{}}} {}\n", f.requests, f.err, errors * t));
        }
        let les: [(&str, &str, f64); 4] = [
            ("50", "0.05", 0.5),
            ("100", "0.1", 0.9),
            ("250", "0.25", 1.0),
            ("+Inf", "+Inf", 1.0),
        ];
        for (ms, s, share) in les {
            let le = if f.millis { ms } else { s };
            out.push_str(&format!(
                "{}{{{},le=\"{le}\"}} {}\n",
                f.buckets,
                f.bucket,
                share * 100.0 * t
            ));
        }
    }
    out
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn vars(workload: &str, args: BTreeMap<String, String>) -> RenderVars {
    RenderVars {
        namespace: "shop".into(),
        target: "podinfo".into(),
        primary: "podinfo-primary".into(),
        canary: "podinfo".into(),
        workload: workload.into(),
        service: "podinfo".into(),
        interval: "10s".into(),
        args,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_templates_measure_known_rates_on_a_real_prometheus() {
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prometheus binary not found; skipping");
        return;
    }
    // The exporter.
    let started = Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { exposition(started.elapsed().as_secs_f64()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exporter = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // Prometheus, scraping it every second.
    let dir = std::env::temp_dir().join(format!("serin-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fake\n    honor_labels: true\n    static_configs:\n      - targets: ['{exporter}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prom = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let source = PrometheusSource::new(&PrometheusConfig::new(
        format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
    ))
    .unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("analysis-templates");
    let files = [
        "istio.yaml",
        "linkerd.yaml",
        "ingress-nginx.yaml",
        "gateway-api-envoy.yaml",
        "app-http-histogram.yaml",
    ];
    let expected = [
        ("error-rate", 0.02),
        ("latency-p50", 0.05),
        ("latency-p95", 0.175),
        ("latency-p99", 0.235),
    ];

    // Wait (bounded) until 10s windows hold enough samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut results: Vec<(String, String, Result<f64, String>)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        results.clear();
        for file in files {
            let (name, spec) = load_template(&templates.join(file)).unwrap();
            let tref = TemplateRef {
                name,
                cluster_scope: false,
                args: BTreeMap::new(),
            };
            for m in resolve_metrics(&[(tref, spec)]).unwrap() {
                let q = render_query(&m.query, &vars("podinfo", m.args.clone())).unwrap();
                let v = source
                    .query_scalar(&q, chrono::Utc::now())
                    .await
                    .map_err(|e| e.to_string());
                results.push((file.to_string(), m.name.clone(), v));
            }
        }
        let all_in = results.iter().all(|(_, name, v)| {
            let want = expected.iter().find(|(n, _)| n == name).unwrap().1;
            matches!(v, Ok(x) if (x - want).abs() < 1e-6)
        });
        if all_in || Instant::now() > deadline {
            break;
        }
    }
    for (file, name, v) in &results {
        let want = expected.iter().find(|(n, _)| n == name).unwrap().1;
        match v {
            Ok(x) => assert!((x - want).abs() < 1e-6, "{file} {name}: {x} != {want}"),
            Err(e) => panic!("{file} {name}: {e}"),
        }
    }

    // The healthy primary has no 5xx series: the error rate is 0, not "no data".
    let (name, spec) = load_template(&templates.join("istio.yaml")).unwrap();
    let tref = TemplateRef {
        name,
        cluster_scope: false,
        args: BTreeMap::new(),
    };
    let m = resolve_metrics(&[(tref, spec)]).unwrap().remove(0);
    let q = render_query(&m.query, &vars("podinfo-primary", m.args.clone())).unwrap();
    assert_eq!(source.query_scalar(&q, chrono::Utc::now()).await, Ok(0.0));

    // A real bad_data answer.
    let e = source
        .query_scalar("sum(rate(x[1m])", chrono::Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.category(), "bad_query", "{e}");

    // `serin analyze` over the last windows: range queries evaluated at the window
    // ends must line up with real Prometheus's step timestamps.
    // Both windows (and their 3s ranges) must lie after Prometheus's first samples.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (template_name, template) = load_template(&templates.join("istio.yaml")).unwrap();
    let req = serin::analysis::history::AnalyzeRequest {
        template_name,
        template,
        args: BTreeMap::new(),
        vars: vars("podinfo", BTreeMap::new()),
        interval: Duration::from_secs(3),
        end: chrono::Utc::now() - chrono::Duration::seconds(1),
        windows: 2,
    };
    let sources = serin::providers::PrometheusSources::new(
        Some(format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
    );
    let report = serin::analysis::history::analyze(&req, &sources)
        .await
        .unwrap();
    for w in &report.windows {
        let values: Vec<Option<f64>> = w.metrics.iter().map(|m| m.value).collect();
        let want = [0.02, 0.05, 0.175, 0.235];
        for (v, want) in values.iter().zip(want) {
            assert!(
                v.is_some_and(|v| (v - want).abs() < 1e-6),
                "window {}: {values:?} {:?}",
                w.end,
                w.metrics
                    .iter()
                    .map(|m| m.reason.clone())
                    .collect::<Vec<_>>()
            );
        }
    }
    // 2% errors against the default 1% ceiling: every window would have failed.
    assert_eq!(report.failed_fraction, 1.0);

    let _ = prom.kill().await;
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
