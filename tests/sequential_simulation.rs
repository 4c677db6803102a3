//! Seeded simulation of whole releases: the sequential judge's false-rollback rate
//! stays within alpha over every look, and a +2pp regression is caught.

mod sim;

use serin::analysis::judges::{judge_sequential, sequential_test, SequentialObservation};
use serin::analysis::stats::CountIncrement;
use serin::crd::{MetricVerdict, SequentialSpec};
use sim::{interval_counts, Rng};

/// Steps 10/25/50% with `looks_per_step` looks each; 20 req/s for `interval_s`.
/// Returns the look (1-based) at which the judge failed, if it did.
fn release(
    rng: &mut Rng,
    cfg: &SequentialSpec,
    looks_per_step: u32,
    interval_s: f64,
    p_base: f64,
    p_canary: f64,
) -> Option<u32> {
    let mut state = None;
    let mut look = 0;
    for weight in [10.0, 25.0, 50.0] {
        for _ in 0..looks_per_step {
            look += 1;
            let c = interval_counts(rng, 20.0 * interval_s, weight, p_base, p_canary);
            let obs = SequentialObservation {
                canary_errors: c.canary_errors as f64,
                canary_requests: c.canary_requests as f64,
                baseline_errors: c.baseline_errors as f64,
                baseline_requests: c.baseline_requests as f64,
            };
            let (s, v) = judge_sequential(state.as_ref(), obs, cfg);
            if v.outcome == MetricVerdict::Fail {
                return Some(look);
            }
            state = Some(s);
        }
    }
    None
}

/// Upper end of a one-sided ~99.9% band for a binomial proportion around `p`.
fn slack(p: f64, n: f64) -> f64 {
    p + 3.1 * (p * (1.0 - p) / n).sqrt()
}

#[test]
fn false_rollbacks_stay_under_alpha_over_whole_releases() {
    let mut rng = Rng::new(7);
    // 5 one-minute looks per step, alpha = 1%.
    let cfg = SequentialSpec::default();
    let n = 2000;
    let fails = (0..n)
        .filter(|_| release(&mut rng, &cfg, 5, 60.0, 0.005, 0.005).is_some())
        .count();
    eprintln!("alpha 0.01, 15 looks of 1m: {fails} false rollbacks of {n}");
    assert!(
        (fails as f64 / n as f64) <= slack(0.01, n as f64),
        "{fails} of {n}"
    );
    // Many small looks (15 s each, 60 per release) at a looser alpha: peeking more
    // often must not inflate the rate. The kernel alone, to keep the test fast.
    let cfg = SequentialSpec {
        alpha: 0.05,
        ..SequentialSpec::default()
    };
    let test = sequential_test(&cfg);
    let n = 1000;
    let mut fails = 0;
    for _ in 0..n {
        let mut state = test.start(None);
        'release: for weight in [10.0, 25.0, 50.0] {
            for _ in 0..20 {
                let c = interval_counts(&mut rng, 20.0 * 15.0, weight, 0.02, 0.02);
                test.update(
                    &mut state,
                    CountIncrement {
                        canary_errors: c.canary_errors as f64,
                        canary_requests: c.canary_requests as f64,
                        baseline_errors: c.baseline_errors as f64,
                        baseline_requests: c.baseline_requests as f64,
                    },
                );
                if state.rejected {
                    fails += 1;
                    break 'release;
                }
            }
        }
    }
    eprintln!("alpha 0.05, 60 looks of 15s: {fails} false rollbacks of {n}");
    assert!(
        (fails as f64 / n as f64) <= slack(0.05, n as f64),
        "{fails} of {n}"
    );
}

#[test]
fn a_two_point_regression_is_rolled_back_early() {
    let mut rng = Rng::new(11);
    let cfg = SequentialSpec::default();
    let n = 300;
    let looks: Vec<u32> = (0..n)
        .filter_map(|_| release(&mut rng, &cfg, 5, 60.0, 0.005, 0.025))
        .collect();
    assert!(
        looks.len() as f64 >= 0.95 * n as f64,
        "detected {} of {n}",
        looks.len()
    );
    let mut sorted = looks;
    sorted.sort_unstable();
    // Most bad releases end while still at the first, 10% step.
    assert!(
        sorted[sorted.len() / 2] <= 5,
        "median look {}",
        sorted[sorted.len() / 2]
    );
}
