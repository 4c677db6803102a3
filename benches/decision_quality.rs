//! Decision quality of serin's judges against the common static policy, on seeded
//! simulated releases.
//!
//! Release: steps 10%, 25%, 50% of traffic with a one-minute check interval, in two
//! flows: serin's own (one check per step: a passing check advances, a failed one
//! holds) and a longer one holding each step for 5 checks. A release not promoted
//! within 25 checks is rolled back (the progress deadline). Traffic: Poisson, 20 and
//! 100 requests/s in total, the canary getting the step weight. Baseline
//! error rate 0.5%; latencies lognormal (median 100 ms, sigma 0.6, p99 ~405 ms), a
//! latency regression scaling every canary latency (so p99 moves by the same %).
//!
//! Policies (each a rollback rule over at most 25 looks):
//! - sequential: serin's anytime-valid count test, alpha 0.01, rollback at the first
//!   failing look; "+early" also ends a step early on evidence of "not worse than 1.5x"
//!   (beta 0.05), which shortens promotion;
//! - compare: serin's fixed-horizon compare judge on each interval alone (proportions
//!   test for counts, Mann-Whitney + HL for latency with allowed mean ratio 1.1), at
//!   confidence 1 - 0.01/25 (Bonferroni over the most looks a release may take), rollback at the
//!   first failing look;
//! - static: interval 1m, max error rate 1% (or max p99 500 ms), rollback after 5
//!   cumulative failed checks, no data counting as a failed check (Flagger's rule).
//!
//! `cargo bench --bench decision_quality [-- RELEASES]`: table, then one JSON line.

#[path = "../tests/sim/mod.rs"]
mod sim;

use serin::analysis::judges::{
    judge_mann_whitney, judge_proportions, judge_sequential, Counts, SequentialObservation,
};
use serin::crd::{AdvanceEarlySpec, CompareKind, CompareSpec, MetricVerdict, SequentialSpec};
use sim::{interval_counts, Rng};

const STEPS: [f64; 3] = [10.0, 25.0, 50.0];
const LOOKS_PER_STEP: u32 = 5;
/// A release not promoted within this many looks is rolled back (the progress deadline;
/// a release without holds needs 3 or 15).
const MAX_LOOKS: u32 = 25;

/// How a release moves through its steps.
#[derive(Clone, Copy, PartialEq)]
enum Flow {
    /// serin's (and Flagger's) flow: one check per step; a passing check advances, a
    /// failed one holds the step.
    PerCheck,
    /// Each step held for `LOOKS_PER_STEP` checks (a longer, more careful release);
    /// "+early" may end a step sooner.
    Held,
}

impl Flow {
    fn label(self) -> &'static str {
        match self {
            Flow::PerCheck => "one check per step (serin's default flow)",
            Flow::Held => "each step held for 5 checks",
        }
    }
}
const BASE_ERR: f64 = 0.005;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    None,
    Errors(f64),
    Latency(f64),
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::None => "no regression".into(),
            Kind::Errors(d) => format!("errors +{}pp", d * 100.0),
            Kind::Latency(f) => format!("p99 +{:.0}%", (f - 1.0) * 100.0),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Sequential,
    SequentialEarly,
    CompareCounts,
    StaticErrors,
    CompareLatency,
    StaticLatency,
}

impl Policy {
    fn label(self) -> &'static str {
        match self {
            Policy::Sequential => "sequential",
            Policy::SequentialEarly => "sequential+early",
            Policy::CompareCounts => "compare (per interval)",
            Policy::StaticErrors => "static (1%, 5 fails)",
            Policy::CompareLatency => "compare MW (per interval)",
            Policy::StaticLatency => "static (p99 500ms, 5 fails)",
        }
    }
    fn is_static(self) -> bool {
        matches!(self, Policy::StaticErrors | Policy::StaticLatency)
    }
    fn on_latency(self) -> bool {
        matches!(self, Policy::CompareLatency | Policy::StaticLatency)
    }
}

/// Minutes to rollback, or `Err(minutes to promotion)`.
fn release(rng: &mut Rng, policy: Policy, kind: Kind, rate: f64, flow: Flow) -> Result<u32, u32> {
    let p_canary = match kind {
        Kind::Errors(d) => BASE_ERR + d,
        _ => BASE_ERR,
    };
    let lat_scale = match kind {
        Kind::Latency(f) => f,
        _ => 1.0,
    };
    let seq = SequentialSpec {
        advance_early: (policy == Policy::SequentialEarly).then(AdvanceEarlySpec::default),
        ..SequentialSpec::default()
    };
    let conf = 1.0 - 0.01 / MAX_LOOKS as f64;
    let counts_cfg = CompareSpec {
        kind: CompareKind::Counts,
        confidence: conf,
        min_requests: 50.0,
        ..CompareSpec::default()
    };
    let mw_cfg = CompareSpec {
        confidence: conf,
        min_samples: 20,
        allowed_increase: Some(1.1.into()),
        ..CompareSpec::default()
    };
    let mut state = None;
    let mut fails = 0;
    let mut step = 0;
    let mut looks_in_step = 0;
    for minute in 1..=MAX_LOOKS {
        let weight = STEPS[step];
        let c = interval_counts(rng, rate * 60.0, weight, BASE_ERR, p_canary);
        let mut early = false;
        let verdict = match policy {
            Policy::Sequential | Policy::SequentialEarly => {
                let obs = SequentialObservation {
                    canary_errors: c.canary_errors as f64,
                    canary_requests: c.canary_requests as f64,
                    baseline_errors: c.baseline_errors as f64,
                    baseline_requests: c.baseline_requests as f64,
                };
                let (s, v) = judge_sequential(state.as_ref(), obs, &seq);
                state = Some(s);
                early = v.advance_early;
                v.outcome
            }
            Policy::CompareCounts => {
                judge_proportions(
                    Counts {
                        errors: c.canary_errors as f64,
                        requests: c.canary_requests as f64,
                    },
                    Counts {
                        errors: c.baseline_errors as f64,
                        requests: c.baseline_requests as f64,
                    },
                    &counts_cfg,
                )
                .outcome
            }
            Policy::StaticErrors => pass_if(
                c.canary_requests > 0 && c.canary_errors as f64 / c.canary_requests as f64 <= 0.01,
            ),
            Policy::CompareLatency | Policy::StaticLatency => {
                let mut lat = |n: u64, scale: f64| -> Vec<f64> {
                    (0..n)
                        .map(|_| 100.0 * (0.6 * rng.normal()).exp() * scale)
                        .collect()
                };
                let canary = lat(c.canary_requests, lat_scale);
                if policy == Policy::StaticLatency {
                    pass_if(p99(canary).is_some_and(|p| p <= 500.0))
                } else {
                    let baseline = lat(c.baseline_requests, 1.0);
                    judge_mann_whitney(&canary, &baseline, &mw_cfg).outcome
                }
            }
        };
        match verdict {
            // serin's judges roll back at their first failure (sequential metrics are
            // critical by construction; the compare judge is configured critical here);
            // the static policy counts failures as Flagger does.
            MetricVerdict::Fail if !policy.is_static() => return Ok(minute),
            MetricVerdict::Fail => {
                fails += 1;
                if fails >= 5 {
                    return Ok(minute);
                }
            }
            MetricVerdict::Pass => {}
            // Inconclusive or error: hold, count nothing.
            _ => continue,
        }
        looks_in_step += 1;
        let step_done = match flow {
            // A failed check holds the step; a passing one advances it.
            Flow::PerCheck => verdict == MetricVerdict::Pass,
            Flow::Held => looks_in_step >= LOOKS_PER_STEP || early,
        };
        if step_done {
            step += 1;
            looks_in_step = 0;
            if step == STEPS.len() {
                return Err(minute);
            }
        }
    }
    // Not promoted within the progress deadline: rolled back.
    Ok(MAX_LOOKS)
}

fn pass_if(ok: bool) -> MetricVerdict {
    if ok {
        MetricVerdict::Pass
    } else {
        MetricVerdict::Fail
    }
}

/// Prometheus-style p99 of one interval's latencies (nearest rank).
fn p99(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let idx = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[idx])
}

fn quantile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx] as f64)
}

fn fmt_min(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.0}"))
}

fn main() {
    let releases: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut json_rows = Vec::new();
    for (flow, rate) in [
        (Flow::PerCheck, 20.0),
        (Flow::PerCheck, 100.0),
        (Flow::Held, 20.0),
        (Flow::Held, 100.0),
    ] {
        println!(
            "\n{} releases per kind, {rate} req/s, steps 10/25/50%, 1m checks, {}\n{:<28} {:<15} {:>10} {:>8} {:>8} {:>8}",
            releases, flow.label(), "policy", "kind", "rolled back", "med min", "p90 min", "promote"
        );
        let kinds_err = [Kind::None, Kind::Errors(0.005), Kind::Errors(0.02)];
        let kinds_lat = [Kind::None, Kind::Latency(1.2), Kind::Latency(1.5)];
        let policies = [
            Policy::Sequential,
            Policy::SequentialEarly,
            Policy::CompareCounts,
            Policy::StaticErrors,
            Policy::CompareLatency,
            Policy::StaticLatency,
        ];
        for (pi, policy) in policies.into_iter().enumerate() {
            // Latency simulation draws every request: the headline rate only. Ending
            // a step early only means something when a step lasts several checks.
            if (policy.on_latency() && rate > 20.0)
                || (policy == Policy::SequentialEarly && flow == Flow::PerCheck)
            {
                continue;
            }
            let kinds = if policy.on_latency() {
                kinds_lat
            } else {
                kinds_err
            };
            for (ki, kind) in kinds.into_iter().enumerate() {
                let mut rng = Rng::new(1000 * pi as u64 + 10 * ki as u64 + rate as u64);
                let mut rolled = Vec::new();
                let mut promoted = Vec::new();
                for _ in 0..releases {
                    match release(&mut rng, policy, kind, rate, flow) {
                        Ok(m) => rolled.push(m),
                        Err(m) => promoted.push(m),
                    }
                }
                rolled.sort_unstable();
                promoted.sort_unstable();
                let frac = rolled.len() as f64 / releases as f64;
                let (med, p90) = (quantile(&rolled, 0.5), quantile(&rolled, 0.9));
                let promote = quantile(&promoted, 0.5);
                println!(
                    "{:<28} {:<15} {:>10.1}% {:>8} {:>8} {:>8}",
                    policy.label(),
                    kind.label(),
                    frac * 100.0,
                    fmt_min(med),
                    fmt_min(p90),
                    fmt_min(promote)
                );
                json_rows.push(serde_json::json!({
                    "flow": flow.label(), "rate_rps": rate, "policy": policy.label(), "kind": kind.label(),
                    "rolled_back": frac,
                    "false_rollback": (kind == Kind::None).then_some(frac),
                    "detection": (kind != Kind::None).then_some(frac),
                    "median_min_to_rollback": med, "p90_min_to_rollback": p90,
                    "median_min_to_promotion": promote,
                }));
            }
        }
    }
    let pick = |flow: Flow, policy: &str, kind: &str, rate: f64, field: &str| {
        json_rows
            .iter()
            .find(|r| {
                r["flow"] == flow.label()
                    && r["policy"] == policy
                    && r["kind"] == kind
                    && r["rate_rps"] == rate
            })
            .and_then(|r| r[field].as_f64())
    };
    let mut speedups = serde_json::Map::new();
    println!();
    for flow in [Flow::PerCheck, Flow::Held] {
        for rate in [20.0, 100.0] {
            let row = |p: &str, f: &str| pick(flow, p, "errors +2pp", rate, f);
            let (Some(s), Some(q)) = (
                row("static (1%, 5 fails)", "median_min_to_rollback"),
                row("sequential", "median_min_to_rollback"),
            ) else {
                continue;
            };
            let detect = |p: &str| row(p, "detection").map_or(f64::NAN, |d| d * 100.0);
            println!(
                "{}, {rate} req/s, +2pp: sequential median {q} min ({:.1}% detected) vs static {s} min ({:.1}% detected): {:.1}x sooner",
                flow.label(),
                detect("sequential"),
                detect("static (1%, 5 fails)"),
                s / q
            );
            let key = match flow {
                Flow::PerCheck => "per_check",
                Flow::Held => "held",
            };
            speedups.insert(format!("seq_vs_static_2pp_{rate}rps_{key}"), (s / q).into());
        }
    }
    println!(
        "{}",
        serde_json::json!({"bench": "decision_quality", "releases_per_kind": releases,
                           "speedup": speedups, "rows": json_rows})
    );
}
