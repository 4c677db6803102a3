//! Mann-Whitney U + Hodges-Lehmann interval at n = m = 1k, 10k, 100k, timed in Rust,
//! with scipy.stats.mannwhitneyu timed on the same data in the same run.
//!
//! `cargo bench --bench stats_kernels`. Prints a table and a final JSON line.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[path = "../tests/sim/mod.rs"]
mod sim;

use serin::analysis::stats::{finite_sorted, hodges_lehmann, mann_whitney_u_sorted};
use sim::Rng;

const SCIPY: &str = r#"
import json, sys, time
import numpy as np
from scipy.stats import mannwhitneyu
import scipy
x = np.fromfile(sys.argv[1], dtype='<f8'); y = np.fromfile(sys.argv[2], dtype='<f8')
runs = int(sys.argv[3]); times = []
for _ in range(runs):
    t = time.perf_counter()
    r = mannwhitneyu(x, y, method="asymptotic", use_continuity=True, alternative="two-sided")
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"median_s": times[len(times) // 2], "p_value": float(r.pvalue), "u": float(r.statistic), "scipy": scipy.__version__}))
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Latency-like data: lognormal around 100 ms, canary 3% slower, rounded to 0.01 ms
/// so that ties occur as they do in real exported values.
fn data(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| ((100.0 * (0.6 * rng.normal()).exp() * scale) * 100.0).round() / 100.0)
        .collect()
}

struct Scipy {
    median_s: f64,
    p_value: f64,
}

fn scipy(x: &[f64], y: &[f64], runs: usize) -> Result<Scipy, String> {
    let dir = std::env::temp_dir();
    let px: PathBuf = dir.join(format!("serin-bench-x-{}.f64", std::process::id()));
    let py: PathBuf = dir.join(format!("serin-bench-y-{}.f64", std::process::id()));
    let bytes = |v: &[f64]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(&px, bytes(x)).map_err(|e| e.to_string())?;
    std::fs::write(&py, bytes(y)).map_err(|e| e.to_string())?;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCIPY)
        .arg(&px)
        .arg(&py)
        .arg(runs.to_string())
        .output();
    let _ = std::fs::remove_file(&px);
    let _ = std::fs::remove_file(&py);
    let out = out.map_err(|e| format!("python3 not runnable: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("python3 failed").to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(Scipy {
        median_s: v["median_s"].as_f64().unwrap_or(f64::NAN),
        p_value: v["p_value"].as_f64().unwrap_or(f64::NAN),
    })
}

fn main() {
    let mut rng = Rng::new(2026);
    let mut rows = Vec::new();
    println!(
        "{:>7} {:>12} {:>14} {:>12} {:>10} {:>9} {:>12}",
        "n=m", "MW (ms)", "MW+HL95 (ms)", "scipy (ms)", "speedup", "HL share", "|dp|/p"
    );
    let mut scipy_note = None;
    for &n in &[1_000usize, 10_000, 100_000] {
        let x = data(&mut rng, n, 1.03);
        let y = data(&mut rng, n, 1.0);
        let runs = if n >= 100_000 { 7 } else { 21 };
        let mut t_mw = Vec::new();
        let mut t_all = Vec::new();
        let mut p = f64::NAN;
        for _ in 0..runs {
            let t = Instant::now();
            let (xs, _) = finite_sorted(&x);
            let (ys, _) = finite_sorted(&y);
            let mw = mann_whitney_u_sorted(&xs, &ys).expect("non-empty");
            t_mw.push(t.elapsed().as_secs_f64());
            let hl = hodges_lehmann(&xs, &ys, 0.95).expect("non-empty");
            t_all.push(t.elapsed().as_secs_f64());
            p = mw.p_value;
            std::hint::black_box(hl);
        }
        let (mw_ms, all_ms) = (median(t_mw) * 1e3, median(t_all) * 1e3);
        let sp = match scipy(&x, &y, runs) {
            Ok(s) => Some(s),
            Err(e) => {
                scipy_note = Some(e);
                None
            }
        };
        let (sp_ms, speedup, dp) = match &sp {
            Some(s) => (
                s.median_s * 1e3,
                s.median_s * 1e3 / mw_ms,
                (p - s.p_value).abs() / s.p_value,
            ),
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        println!(
            "{:>7} {:>12.3} {:>14.3} {:>12.3} {:>9.1}x {:>8.0}% {:>12.1e}",
            n,
            mw_ms,
            all_ms,
            sp_ms,
            speedup,
            (all_ms - mw_ms) / all_ms * 100.0,
            dp
        );
        rows.push(serde_json::json!({
            "n": n, "mw_ms": mw_ms, "mw_hl_ms": all_ms,
            "scipy_mw_ms": sp.as_ref().map(|s| s.median_s * 1e3),
            "speedup_mw_vs_scipy": sp.as_ref().map(|s| s.median_s * 1e3 / mw_ms),
            "speedup_mw_hl_vs_scipy_mw": sp.as_ref().map(|s| s.median_s * 1e3 / all_ms),
            "p_value": p, "scipy_p_value": sp.as_ref().map(|s| s.p_value),
        }));
    }
    if let Some(e) = &scipy_note {
        println!("scipy not measured: {e} (pip install scipy)");
    }
    println!("times: median of 21 runs (7 at 100k); MW includes sorting both samples; scipy times mannwhitneyu(method=\"asymptotic\") inside python (time.perf_counter)");
    println!(
        "{}",
        serde_json::json!({ "bench": "stats_kernels", "rows": rows, "scipy_error": scipy_note })
    );
}
