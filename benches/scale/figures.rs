//! The figures of one run: a table with the targets (`ok`/`MISS`), the
//! requests by verb and resource behind them, and one JSON line with everything.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};

use super::controller::{Sample, MEASURE, WARMUP};
use super::phases::Outcome;
use super::Knobs;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The RSS target: 40 MiB up to 1,000 Deployments, 128 MiB at 10,000 (the two
/// points), linear in between and beyond.
fn rss_target_mib(deployments: usize) -> f64 {
    if deployments <= 1000 {
        40.0
    } else {
        40.0 + (deployments - 1000) as f64 * (128.0 - 40.0) / 9000.0
    }
}

struct Cpu {
    count: usize,
    median: Duration,
    p99: Duration,
}

fn cpu(samples: &[Sample], which: &str, phase: u8) -> Cpu {
    let mut v: Vec<Duration> = samples
        .iter()
        .filter(|s| s.which() == which && s.phase == phase)
        .map(|s| s.cpu())
        .collect();
    v.sort();
    Cpu {
        count: v.len(),
        median: percentile(&v, 0.5),
        p99: percentile(&v, 0.99),
    }
}

/// `after[key] - before[key]` per verb and resource.
fn delta(after: &Value, before: &Value, key: &str) -> BTreeMap<String, u64> {
    after[key]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let b = before[key][k].as_u64().unwrap_or(0);
            (k.clone(), v.as_u64().unwrap_or(0).saturating_sub(b))
        })
        .filter(|(_, d)| *d > 0)
        .collect()
}

fn sum(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

fn print_by(title: &str, m: &BTreeMap<String, f64>) {
    println!("{title}:");
    for (k, v) in m {
        println!("  {k}: {v:.2}");
    }
}

fn per(m: &BTreeMap<String, u64>, n: f64) -> BTreeMap<String, f64> {
    m.iter()
        .map(|(k, v)| (k.clone(), *v as f64 / n.max(1.0)))
        .collect()
}

/// Least-squares slope of `ys` over 0, 1, 2, ...
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return 0.0;
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        sxy += (i as f64 - mx) * (y - my);
        sxx += (i as f64 - mx).powi(2);
    }
    sxy / sxx
}

pub fn report(k: &Knobs, o: &Outcome) {
    let ok = |b: bool| if b { "ok" } else { "MISS" };
    let d = k.deployments;
    let elapsed = o.measure_elapsed.as_secs_f64();

    // CPU and reconciles.
    let canary = cpu(&o.samples, "canary", MEASURE);
    let mat = cpu(&o.samples, "materialize", MEASURE);
    let canary_w = cpu(&o.samples, "canary", WARMUP);
    let mat_w = cpu(&o.samples, "materialize", WARMUP);
    let reconciles = canary.count + mat.count;
    let rps = reconciles as f64 / elapsed;
    let cpu_per_reconcile = o.measure_cpu / reconciles.max(1) as u32;

    // Metrics queries per whole interval window while measuring, and duplicates.
    let mut per_window: HashMap<i64, u32> = HashMap::new();
    let mut duplicates = 0u32;
    for ((_, w), n) in &o.queries {
        *per_window.entry(*w).or_default() += n;
        duplicates += n - 1;
    }
    let mut windows: Vec<u32> = (o.first_window..=o.last_window)
        .map(|w| per_window.get(&w).copied().unwrap_or(0))
        .collect();
    windows.sort();
    let (q_min, q_median, q_max) = (
        windows.first().copied().unwrap_or(0),
        percentile(&windows, 0.5),
        windows.last().copied().unwrap_or(0),
    );

    // API requests while measuring: requests plus list pages; watches apart.
    let m_requests = delta(&o.after, &o.before, "requests");
    let m_pages = delta(&o.after, &o.before, "pages");
    let m_watches = delta(&o.after, &o.before, "watches");
    let api_calls = sum(&m_requests) + sum(&m_pages);
    let per_reconcile = api_calls as f64 / canary.count.max(1) as f64;

    // Onboarding: warm-up requests per Deployment, without watches and list pages.
    let w_requests = delta(&o.warm, &Value::Null, "requests");
    let w_pages = sum(&delta(&o.warm, &Value::Null, "pages"));
    let w_watches = sum(&delta(&o.warm, &Value::Null, "watches"));
    let onboarding = sum(&w_requests) as f64 / d as f64;

    // Start-up after the restart.
    let r_pages = delta(&o.restart_after, &o.restart_before, "pages");
    let r_requests_by = delta(&o.restart_after, &o.restart_before, "requests");
    let r_requests = sum(&r_requests_by);
    let secs = |t: Option<Duration>| t.map(|t| t.as_secs_f64());
    let show =
        |t: Option<Duration>| t.map_or("never".to_string(), |t| format!("{:.2}", t.as_secs_f64()));
    let startup_ok = o.first_canary.is_some_and(|t| t < Duration::from_secs(10));

    // Whole releases (those without approval gates; the gated ones apart), summed by
    // the mock API server.
    let (ungated, gated) = (&o.releases["ungated"], &o.releases["gated"]);
    let ungated_count = ungated["count"].as_u64().unwrap_or(0) as usize;
    let gated_count = gated["count"].as_u64().unwrap_or(0) as usize;
    let release_mean = ungated["mean"].as_f64().unwrap_or(0.0);
    let release_max = ungated["max"].as_u64().unwrap_or(0);
    let gated_mean = gated["mean"].as_f64().unwrap_or(0.0);
    let release_median_s = ungated["median_s"].as_f64().unwrap_or(0.0);
    let release_by: BTreeMap<String, u64> = ungated["by"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
        .collect();

    // Approval write to router write.
    let mut approval_ms: Vec<f64> = o.approvals["approval_to_route_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    approval_ms.sort_by(f64::total_cmp);
    let (approval_median, approval_max) = (
        percentile(&approval_ms, 0.5),
        approval_ms.last().copied().unwrap_or(0.0),
    );

    // Idle re-checks after the restart.
    let spread_mean = o.spread.iter().sum::<u64>() as f64 / o.spread.len().max(1) as f64;
    let spread_max = o.spread.iter().copied().max().unwrap_or(0) as f64;

    // Soak: RSS per simulated minute (one check interval). The target, |slope| <= 0.1
    // MiB per simulated minute, is about what 30 samples can tell from allocator noise
    // (RSS moves by a few hundred KiB as arenas grow and shrink); a leak of anything
    // kept per release or per reconcile (100 releases cycling, ~100 reconciles/s) grows
    // by far more, and 0.1 MiB/min would still be 144 MiB a day, so a run that passes
    // bounds a leak, a longer soak (SCALE_SOAK_INTERVALS) bounds it tighter.
    let soak: Vec<f64> = o.soak_rss.iter().map(|k| mib(*k)).collect();
    let soak_slope = slope(&soak);

    let rss_target = rss_target_mib(d);
    let rss_worst = mib(o.rss_warm.max(o.rss_measure_end).max(o.rss_end));
    println!(
        "\nserin scale benchmark: {d} annotated Deployments in {} namespaces, {} releases \
         ({} gated), steps {}, check interval {}s, measured {:.1}s ({} whole intervals)",
        k.namespaces,
        o.released,
        k.approvals.min(k.releases),
        k.steps,
        k.interval_secs,
        elapsed,
        windows.len()
    );
    println!(
        "warm-up: {d} Canaries onboarded and initialized in {:.1}s; {} canary + {} onboarding \
         reconciles, CPU median {:.3} ms / {:.3} ms",
        o.warmup.as_secs_f64(),
        canary_w.count,
        mat_w.count,
        ms(canary_w.median),
        ms(mat_w.median)
    );
    println!("\n| figure | value | target |");
    println!("|---|---|---|");
    println!(
        "| RSS at start / after warm-up / end of measuring / end of soak | {:.1} / {:.1} / {:.1} / {:.1} MiB | <= {rss_target:.0} MiB: {} |",
        mib(o.rss_start), mib(o.rss_warm), mib(o.rss_measure_end), mib(o.rss_end), ok(rss_worst <= rss_target)
    );
    println!(
        "| RSS peak while measuring / VmHWM (whole run, restart included) | {:.1} / {:.1} MiB | |",
        mib(o.rss_measure_max),
        mib(o.hwm)
    );
    println!(
        "| CPU per Canary reconcile, median / p99 ({} reconciles) | {:.3} / {:.3} ms | median <= 0.5 ms: {} |",
        canary.count, ms(canary.median), ms(canary.p99), ok(canary.median <= Duration::from_micros(500))
    );
    println!(
        "| CPU per onboarding reconcile, median / p99 ({} reconciles) | {:.3} / {:.3} ms | |",
        mat.count,
        ms(mat.median),
        ms(mat.p99)
    );
    println!(
        "| process CPU per reconcile (watches, HTTP, everything) | {:.3} ms ({:.1}% of one core) | |",
        ms(cpu_per_reconcile), 100.0 * o.measure_cpu.as_secs_f64() / elapsed
    );
    println!("| reconciles per second | {rps:.1} | |");
    println!(
        "| Prometheus queries per interval, min / median / max | {q_min} / {q_median} / {q_max} | |"
    );
    println!(
        "| duplicate queries within one interval (whole run) | {duplicates} | 0: {} |",
        ok(duplicates == 0)
    );
    println!(
        "| API requests while measuring: total / per second / per Canary reconcile | {api_calls} / {:.0} / {per_reconcile:.2} | per reconcile <= 1.5: {} |",
        api_calls as f64 / elapsed, ok(per_reconcile <= 1.5)
    );
    println!(
        "| watch connections opened while measuring | {} | |",
        sum(&m_watches)
    );
    println!(
        "| start-up to first Canary / onboarding reconcile / all Canaries reconciled | {} / {} / {} s | first Canary < 10 s: {} |",
        show(o.first_canary), show(o.first_onboarding), show(o.pass_done), ok(startup_ok)
    );
    println!(
        "| start-up list pages served / largest page / other requests until all reconciled | {} / {} items / {r_requests} | |",
        sum(&r_pages), o.restart_largest_page
    );
    println!(
        "| onboarding: API requests per Deployment (without {w_watches} watches and {w_pages} list pages) | {onboarding:.2} | <= 5: {} |",
        ok(onboarding <= 5.0)
    );
    println!(
        "| whole release: API requests, mean / max ({} of {} ungated releases finished; median {:.1} s) | {release_mean:.1} / {release_max} | mean <= 15: {} |",
        ungated_count, o.released as usize - k.approvals.min(k.releases),
        release_median_s, ok(ungated_count > 0 && release_mean <= 15.0)
    );
    println!(
        "| whole gated release (approvals before each step): API requests, mean ({} finished) | {gated_mean:.1} | |",
        gated_count
    );
    println!(
        "| approval write to router write, median / max ({} of {} approvals) | {approval_median:.0} / {approval_max:.0} ms | < 1 s: {} |",
        approval_ms.len(), o.approvals["approvals"],
        ok(!approval_ms.is_empty() && approval_max < 1000.0)
    );
    println!(
        "| idle Canary reconciles per 10 s after the restart's first pass, max / mean ({} s of the 300 s period) | {spread_max:.0} / {spread_mean:.1} ({:.2}x) | |",
        o.spread.len() * 10, spread_max / spread_mean.max(1e-9)
    );
    if !soak.is_empty() {
        let max = soak.iter().copied().fold(0.0, f64::max);
        println!(
            "| soak RSS, first / last / max over {} intervals ({} releases) | {:.1} / {:.1} / {max:.1} MiB | |",
            soak.len(), o.soak_releases, soak[0], soak[soak.len() - 1]
        );
        println!(
            "| soak RSS slope (least squares) | {soak_slope:+.3} MiB per simulated minute | abs <= 0.1: {} |",
            ok(soak_slope.abs() <= 0.1)
        );
    }
    for (phase, why) in &o.exits {
        println!("| controller stopped on its own during {phase} | {why} | MISS |");
    }
    println!();
    print_by(
        "API requests while measuring, by verb and resource",
        &per(&m_requests, 1.0),
    );
    if !m_pages.is_empty() {
        print_by("list pages while measuring", &per(&m_pages, 1.0));
    }
    print_by(
        "onboarding: API requests per Deployment, by verb and resource",
        &per(&w_requests, d as f64),
    );
    print_by(
        "whole release: mean API requests per ungated release, by verb and resource",
        &per(&release_by, ungated_count as f64),
    );
    print_by("start-up list pages, by resource", &per(&r_pages, 1.0));
    print_by(
        "start-up: other requests until all Canaries were reconciled, by verb and resource",
        &per(&r_requests_by, 1.0),
    );
    println!("idle re-checks per 10 s bucket: {:?}", o.spread);
    println!(
        "Canaries by phase at the end of measuring: {}",
        o.after["phases"]
    );
    println!(
        "Canaries by step at the end of measuring: {}",
        o.after["steps"]
    );
    if std::env::var_os("SCALE_DEBUG").is_some() {
        println!("a Progressing Canary's status: {:#}", o.after["example"]);
    }
    let figures = json!({
        "deployments": d, "releases": k.releases, "interval_s": k.interval_secs,
        "intervals": k.intervals, "warmup_s": o.warmup.as_secs_f64(),
        "rss_mib": mib(o.rss_measure_end), "rss_peak_measuring_mib": mib(o.rss_measure_max), "vmhwm_mib": mib(o.hwm),
        "rss_after_warmup_mib": mib(o.rss_warm), "rss_end_of_soak_mib": mib(o.rss_end), "rss_target_mib": rss_target,
        "canary_reconcile_cpu_ms": {"median": ms(canary.median), "p99": ms(canary.p99), "count": canary.count},
        "onboarding_reconcile_cpu_ms": {"median": ms(mat.median), "p99": ms(mat.p99), "count": mat.count},
        "process_cpu_per_reconcile_ms": ms(cpu_per_reconcile),
        "reconciles_per_s": rps,
        "queries_per_interval": {"min": q_min, "median": q_median, "max": q_max},
        "duplicate_queries": duplicates,
        "total_queries": o.total_queries,
        "api_requests": api_calls,
        "measured_s": elapsed, "steps": k.steps, "approvals_gated": k.approvals.min(k.releases),
        "api_requests_per_s": api_calls as f64 / elapsed,
        "api_requests_per_canary_reconcile": per_reconcile,
        "api_requests_by": m_requests, "list_pages_measuring": m_pages, "watches_measuring": sum(&m_watches),
        "startup_s": {"first_canary": secs(o.first_canary), "first_onboarding": secs(o.first_onboarding), "all_canaries": secs(o.pass_done)},
        "startup_list_pages": sum(&r_pages), "startup_largest_page": o.restart_largest_page, "startup_requests": r_requests, "startup_requests_by": r_requests_by,
        "onboarding_requests_per_deployment": onboarding, "onboarding_by": per(&w_requests, d as f64),
        "onboarding_list_pages": w_pages, "onboarding_watches": w_watches,
        "release_requests": {"mean": release_mean, "max": release_max, "finished": ungated_count,
                             "by": per(&release_by, ungated_count as f64), "gated_mean": gated_mean,
                             "gated_finished": gated_count, "median_s": release_median_s},
        "approval_to_route_ms": {"median": approval_median, "max": approval_max, "count": approval_ms.len(),
                                 "approvals": o.approvals["approvals"]},
        "idle_spread": {"buckets_10s": o.spread, "max_over_mean": spread_max / spread_mean.max(1e-9)},
        "controller_exits": o.exits.iter().map(|(p, w)| json!({"phase": p, "why": w})).collect::<Vec<_>>(),
        "soak": {"intervals": soak.len(), "rss_mib": soak, "slope_mib_per_interval": soak_slope,
                 "releases": o.soak_releases},
    });
    println!("{figures}");
}
