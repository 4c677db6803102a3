//! Anytime-valid test that the canary's error rate is not above the baseline's,
//! using the traffic split serin itself sets.
//!
//! # Construction
//!
//! Model each variant's errors as a Poisson process whose rate is proportional to
//! its requests: `lambda_c = rho * lambda_b` per request. In interval `t` the canary
//! gets share `pi_t = N_c,t / (N_c,t + N_b,t)` of the requests. Conditional on the
//! interval's total errors `T_t`, the canary's errors are
//! `E_c,t ~ Binomial(T_t, q_t(rho))` with `q_t(rho) = rho pi_t / (rho pi_t + 1 - pi_t)`
//! (the split of a superposition of Poisson processes). This removes the unknown
//! baseline rate, as in Lindon & Malek's count test ("Anytime-valid inference for
//! multinomial count data", NeurIPS 2022), and lets `pi_t` change from step to step.
//!
//! For a fixed alternative `rho1 > rho0`, the per-interval likelihood ratio
//! `L_t = (q_t(rho1)/q_t(rho0))^E_c (1-q_t(rho1))/(1-q_t(rho0)))^E_b` has conditional
//! expectation exactly 1 when `rho = rho0` and below 1 when `rho < rho0` (its mean
//! `(q q1/q0 + (1-q)(1-q1)/(1-q0))^T` increases in `q`), so the running product is a
//! non-negative supermartingale under the whole null `rho <= rho0`. If requests are
//! Bernoulli rather than Poisson, the conditional law is hypergeometric, which is
//! smaller in convex order than the binomial (Hoeffding 1963, Thm 4) while `L_t` is
//! convex in `E_c`: the supermartingale property holds there too. An average of
//! these products over a fixed grid of alternatives (a discrete mixture SPRT) is again
//! a supermartingale with initial value 1, so by Ville's inequality
//! `P(sup_t M_t >= 1/alpha) <= alpha`: rolling back when `M_t >= 1/alpha` bounds the
//! chance of a false rollback over *every* look of the release by `alpha`, however
//! often serin looks and however the weights change. Several intervals merged into
//! one look (a missed check) keep the same law, since Poisson splits depend only on
//! the summed requests.
//!
//! # Advancing early
//!
//! The mirror image tests `rho >= margin` against alternatives below the margin.
//! When its mixture reaches `1/beta`, the canary is "not worse than `margin`" with
//! error probability at most `beta` over all looks: a sound reason to end a step
//! early. Nothing is claimed for `margin <= rho0`.
//!
//! Counts are rounded to integers (Prometheus' `increase()` extrapolates to
//! fractions); the model needs whole errors.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One look's increments since the previous look.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CountIncrement {
    pub canary_errors: f64,
    pub canary_requests: f64,
    pub baseline_errors: f64,
    pub baseline_requests: f64,
}

/// The test's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SequentialTest {
    /// Bound on the probability of a false rollback over the whole release.
    pub alpha: f64,
    /// Largest error-rate ratio (canary / baseline) that is not a regression.
    pub null_ratio: f64,
    /// Alternatives as multiples (> 1) of `null_ratio`, equally weighted.
    pub alternatives: Vec<f64>,
    /// Early advance: `(margin ratio, beta)`; alternatives are `margin * [0.8, 0.6, 0.4, 0.2]`.
    pub advance_early: Option<(f64, f64)>,
}

/// Default alternatives: a regression of 1.25x to 10x the allowed ratio.
pub const DEFAULT_ALTERNATIVES: [f64; 7] = [1.25, 1.5, 2.0, 3.0, 4.5, 7.0, 10.0];
const EARLY_ALTERNATIVES: [f64; 4] = [0.8, 0.6, 0.4, 0.2];

/// Evidence carried from look to look (kept in the Canary's status).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequentialState {
    /// Looks taken so far.
    pub looks: u32,
    /// Looks whose counts could not be used (negative, or errors without requests).
    pub skipped: u32,
    pub canary_errors: f64,
    pub canary_requests: f64,
    pub baseline_errors: f64,
    pub baseline_requests: f64,
    /// The rate ratios each `logLr` entry tests against the null ratio.
    pub alternatives: Vec<f64>,
    /// Log likelihood ratio of each alternative against the null, summed over looks.
    pub log_lr: Vec<f64>,
    /// The same for the early-advance test (alternatives below the margin).
    #[serde(default)]
    pub early_alternatives: Vec<f64>,
    #[serde(default)]
    pub early_log_lr: Vec<f64>,
    /// Smallest anytime-valid p-value seen (1 / largest mixture e-value).
    pub p_value: f64,
    /// Sticky: once the evidence crossed 1/alpha the canary stays rejected.
    pub rejected: bool,
    /// Sticky: the early-advance evidence crossed 1/beta.
    #[serde(default)]
    pub not_worse: bool,
    /// Current mixture e-value (rolls back at `threshold`).
    #[serde(default)]
    pub e_value: f64,
    /// The e-value that rolls back: `1/alpha`.
    #[serde(default)]
    pub threshold: f64,
    /// Canary requests since the current step began: a step needs `minRequests`.
    #[serde(default)]
    pub step_canary_requests: f64,
    /// The counter totals read at the last look; the next look's increments are
    /// measured from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<LookCounts>,
    /// The increments of the last look, for the status and the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_look: Option<LookCounts>,
}

/// Errors and requests of both versions: a look's increments, or counter totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LookCounts {
    pub canary_errors: f64,
    pub canary_requests: f64,
    pub baseline_errors: f64,
    pub baseline_requests: f64,
}

impl LookCounts {
    /// `self - before`, or `None` when a counter went down (a reset: pods replaced).
    pub fn since(&self, before: &LookCounts) -> Option<LookCounts> {
        let d = LookCounts {
            canary_errors: self.canary_errors - before.canary_errors,
            canary_requests: self.canary_requests - before.canary_requests,
            baseline_errors: self.baseline_errors - before.baseline_errors,
            baseline_requests: self.baseline_requests - before.baseline_requests,
        };
        let all = [
            d.canary_errors,
            d.canary_requests,
            d.baseline_errors,
            d.baseline_requests,
        ];
        all.iter().all(|v| v.is_finite() && *v >= 0.0).then_some(d)
    }
}

/// What one look concluded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SequentialLook {
    /// Mixture e-value against "not worse than the null ratio".
    pub e_value: f64,
    /// Early-advance e-value (1 when not configured).
    pub early_e_value: f64,
    pub used: bool,
}

impl SequentialTest {
    fn grids(&self) -> (Vec<f64>, Vec<f64>) {
        let worse: Vec<f64> = self
            .alternatives
            .iter()
            .map(|g| self.null_ratio * g)
            .collect();
        let early = match self.advance_early {
            Some((margin, _)) => EARLY_ALTERNATIVES.iter().map(|g| margin * g).collect(),
            None => Vec::new(),
        };
        (worse, early)
    }

    /// A fresh state, or `state` itself if it was built for the same grids.
    pub fn start(&self, state: Option<&SequentialState>) -> SequentialState {
        let (worse, early) = self.grids();
        match state {
            Some(s) if s.alternatives == worse && s.early_alternatives == early => s.clone(),
            _ => SequentialState {
                log_lr: vec![0.0; worse.len()],
                alternatives: worse,
                early_log_lr: vec![0.0; early.len()],
                early_alternatives: early,
                p_value: 1.0,
                ..SequentialState::default()
            },
        }
    }

    /// Fold one look's increments into the state.
    pub fn update(&self, state: &mut SequentialState, inc: CountIncrement) -> SequentialLook {
        state.looks += 1;
        let ec = inc.canary_errors.round();
        let eb = inc.baseline_errors.round();
        let (nc, nb) = (inc.canary_requests, inc.baseline_requests);
        let valid = [ec, eb, nc, nb].iter().all(|v| v.is_finite() && *v >= 0.0)
            && !(ec > 0.0 && nc == 0.0)
            && !(eb > 0.0 && nb == 0.0);
        let mut used = false;
        if valid {
            state.canary_errors += ec;
            state.baseline_errors += eb;
            state.canary_requests += nc;
            state.baseline_requests += nb;
            let pi = nc / (nc + nb);
            // pi of 0 or 1 (or no errors at all) carries no information on rho.
            if pi > 0.0 && pi < 1.0 && ec + eb > 0.0 {
                used = true;
                let q0 = split(pi, self.null_ratio);
                for (l, &rho) in state.log_lr.iter_mut().zip(&state.alternatives) {
                    *l += log_lr(ec, eb, split(pi, rho), q0);
                }
                if let Some((margin, _)) = self.advance_early {
                    let qm = split(pi, margin);
                    for (l, &rho) in state.early_log_lr.iter_mut().zip(&state.early_alternatives) {
                        *l += log_lr(ec, eb, split(pi, rho), qm);
                    }
                }
            }
        } else {
            state.skipped += 1;
        }
        let e_value = mixture(&state.log_lr);
        state.e_value = e_value;
        let early_e_value = if state.early_log_lr.is_empty() {
            1.0
        } else {
            mixture(&state.early_log_lr)
        };
        state.p_value = state.p_value.min(1.0 / e_value).min(1.0);
        if e_value >= 1.0 / self.alpha {
            state.rejected = true;
        }
        if let Some((_, beta)) = self.advance_early {
            if early_e_value >= 1.0 / beta {
                state.not_worse = true;
            }
        }
        SequentialLook {
            e_value,
            early_e_value,
            used,
        }
    }
}

/// The canary's share of errors when its per-request rate is `rho` times the baseline's.
fn split(pi: f64, rho: f64) -> f64 {
    rho * pi / (rho * pi + 1.0 - pi)
}

fn log_lr(ec: f64, eb: f64, q1: f64, q0: f64) -> f64 {
    let mut l = 0.0;
    if ec > 0.0 {
        l += ec * (q1 / q0).ln();
    }
    if eb > 0.0 {
        l += eb * ((1.0 - q1) / (1.0 - q0)).ln();
    }
    l
}

/// Equal-weight mixture of `exp(log_lr)`, computed without overflow, capped at f64::MAX.
fn mixture(log_lr: &[f64]) -> f64 {
    if log_lr.is_empty() {
        return 1.0;
    }
    let max = log_lr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = log_lr.iter().map(|l| (l - max).exp()).sum();
    let v = (max + (sum / log_lr.len() as f64).ln()).exp();
    if v.is_finite() {
        v
    } else {
        f64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test() -> SequentialTest {
        SequentialTest {
            alpha: 0.01,
            null_ratio: 1.0,
            alternatives: DEFAULT_ALTERNATIVES.to_vec(),
            advance_early: Some((2.0, 0.05)),
        }
    }

    #[test]
    fn single_alternative_matches_hand_computed_binomial_ratio() {
        // 3 of 4 errors on a 10% canary vs rho = 2: q1 = 0.2/1.1.
        let t = SequentialTest {
            alternatives: vec![2.0],
            advance_early: None,
            ..test()
        };
        let mut s = t.start(None);
        let look = t.update(
            &mut s,
            CountIncrement {
                canary_errors: 3.0,
                canary_requests: 100.0,
                baseline_errors: 1.0,
                baseline_requests: 900.0,
            },
        );
        let q1: f64 = 0.2 / 1.1;
        let want = (q1 / 0.1).powi(3) * ((1.0 - q1) / 0.9);
        assert!((look.e_value / want - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_counts_are_skipped_and_state_survives_serde() {
        let t = test();
        let mut s = t.start(None);
        let look = t.update(
            &mut s,
            CountIncrement {
                canary_errors: 3.0,
                canary_requests: 0.0,
                baseline_errors: 1.0,
                baseline_requests: 10.0,
            },
        );
        assert!(!look.used);
        assert_eq!((s.looks, s.skipped, s.canary_errors), (1, 1, 0.0));
        let json = serde_json::to_string(&s).unwrap();
        let back: SequentialState = serde_json::from_str(&json).unwrap();
        assert_eq!(t.start(Some(&back)), s);
        // A different grid starts afresh rather than mixing evidence.
        let other = SequentialTest {
            null_ratio: 1.5,
            ..test()
        };
        assert_eq!(other.start(Some(&back)).looks, 0);
    }
}
