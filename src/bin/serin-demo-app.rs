//! The demo workload serin releases locally: a small HTTP service that answers with its
//! version, can be told to fail or to be slow, and exports Prometheus metrics the way an
//! instrumented app (and, on request, Istio, Linkerd, ingress-nginx or Envoy) would.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use serin::local::telemetry::{Telemetry, TelemetryLabels, TelemetryRegistry};

#[derive(Parser, Debug)]
#[command(
    name = "serin-demo-app",
    about = "Demo workload for `serin demo` and the e2e tests"
)]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Version string returned in the `x-version` header.
    #[arg(long, default_value = "v1")]
    version: String,
    /// Fraction of requests to `/` and `/api/*` answered with a 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// A downstream dependency every version calls: the fraction of its calls that
    /// fail is read from this file (a number from 0 to 1; missing or unreadable: 0)
    /// and re-read every 250 ms, so one write makes every running instance flaky
    /// at once. A failed call fails the request (500), on top of --error-rate.
    #[arg(long)]
    dependency_file: Option<std::path::PathBuf>,
    /// Latency added to every work request, in milliseconds (±10% jitter).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Metric shapes to export besides the app's own: istio, linkerd, ingress-nginx,
    /// envoy, app (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    telemetry: Vec<String>,
    /// Deployment name this instance belongs to (e.g. podinfo or podinfo-primary).
    #[arg(long, default_value = "demo")]
    workload: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Apex service name (ingress-nginx and Envoy shapes name the backend after it).
    #[arg(long, default_value = "demo")]
    service: String,
    /// Service port (ingress-nginx and Envoy name upstreams after it).
    #[arg(long, default_value_t = 80)]
    service_port: u16,
    /// primary or canary (ingress-nginx and Envoy shapes label canary backends).
    #[arg(long, default_value = "primary")]
    role: String,
    /// Identifies this process in `/healthz`, so a supervisor can tell it from a
    /// stranger that took the same port.
    #[arg(long, default_value = "")]
    instance_id: String,
}

struct App {
    args: Args,
    registry: TelemetryRegistry,
    rng: serin::local::telemetry::Rng,
    /// The dependency's current failure fraction (f64 bits).
    dependency_errors: AtomicU64,
}

/// The failure fraction written in `path`, if it holds one in 0..=1.
fn read_fraction(path: &std::path::Path) -> Option<f64> {
    let v: f64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (0.0..=1.0).contains(&v).then_some(v)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.error_rate) {
        return Err(format!("--error-rate {} is not in 0..=1", args.error_rate).into());
    }
    let mut shapes = vec![Telemetry::App];
    for t in &args.telemetry {
        let shape = Telemetry::parse(t)
            .ok_or_else(|| format!("--telemetry {t:?}: expected {}", Telemetry::accepted()))?;
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    let labels = TelemetryLabels {
        workload: args.workload.clone(),
        namespace: args.namespace.clone(),
        service: args.service.clone(),
        canary: args.role == "canary",
        port: args.service_port,
    };
    let seed = u64::from(std::process::id()) ^ (args.listen.port() as u64) << 32;
    let app = Arc::new(App {
        registry: TelemetryRegistry::new(shapes, labels),
        rng: serin::local::telemetry::Rng::new(seed),
        dependency_errors: AtomicU64::new(0f64.to_bits()),
        args,
    });
    if let Some(path) = app.args.dependency_file.clone() {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                let v = read_fraction(&path).unwrap_or(0.0);
                app.dependency_errors.store(v.to_bits(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(work).post(work))
        .route("/api/{*rest}", get(work).post(work))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(app.args.listen).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let body = format!(
        "{{\"instance\":{:?},\"version\":{:?}}}",
        app.args.instance_id, app.args.version
    );
    with_version(&app, (StatusCode::OK, body).into_response())
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut r = app.registry.render().into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn work(State(app): State<Arc<App>>, method: Method, uri: axum::http::Uri) -> Response {
    let start = Instant::now();
    if app.args.latency_ms > 0 {
        let jitter = 0.9 + 0.2 * app.rng.next_f64();
        let ms = app.args.latency_ms as f64 * jitter;
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
    let dependency = f64::from_bits(app.dependency_errors.load(Ordering::Relaxed));
    let failed = (app.args.error_rate > 0.0 && app.rng.next_f64() < app.args.error_rate)
        || (dependency > 0.0 && app.rng.next_f64() < dependency);
    let code = if failed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    // Route templates, not raw paths, keep the label set bounded.
    let route = if uri.path() == "/" { "/" } else { "/api/*" };
    let body = format!(
        "{} says hello from {}\n",
        app.args.workload, app.args.version
    );
    app.registry
        .observe(method.as_str(), route, code.as_u16(), start.elapsed());
    with_version(&app, (code, body).into_response())
}

fn with_version(app: &App, mut r: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&app.args.version) {
        r.headers_mut().insert("x-version", v);
    }
    r
}
