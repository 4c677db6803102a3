//! The bench's phases, in order: warm-up (every Deployment onboarded and initialized),
//! measure (releases through to `Succeeded`), soak (releases cycling), drain (the last
//! releases finish), restart (a fresh controller; start-up, then the idle re-checks).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use serin::gates::{apply_decision, DecisionRequest, Verb, Via};
use tokio::io::AsyncBufReadExt;

use super::controller::{
    process_cpu, Instance, InstantMetrics, Samples, MEASURE, RESTART, SOAK, WARMUP,
};
use super::Knobs;

pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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

/// What the phases saw; `figures.rs` turns it into the table.
#[derive(Default)]
pub struct Outcome {
    pub rss_start: u64,
    pub rss_warm: u64,
    pub rss_measure_max: u64,
    pub rss_measure_end: u64,
    pub rss_end: u64,
    pub hwm: u64,
    pub warmup: Duration,
    /// Mock stats after warm-up (counts since the start), before and after measuring.
    pub warm: Value,
    pub before: Value,
    pub after: Value,
    pub released: u64,
    pub measure_elapsed: Duration,
    pub measure_cpu: Duration,
    pub first_window: i64,
    pub last_window: i64,
    /// The mock's release ledger at the end of measuring.
    pub releases: Value,
    /// Mock stats before the restart and once the restarted controller had reconciled
    /// every Canary once (or the bound passed), and that largest list page.
    pub restart_before: Value,
    pub restart_after: Value,
    pub restart_largest_page: u64,
    pub first_canary: Option<Duration>,
    pub first_onboarding: Option<Duration>,
    pub pass_done: Option<Duration>,
    /// Idle Canary reconciles per 10 s bucket after the start-up pass.
    pub spread: Vec<u64>,
    /// RSS (KiB) at the end of each soak interval, and releases started.
    pub soak_rss: Vec<u64>,
    pub soak_releases: u64,
    /// Approval to router write (ms) over the whole run.
    pub approvals: Value,
    /// Every reconcile, and the metrics queries by (query, interval window).
    pub samples: Vec<super::controller::Sample>,
    pub queries: std::collections::HashMap<(u64, i64), u32>,
    pub total_queries: u64,
    /// Controllers that stopped on their own (phase, why).
    pub exits: Vec<(String, String)>,
}

/// Approve every gated Canary waiting at a gate, as `kubectl serin approve` does
/// through the approval API (`apply_decision`), until aborted.
async fn approver(http: reqwest::Client, base: String, human: kube::Client) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = get_json(&http, &format!("{base}/bench/waiting")).await;
        for key in waiting.as_array().into_iter().flatten() {
            let Some((ns, name)) = key.as_str().and_then(|k| k.split_once('/')) else {
                continue;
            };
            let decision = DecisionRequest::new(Verb::Approve);
            if let Err(e) =
                apply_decision(&human, ns, name, &decision, "bench-approver", Via::Api).await
            {
                tracing::debug!("approving {ns}/{name}: {e}");
            }
        }
    }
}

/// Wait until no release is open (every released Canary `Succeeded`) or `limit` passed;
/// `tick` runs every 200 ms.
async fn until_released(
    http: &reqwest::Client,
    base: &str,
    limit: Duration,
    at_least: Duration,
    mut tick: impl FnMut(),
) {
    let t0 = Instant::now();
    let mut checked = Instant::now();
    while t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tick();
        if t0.elapsed() >= at_least && checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            let r = get_json(http, &format!("{base}/bench/releases")).await;
            if r["open"].as_u64() == Some(0) {
                return;
            }
        }
    }
}

pub async fn run_phases(k: &Knobs) -> Outcome {
    let mut out = Outcome::default();
    // The mock API server, in a child process.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--mock-api-server")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the mock API server");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next_line().await.unwrap().expect("mock port");
        if let Some(p) = line.strip_prefix("PORT ") {
            break p.parse().unwrap();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let stats_url = format!("{base}/bench/stats");
    let stats = || get_json(&http, &stats_url);
    let interval = Duration::from_secs(k.interval_secs);
    let metrics = Arc::new(InstantMetrics {
        interval_ms: interval.as_millis() as i64,
        seen: Mutex::default(),
        total: Default::default(),
    });
    let samples = Arc::new(Samples::default());

    // ---- warm-up
    out.rss_start = proc_status_kib("VmRSS:");
    samples.phase.store(WARMUP, Ordering::Relaxed);
    let inst = Instance::start(&base, metrics.clone(), samples.clone());
    let warmup_limit = Duration::from_secs(k.warmup_secs);
    let mut initialized = 0;
    while inst.started.elapsed() < warmup_limit {
        tokio::time::sleep(Duration::from_millis(500)).await;
        initialized = stats().await["phases"]["Initialized"].as_u64().unwrap_or(0) as usize;
        if initialized >= k.deployments || inst.exited().is_some() {
            break;
        }
    }
    out.warmup = inst.started.elapsed();
    assert!(
        initialized >= k.deployments,
        "only {initialized} of {} Canaries initialized after {:?}",
        k.deployments,
        out.warmup
    );
    out.warm = stats().await;
    // Let the last writes' watch events settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    out.rss_warm = proc_status_kib("VmRSS:");
    out.before = stats().await;

    // ---- measure: releases from the release write to `Succeeded`, over at least
    // SCALE_INTERVALS whole check intervals.
    let human = kube::Client::try_from(kube::Config::new(
        format!("{base}/bench/human").parse().unwrap(),
    ))
    .unwrap();
    let approving = tokio::spawn(approver(http.clone(), base.clone(), human));
    samples.phase.store(MEASURE, Ordering::Relaxed);
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let window = |now: i64| now.div_euclid(interval.as_millis() as i64);
    out.first_window = window(Utc::now().timestamp_millis()) + 1;
    let released = get_json(&http, &format!("{base}/bench/release?count={}", k.releases)).await;
    out.released = released["released"].as_u64().unwrap_or(0);
    let mut rss_max = 0;
    until_released(
        &http,
        &base,
        Duration::from_secs(k.measure_max_secs),
        interval * k.intervals as u32 + interval / 2,
        || rss_max = rss_max.max(proc_status_kib("VmRSS:")),
    )
    .await;
    out.rss_measure_max = rss_max;
    out.last_window = window(Utc::now().timestamp_millis()) - 1;
    out.measure_elapsed = t0.elapsed();
    out.measure_cpu = process_cpu().saturating_sub(cpu0);
    out.after = stats().await;
    out.releases = get_json(&http, &format!("{base}/bench/releases")).await;
    out.rss_measure_end = proc_status_kib("VmRSS:");

    // ---- soak: the released Deployments get a new revision whenever their last one
    // succeeded; RSS at the end of every check interval.
    if k.soak_intervals > 0 {
        samples.phase.store(SOAK, Ordering::Relaxed);
        for _ in 0..k.soak_intervals {
            let end = Instant::now() + interval;
            while Instant::now() < end {
                let r = get_json(&http, &format!("{base}/bench/recycle")).await;
                out.soak_releases += r["released"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(500).min(interval)).await;
            }
            out.soak_rss.push(proc_status_kib("VmRSS:"));
        }
        // Drain: the releases in flight finish before the restart.
        until_released(
            &http,
            &base,
            Duration::from_secs(k.measure_max_secs),
            Duration::ZERO,
            || {},
        )
        .await;
    }
    out.rss_end = proc_status_kib("VmRSS:");
    if let Some(why) = inst.exited() {
        out.exits.push(("warm-up, measure or soak".into(), why));
    }

    // ---- restart: stop the controller (and all it spawned), start a fresh one
    // against the same API server; the same identity re-acquires its Lease at once.
    inst.stop();
    samples.phase.store(RESTART, Ordering::Relaxed);
    get_json(&http, &format!("{base}/bench/reset-largest-page")).await;
    out.restart_before = stats().await;
    let from = samples.all.lock().unwrap().len();
    let inst = Instance::start(&base, metrics.clone(), samples.clone());
    let limit = Duration::from_secs(k.warmup_secs);
    while inst.started.elapsed() < limit && inst.exited().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let canary = samples.since(from, "canary", RESTART);
        let onboarding = samples.since(from, "materialize", RESTART);
        let since = |s: &super::controller::Sample| samples.done(s).duration_since(inst.started);
        out.first_canary = canary.iter().map(since).min();
        out.first_onboarding = onboarding.iter().map(since).min();
        if canary.len() >= k.deployments {
            let mut t: Vec<Duration> = canary.iter().map(since).collect();
            t.sort();
            out.pass_done = Some(t[k.deployments - 1]);
            break;
        }
    }
    out.restart_after = stats().await;
    out.restart_largest_page = out.restart_after["largest_page"].as_u64().unwrap_or(0);
    // Idle re-checks: the Canary reconciles after the start-up pass, per 10 s.
    if let (Some(pass), true) = (out.pass_done, k.spread_secs > 0) {
        let from = inst.started + pass;
        let until = from + Duration::from_secs(k.spread_secs);
        tokio::time::sleep_until(until.into()).await;
        // Whole buckets only.
        let mut buckets = vec![0u64; (k.spread_secs / 10).max(1) as usize];
        for s in samples.of("canary", RESTART) {
            let done = samples.done(&s);
            if done > from {
                let b = (done.duration_since(from).as_secs() / 10) as usize;
                if let Some(n) = buckets.get_mut(b) {
                    *n += 1;
                }
            }
        }
        out.spread = buckets;
    }
    if let Some(why) = inst.exited() {
        out.exits.push(("restart".into(), why));
    }
    out.hwm = proc_status_kib("VmHWM:");
    out.approvals = get_json(&http, &format!("{base}/bench/releases")).await;
    approving.abort();
    inst.stop();
    out.samples = samples.all.lock().unwrap().clone();
    out.queries = metrics.seen.lock().unwrap().clone();
    out.total_queries = metrics.total.load(Ordering::Relaxed);
    let _ = child.kill().await;
    out
}
