//! Prometheus text exposition of the demo app's requests, in the shapes real
//! instrumentation exports: the app's own histogram, and the series Istio, Linkerd,
//! ingress-nginx and Envoy would record for the same requests. The shipped analysis
//! templates are exercised against these.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets; fine enough around the demo's
/// thresholds (tens to hundreds of milliseconds) for `histogram_quantile` to be useful.
pub const BUCKETS_SECONDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// A metric shape the demo app can export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Telemetry {
    App,
    Istio,
    Linkerd,
    IngressNginx,
    Envoy,
}

impl Telemetry {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "app" => Some(Telemetry::App),
            "istio" => Some(Telemetry::Istio),
            "linkerd" => Some(Telemetry::Linkerd),
            "ingress-nginx" | "nginx" => Some(Telemetry::IngressNginx),
            "envoy" => Some(Telemetry::Envoy),
            _ => None,
        }
    }
    pub fn accepted() -> &'static str {
        "app, istio, linkerd, ingress-nginx, envoy"
    }
}

/// Who the instance is, as the mesh or ingress would label it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TelemetryLabels {
    /// Deployment name (`podinfo` for the canary, `podinfo-primary` for the primary).
    pub workload: String,
    pub namespace: String,
    /// Apex service name.
    pub service: String,
    pub canary: bool,
    /// The Service port (ingress-nginx and Envoy name upstreams after it).
    pub port: u16,
}

#[derive(Clone, Debug, Default)]
struct Series {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS_SECONDS.len() + 1],
    count: u64,
    sum_seconds: f64,
}

/// Request counters and latency histograms, keyed by (method, route, code).
pub struct TelemetryRegistry {
    shapes: Vec<Telemetry>,
    labels: TelemetryLabels,
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl TelemetryRegistry {
    pub fn new(shapes: Vec<Telemetry>, labels: TelemetryLabels) -> Self {
        Self {
            shapes,
            labels,
            series: Mutex::default(),
        }
    }

    pub fn observe(&self, method: &str, route: &str, code: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let idx = BUCKETS_SECONDS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS_SECONDS.len());
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = map
            .entry((method.to_string(), route.to_string(), code))
            .or_default();
        s.buckets[idx] += 1;
        s.count += 1;
        s.sum_seconds += secs;
    }

    /// The exposition text of every configured shape.
    pub fn render(&self) -> String {
        let map = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        for shape in &self.shapes {
            match shape {
                Telemetry::App => self.render_app(&map, &mut out),
                Telemetry::Istio => self.render_istio(&map, &mut out),
                Telemetry::Linkerd => self.render_linkerd(&map, &mut out),
                Telemetry::IngressNginx => self.render_nginx(&map, &mut out),
                Telemetry::Envoy => self.render_envoy(&map, &mut out),
            }
        }
        out
    }

    fn render_app(&self, map: &SeriesMap, out: &mut String) {
        let by = |m: &str, r: &str, c: u16| {
            vec![
                ("method", m.to_string()),
                ("route", r.to_string()),
                ("code", c.to_string()),
            ]
        };
        counter(
            out,
            "http_requests_total",
            "HTTP requests served.",
            map,
            &by,
        );
        histogram(
            out,
            "http_request_duration_seconds",
            "Time spent serving HTTP requests.",
            map,
            &by,
            1.0,
        );
    }

    fn render_istio(&self, map: &SeriesMap, out: &mut String) {
        let l = &self.labels;
        let by = |_: &str, _: &str, c: u16| {
            vec![
                ("reporter", "destination".to_string()),
                ("destination_workload", l.workload.clone()),
                ("destination_workload_namespace", l.namespace.clone()),
                (
                    "destination_service",
                    format!("{}.{}.svc.cluster.local", l.service, l.namespace),
                ),
                ("request_protocol", "http".to_string()),
                ("response_code", c.to_string()),
            ]
        };
        counter(out, "istio_requests_total", "Istio requests.", map, &by);
        histogram(
            out,
            "istio_request_duration_milliseconds",
            "Istio request duration.",
            map,
            &by,
            1000.0,
        );
    }

    fn render_linkerd(&self, map: &SeriesMap, out: &mut String) {
        let l = &self.labels;
        let by = |_: &str, _: &str, c: u16| {
            let class = if c >= 500 { "failure" } else { "success" };
            vec![
                ("direction", "inbound".to_string()),
                ("namespace", l.namespace.clone()),
                ("deployment", l.workload.clone()),
                ("classification", class.to_string()),
                ("status_code", c.to_string()),
            ]
        };
        counter(out, "response_total", "Linkerd responses.", map, &by);
        histogram(
            out,
            "response_latency_ms",
            "Linkerd response latency.",
            map,
            &by,
            1000.0,
        );
    }

    fn backend_service(&self) -> String {
        let l = &self.labels;
        let suffix = if l.canary { "canary" } else { "primary" };
        format!("{}-{suffix}", l.service)
    }

    fn render_nginx(&self, map: &SeriesMap, out: &mut String) {
        let l = &self.labels;
        // ingress-nginx labels requests it routed to the canary backend with that
        // upstream's name, `<namespace>-<service>-<port>`; others with "". `service`
        // is the backend of the user's Ingress, whose location the canary Ingress is
        // merged into: the apex Service for both.
        let canary = if l.canary {
            format!("{}-{}-{}", l.namespace, self.backend_service(), l.port)
        } else {
            String::new()
        };
        let svc = l.service.clone();
        let by = |m: &str, _: &str, c: u16| {
            vec![
                ("controller_class", "k8s.io/ingress-nginx".to_string()),
                ("ingress", l.service.clone()),
                ("namespace", l.namespace.clone()),
                ("service", svc.clone()),
                ("canary", canary.clone()),
                ("method", m.to_string()),
                ("path", "/".to_string()),
                ("status", c.to_string()),
            ]
        };
        counter(
            out,
            "nginx_ingress_controller_requests",
            "ingress-nginx requests.",
            map,
            &by,
        );
        histogram(
            out,
            "nginx_ingress_controller_response_duration_seconds",
            "ingress-nginx upstream response time.",
            map,
            &by,
            1.0,
        );
    }

    fn render_envoy(&self, map: &SeriesMap, out: &mut String) {
        let l = &self.labels;
        // Contour's cluster naming: `<namespace>_<service>_<port>`.
        let cluster = format!("{}_{}_{}", l.namespace, self.backend_service(), l.port);
        let by_code = |_: &str, _: &str, c: u16| {
            vec![
                ("envoy_cluster_name", cluster.clone()),
                ("envoy_response_code", c.to_string()),
            ]
        };
        counter(
            out,
            "envoy_cluster_upstream_rq",
            "Envoy upstream requests.",
            map,
            &by_code,
        );
        let by_class = |_: &str, _: &str, c: u16| {
            vec![
                ("envoy_cluster_name", cluster.clone()),
                ("envoy_response_code_class", (c / 100).to_string()),
            ]
        };
        counter(
            out,
            "envoy_cluster_upstream_rq_xx",
            "Envoy upstream requests by class.",
            map,
            &by_class,
        );
        let by = |_: &str, _: &str, _: u16| vec![("envoy_cluster_name", cluster.clone())];
        histogram(
            out,
            "envoy_cluster_upstream_rq_time",
            "Envoy upstream request time (ms).",
            map,
            &by,
            1000.0,
        );
    }
}

type SeriesMap = BTreeMap<(String, String, u16), Series>;
type LabelFn<'a> = dyn Fn(&str, &str, u16) -> Vec<(&'static str, String)> + 'a;

/// Sum the series that map to the same label set (shapes without method/route).
fn grouped(map: &SeriesMap, by: &LabelFn<'_>) -> BTreeMap<Vec<(&'static str, String)>, Series> {
    let mut out: BTreeMap<Vec<(&'static str, String)>, Series> = BTreeMap::new();
    for ((m, r, c), s) in map {
        let e = out.entry(by(m, r, *c)).or_default();
        for (a, b) in e.buckets.iter_mut().zip(s.buckets.iter()) {
            *a += b;
        }
        e.count += s.count;
        e.sum_seconds += s.sum_seconds;
    }
    out
}

fn label_text(labels: &[(&'static str, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(out: &mut String, name: &str, help: &str, map: &SeriesMap, by: &LabelFn<'_>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, s) in grouped(map, by) {
        let _ = writeln!(out, "{name}{} {}", label_text(&labels, None), s.count);
    }
}

/// `scale` converts seconds to the shape's unit (1000 for milliseconds).
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    map: &SeriesMap,
    by: &LabelFn<'_>,
    scale: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, s) in grouped(map, by) {
        let mut cumulative = 0;
        for (i, le) in BUCKETS_SECONDS.iter().enumerate() {
            cumulative += s.buckets[i];
            let le = format_float(le * scale);
            let _ = writeln!(
                out,
                "{name}_bucket{} {cumulative}",
                label_text(&labels, Some(("le", &le)))
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            label_text(&labels, Some(("le", "+Inf"))),
            s.count
        );
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            label_text(&labels, None),
            format_float(s.sum_seconds * scale)
        );
        let _ = writeln!(out, "{name}_count{} {}", label_text(&labels, None), s.count);
    }
}

fn format_float(v: f64) -> String {
    // Round away binary noise such as 0.075*1000 = 75.00000000000001.
    let r = (v * 1e9).round() / 1e9;
    format!("{r}")
}

/// A small lock-free pseudo-random generator (SplitMix64): enough for error injection
/// and jitter, no dependency.
pub struct Rng(AtomicU64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> TelemetryLabels {
        TelemetryLabels {
            workload: "podinfo".into(),
            namespace: "demo".into(),
            service: "podinfo".into(),
            canary: true,
            port: 80,
        }
    }

    #[test]
    fn app_histogram_is_cumulative_and_counts_match() {
        let r = TelemetryRegistry::new(vec![Telemetry::App], labels());
        r.observe("GET", "/", 200, Duration::from_millis(3));
        r.observe("GET", "/", 200, Duration::from_millis(120));
        r.observe("GET", "/", 500, Duration::from_millis(40));
        let text = r.render();
        assert!(text.contains(r#"http_requests_total{method="GET",route="/",code="200"} 2"#));
        assert!(text.contains(r#"http_requests_total{method="GET",route="/",code="500"} 1"#));
        // 3 ms falls in le=0.005; 120 ms first in le=0.15.
        let ok = r#"http_request_duration_seconds_bucket{method="GET",route="/",code="200","#;
        assert!(text.contains(&format!(r#"{ok}le="0.005"}} 1"#)));
        assert!(text.contains(&format!(r#"{ok}le="0.1"}} 1"#)));
        assert!(text.contains(&format!(r#"{ok}le="0.15"}} 2"#)));
        assert!(text.contains(&format!(r#"{ok}le="+Inf"}} 2"#)));
        assert!(text.contains(
            r#"http_request_duration_seconds_count{method="GET",route="/",code="200"} 2"#
        ));
    }

    #[test]
    fn mesh_shapes_group_methods_and_scale_to_milliseconds() {
        let r = TelemetryRegistry::new(
            vec![
                Telemetry::Istio,
                Telemetry::Linkerd,
                Telemetry::IngressNginx,
            ],
            labels(),
        );
        r.observe("GET", "/", 200, Duration::from_millis(3));
        r.observe("POST", "/api/*", 200, Duration::from_millis(3));
        r.observe("GET", "/", 503, Duration::from_millis(3));
        let text = r.render();
        assert!(text.contains(
            r#"istio_requests_total{reporter="destination",destination_workload="podinfo",destination_workload_namespace="demo",destination_service="podinfo.demo.svc.cluster.local",request_protocol="http",response_code="200"} 2"#
        ));
        assert!(text.contains(r#"istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="podinfo",destination_workload_namespace="demo",destination_service="podinfo.demo.svc.cluster.local",request_protocol="http",response_code="200",le="75"} 2"#));
        assert!(text.contains(r#"response_total{direction="inbound",namespace="demo",deployment="podinfo",classification="failure",status_code="503"} 1"#));
        assert!(text.contains(r#"service="podinfo",canary="demo-podinfo-canary-80",method="POST",path="/",status="200"} 1"#));
    }

    #[test]
    fn envoy_counts_by_class_per_contour_cluster() {
        let r = TelemetryRegistry::new(vec![Telemetry::Envoy], labels());
        r.observe("GET", "/", 200, Duration::from_millis(3));
        r.observe("GET", "/", 503, Duration::from_millis(3));
        r.observe("GET", "/", 500, Duration::from_millis(3));
        let text = r.render();
        let c = r#"envoy_cluster_name="demo_podinfo-canary_80""#;
        assert!(
            text.contains(&format!(
                r#"envoy_cluster_upstream_rq_xx{{{c},envoy_response_code_class="5"}} 2"#
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            r#"envoy_cluster_upstream_rq_xx{{{c},envoy_response_code_class="2"}} 1"#
        )));
        assert!(text.contains(&format!(
            r#"envoy_cluster_upstream_rq_time_bucket{{{c},le="5"}} 3"#
        )));
    }

    #[test]
    fn rng_is_roughly_uniform() {
        let rng = Rng::new(7);
        let n = 100_000;
        let below = (0..n).filter(|_| rng.next_f64() < 0.05).count();
        // Binomial(100000, 0.05): sd ≈ 69; allow 5 sd.
        assert!((below as i64 - 5000).abs() < 345, "{below}");
    }
}
