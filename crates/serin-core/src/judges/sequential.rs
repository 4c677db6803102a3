//! The sequential judge: an anytime-valid error-count test, looked at every check.
//! See [`crate::stats::sequential`] for the construction and its guarantee.

use super::format::{num, rate};
use super::{check_range, JudgeConfigError, JudgeVerdict};
use crate::crd::{MetricVerdict, SequentialSpec};
use crate::stats::sequential::DEFAULT_ALTERNATIVES;
use crate::stats::{CountIncrement, LookCounts, SequentialState, SequentialTest};

/// One look: the errors and requests of both versions since the previous look.
pub type SequentialObservation = LookCounts;

/// Check a sequential config before using it.
pub fn validate_sequential(cfg: &SequentialSpec) -> Result<(), JudgeConfigError> {
    let a = cfg.alpha;
    check_range("alpha", a, a > 0.0 && a < 1.0, "between 0 and 1")?;
    let r = cfg.allowed_increase.number();
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
        null_ratio: cfg.allowed_increase.number(),
        alternatives: cfg
            .alternatives
            .clone()
            .unwrap_or_else(|| DEFAULT_ALTERNATIVES.to_vec()),
        advance_early: cfg.advance_early.as_ref().map(|e| (e.margin, e.beta)),
    }
}

/// The increments since the last look, from counter totals read now (queries like
/// `sum(requests_total{...})`). `None` on the first look of a release and after a
/// counter went down (pods replaced): the state is re-baselined on `totals` and the
/// look is not counted.
pub fn increments_since_last_look(
    state: &mut SequentialState,
    totals: LookCounts,
) -> Option<LookCounts> {
    let inc = state
        .totals
        .as_ref()
        .and_then(|before| totals.since(before));
    state.totals = Some(totals);
    inc
}

fn counts_line(errors: f64, requests: f64) -> String {
    if requests > 0.0 {
        format!(
            "{}/{} errors ({})",
            num(errors),
            num(requests),
            rate(errors / requests)
        )
    } else {
        format!("{}/0 errors", num(errors))
    }
}

/// The evidence so far in numbers: "canary 12/230 errors (5.22%) vs primary 3/2100
/// errors (0.14%), evidence 214 >= 100". Status, Events, notifications and the CLI say it
/// the same way.
pub fn evidence_line(st: &SequentialState) -> String {
    format!(
        "canary {} vs primary {}, evidence {} {} {}",
        counts_line(st.canary_errors, st.canary_requests),
        counts_line(st.baseline_errors, st.baseline_requests),
        num(st.e_value),
        if st.e_value >= st.threshold {
            ">="
        } else {
            "<"
        },
        num(st.threshold)
    )
}

/// The last look's increments: "last look: canary +3/40, primary +1/400".
pub fn last_look_line(st: &SequentialState) -> Option<String> {
    let l = st.last_look.as_ref()?;
    Some(format!(
        "last look: canary +{}/{}, primary +{}/{} ({} looks)",
        num(l.canary_errors),
        num(l.canary_requests),
        num(l.baseline_errors),
        num(l.baseline_requests),
        st.looks
    ))
}

/// A check holds its step while the e-value is at least this: the counts are at least
/// twice as likely under the regressions tested as under none. A promotion cannot be
/// undone and a short release at low traffic sees few errors, so a canary that is
/// probably bad must not pass on its way to proof: in simulated releases (steps
/// 10/25/50% at 1 m, 20 req/s, benches/decision_quality.rs) holding from
/// `1/sqrt(alpha)` (10) promoted 2.9% of +2 pp regressions over 0.5%, holding from 2
/// 0.35%. Only rollbacks spend alpha, so its bound is unchanged; a good canary is held
/// at all with chance at most 1/2 (Ville), mostly for a check or two while its evidence
/// falls back, which slows releases that need many passing checks at low traffic.
pub const HOLD_AT: f64 = 2.0;

/// Fold one look into the evidence and judge it:
/// - `Fail` once the evidence that the canary's error rate exceeds `allowedIncrease`
///   times the primary's reaches `1/alpha` (sticky for the release);
/// - `Inconclusive` when no canary request arrived since the last look, when the
///   current step has fewer than `minRequests` canary requests, or while the evidence
///   leans towards a regression (e-value at least [`HOLD_AT`]);
/// - otherwise `Pass`, with `advance_early` once the early-advance evidence suffices.
///
/// Every count is measured (never derived from the planned weight): no traffic is never
/// a pass. `state` is `None` at the first look of a release.
pub fn judge_sequential(
    state: Option<&SequentialState>,
    look: SequentialObservation,
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
    let result = test.update(
        &mut st,
        CountIncrement {
            canary_errors: look.canary_errors,
            canary_requests: look.canary_requests,
            baseline_errors: look.baseline_errors,
            baseline_requests: look.baseline_requests,
        },
    );
    if look.canary_requests.is_finite() && look.canary_requests > 0.0 {
        st.step_canary_requests += look.canary_requests.max(0.0);
    }
    st.last_look = Some(look);
    let (c_rate, b_rate) = (
        (st.canary_requests > 0.0).then(|| st.canary_errors / st.canary_requests),
        (st.baseline_requests > 0.0).then(|| st.baseline_errors / st.baseline_requests),
    );
    let ratio = match (c_rate, b_rate) {
        (Some(c), Some(b)) if b > 0.0 => Some(c / b),
        (Some(0.0), Some(_)) => Some(1.0),
        (Some(_), Some(_)) => Some(f64::INFINITY),
        _ => None,
    };
    st.threshold = 1.0 / cfg.alpha;
    debug_assert_eq!(st.e_value, result.e_value);
    let evidence = evidence_line(&st);
    let skipped = if st.skipped > 0 {
        format!(" ({} looks with unusable counts)", st.skipped)
    } else {
        String::new()
    };
    let r = cfg.allowed_increase.number();
    let allowed = if r == 1.0 {
        "the primary's".to_string()
    } else {
        format!("{}x the primary's", num(r))
    };
    let (outcome, why) = if st.rejected {
        (
            MetricVerdict::Fail,
            format!(
                "error rate above {allowed} (false-rollback bound {})",
                num(cfg.alpha)
            ),
        )
    } else if look.canary_requests.is_nan() || look.canary_requests <= 0.0 {
        (
            MetricVerdict::Inconclusive,
            "no canary traffic since the last look".to_string(),
        )
    } else if st.step_canary_requests < cfg.min_requests {
        (
            MetricVerdict::Inconclusive,
            format!(
                "only {} canary requests in this step, need {}",
                num(st.step_canary_requests),
                num(cfg.min_requests)
            ),
        )
    } else if result.e_value >= HOLD_AT {
        // Hold the canary's share where it is until more data settles it, rather than
        // raising its exposure (or promoting it) on the way to proof.
        (
            MetricVerdict::Inconclusive,
            format!(
                "evidence leans towards a regression (>= {}): holding for more data",
                num(HOLD_AT)
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
        value: c_rate,
        baseline: b_rate,
        effect: c_rate.zip(b_rate).map(|(c, b)| c - b),
        ratio,
        interval: None,
        p_value: Some(st.p_value),
        reason: format!("{evidence}{skipped}: {why}"),
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
        LookCounts {
            canary_errors: ce,
            canary_requests: cn,
            baseline_errors: be,
            baseline_requests: bn,
        }
    }

    #[test]
    fn rollback_is_sticky_and_says_why_in_numbers() {
        let cfg = SequentialSpec::default();
        let (s, v) = judge_sequential(None, obs(12.0, 120.0, 5.0, 1080.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Fail, "{}", v.reason);
        assert!(
            v.reason.starts_with(
                "canary 12/120 errors (10.00%) vs primary 5/1080 errors (0.46%), evidence "
            ),
            "{}",
            v.reason
        );
        assert!(
            v.reason.contains(">= 100: error rate above the primary's"),
            "{}",
            v.reason
        );
        assert!(v.p_value.unwrap() <= 0.01);
        assert!(s.e_value >= 100.0);
        assert_eq!(s.threshold, 100.0);
        assert_eq!(s.last_look, Some(obs(12.0, 120.0, 5.0, 1080.0)));
        // A clean look afterwards does not undo the rollback decision.
        let (s, v) = judge_sequential(Some(&s), obs(0.0, 120.0, 5.0, 1080.0), &cfg);
        assert_eq!((v.outcome, s.looks), (MetricVerdict::Fail, 2));
    }

    #[test]
    fn a_step_passes_only_after_min_requests_in_that_step() {
        let cfg = SequentialSpec::default();
        let (s, v) = judge_sequential(None, obs(1.0, 60.0, 5.0, 540.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
        assert!(
            v.reason
                .contains("only 60 canary requests in this step, need 100"),
            "{}",
            v.reason
        );
        let (mut s, v) = judge_sequential(Some(&s), obs(0.0, 60.0, 4.0, 540.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Pass, "{}", v.reason);
        assert!(!v.advance_early);
        // The next step starts from zero: the release's earlier traffic does not count.
        s.step_canary_requests = 0.0;
        let (_, v) = judge_sequential(Some(&s), obs(0.0, 50.0, 4.0, 540.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
    }

    /// Regression (issue 12): 0 errors out of 0 requests passed, as did a blue/green
    /// preview with no traffic at all.
    #[test]
    fn a_look_without_canary_requests_is_inconclusive() {
        let cfg = SequentialSpec {
            min_requests: 0.0,
            ..SequentialSpec::default()
        };
        let (_, v) = judge_sequential(None, obs(0.0, 0.0, 3.0, 900.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
        assert!(v.reason.contains("no canary traffic"), "{}", v.reason);
        let (_, v) = judge_sequential(None, obs(0.0, 0.0, 0.0, 0.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Inconclusive);
    }

    /// More canary errors than its share, but short of proof: hold (Inconclusive), not
    /// pass and not fail; clean looks afterwards bring the evidence back below 1.
    #[test]
    fn evidence_leaning_towards_a_regression_holds_the_step() {
        let cfg = SequentialSpec::default();
        // 25% canary share; 7 of 12 errors on the canary (3 expected).
        let (s, v) = judge_sequential(None, obs(7.0, 250.0, 5.0, 750.0), &cfg);
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
        let (_, v) = judge_sequential(Some(&s), obs(0.0, 250.0, 30.0, 750.0), &cfg);
        assert_eq!(v.outcome, MetricVerdict::Pass, "{}", v.reason);
    }

    /// Evidence short of `1/sqrt(alpha)` but at least `HOLD_AT` holds too: a check
    /// that passed here could promote a probably-bad canary.
    #[test]
    fn mild_evidence_of_a_regression_holds_the_step() {
        let cfg = SequentialSpec::default();
        // 25% canary share; 6 of 12 errors on the canary (3 expected): e ~ 3.1.
        let (s, v) = judge_sequential(None, obs(6.0, 250.0, 6.0, 750.0), &cfg);
        assert!(
            s.e_value >= HOLD_AT && s.e_value < (1.0 / cfg.alpha).sqrt(),
            "{s:?}"
        );
        assert_eq!(v.outcome, MetricVerdict::Inconclusive, "{}", v.reason);
        assert!(
            v.reason.contains("leans towards a regression (>= 2)"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn increments_come_from_counter_totals_and_survive_resets() {
        let mut st = SequentialState::default();
        assert_eq!(
            increments_since_last_look(&mut st, obs(5.0, 100.0, 10.0, 1000.0)),
            None
        );
        assert_eq!(
            increments_since_last_look(&mut st, obs(6.0, 160.0, 12.0, 1500.0)),
            Some(obs(1.0, 60.0, 2.0, 500.0))
        );
        // Pods replaced: a counter went down. Re-baselined, not counted.
        assert_eq!(
            increments_since_last_look(&mut st, obs(0.0, 10.0, 12.0, 1600.0)),
            None
        );
        assert_eq!(
            increments_since_last_look(&mut st, obs(1.0, 30.0, 13.0, 1700.0)),
            Some(obs(1.0, 20.0, 1.0, 100.0))
        );
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
