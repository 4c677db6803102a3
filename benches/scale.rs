//! Scale: the real controller (`serin::controller::run::run`: leader election, both
//! watches, the Canary and onboarding reconcilers) against a mock API server over real
//! HTTP on 127.0.0.1 holding 1,000 annotated Deployments, with an instant in-process
//! metrics source. First every Deployment is onboarded and initialized (warm-up); then
//! 100 get a new revision and are released while the figures are taken over a fixed
//! number of check intervals.
//!
//! The mock API server runs in a child process (this binary, `--mock-api-server`), so
//! RSS is the controller's alone. CPU per reconcile is the thread CPU time summed over
//! every poll of the reconcile future (reconciles hop threads between polls); it covers
//! the reconcile's own work (decoding responses, deciding, encoding patches), not the
//! shared watch and HTTP connection tasks, which "process CPU per reconcile" includes.
//!
//! Run: `cargo bench --bench scale`. Knobs (env): SCALE_DEPLOYMENTS (1000),
//! SCALE_RELEASES (100), SCALE_NAMESPACES (50), SCALE_INTERVAL_SECS (2),
//! SCALE_INTERVALS (10).

#![recursion_limit = "256"]

#[path = "scale/mock.rs"]
mod mock;
#[path = "scale/seed.rs"]
mod seed;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nix::time::{clock_gettime, ClockId};
use serde_json::{json, Value};
use serin::controller::run::{run, ReconcileFuture, ReconcileHook, RunOptions};
use serin::controller::{Context, Fence, KubeEvents, Routers};
use serin::crd::ProviderSpec;
use serin::providers::{MetricError, MetricSource, MetricSources, ProviderCredentials};
use serin::traffic::{RouterKind, ServiceRouter, TrafficRouter};
use serin::workloads::deployments::{KubeWorkloads, OwnedCaches};
use tokio::io::AsyncBufReadExt;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- metrics source

/// Answers every query at once with a passing value; counts queries by
/// (query text, interval window).
struct InstantMetrics {
    interval_ms: i64,
    seen: Mutex<HashMap<(String, i64), u32>>,
    total: AtomicU64,
}

#[async_trait]
impl MetricSource for InstantMetrics {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        let window = at.timestamp_millis().div_euclid(self.interval_ms);
        *self
            .seen
            .lock()
            .unwrap()
            .entry((query.to_string(), window))
            .or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(0.001)
    }
    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.query_scalar(query, at).await.map(|v| vec![v])
    }
}

struct Sources(Arc<InstantMetrics>);
impl MetricSources for Sources {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

// ---------------------------------------------------------------- CPU per reconcile

fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn process_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

#[derive(Default)]
struct Samples {
    /// (controller, measured phase?, CPU time)
    cpu: Mutex<Vec<(&'static str, bool, Duration)>>,
    measuring: AtomicBool,
}

/// Sums the thread CPU time of every poll of a reconcile.
struct CpuTimed {
    fut: ReconcileFuture,
    spent: Duration,
    which: &'static str,
    samples: Arc<Samples>,
}

impl Future for CpuTimed {
    type Output = <ReconcileFuture as Future>::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let t0 = thread_cpu();
        let r = this.fut.as_mut().poll(cx);
        this.spent += thread_cpu().saturating_sub(t0);
        if r.is_ready() {
            let measuring = this.samples.measuring.load(Ordering::Relaxed);
            this.samples
                .cpu
                .lock()
                .unwrap()
                .push((this.which, measuring, this.spent));
        }
        r
    }
}

// ---------------------------------------------------------------- memory

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------- figures

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct CpuFigures {
    count: usize,
    median: Duration,
    p99: Duration,
}

fn cpu_figures(samples: &Samples, which: &str, measured: bool) -> CpuFigures {
    let mut v: Vec<Duration> = samples
        .cpu
        .lock()
        .unwrap()
        .iter()
        .filter(|(w, m, _)| *w == which && *m == measured)
        .map(|(_, _, d)| *d)
        .collect();
    v.sort();
    CpuFigures {
        count: v.len(),
        median: percentile(&v, 0.5),
        p99: percentile(&v, 0.99),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .expect("mock API server")
        .json()
        .await
        .expect("JSON")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let deployments: usize = env_or("SCALE_DEPLOYMENTS", 1000);
    let namespaces: usize = env_or("SCALE_NAMESPACES", 50);
    let interval_secs: u64 = env_or("SCALE_INTERVAL_SECS", 2);
    let steps = (1..=19)
        .map(|i| (i * 5).to_string())
        .collect::<Vec<_>>()
        .join(",");
    if args.iter().any(|a| a == "--mock-api-server") {
        let seed = seed::Seed {
            deployments,
            namespaces,
            interval: format!("{interval_secs}s"),
            steps,
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(mock::serve(seed));
        return;
    }
    // The controller gets two worker threads, as on a two-core node.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(deployments, namespaces, interval_secs));
}

async fn bench(deployments: usize, namespaces: usize, interval_secs: u64) {
    // Dev-dependencies enable both rustls providers; pick one (the API is plain HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The controller's own log, at RUST_LOG's level (errors only by default), on stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let releases: usize = env_or("SCALE_RELEASES", 100);
    let intervals: u64 = env_or("SCALE_INTERVALS", 10);
    let interval = Duration::from_secs(interval_secs);

    // The mock API server, in a child process.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--mock-api-server")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the mock API server");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("mock API server port");
        if let Some(p) = line.strip_prefix("PORT ") {
            break p.parse().unwrap();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let config = kube::Config::new(base.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();

    let metrics = Arc::new(InstantMetrics {
        interval_ms: interval.as_millis() as i64,
        seen: Mutex::default(),
        total: AtomicU64::new(0),
    });
    let mut by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> = HashMap::new();
    by_kind.insert(
        RouterKind::Service,
        Arc::new(ServiceRouter::new(client.clone())),
    );
    let ctx = Context {
        written: Default::default(),
        templates: None,
        policies: None,
        client: client.clone(),
        workloads: Arc::new(
            KubeWorkloads::new(client.clone()).with_caches(OwnedCaches::start(&client, None)),
        ),
        routers: Routers {
            by_kind,
            default: RouterKind::Service,
        },
        sources: Arc::new(Sources(metrics.clone())),
        events: Arc::new(KubeEvents::new(client.clone(), Some("serin-bench".into()))),
        clock: Arc::new(Utc::now),
        check_timeout: Duration::from_secs(5),
        reconcile_deadline: Duration::from_secs(20),
        queries: None,
        controller_namespace: "serin-system".into(),
        webhooks: None,
        notify: None,
        // As in production: the controller's own metrics are part of what is measured.
        metrics: Arc::new(serin::metrics::ControllerMetrics::new()),
        // Closed until run() holds the Lease; opened by each renewal (as `serin
        // controller` with leader election sets it up).
        fence: Fence::new(Duration::from_secs(10)),
    };
    let samples = Arc::new(Samples::default());
    let hook_samples = samples.clone();
    let opts = RunOptions {
        namespace: None,
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: true,
        lease_namespace: "serin-system".into(),
        lease_name: "serin-leader".into(),
        identity: "serin-bench".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        shard: Default::default(),
        reconcile_hook: Some(ReconcileHook(Arc::new(move |which, fut| {
            Box::pin(CpuTimed {
                fut,
                spent: Duration::ZERO,
                which,
                samples: hook_samples.clone(),
            })
        }))),
        reconcile_concurrency: serin::controller::run::DEFAULT_RECONCILE_CONCURRENCY,
        max_reconciles_per_namespace: serin::controller::run::DEFAULT_RECONCILES_PER_NAMESPACE,
    };
    let rss_start = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let controller = tokio::spawn(run(client, ctx, opts));

    // Warm-up: every Deployment onboarded (a Canary) and initialized.
    let warmup_limit = Duration::from_secs(env_or("SCALE_WARMUP_SECS", 120));
    let mut initialized = 0;
    while started.elapsed() < warmup_limit {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = get_json(&http, &format!("{base}/bench/stats")).await;
        initialized = stats["phases"]["Initialized"].as_u64().unwrap_or(0) as usize;
        if initialized >= deployments {
            break;
        }
    }
    let warmup = started.elapsed();
    assert!(
        initialized >= deployments,
        "only {initialized} of {deployments} Canaries initialized after {warmup:?}"
    );
    // Let the last writes' watch events settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_warm = proc_status_kib("VmRSS:");
    let before = get_json(&http, &format!("{base}/bench/stats")).await;

    // Measure: releases in flight over whole check intervals.
    samples.measuring.store(true, Ordering::Relaxed);
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let first_window = Utc::now()
        .timestamp_millis()
        .div_euclid(interval.as_millis() as i64)
        + 1;
    let released = get_json(&http, &format!("{base}/bench/release?count={releases}")).await;
    let mut rss_max = 0;
    while t0.elapsed() < interval * intervals as u32 + interval / 2 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss_max = rss_max.max(proc_status_kib("VmRSS:"));
    }
    let last_window = Utc::now()
        .timestamp_millis()
        .div_euclid(interval.as_millis() as i64)
        - 1;
    let elapsed = t0.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    samples.measuring.store(false, Ordering::Relaxed);
    let after = get_json(&http, &format!("{base}/bench/stats")).await;
    let rss_end = proc_status_kib("VmRSS:");
    let hwm = proc_status_kib("VmHWM:");
    controller.abort();

    // Queries per whole interval window of the measured phase, and duplicates.
    let seen = metrics.seen.lock().unwrap().clone();
    let mut per_window: HashMap<i64, u32> = HashMap::new();
    let mut duplicates = 0u32;
    for ((_, w), n) in &seen {
        *per_window.entry(*w).or_default() += n;
        duplicates += n - 1;
    }
    let mut windows: Vec<u32> = (first_window..=last_window)
        .map(|w| per_window.get(&w).copied().unwrap_or(0))
        .collect();
    windows.sort();
    let q_median = windows.get(windows.len() / 2).copied().unwrap_or(0);
    let q_min = windows.first().copied().unwrap_or(0);
    let q_max = windows.last().copied().unwrap_or(0);

    let canary = cpu_figures(&samples, "canary", true);
    let mat = cpu_figures(&samples, "materialize", true);
    let canary_w = cpu_figures(&samples, "canary", false);
    let mat_w = cpu_figures(&samples, "materialize", false);
    let reconciles = canary.count + mat.count;
    let rps = reconciles as f64 / elapsed.as_secs_f64();
    let cpu_per_reconcile = if reconciles > 0 {
        cpu / reconciles as u32
    } else {
        Duration::ZERO
    };
    let delta = |k: &str| {
        let a = after["requests"][k].as_u64().unwrap_or(0);
        let b = before["requests"][k].as_u64().unwrap_or(0);
        a - b
    };
    let api_calls: u64 = after["requests"]
        .as_object()
        .map(|m| m.keys().map(|k| delta(k)).sum())
        .unwrap_or(0);

    let ok = |b: bool| if b { "ok" } else { "MISS" };
    println!(
        "\nserin scale benchmark: {deployments} annotated Deployments in {namespaces} namespaces, \
         {} releases in flight, check interval {interval_secs}s, {intervals} intervals measured ({:.1}s)",
        released["released"], elapsed.as_secs_f64()
    );
    println!(
        "warm-up: {deployments} Canaries onboarded and initialized in {:.1}s; {} canary + {} onboarding reconciles, \
         CPU median {:.3} ms / {:.3} ms",
        warmup.as_secs_f64(),
        canary_w.count,
        mat_w.count,
        ms(canary_w.median),
        ms(mat_w.median)
    );
    println!();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!(
        "| RSS at start / after warm-up / end of run | {:.1} / {:.1} / {:.1} MiB | |",
        mib(rss_start),
        mib(rss_warm),
        mib(rss_end)
    );
    println!(
        "| RSS peak while measuring / VmHWM (whole run) | {:.1} / {:.1} MiB | <= 64 MiB: {} |",
        mib(rss_max),
        mib(hwm),
        ok(hwm <= 64 * 1024)
    );
    println!(
        "| CPU per Canary reconcile, median / p99 ({} reconciles) | {:.3} / {:.3} ms | median <= 1 ms: {} |",
        canary.count,
        ms(canary.median),
        ms(canary.p99),
        ok(canary.median <= Duration::from_millis(1))
    );
    println!(
        "| CPU per onboarding reconcile, median / p99 ({} reconciles) | {:.3} / {:.3} ms | median <= 1 ms: {} |",
        mat.count,
        ms(mat.median),
        ms(mat.p99),
        ok(mat.median <= Duration::from_millis(1))
    );
    println!(
        "| process CPU per reconcile (watches, HTTP, everything) | {:.3} ms ({:.1}% of one core) | |",
        ms(cpu_per_reconcile),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!("| reconciles per second | {rps:.1} | |");
    println!(
        "| Prometheus queries per interval, min / median / max ({} whole intervals) | {q_min} / {q_median} / {q_max} | |",
        windows.len()
    );
    println!(
        "| duplicate queries within one interval | {duplicates} | 0: {} |",
        ok(duplicates == 0)
    );
    println!(
        "| API requests while measuring (per second) | {api_calls} ({:.0}/s) | |",
        api_calls as f64 / elapsed.as_secs_f64()
    );
    println!("\nAPI requests while measuring, by verb and resource:");
    if let Some(m) = after["requests"].as_object() {
        for k in m.keys() {
            let d = delta(k);
            if d > 0 {
                println!("  {k}: {d}");
            }
        }
    }
    println!("Canaries by phase at the end: {}", after["phases"]);
    println!("Canaries by step at the end: {}", after["steps"]);
    if std::env::var_os("SCALE_DEBUG").is_some() {
        println!("a Progressing Canary's status: {:#}", after["example"]);
    }
    let figures = json!({
        "deployments": deployments, "releases": releases, "interval_s": interval_secs,
        "intervals": intervals, "warmup_s": warmup.as_secs_f64(),
        "rss_mib": mib(rss_end), "rss_peak_measuring_mib": mib(rss_max), "vmhwm_mib": mib(hwm),
        "rss_after_warmup_mib": mib(rss_warm),
        "canary_reconcile_cpu_ms": {"median": ms(canary.median), "p99": ms(canary.p99), "count": canary.count},
        "onboarding_reconcile_cpu_ms": {"median": ms(mat.median), "p99": ms(mat.p99), "count": mat.count},
        "process_cpu_per_reconcile_ms": ms(cpu_per_reconcile),
        "reconciles_per_s": rps,
        "queries_per_interval": {"min": q_min, "median": q_median, "max": q_max},
        "duplicate_queries": duplicates,
        "total_queries": metrics.total.load(Ordering::Relaxed),
        "api_requests": api_calls,
    });
    println!("{figures}");
    let _ = child.kill().await;
}
