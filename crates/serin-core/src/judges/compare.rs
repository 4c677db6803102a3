//! The compare judge: the canary against the primary as baseline.

use super::format::{level, num, p, pct_change, pp, rate};
use super::{check_range, JudgeConfigError, JudgeVerdict};
use crate::crd::{CompareSpec, Direction, MetricVerdict};
use crate::stats::{
    conditional_ratio_test, finite_sorted, hodges_lehmann, mann_whitney_u_sorted, mean,
    newcombe_difference, two_proportions, Margin, Tail,
};

/// Errors and requests of one variant over the judged window.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub errors: f64,
    pub requests: f64,
}

/// Check a compare config before using it.
pub fn validate_compare(cfg: &CompareSpec) -> Result<(), JudgeConfigError> {
    let c = cfg.confidence;
    check_range("confidence", c, c > 0.0 && c < 1.0, "between 0 and 1")?;
    if let Some(r) = allowed_increase(cfg) {
        check_range("allowedIncrease", r, r >= 1.0, "a ratio >= 1")?;
    }
    if let Some(r) = cfg.allowed_decrease {
        check_range(
            "allowedDecrease",
            r,
            r > 0.0 && r <= 1.0,
            "a ratio in (0, 1]",
        )?;
    }
    if let Some(d) = cfg.allowed_absolute_increase {
        check_range(
            "allowedAbsoluteIncrease",
            d,
            (0.0..1.0).contains(&d),
            "in [0, 1)",
        )?;
    }
    if let Some(d) = cfg.allowed_absolute_decrease {
        check_range(
            "allowedAbsoluteDecrease",
            d,
            (0.0..1.0).contains(&d),
            "in [0, 1)",
        )?;
    }
    let m = cfg.min_requests;
    check_range("minRequests", m, m >= 0.0, ">= 0")
}

/// The configured `allowedIncrease` as a number (its args rendered by resolve).
fn allowed_increase(cfg: &CompareSpec) -> Option<f64> {
    cfg.allowed_increase.as_ref().map(|v| v.number())
}

fn config_error(e: JudgeConfigError) -> JudgeVerdict {
    JudgeVerdict::bare(MetricVerdict::Error, format!("invalid judge config: {e}"))
}

/// Mann-Whitney U on samples with a Hodges-Lehmann shift interval, as Kayenta:
/// a regression is a shift whose interval excludes zero in the bad direction while
/// the mean ratio is beyond the allowed one. Non-finite values are dropped and
/// counted; too few samples are inconclusive, never a pass.
pub fn judge_mann_whitney(canary: &[f64], baseline: &[f64], cfg: &CompareSpec) -> JudgeVerdict {
    if let Err(e) = validate_compare(cfg) {
        return config_error(e);
    }
    let (c, dc) = finite_sorted(canary);
    let (b, db) = finite_sorted(baseline);
    let dropped = dc + db;
    let dropped_note = if dropped > 0 {
        format!(" ({dropped} non-finite dropped)")
    } else {
        String::new()
    };
    let min = cfg.min_samples.max(1) as usize;
    if c.len() < min || b.len() < min {
        let mut v = JudgeVerdict::bare(
            MetricVerdict::Inconclusive,
            format!(
                "only {} canary and {} baseline samples, need {} each{dropped_note}",
                c.len(),
                b.len(),
                min
            ),
        );
        v.dropped = dropped;
        return v;
    }
    let (Some(mw), Some(hl), Some(mc), Some(mb)) = (
        mann_whitney_u_sorted(&c, &b),
        hodges_lehmann(&c, &b, cfg.confidence),
        mean(&c),
        mean(&b),
    ) else {
        return JudgeVerdict::bare(MetricVerdict::Inconclusive, "no usable samples".into());
    };
    let ratio = if mb != 0.0 {
        mc / mb
    } else if mc == mb {
        1.0
    } else {
        f64::INFINITY.copysign(mc)
    };
    let allowed_up = allowed_increase(cfg).unwrap_or(1.0);
    let allowed_down = cfg.allowed_decrease.unwrap_or(1.0);
    let up = matches!(cfg.direction, Direction::Increase | Direction::Either);
    let down = matches!(cfg.direction, Direction::Decrease | Direction::Either);
    let stats = format!(
        "mean {} vs baseline {} ({}), HL shift {} [{} CI {}, {}], p={}",
        num(mc),
        num(mb),
        pct_change(Some(ratio)),
        num(hl.estimate),
        level(cfg.confidence),
        num(hl.low),
        num(hl.high),
        p(mw.p_value)
    );
    let (outcome, why) = if up && hl.low > 0.0 && ratio > allowed_up {
        (
            MetricVerdict::Fail,
            format!("increase beyond allowed {}", pct_change(Some(allowed_up))),
        )
    } else if down && hl.high < 0.0 && ratio < allowed_down {
        (
            MetricVerdict::Fail,
            format!("decrease beyond allowed {}", pct_change(Some(allowed_down))),
        )
    } else if (up && hl.low > 0.0) || (down && hl.high < 0.0) {
        (
            MetricVerdict::Pass,
            "significant but within the allowed ratio".to_string(),
        )
    } else {
        (MetricVerdict::Pass, "no significant regression".to_string())
    };
    JudgeVerdict {
        outcome,
        value: Some(mc),
        baseline: Some(mb),
        effect: Some(hl.estimate),
        ratio: Some(ratio),
        interval: Some((hl.low, hl.high)),
        p_value: Some(mw.p_value),
        reason: format!("{stats}: {why}{dropped_note}"),
        dropped,
        advance_early: false,
    }
}

/// A test of the canary's error rate against the baseline's, one-sided in the
/// configured direction with the allowed degradation as the null boundary
/// (non-inferiority): exact conditional binomial for ratio margins (the default),
/// Farrington-Manning score test for absolute margins. The interval is Newcombe's for the rate difference at the
/// level matching the test (1 - 2 alpha one-sided, 1 - alpha for `either`).
pub fn judge_proportions(canary: Counts, baseline: Counts, cfg: &CompareSpec) -> JudgeVerdict {
    if let Err(e) = validate_compare(cfg) {
        return config_error(e);
    }
    let finite = [
        canary.errors,
        canary.requests,
        baseline.errors,
        baseline.requests,
    ]
    .iter()
    .all(|v| v.is_finite());
    if !finite {
        return JudgeVerdict::bare(
            MetricVerdict::Inconclusive,
            "a count is not a finite number".into(),
        );
    }
    for (who, c) in [("canary", canary), ("baseline", baseline)] {
        if c.errors < 0.0 || c.requests < 0.0 || c.errors > c.requests {
            return JudgeVerdict::bare(
                MetricVerdict::Error,
                format!(
                    "{who} counts are inconsistent: {} errors of {} requests",
                    num(c.errors),
                    num(c.requests)
                ),
            );
        }
    }
    let min = cfg.min_requests.max(1.0);
    if canary.requests < min || baseline.requests < min {
        return JudgeVerdict::bare(
            MetricVerdict::Inconclusive,
            format!(
                "only {} canary and {} baseline requests, need {} each",
                num(canary.requests),
                num(baseline.requests),
                num(min)
            ),
        );
    }
    let alpha = 1.0 - cfg.confidence;
    let (x1, n1, x0, n0) = (
        canary.errors,
        canary.requests,
        baseline.errors,
        baseline.requests,
    );
    let up_margin = match (cfg.allowed_absolute_increase, allowed_increase(cfg)) {
        (Some(d), _) => Margin::Absolute(d),
        (None, r) => Margin::Ratio(r.unwrap_or(1.0)),
    };
    let down_margin = match (cfg.allowed_absolute_decrease, cfg.allowed_decrease) {
        (Some(d), _) => Margin::Absolute(-d),
        (None, r) => Margin::Ratio(r.unwrap_or(1.0)),
    };
    // Ratio margins use the exact conditional test: the score test's normal
    // approximation is far too liberal at the few errors one interval holds (5% false
    // failures at a 0.07% nominal level in benches/decision_quality).
    let test = |m, t| match m {
        Margin::Ratio(r) => conditional_ratio_test(x1, n1, x0, n0, r, t),
        Margin::Absolute(_) => two_proportions(x1, n1, x0, n0, m, t).map(|r| r.p_value),
    };
    let (p_up, p_down) = match cfg.direction {
        Direction::Increase => (test(up_margin, Tail::Larger), None),
        Direction::Decrease => (None, test(down_margin, Tail::Smaller)),
        Direction::Either => (
            test(up_margin, Tail::Larger),
            test(down_margin, Tail::Smaller),
        ),
    };
    let two_tests = p_up.is_some() && p_down.is_some();
    // Either: each side at alpha/2 (Bonferroni), reported as one adjusted p-value.
    let (side_alpha, ci_level) = if two_tests {
        (alpha / 2.0, 1.0 - alpha)
    } else {
        (alpha, 1.0 - 2.0 * alpha)
    };
    let p_report = match (p_up, p_down) {
        (Some(a), Some(b)) => (2.0 * a.min(b)).min(1.0),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => {
            return JudgeVerdict::bare(MetricVerdict::Error, "counts could not be tested".into())
        }
    };
    let (p1, p0) = (x1 / n1, x0 / n0);
    let diff = p1 - p0;
    let ratio = if p0 > 0.0 {
        Some(p1 / p0)
    } else if p1 == 0.0 {
        Some(1.0)
    } else {
        Some(f64::INFINITY)
    };
    let (lo, hi) = newcombe_difference(x1, n1, x0, n0, ci_level.max(0.0));
    let margin_text = |m: Margin| match m {
        Margin::Absolute(d) => pp(d),
        Margin::Ratio(r) => pct_change(Some(r)),
    };
    let stats = format!(
        "error rate {} vs baseline {} ({}, x{}; {} CI [{}, {}]), p={}",
        rate(p1),
        rate(p0),
        pp(diff),
        ratio.map_or("n/a".into(), |r| if r.is_finite() {
            format!("{r:.2}")
        } else {
            "inf".into()
        }),
        level(ci_level),
        pp(lo),
        pp(hi),
        p(p_report)
    );
    let (outcome, why) = if p_up.is_some_and(|v| v < side_alpha) {
        (
            MetricVerdict::Fail,
            format!("increase beyond allowed {}", margin_text(up_margin)),
        )
    } else if p_down.is_some_and(|v| v < side_alpha) {
        (
            MetricVerdict::Fail,
            format!("decrease beyond allowed {}", margin_text(down_margin)),
        )
    } else {
        (MetricVerdict::Pass, "no significant regression".to_string())
    };
    JudgeVerdict {
        outcome,
        value: Some(p1),
        baseline: Some(p0),
        effect: Some(diff),
        ratio,
        interval: Some((lo, hi)),
        p_value: Some(p_report),
        reason: format!("{stats}: {why}"),
        dropped: 0,
        advance_early: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CompareKind;

    fn samples(min: u32) -> CompareSpec {
        CompareSpec {
            min_samples: min,
            ..CompareSpec::default()
        }
    }

    fn counts() -> CompareSpec {
        CompareSpec {
            kind: CompareKind::Counts,
            ..CompareSpec::default()
        }
    }

    const EXPERIMENT: [f64; 4] = [10.0, 20.0, 30.0, 40.0];
    const CONTROL: [f64; 4] = [1.0, 2.0, 3.0, 4.0];

    #[test]
    fn kayenta_vector_fails_an_increase() {
        let v = judge_mann_whitney(&EXPERIMENT, &CONTROL, &samples(4));
        assert_eq!(v.outcome, MetricVerdict::Fail);
        assert_eq!(v.effect, Some(22.5));
        assert_eq!(v.interval, Some((6.0, 39.0)));
        assert_eq!(
            (v.value, v.baseline, v.ratio),
            (Some(25.0), Some(2.5), Some(10.0))
        );
        assert!(
            v.reason
                .starts_with("mean 25 vs baseline 2.5 (+900.0%), HL shift 22.5 [95% CI 6, 39]"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn allowed_ratio_and_direction_gate_the_failure() {
        let cfg = CompareSpec {
            allowed_increase: Some(12.0.into()),
            ..samples(4)
        };
        let v = judge_mann_whitney(&EXPERIMENT, &CONTROL, &cfg);
        assert_eq!(v.outcome, MetricVerdict::Pass);
        assert!(
            v.reason.ends_with("within the allowed ratio"),
            "{}",
            v.reason
        );
        let down = CompareSpec {
            direction: Direction::Decrease,
            ..samples(4)
        };
        assert_eq!(
            judge_mann_whitney(&EXPERIMENT, &CONTROL, &down).outcome,
            MetricVerdict::Pass
        );
        assert_eq!(
            judge_mann_whitney(&CONTROL, &EXPERIMENT, &down).outcome,
            MetricVerdict::Fail
        );
        let either = CompareSpec {
            direction: Direction::Either,
            ..samples(4)
        };
        assert_eq!(
            judge_mann_whitney(&CONTROL, &EXPERIMENT, &either).outcome,
            MetricVerdict::Fail
        );
    }

    #[test]
    fn too_few_or_non_finite_samples_are_never_a_pass() {
        let v = judge_mann_whitney(&EXPERIMENT, &CONTROL, &samples(5));
        assert_eq!(v.outcome, MetricVerdict::Inconclusive);
        let canary = [10.0, f64::NAN, 20.0, f64::INFINITY, 30.0, 40.0];
        let v = judge_mann_whitney(&canary, &CONTROL, &samples(4));
        assert_eq!((v.outcome, v.dropped), (MetricVerdict::Fail, 2));
        assert!(v.reason.ends_with("(2 non-finite dropped)"), "{}", v.reason);
        let v = judge_mann_whitney(&[f64::NAN; 8], &CONTROL, &samples(1));
        assert_eq!((v.outcome, v.dropped), (MetricVerdict::Inconclusive, 8));
        let v = judge_mann_whitney(&[], &[], &samples(0));
        assert_eq!(v.outcome, MetricVerdict::Inconclusive);
    }

    #[test]
    fn bad_config_is_an_error_not_a_panic() {
        let cfg = CompareSpec {
            confidence: 1.5,
            ..samples(4)
        };
        let v = judge_mann_whitney(&EXPERIMENT, &CONTROL, &cfg);
        assert_eq!(v.outcome, MetricVerdict::Error);
        assert_eq!(
            v.reason,
            "invalid judge config: confidence must be between 0 and 1, got 1.5"
        );
    }

    fn c(errors: f64, requests: f64) -> Counts {
        Counts { errors, requests }
    }

    #[test]
    fn proportions_fail_a_clear_regression_and_pass_noise() {
        let v = judge_proportions(c(30.0, 1000.0), c(5.0, 1000.0), &counts());
        assert_eq!(v.outcome, MetricVerdict::Fail);
        assert_eq!((v.value, v.baseline), (Some(0.03), Some(0.005)));
        assert!(
            v.reason
                .starts_with("error rate 3.00% vs baseline 0.50% (+2.50pp, x6.00; 90% CI ["),
            "{}",
            v.reason
        );
        let (lo, hi) = v.interval.unwrap();
        assert!(lo > 0.0 && hi > 0.025 && lo < 0.025);
        let v = judge_proportions(c(6.0, 1000.0), c(5.0, 1000.0), &counts());
        assert_eq!(v.outcome, MetricVerdict::Pass);
        let v = judge_proportions(c(0.0, 1000.0), c(0.0, 1000.0), &counts());
        assert_eq!(v.outcome, MetricVerdict::Pass);
    }

    #[test]
    fn proportions_respect_margins() {
        let abs = CompareSpec {
            allowed_absolute_increase: Some(0.03),
            ..counts()
        };
        assert_eq!(
            judge_proportions(c(30.0, 1000.0), c(5.0, 1000.0), &abs).outcome,
            MetricVerdict::Pass
        );
        let rel = CompareSpec {
            allowed_increase: Some(8.0.into()),
            ..counts()
        };
        assert_eq!(
            judge_proportions(c(30.0, 1000.0), c(5.0, 1000.0), &rel).outcome,
            MetricVerdict::Pass
        );
        let down = CompareSpec {
            direction: Direction::Decrease,
            ..counts()
        };
        assert_eq!(
            judge_proportions(c(30.0, 1000.0), c(5.0, 1000.0), &down).outcome,
            MetricVerdict::Pass
        );
        assert_eq!(
            judge_proportions(c(5.0, 1000.0), c(30.0, 1000.0), &down).outcome,
            MetricVerdict::Fail
        );
    }

    #[test]
    fn proportions_guard_their_input() {
        let v = judge_proportions(c(3.0, 50.0), c(5.0, 1000.0), &counts());
        assert_eq!(v.outcome, MetricVerdict::Inconclusive);
        let v = judge_proportions(c(3000.0, 1000.0), c(5.0, 1000.0), &counts());
        assert_eq!(v.outcome, MetricVerdict::Error);
        let v = judge_proportions(c(f64::NAN, 1000.0), c(5.0, 1000.0), &counts());
        assert_eq!(v.outcome, MetricVerdict::Inconclusive);
    }
}
