//! The sequential judge: an anytime-valid error-count test, looked at every check.
//! See [`crate::analysis::stats::sequential`] for the construction and its guarantee.

use super::format::{num, p, rate};
use super::{check_range, JudgeConfigError, JudgeVerdict};
use crate::analysis::stats::sequential::DEFAULT_ALTERNATIVES;
use crate::analysis::stats::{CountIncrement, SequentialState, SequentialTest};
use crate::crd::{MetricVerdict, SequentialSpec};

/// One look's counts since the previous look.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SequentialObservation {
    pub canary_errors: f64,
    pub baseline_errors: f64,
    /// (canary, baseline) requests, when a requests query is configured.
    pub requests: Option<(f64, f64)>,
    /// The canary's traffic weight in percent during the interval; the canary's share
    /// of requests when `requests` is unknown.
    pub weight: f64,
}

/// Check a sequential config before using it.
pub fn validate_sequential(cfg: &SequentialSpec) -> Result<(), JudgeConfigError> {
    let a = cfg.alpha;
    check_range("alpha", a, a > 0.0 && a < 1.0, "between 0 and 1")?;
    let r = cfg.allowed_increase;
    check_range("allowedIncrease", r, r >= 1.0, "a ratio >= 1")?;
    for &g in cfg.alternatives.iter().flatten() {
        check_range("alternatives", g, g > 1.0, "ratios > 1")?;
    }
    if cfg.alternatives.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(JudgeConfigError::OutOfRange {
            field: "alternatives",
            expected: "a non-empty list",
            value: 0.0,
        });
    }
    let m = cfg.min_requests;
    check_range("minRequests", m, m >= 0.0, ">= 0")?;
    if let Some(e) = &cfg.advance_early {
        check_range(
            "advanceEarly.margin",
            e.margin,
            e.margin > r,
            "a ratio > allowedIncrease",
        )?;
        check_range(
            "advanceEarly.beta",
            e.beta,
            e.beta > 0.0 && e.beta < 1.0,
            "between 0 and 1",
        )?;
    }
    Ok(())
}

/// The kernel's parameters for a config (validate it first).
pub fn sequential_test(cfg: &SequentialSpec) -> SequentialTest {
    SequentialTest {
        alpha: cfg.alpha,
        null_ratio: cfg.allowed_increase,
        alternatives: cfg
            .alternatives
            .clone()
            .unwrap_or_else(|| DEFAULT_ALTERNATIVES.to_vec()),
        advance_early: cfg.advance_early.as_ref().map(|e| (e.margin, e.beta)),
    }
}

/// Fold one look into the evidence and judge: Fail once the evidence that the canary's
/// error rate exceeds `allowedIncrease` times the baseline's reaches `1/alpha`
/// (sticky for the release); Inconclusive until `minRequests` canary requests were
/// seen; otherwise Pass, with `advance_early` set once the early-advance evidence
/// suffices. `state` is `None` at the first look of a release.
pub fn judge_sequential(
    state: Option<&SequentialState>,
    obs: SequentialObservation,
    cfg: &SequentialSpec,
) -> (SequentialState, JudgeVerdict) {
    let test = sequential_test(cfg);
    let mut st = test.start(state);
    if let Err(e) = validate_sequential(cfg) {
        return (
            st,
            JudgeVerdict::bare(MetricVerdict::Error, format!("invalid judge config: {e}")),
        );
    }
    let (nc, nb) = match obs.requests {
        Some(r) => r,
        // Shares are all the test needs; 1e6 "requests" keep the ratio exact.
        None => {
            let w = obs.weight.clamp(0.0, 100.0) / 100.0;
            (w * 1e6, (1.0 - w) * 1e6)
        }
    };
    let look = test.update(
        &mut st,
        CountIncrement {
            canary_errors: obs.canary_errors,
            canary_requests: nc,
            baseline_errors: obs.baseline_errors,
            baseline_requests: nb,
        },
    );
    let have_requests = obs.requests.is_some();
    let (value, baseline) =
        if have_requests && st.canary_requests > 0.0 && st.baseline_requests > 0.0 {
            (
                Some(st.canary_errors / st.canary_requests),
                Some(st.baseline_errors / st.baseline_requests),
            )
        } else {
            (None, None)
        };
    let ratio = match (value, baseline) {
        (Some(c), Some(b)) if b > 0.0 => Some(c / b),
        (Some(0.0), Some(_)) => Some(1.0),
        (Some(_), Some(_)) => Some(f64::INFINITY),
        _ => None,
    };
    let counts = match (value, baseline) {
        (Some(c), Some(b)) => format!(
            "errors {} vs baseline {} ({}/{} vs {}/{})",
            rate(c),
            rate(b),
            num(st.canary_errors),
            num(st.canary_requests),
            num(st.baseline_errors),
            num(st.baseline_requests)
        ),
        _ => format!(
            "{} canary vs {} baseline errors",
            num(st.canary_errors),
            num(st.baseline_errors)
        ),
    };
    let evidence = format!(
        "over {} looks: e-value {} (threshold {}), p={}",
        st.looks,
        num(look.e_value),
        num(1.0 / cfg.alpha),
        p(st.p_value)
    );
    let skipped = if st.skipped > 0 {
        format!(", {} looks with unusable counts", st.skipped)
    } else {
        String::new()
    };
    let allowed = if cfg.allowed_increase == 1.0 {
        "the baseline's".to_string()
    } else {
        format!("{}x the baseline's", num(cfg.allowed_increase))
    };
    let (outcome, why) = if st.rejected {
        (
            MetricVerdict::Fail,
            format!(
                "error rate above {allowed} (false-rollback bound {})",
                num(cfg.alpha)
            ),
        )
    } else if have_requests && st.canary_requests < cfg.min_requests {
        (
            MetricVerdict::Inconclusive,
            format!(
                "only {} canary requests, need {}",
                num(st.canary_requests),
                num(cfg.min_requests)
            ),
        )
    } else if st.looks == st.skipped {
        (
            MetricVerdict::Inconclusive,
            "no usable counts yet".to_string(),
        )
    } else if look.e_value >= (1.0 / cfg.alpha).sqrt() {
        // Halfway (in log scale) to a rollback: hold the canary's share where it is
        // until more data settles it, rather than raising its exposure on the way to
        // proof. Only rejection at 1/alpha rolls back, so the bound is kept; holding
        // only from halfway keeps a good canary from idling to its deadline (under the
        // null, the chance of ever getting there is at most sqrt(alpha)).
        (
            MetricVerdict::Inconclusive,
            format!(
                "evidence leans towards a regression (e-value >= {}): holding for more data",
                num((1.0 / cfg.alpha).sqrt())
            ),
        )
    } else if st.not_worse {
        (
            MetricVerdict::Pass,
            "evidence the canary is not worse than the margin: may advance early".to_string(),
        )
    } else {
        (MetricVerdict::Pass, "no evidence of regression".to_string())
    };
    let verdict = JudgeVerdict {
        outcome,
        value,
        baseline,
        effect: value.zip(baseline).map(|(c, b)| c - b),
        ratio,
        interval: None,
        p_value: Some(st.p_value),
        reason: format!("{counts} {evidence}{skipped}: {why}"),
        dropped: 0,
        advance_early: outcome == MetricVerdict::Pass && st.not_worse,
    };
    (st, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AdvanceEarlySpec;

    fn obs(ce: f64, cn: f64, be: f64, bn: f64) -> SequentialObservation {
        SequentialObservation {
            canary_errors: ce,
            baseline_errors: be,
            requests: Some((cn, bn)),
            weight: 10.0,
        }
    }

    #[test]
    fn rollback_is_sticky_and_explained() {
        let cfg = SequentialSpec::default();
        let (s, v) = judge_sequential(None, obs(12.0, 120.0, 5.0, 1080.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Fail, "{}", v.reason);
        assert!(
            v.reason.starts_with(
                "errors 10.00% vs baseline 0.46% (12/120 vs 5/1080) over 1 looks: e-value "
            ),
            "{}",
            v.reason
        );
        assert!(v.p_value.unwrap() <= 0.01);
        // A clean interval afterwards does not undo the rollback decision.
        let (s, v) = judge_sequential(Some(&s), obs(0.0, 120.0, 5.0, 1080.0), &cfg);
        assert_eq!((v.outcome, s.looks), (MetricVerdict::Fail, 2));
    }

    #[test]
    fn small_evidence_passes_only_after_min_requests() {
        let cfg = SequentialSpec::default();
        let (s, v) = judge_sequential(None, obs(1.0, 60.0, 5.0, 540.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
        let (_, v) = judge_sequential(Some(&s), obs(0.0, 60.0, 4.0, 540.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Pass, "{}", v.reason);
        assert!(!v.advance_early);
    }

    /// More canary errors than its share, but short of proof: hold (Inconclusive), not
    /// pass and not fail; clean looks afterwards bring the evidence back below 1.
    #[test]
    fn evidence_leaning_towards_a_regression_holds_the_step() {
        let cfg = SequentialSpec::default();
        // 25% canary share; 7 of 12 errors on the canary (3 expected).
        let lean = SequentialObservation {
            weight: 25.0,
            ..obs(7.0, 250.0, 5.0, 750.0)
        };
        let (s, v) = judge_sequential(None, lean, &cfg);
        assert!(
            !s.rejected && s.p_value > cfg.alpha && s.p_value <= 0.1,
            "{s:?}"
        );
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
        assert!(
            v.reason.contains("leans towards a regression"),
            "{}",
            v.reason
        );
        let clean = SequentialObservation {
            weight: 25.0,
            ..obs(0.0, 250.0, 30.0, 750.0)
        };
        let (_, v) = judge_sequential(Some(&s), clean, &cfg);
        assert_eq!(v.outcome, MetricVerdict::Pass, "{}", v.reason);
    }

    #[test]
    fn weight_only_mode_and_no_data() {
        let cfg = SequentialSpec::default();
        let o = SequentialObservation {
            canary_errors: 0.0,
            baseline_errors: 0.0,
            requests: None,
            weight: 25.0,
        };
        let (_, v) = judge_sequential(None, o, &cfg);
        assert_eq!(v.outcome, MetricVerdict::Pass);
        assert_eq!(v.value, None);
        let bad = SequentialObservation {
            canary_errors: -1.0,
            ..o
        };
        let (_, v) = judge_sequential(None, bad, &cfg);
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
    }

    #[test]
    fn advance_early_needs_evidence_below_the_margin() {
        let cfg = SequentialSpec {
            advance_early: Some(AdvanceEarlySpec::default()),
            ..SequentialSpec::default()
        };
        let mut state = None;
        let mut early_at = None;
        // Equal rates (1%) at a 50% split: ~20 errors per look on each side.
        for look in 1..=20 {
            let (s, v) = judge_sequential(state.as_ref(), obs(20.0, 2000.0, 20.0, 2000.0), &cfg);
            assert_eq!(v.outcome, MetricVerdict::Pass);
            if v.advance_early && early_at.is_none() {
                early_at = Some(look);
            }
            state = Some(s);
        }
        assert!(early_at.is_some_and(|l| l > 1 && l < 20), "{early_at:?}");
        // A canary at twice the baseline's rate is never advanced early.
        let mut state = None;
        for _ in 0..20 {
            let (s, v) = judge_sequential(state.as_ref(), obs(20.0, 2000.0, 10.0, 2000.0), &cfg);
            assert!(!v.advance_early);
            state = Some(s);
        }
    }

    #[test]
    fn invalid_config_is_an_error() {
        let cfg = SequentialSpec {
            alpha: 0.0,
            ..SequentialSpec::default()
        };
        let (_, v) = judge_sequential(None, obs(1.0, 100.0, 1.0, 100.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Error);
    }
}
