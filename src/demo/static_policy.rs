//! The common static policy the demo compares serin with: a maximum error rate per
//! check window, a failed check holds the step, a passing check advances (past the
//! last step: promotion), no data counts as a failed check, and the release rolls back
//! at the `failure_limit`th failed check (cumulative). Flagger's rule, with the usual
//! settings (1%, 5 failed checks).
//!
//! Pure: the demo measures each check window's canary errors and requests in
//! Prometheus and hands them here.

use std::fmt::Write as _;
use std::time::Duration;

/// The static policy's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticPolicy {
    /// A check fails when the canary's error ratio over its window is above this.
    pub max_error_rate: f64,
    /// Failed checks (cumulative within the release) that roll back.
    pub failure_limit: u32,
    /// Passing checks that promote: one per traffic step.
    pub steps: u32,
    /// Check interval: each check judges the window since the previous one.
    pub interval: Duration,
}

impl StaticPolicy {
    /// Max 1% errors, roll back at the 5th failed check.
    pub fn common(steps: u32, interval: Duration) -> Self {
        Self {
            max_error_rate: 0.01,
            failure_limit: 5,
            steps,
            interval,
        }
    }

    /// "max 1% errors, roll back at 5 failed checks".
    pub fn describe(&self) -> String {
        format!(
            "max {}% errors per {} s check, roll back at {} failed checks",
            self.max_error_rate * 100.0,
            self.interval.as_secs(),
            self.failure_limit
        )
    }
}

/// The canary's counts over one check window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowCounts {
    pub errors: f64,
    pub requests: f64,
}

impl WindowCounts {
    /// The error ratio; `None` without requests (or with unusable counts).
    pub fn rate(&self) -> Option<f64> {
        (self.requests.is_finite() && self.requests > 0.0 && self.errors.is_finite())
            .then(|| (self.errors / self.requests).max(0.0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticVerdict {
    Pass,
    Fail,
    /// No requests in the window: a failed check too.
    NoData,
}

/// One check of the static policy.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticCheck {
    /// When the check happens, from the release's start.
    pub at: Duration,
    pub counts: WindowCounts,
    pub verdict: StaticVerdict,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StaticDecision {
    /// Promoted at its `check`th check (1-based), `at` from the release's start.
    Promote {
        check: u32,
        at: Duration,
    },
    RollBack {
        check: u32,
        at: Duration,
    },
    /// The windows ran out first; the earliest each decision could still come.
    Undecided {
        earliest_promotion: Duration,
        earliest_rollback: Duration,
    },
}

/// The static policy's checks over a release, up to its decision.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticTimeline {
    pub policy: StaticPolicy,
    pub checks: Vec<StaticCheck>,
    pub decision: StaticDecision,
}

impl StaticTimeline {
    pub fn failed(&self) -> u32 {
        self.checks
            .iter()
            .filter(|c| c.verdict != StaticVerdict::Pass)
            .count() as u32
    }

    pub fn passed(&self) -> u32 {
        self.checks.len() as u32 - self.failed()
    }
}

/// Judge consecutive check windows, the first one starting `traffic_start` after the
/// release began (when the canary first got traffic); check `k` happens at
/// `traffic_start + k * interval`. Windows after the decision are ignored.
pub fn evaluate(
    policy: &StaticPolicy,
    traffic_start: Duration,
    windows: &[WindowCounts],
) -> StaticTimeline {
    let at = |k: u32| traffic_start + policy.interval * k;
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut checks = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let k = i as u32 + 1;
        let verdict = match w.rate() {
            None => StaticVerdict::NoData,
            Some(r) if r > policy.max_error_rate => StaticVerdict::Fail,
            Some(_) => StaticVerdict::Pass,
        };
        checks.push(StaticCheck {
            at: at(k),
            counts: *w,
            verdict,
        });
        if verdict == StaticVerdict::Pass {
            passed += 1;
            if passed >= policy.steps {
                let decision = StaticDecision::Promote {
                    check: k,
                    at: at(k),
                };
                return timeline(policy, checks, decision);
            }
        } else {
            failed += 1;
            if failed >= policy.failure_limit {
                let decision = StaticDecision::RollBack {
                    check: k,
                    at: at(k),
                };
                return timeline(policy, checks, decision);
            }
        }
    }
    let n = checks.len() as u32;
    let decision = StaticDecision::Undecided {
        earliest_promotion: at(n + policy.steps.saturating_sub(passed)),
        earliest_rollback: at(n + policy.failure_limit.saturating_sub(failed)),
    };
    timeline(policy, checks, decision)
}

fn timeline(
    policy: &StaticPolicy,
    checks: Vec<StaticCheck>,
    decision: StaticDecision,
) -> StaticTimeline {
    StaticTimeline {
        policy: policy.clone(),
        checks,
        decision,
    }
}

/// "2.60%", "0.35%", "12.5%", "0%": two decimals near the thresholds, so a rate just
/// above 1% does not read as 1%.
pub fn percent(v: f64) -> String {
    let p = v * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 10.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What the same checks take at 1-minute intervals: "(5 min at 1-minute checks)".
fn at_one_minute(checks: u32) -> String {
    format!("({checks} min at 1-minute checks)")
}

/// One line: the decision and when, or how far the checks got and the earliest the
/// policy could decide. `serin_decided` (from the release's start) adds whether serin
/// decided before the static policy could.
pub fn describe(t: &StaticTimeline, serin_decided: Option<Duration>) -> String {
    let rates: Vec<String> = t
        .checks
        .iter()
        .map(|c| {
            let rate = c.counts.rate().map(percent);
            match (c.verdict, rate) {
                (StaticVerdict::Pass, Some(r)) => format!("{r} ok"),
                (StaticVerdict::Fail, Some(r)) => format!("{r} FAIL"),
                _ => "no data".to_string(),
            }
        })
        .collect();
    let n = t.checks.len() as u32;
    let secs = |d: Duration| d.as_secs();
    let mut out = match t.decision {
        StaticDecision::Promote { check, at } => format!(
            "would promote at its {} check, after {} s {} ({})",
            ordinal(check),
            secs(at),
            at_one_minute(check),
            rates.join(", ")
        ),
        StaticDecision::RollBack { check, at } => format!(
            "would roll back at its {} check ({} failed), after {} s {} ({})",
            ordinal(check),
            t.failed(),
            secs(at),
            at_one_minute(check),
            rates.join(", ")
        ),
        StaticDecision::Undecided {
            earliest_promotion,
            earliest_rollback,
        } => {
            let so_far = match n {
                0 => "no check yet".to_string(),
                _ => format!(
                    "{n} check{} so far, {} failed ({})",
                    if n == 1 { "" } else { "s" },
                    t.failed(),
                    rates.join(", ")
                ),
            };
            if t.failed() > 0 || n == 0 {
                let checks = n + t.policy.failure_limit - t.failed();
                format!(
                    "{so_far}: would roll back at the {} failed check at the earliest, after {} s {}",
                    ordinal(t.policy.failure_limit),
                    secs(earliest_rollback),
                    at_one_minute(checks)
                )
            } else {
                let checks = n + t.policy.steps - t.passed();
                format!(
                    "{so_far}: would promote at the {} passing check at the earliest, after {} s {}",
                    ordinal(t.policy.steps),
                    secs(earliest_promotion),
                    at_one_minute(checks)
                )
            }
        }
    };
    if let Some(serin) = serin_decided {
        // Against the decision described: made, or the earliest still possible.
        let (static_at, at_least) = match t.decision {
            StaticDecision::Promote { at, .. } | StaticDecision::RollBack { at, .. } => (at, ""),
            StaticDecision::Undecided {
                earliest_rollback, ..
            } if t.failed() > 0 || n == 0 => (earliest_rollback, "at least "),
            StaticDecision::Undecided {
                earliest_promotion, ..
            } => (earliest_promotion, "at least "),
        };
        let (serin, static_at) = (secs(serin), secs(static_at));
        if serin < static_at {
            let _ = write!(
                out,
                "; serin decided {at_least}{} s earlier",
                static_at - serin
            );
        } else if serin > static_at && at_least.is_empty() {
            let _ = write!(out, "; serin took {} s longer", serin - static_at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(errors: f64, requests: f64) -> WindowCounts {
        WindowCounts { errors, requests }
    }

    fn policy() -> StaticPolicy {
        StaticPolicy::common(2, Duration::from_secs(10))
    }

    const START: Duration = Duration::from_secs(2);

    #[test]
    fn two_passing_checks_promote_at_the_second() {
        // 0.5% and 1% (not above the max) pass; the third window is after the decision.
        let t = evaluate(
            &policy(),
            START,
            &[w(3.0, 600.0), w(6.0, 600.0), w(60.0, 600.0)],
        );
        assert_eq!(
            t.decision,
            StaticDecision::Promote {
                check: 2,
                at: Duration::from_secs(22)
            }
        );
        assert_eq!(t.checks.len(), 2);
        assert_eq!((t.passed(), t.failed()), (2, 0));
        assert_eq!(
            describe(&t, Some(Duration::from_secs(31))),
            "would promote at its 2nd check, after 22 s (2 min at 1-minute checks) (0.50% ok, 1.00% ok); \
             serin took 9 s longer"
        );
    }

    #[test]
    fn a_failed_check_holds_and_the_fifth_rolls_back() {
        // fail, pass, fail, no data, fail, fail: the 5th failed check is the 6th check.
        let windows = [
            w(12.0, 600.0),
            w(0.0, 600.0),
            w(7.0, 600.0),
            w(0.0, 0.0),
            w(30.0, 1500.0),
            w(19.0, 1000.0),
            w(0.0, 600.0),
        ];
        let t = evaluate(&policy(), START, &windows);
        assert_eq!(
            t.decision,
            StaticDecision::RollBack {
                check: 6,
                at: Duration::from_secs(62)
            }
        );
        let verdicts: Vec<StaticVerdict> = t.checks.iter().map(|c| c.verdict).collect();
        use StaticVerdict::*;
        assert_eq!(verdicts, [Fail, Pass, Fail, NoData, Fail, Fail]);
        assert_eq!(
            describe(&t, Some(Duration::from_secs(17))),
            "would roll back at its 6th check (5 failed), after 62 s (6 min at 1-minute checks) \
             (2.00% FAIL, 0% ok, 1.17% FAIL, no data, 2.00% FAIL, 1.90% FAIL); serin decided 45 s earlier"
        );
    }

    #[test]
    fn failures_so_far_give_the_earliest_rollback() {
        // 2 checks, both failed: 3 more failures are needed, at checks 3, 4, 5.
        let t = evaluate(&policy(), START, &[w(13.0, 500.0), w(31.0, 1000.0)]);
        assert_eq!(
            t.decision,
            StaticDecision::Undecided {
                earliest_promotion: Duration::from_secs(42),
                earliest_rollback: Duration::from_secs(52)
            }
        );
        assert_eq!(
            describe(&t, Some(Duration::from_secs(17))),
            "2 checks so far, 2 failed (2.60% FAIL, 3.10% FAIL): would roll back at the 5th failed check \
             at the earliest, after 52 s (5 min at 1-minute checks); serin decided at least 35 s \
             earlier"
        );
    }

    #[test]
    fn passes_so_far_give_the_earliest_promotion() {
        let t = evaluate(&policy(), START, &[w(2.0, 400.0)]);
        assert_eq!(
            describe(&t, None),
            "1 check so far, 0 failed (0.50% ok): would promote at the 2nd passing check at the \
             earliest, after 22 s (2 min at 1-minute checks)"
        );
        // Before the first check: nothing measured, 5 failures or 2 passes away.
        let t = evaluate(&policy(), START, &[]);
        assert_eq!(
            t.decision,
            StaticDecision::Undecided {
                earliest_promotion: Duration::from_secs(22),
                earliest_rollback: Duration::from_secs(52)
            }
        );
        assert!(describe(&t, Some(Duration::from_secs(9))).starts_with(
            "no check yet: would roll back at the 5th failed check at the earliest, after 52 s"
        ));
    }

    #[test]
    fn no_requests_or_unusable_counts_are_no_data() {
        assert_eq!(w(0.0, 0.0).rate(), None);
        assert_eq!(w(1.0, f64::NAN).rate(), None);
        assert_eq!(w(f64::NAN, 10.0).rate(), None);
        let t = evaluate(&policy(), START, &[w(0.0, 0.0); 5]);
        assert!(t.checks.iter().all(|c| c.verdict == StaticVerdict::NoData));
        assert!(matches!(
            t.decision,
            StaticDecision::RollBack { check: 5, .. }
        ));
    }

    #[test]
    fn percentages_and_ordinals_read_naturally() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.0035), "0.35%");
        assert_eq!(percent(0.026), "2.60%");
        assert_eq!(percent(0.0102), "1.02%");
        assert_eq!(percent(0.125), "12.5%");
        let o: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22].map(ordinal).to_vec();
        assert_eq!(
            o,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]
        );
        assert_eq!(
            policy().describe(),
            "max 1% errors per 10 s check, roll back at 5 failed checks"
        );
    }
}
