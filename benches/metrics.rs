//! Cost of the controller's own metrics: what one reconcile records, and one scrape,
//! with 1,000 Canaries of 3 metrics each already known.
//! Run: `cargo bench --bench metrics`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serin::crd::{CanaryPhase, MetricStatus, MetricVerdict};
use serin::metrics::{ControllerKind, ControllerMetrics, Judge};
use serin::rollout::AnalysisReport;

const CANARIES: usize = 1_000;

fn time<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    for _ in 0..iters / 10 {
        f();
    }
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    t0.elapsed() / iters
}

fn report(now: DateTime<Utc>) -> AnalysisReport {
    let metrics = ["error-rate", "latency-p99", "saturation"]
        .iter()
        .map(|name| MetricStatus {
            points: Vec::new(),
            name: name.to_string(),
            value: Some(0.012),
            baseline: Some(0.010),
            effect: None,
            p_value: None,
            interval_low: None,
            interval_high: None,
            verdict: MetricVerdict::Pass,
            reason: String::new(),
            dry_run: false,
            checked_at: now,
            consecutive_errors: 0,
            sequential: None,
        })
        .collect();
    AnalysisReport {
        metrics,
        critical: vec![],
    }
}

/// Everything one judged reconcile of one Canary records.
fn one_reconcile(
    m: &ControllerMetrics,
    ns: &str,
    name: &str,
    report: &AnalysisReport,
    now: DateTime<Utc>,
) {
    for _ in &report.metrics {
        m.queries
            .observe("prometheus", Duration::from_millis(12), None);
        m.judges.observe(Judge::Threshold, Duration::from_micros(3));
    }
    m.canaries.observe_report(ns, name, report, now);
    m.canaries.observe(ns, name, CanaryPhase::Progressing, 20);
    m.reconciles
        .observe(ControllerKind::Canary, Duration::from_millis(40), None);
}

fn main() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    let r = report(now);
    let m = ControllerMetrics::new();
    let names: Vec<(String, String)> = (0..CANARIES)
        .map(|i| (format!("team-{}", i % 50), format!("service-{i}")))
        .collect();
    for (ns, name) in &names {
        one_reconcile(&m, ns, name, &r, now);
    }
    let mut i = 0;
    let reconcile = time(200_000, || {
        let (ns, name) = &names[i % CANARIES];
        one_reconcile(&m, ns, name, &r, now);
        i += 1;
    });
    let mut bytes = 0;
    let scrape = time(200, || {
        let text = m.encode();
        bytes = text.len();
        black_box(text);
    });
    let series = m.encode().lines().filter(|l| !l.starts_with('#')).count();
    let mut j = 0;
    let churn = time(20_000, || {
        let (ns, name) = &names[j % CANARIES];
        m.canaries.forget(ns, name);
        one_reconcile(&m, ns, name, &r, now);
        j += 1;
    });

    println!("| operation ({CANARIES} Canaries x 3 metrics known) | time per op |");
    println!("|---|---|");
    println!(
        "| one judged reconcile's updates (3 queries, 3 judges, 3 verdicts, 6 values, phase, weight, duration) | {reconcile:?} |"
    );
    println!(
        "| scrape: encode the registry ({series} samples, {} KiB) | {scrape:?} |",
        bytes / 1024
    );
    println!("| delete a Canary's series and record it again | {churn:?} |");
}
