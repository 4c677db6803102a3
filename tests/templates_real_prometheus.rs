//! The shipped templates (the built-in checks) against a real Prometheus (the Debian
//! `prometheus` binary) on loopback. Fails, never skips, without the binary.
//!
//! 1. Known rates: an exporter serving each family's series deterministically, 100
//!    requests/s, 2% of them 5xx, and latency buckets holding 50% / 90% / 100% of
//!    requests at 50 / 100 / 250 ms. The guards measure what follows from
//!    Prometheus's documented histogram_quantile interpolation: error rate 0.02, p99 =
//!    0.1 + 0.15 * (0.09 / 0.1) = 0.235 s.
//! 2. Canary against primary: seeded random requests in every family's shape (the
//!    demo app's telemetry), canary at 25% of the traffic, in three namespaces:
//!    `equal` (both 0.5% errors, same latency), `errors` (canary 10% 5xx) and `slow`
//!    (canary twice as slow). serin's own check code (`run_check`) judges them: the
//!    sequential `errors` never fails an equal canary and fails the 10% one within a
//!    few looks; `latency` passes an equal canary and fails the slow one.
//!
//! Bounded: about 40 s, one Prometheus on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use serin::analysis::history::load_template;
use serin::analysis::{
    builtin_template, render_query, resolve_metrics, run_check, CheckInput, RenderVars,
    ResolvedMetric, Telemetry,
};
use serin::crd::{MetricStatus, MetricVerdict, TemplateRef};
use serin::local::telemetry::{self as shapes, Rng, TelemetryLabels, TelemetryRegistry};
use serin::providers::{MetricSource, PrometheusConfig, PrometheusSource, PrometheusSources};

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

fn vars(namespace: &str, workload: &str, args: BTreeMap<String, String>) -> RenderVars {
    RenderVars {
        namespace: namespace.into(),
        target: "podinfo".into(),
        primary: "podinfo-primary".into(),
        canary: "podinfo".into(),
        workload: workload.into(),
        service: "podinfo".into(),
        interval: "10s".into(),
        args,
    }
}

/// The comparative scenarios: namespace, canary error rate, canary latency factor.
const SCENARIOS: [(&str, f64, f64); 3] = [
    ("equal", 0.005, 1.0),
    ("errors", 0.10, 1.0),
    ("slow", 0.005, 2.0),
];
const PRIMARY_ERRORS: f64 = 0.005;
/// Requests per 100 ms tick: the canary gets 25% of the traffic.
const CANARY_PER_TICK: u32 = 20;
const PRIMARY_PER_TICK: u32 = 60;

/// One instance (a scenario's canary or primary) exporting every family's shape.
struct Instance {
    namespace: &'static str,
    canary: bool,
    error_rate: f64,
    slowdown: f64,
    registry: TelemetryRegistry,
}

impl Instance {
    fn workload(&self) -> &'static str {
        if self.canary {
            "podinfo"
        } else {
            "podinfo-primary"
        }
    }
    fn path(&self) -> String {
        format!("/m/{}/{}", self.namespace, self.workload())
    }
}

fn instances() -> Vec<Instance> {
    let mut out = Vec::new();
    for (namespace, canary_errors, slowdown) in SCENARIOS {
        for canary in [true, false] {
            out.push(Instance {
                namespace,
                canary,
                error_rate: if canary {
                    canary_errors
                } else {
                    PRIMARY_ERRORS
                },
                slowdown: if canary { slowdown } else { 1.0 },
                registry: TelemetryRegistry::new(
                    vec![
                        shapes::Telemetry::App,
                        shapes::Telemetry::Istio,
                        shapes::Telemetry::Linkerd,
                        shapes::Telemetry::IngressNginx,
                        shapes::Telemetry::Envoy,
                    ],
                    TelemetryLabels {
                        workload: if canary { "podinfo" } else { "podinfo-primary" }.into(),
                        namespace: namespace.into(),
                        service: "podinfo".into(),
                        canary,
                        port: 80,
                    },
                ),
            });
        }
    }
    out
}

/// One tick of seeded traffic: latency 20-60 ms with a 2% tail at three times that,
/// scaled by the instance's slowdown; errors drawn at the instance's rate.
fn serve_tick(instances: &[Instance], rng: &Rng) {
    for i in instances {
        let n = if i.canary {
            CANARY_PER_TICK
        } else {
            PRIMARY_PER_TICK
        };
        for _ in 0..n {
            let mut ms = 20.0 + 40.0 * rng.next_f64();
            if rng.next_f64() < 0.02 {
                ms *= 3.0;
            }
            let code = if rng.next_f64() < i.error_rate {
                503
            } else {
                200
            };
            i.registry.observe(
                "GET",
                "/",
                code,
                Duration::from_secs_f64(ms * i.slowdown / 1000.0),
            );
        }
    }
}

fn resolved(t: Telemetry, args: &[(&str, &str)]) -> Vec<ResolvedMetric> {
    let tref = TemplateRef {
        name: t.as_str().into(),
        cluster_scope: false,
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    resolve_metrics(&[(tref, builtin_template(t))]).unwrap_or_else(|e| panic!("{t}: {e}"))
}

fn prometheus_installed() {
    let found = std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the `prometheus` binary is needed on PATH (Debian/Ubuntu: apt-get install prometheus); this test does not skip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_templates_measure_known_rates_on_a_real_prometheus() {
    prometheus_installed();
    let test_start = Instant::now();
    // The exporters: the deterministic one, and one path per scenario instance.
    let started = Instant::now();
    let instances = Arc::new(instances());
    let mut app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { exposition(started.elapsed().as_secs_f64()) }),
    );
    for (k, i) in instances.iter().enumerate() {
        let all = instances.clone();
        app = app.route(
            &i.path(),
            axum::routing::get(move || async move { all[k].registry.render() }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exporter = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let traffic = {
        let instances = instances.clone();
        tokio::spawn(async move {
            let rng = Rng::new(20_261_122);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                serve_tick(&instances, &rng);
            }
        })
    };

    // Prometheus, scraping every target each second. Scenario targets get the
    // `namespace` and `pod` labels Kubernetes discovery would give them.
    let dir = std::env::temp_dir().join(format!("serin-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    let mut yaml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fake\n    honor_labels: true\n    static_configs:\n      - targets: ['{exporter}']\n"
    );
    for i in instances.iter() {
        yaml.push_str(&format!(
            "  - job_name: '{ns}-{w}'\n    honor_labels: true\n    metrics_path: '{path}'\n    static_configs:\n      - targets: ['{exporter}']\n        labels: {{namespace: '{ns}', pod: '{w}-7d9f8b6c5-x2x4z'}}\n",
            ns = i.namespace,
            w = i.workload(),
            path = i.path(),
        ));
    }
    std::fs::write(&config, yaml).unwrap();
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
    let url = format!("http://127.0.0.1:{port}");
    let source =
        PrometheusSource::new(&PrometheusConfig::new(url.clone(), Duration::from_secs(2))).unwrap();
    let sources = PrometheusSources::new(Some(url.clone()), Duration::from_secs(2));

    // 1. The guards measure known rates. Wait (bounded) until 10s windows fill.
    let expected = [("error-rate-guard", 0.02), ("latency-guard", 0.235)];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut results: Vec<(Telemetry, String, Result<f64, String>)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        results.clear();
        for t in Telemetry::ALL {
            for m in resolved(t, &[]).iter().filter(|m| m.critical) {
                let q = render_query(&m.query, &vars("shop", "podinfo", m.args.clone())).unwrap();
                let v = source
                    .query_scalar(&q, chrono::Utc::now())
                    .await
                    .map_err(|e| e.to_string());
                results.push((t, m.name.clone(), v));
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
    assert_eq!(results.len(), 2 * Telemetry::ALL.len());
    for (t, name, v) in &results {
        let want = expected.iter().find(|(n, _)| n == name).unwrap().1;
        match v {
            Ok(x) => assert!((x - want).abs() < 1e-6, "{t} {name}: {x} != {want}"),
            Err(e) => panic!("{t} {name}: {e}"),
        }
    }

    // A real bad_data answer.
    let e = source
        .query_scalar("sum(rate(x[1m])", chrono::Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.category(), "bad_query", "{e}");

    // 2. Canary against primary through serin's check code. Latency samples: one
    //    p99 per 3 s window (three scrapes) over the last 30 s.
    let args = [("latencyWindow", "3s"), ("latencyLookback", "30s")];
    let interval = Duration::from_secs(10);
    // The sequential `errors` metric, looked at every 1.5 s.
    let mut previous: HashMap<(Telemetry, &str), Vec<MetricStatus>> = HashMap::new();
    let mut verdicts: HashMap<(Telemetry, &str), Vec<MetricVerdict>> = HashMap::new();
    let mut reasons: HashMap<(Telemetry, &str), String> = HashMap::new();
    const LOOKS: usize = 10;
    for _ in 0..LOOKS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for t in Telemetry::ALL {
            let errors = vec![resolved(t, &args).remove(0)];
            for (ns, _, _) in SCENARIOS {
                let key = (t, ns);
                let v = vars(ns, "podinfo", BTreeMap::new());
                let prev = previous.remove(&key).unwrap_or_default();
                let input =
                    CheckInput::new(&errors, &v, interval, &prev, &sources, chrono::Utc::now());
                let report = run_check(&input).await;
                let st = &report.metrics[0];
                verdicts.entry(key).or_default().push(st.verdict);
                reasons.insert(key, st.reason.clone());
                previous.insert(key, report.metrics);
            }
        }
    }
    for t in Telemetry::ALL {
        for (ns, _, _) in SCENARIOS {
            let key = (t, ns);
            let seen = &verdicts[&key];
            let reason = &reasons[&key];
            eprintln!("  {t:<18} {ns:<7} errors   {seen:?}  {reason}");
            // Whatever the scenario, the first look only records the counters.
            assert_eq!(seen[0], MetricVerdict::Inconclusive, "{t} {ns}: {reason}");
            assert!(
                !seen.contains(&MetricVerdict::Error),
                "{t} {ns}: {seen:?} {reason}"
            );
            if ns == "errors" {
                let first = seen.iter().position(|v| *v == MetricVerdict::Fail);
                eprintln!(
                    "  {t:<18} 10% canary rolled back at look {:?} of {LOOKS}",
                    first.map(|l| l + 1)
                );
                assert!(first.is_some_and(|l| l <= 5), "{t}: {seen:?} {reason}");
                assert!(
                    reason.contains("error rate above 1.5x the primary's"),
                    "{reason}"
                );
            } else {
                assert!(
                    !seen.contains(&MetricVerdict::Fail),
                    "{t} {ns}: {seen:?} {reason}"
                );
                assert_eq!(
                    *seen.last().unwrap(),
                    MetricVerdict::Pass,
                    "{t} {ns}: {reason}"
                );
            }
        }
    }

    // The latency comparison, once the 30 s lookback holds enough windows.
    let ready = test_start + Duration::from_secs(33);
    tokio::time::sleep_until(ready.into()).await;
    for t in Telemetry::ALL {
        let latency = vec![resolved(t, &args).remove(1)];
        for (ns, _, slowdown) in SCENARIOS {
            let v = vars(ns, "podinfo", BTreeMap::new());
            let input = CheckInput::new(&latency, &v, interval, &[], &sources, chrono::Utc::now());
            let st = &run_check(&input).await.metrics[0];
            eprintln!("  {t:<18} {ns:<7} latency  {:?}  {}", st.verdict, st.reason);
            let want = if slowdown > 1.0 {
                MetricVerdict::Fail
            } else {
                MetricVerdict::Pass
            };
            assert_eq!(st.verdict, want, "{t} {ns}: {}", st.reason);
            // p99 of 20-60 ms with a 3x tail: about 0.15 s for the primary.
            let baseline = st.baseline.unwrap();
            assert!((0.05..0.3).contains(&baseline), "{t} {ns}: {}", st.reason);
        }
    }

    // `serin analyze` over the last windows: range queries evaluated at the window
    // ends must line up with real Prometheus's step timestamps. It judges the guards
    // only (the comparative metrics need a canary beside the primary).
    let req = serin::analysis::history::AnalyzeRequest {
        template_name: "istio".into(),
        template: builtin_template(Telemetry::Istio),
        args: BTreeMap::from([("guardErrorRate".to_string(), "0.01".to_string())]),
        vars: vars("shop", "podinfo", BTreeMap::new()),
        interval: Duration::from_secs(3),
        end: chrono::Utc::now() - chrono::Duration::seconds(1),
        windows: 2,
        secrets: Default::default(),
    };
    let report = serin::analysis::history::analyze(&req, &sources)
        .await
        .unwrap();
    assert_eq!(report.comparative, ["errors", "latency"]);
    for w in &report.windows {
        let values: Vec<Option<f64>> = w.metrics.iter().map(|m| m.value).collect();
        let want = [0.02, 0.235];
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
    // 2% errors against a 1% guard: every window would have failed.
    assert_eq!(report.failed_fraction, 1.0);
    // The file on disk is the same template.
    let (name, spec) = load_template(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("analysis-templates/istio.yaml"),
    )
    .unwrap();
    assert_eq!(
        (name.as_str(), spec),
        ("istio", builtin_template(Telemetry::Istio))
    );

    eprintln!("  took {:?}", test_start.elapsed());
    let _ = prom.kill().await;
    traffic.abort();
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
