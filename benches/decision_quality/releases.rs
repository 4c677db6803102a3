//! One simulated release under each policy: serin's sequential flow, fixed-horizon
//! checks (compare and static), and the oracle references.

use super::*;

/// The canary weight (%) at `t` seconds under the references' fixed schedule.
fn scheduled_weight(t: f64) -> f64 {
    STEPS[((t / CHECK_S) as usize).min(STEPS.len() - 1)]
}

fn observation(c: sim::IntervalCounts) -> SequentialObservation {
    SequentialObservation {
        canary_errors: c.canary_errors as f64,
        canary_requests: c.canary_requests as f64,
        baseline_errors: c.baseline_errors as f64,
        baseline_requests: c.baseline_requests as f64,
    }
}

/// serin's flow: a look every `look_s`, a check every minute (the look that falls on it).
fn sequential_release(rng: &mut Rng, s: &SeqSetup, kind: Kind, rate: f64) -> Outcome {
    let looks_per_check = (CHECK_S / s.look_s).round() as u32;
    let looks = (DEADLINE_MIN * 60.0 / s.look_s).round() as u32;
    let mut state = None;
    let (mut step, mut passes, mut served) = (0, 0, 0);
    for look in 1..=looks {
        let minute = look as f64 * s.look_s / 60.0;
        let c = interval_counts(rng, rate * s.look_s, STEPS[step], BASE_ERR, kind.p_canary());
        served += c.canary_requests;
        let (mut st, v) = judge_sequential(state.as_ref(), observation(c), &s.cfg);
        if v.outcome == MetricVerdict::Fail {
            return Outcome::RolledBack(minute, false, served);
        }
        if look % looks_per_check == 0 {
            let pass = match s.hold_at {
                None => v.outcome == MetricVerdict::Pass,
                // Everything the judge asks but its hold threshold.
                Some(hold_at) => {
                    c.canary_requests > 0
                        && st.step_canary_requests >= s.cfg.min_requests
                        && st.e_value < hold_at
                }
            };
            if pass {
                passes += 1;
            }
            let advance = match s.flow {
                Flow::PerCheck => pass,
                Flow::Held => pass && (passes >= HELD_CHECKS || v.advance_early),
            };
            if advance {
                step += 1;
                passes = 0;
                // The controller starts each step's request count afresh.
                st.step_canary_requests = 0.0;
                if step == STEPS.len() {
                    return Outcome::Promoted(minute);
                }
            }
        }
        state = Some(st);
    }
    Outcome::RolledBack(DEADLINE_MIN, true, served)
}

/// The per-check policies (compare, static): one judgement per minute on that minute.
fn check_release(rng: &mut Rng, policy: &Policy, kind: Kind, rate: f64) -> Outcome {
    let conf = 1.0 - ALPHA / DEADLINE_MIN;
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
    let lat_scale = match kind {
        Kind::Latency(f) => f,
        _ => 1.0,
    };
    let flow = match policy {
        Policy::Compare(f) | Policy::Static(f) => *f,
        _ => Flow::PerCheck,
    };
    let is_static = matches!(policy, Policy::Static(_) | Policy::StaticLatency);
    let (mut fails, mut step, mut checks_in_step, mut served) = (0, 0, 0, 0);
    for minute in 1..=DEADLINE_MIN as u32 {
        let minute = minute as f64;
        let c = interval_counts(rng, rate * CHECK_S, STEPS[step], BASE_ERR, kind.p_canary());
        served += c.canary_requests;
        let verdict = match policy {
            Policy::Compare(_) => {
                let counts = |errors: u64, requests: u64| Counts {
                    errors: errors as f64,
                    requests: requests as f64,
                };
                judge_proportions(
                    counts(c.canary_errors, c.canary_requests),
                    counts(c.baseline_errors, c.baseline_requests),
                    &counts_cfg,
                )
                .outcome
            }
            Policy::Static(_) => pass_if(
                c.canary_requests > 0 && c.canary_errors as f64 / c.canary_requests as f64 <= 0.01,
            ),
            Policy::CompareLatency | Policy::StaticLatency => {
                let mut lat = |n: u64, scale: f64| -> Vec<f64> {
                    (0..n)
                        .map(|_| 100.0 * (0.6 * rng.normal()).exp() * scale)
                        .collect()
                };
                let canary = lat(c.canary_requests, lat_scale);
                if is_static {
                    pass_if(p99(canary).is_some_and(|p| p <= 500.0))
                } else {
                    let baseline = lat(c.baseline_requests, 1.0);
                    judge_mann_whitney(&canary, &baseline, &mw_cfg).outcome
                }
            }
            _ => unreachable!("not a per-check policy"),
        };
        match verdict {
            // The compare judge is configured critical: its first failure rolls back.
            MetricVerdict::Fail if !is_static => return Outcome::RolledBack(minute, false, served),
            // The static policy counts failures, as Flagger does.
            MetricVerdict::Fail => {
                fails += 1;
                if fails >= 5 {
                    return Outcome::RolledBack(minute, false, served);
                }
            }
            MetricVerdict::Pass => {}
            // Inconclusive or error: hold, count nothing.
            _ => continue,
        }
        checks_in_step += 1;
        let advance = match flow {
            Flow::PerCheck => verdict == MetricVerdict::Pass,
            Flow::Held => checks_in_step >= HELD_CHECKS,
        };
        if advance {
            step += 1;
            checks_in_step = 0;
            if step == STEPS.len() {
                return Outcome::Promoted(minute);
            }
        }
    }
    Outcome::RolledBack(DEADLINE_MIN, true, served)
}

/// Seconds to the next arrival of a Poisson stream of `per_s` events a second.
fn exponential(rng: &mut Rng, per_s: f64) -> f64 {
    -(1.0 - rng.uniform()).ln() / per_s
}

/// Wald's SPRT for "canary error rate 2.5%" against "0.5%", knowing both, one request
/// at a time (or, with `look_s`, judged only every `look_s` seconds).
fn oracle_release(rng: &mut Rng, kind: Kind, rate: f64, look_s: Option<f64>) -> Outcome {
    let (p0, p1) = (BASE_ERR, TWO_PP.p_canary());
    let (on_error, on_success) = ((p1 / p0).ln(), ((1.0 - p1) / (1.0 - p0)).ln());
    let target = (1.0 / ALPHA).ln();
    let deadline = DEADLINE_MIN * 60.0;
    let (mut t, mut llr, mut served) = (0.0, 0.0, 0);
    let mut next_look = look_s.unwrap_or(f64::INFINITY);
    loop {
        // Arrivals are Poisson: restart the clock at each weight change (memoryless).
        let next_change = ((t / CHECK_S).floor() + 1.0) * CHECK_S;
        let next_t = (t + exponential(rng, rate * scheduled_weight(t) / 100.0)).min(next_change);
        // Looks before the next event see the evidence as it stands.
        while next_look <= next_t.min(deadline) {
            if llr >= target {
                return Outcome::RolledBack(next_look / 60.0, false, served);
            }
            next_look += look_s.unwrap_or(f64::INFINITY);
        }
        if next_t >= deadline {
            return Outcome::Promoted(f64::NAN);
        }
        t = next_t;
        if t == next_change {
            continue;
        }
        served += 1;
        llr += if rng.uniform() < kind.p_canary() {
            on_error
        } else {
            on_success
        };
        if look_s.is_none() && llr >= target {
            return Outcome::RolledBack(t / 60.0, false, served);
        }
    }
}

/// serin's kernel on an ideal feed: only errors carry evidence in the conditional test,
/// so simulate the two Poisson error streams and hand each error (or each look's
/// errors) to the kernel with the canary's exact share.
fn conditional_release(
    rng: &mut Rng,
    kind: Kind,
    rate: f64,
    alternatives: &[f64],
    look_s: Option<f64>,
) -> Outcome {
    let cfg = SequentialSpec {
        alternatives: Some(alternatives.to_vec()),
        ..SequentialSpec::default()
    };
    let test = sequential_test(&cfg);
    let mut st = test.start(None);
    let deadline = DEADLINE_MIN * 60.0;
    let mut t = 0.0;
    let (mut canary_errors, mut baseline_errors) = (0.0, 0.0);
    let mut next_look = look_s.unwrap_or(f64::INFINITY);
    loop {
        let w = scheduled_weight(t) / 100.0;
        let mut feed = |ce: &mut f64, be: &mut f64| {
            test.update(
                &mut st,
                CountIncrement {
                    canary_errors: *ce,
                    canary_requests: w,
                    baseline_errors: *be,
                    baseline_requests: 1.0 - w,
                },
            );
            (*ce, *be) = (0.0, 0.0);
            st.rejected
        };
        let (canary_rate, baseline_rate) =
            (rate * w * kind.p_canary(), rate * (1.0 - w) * BASE_ERR);
        let next_change = ((t / CHECK_S).floor() + 1.0) * CHECK_S;
        let next_t = (t + exponential(rng, canary_rate + baseline_rate)).min(next_change);
        // Looks fall on minute boundaries too, so a look's errors share one weight.
        while next_look <= next_t.min(deadline) {
            if feed(&mut canary_errors, &mut baseline_errors) {
                let served = (rate * exposure_s(next_look)) as u64;
                return Outcome::RolledBack(next_look / 60.0, false, served);
            }
            next_look += look_s.unwrap_or(f64::INFINITY);
        }
        if next_t >= deadline {
            return Outcome::Promoted(f64::NAN);
        }
        t = next_t;
        if t == next_change {
            continue;
        }
        if rng.uniform() * (canary_rate + baseline_rate) < canary_rate {
            canary_errors += 1.0;
        } else {
            baseline_errors += 1.0;
        }
        if look_s.is_none() && feed(&mut canary_errors, &mut baseline_errors) {
            return Outcome::RolledBack(t / 60.0, false, (rate * exposure_s(t)) as u64);
        }
    }
}

/// Canary-weighted seconds (expected canary requests per req/s) up to `t` on the fixed
/// schedule.
fn exposure_s(t: f64) -> f64 {
    (0..)
        .map(|i| i as f64 * CHECK_S)
        .take_while(|&start| start < t)
        .map(|start| (t.min(start + CHECK_S) - start) * scheduled_weight(start) / 100.0)
        .sum()
}

pub(super) fn release(rng: &mut Rng, policy: &Policy, kind: Kind, rate: f64) -> Outcome {
    match policy {
        Policy::Sequential(s) => sequential_release(rng, s, kind, rate),
        Policy::Oracle(look_s) => oracle_release(rng, kind, rate, *look_s),
        Policy::Conditional(alternatives, look_s) => {
            conditional_release(rng, kind, rate, alternatives, *look_s)
        }
        _ => check_release(rng, policy, kind, rate),
    }
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
