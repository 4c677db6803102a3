//! Two independent proportions (errors / requests, canary vs baseline): a one-sided
//! score test against a non-inferiority margin and a Newcombe interval.
//!
//! The test is Farrington & Manning's (Stat. Med. 1990) score test: the variance is
//! taken at the maximum-likelihood proportions restricted to the null boundary, which
//! behaves well with the zero and tiny error counts a canary produces (a Wald test
//! does not). For the difference the restricted MLE is the closed-form cubic root of
//! Miettinen & Nurminen (1985); for the ratio it is a quadratic root. Numbers agree
//! with statsmodels' `test_proportions_2indep(method="score", correction=False)`.

use super::normal;

/// How much worse the canary may be before it fails.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Margin {
    /// Null hypothesis boundary `p_canary - p_baseline = delta`.
    Absolute(f64),
    /// Null hypothesis boundary `p_canary = ratio * p_baseline` (ratio > 0).
    Ratio(f64),
}

/// Which side of the margin the alternative lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The canary's proportion is larger than the boundary.
    Larger,
    /// The canary's proportion is smaller than the boundary.
    Smaller,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProportionTest {
    pub p_canary: f64,
    pub p_baseline: f64,
    /// Score statistic (positive when the canary is above the boundary).
    pub z: f64,
    /// One-sided p-value for the requested tail.
    pub p_value: f64,
}

/// Score test of canary `x1 / n1` against baseline `x0 / n0` at `margin`.
/// `None` when a count is negative, non-finite, above its total, or a total is zero.
pub fn two_proportions(
    x1: f64,
    n1: f64,
    x0: f64,
    n0: f64,
    margin: Margin,
    tail: Tail,
) -> Option<ProportionTest> {
    let ok = |x: f64, n: f64| x.is_finite() && n.is_finite() && x >= 0.0 && n > 0.0 && x <= n;
    if !ok(x1, n1) || !ok(x0, n0) {
        return None;
    }
    let (p1, p0) = (x1 / n1, x0 / n0);
    let (n, x) = (n1 + n0, x1 + x0);
    let (stat, var) = match margin {
        Margin::Absolute(delta) => {
            let (r1, r0) = if delta == 0.0 {
                (x / n, x / n)
            } else {
                let t3 = n;
                let t2 = (n1 + 2.0 * n0) * delta - n - x;
                let t1 = (x0 * delta - n - 2.0 * x0) * delta + x;
                let t0 = x0 * delta * (1.0 - delta);
                let q = (t2 / (3.0 * t3)).powi(3) - t1 * t2 / (6.0 * t3 * t3) + t0 / (2.0 * t3);
                let p = q.signum()
                    * ((t2 / (3.0 * t3)).powi(2) - t1 / (3.0 * t3))
                        .max(0.0)
                        .sqrt();
                let r0 = if p == 0.0 {
                    -t2 / (3.0 * t3)
                } else {
                    let a = (std::f64::consts::PI + (q / p.powi(3)).clamp(-1.0, 1.0).acos()) / 3.0;
                    2.0 * p * a.cos() - t2 / (3.0 * t3)
                };
                (r0 + delta, r0)
            };
            (p1 - p0 - delta, r1 * (1.0 - r1) / n1 + r0 * (1.0 - r0) / n0)
        }
        Margin::Ratio(ratio) => {
            if !(ratio > 0.0 && ratio.is_finite()) {
                return None;
            }
            let (r1, r0) = if ratio == 1.0 {
                (x / n, x / n)
            } else {
                let a = n * ratio;
                let b = -(n1 * ratio + x1 + n0 + x0 * ratio);
                let r0 = (-b - (b * b - 4.0 * a * x).max(0.0).sqrt()) / (2.0 * a);
                (r0 * ratio, r0)
            };
            (
                p1 - ratio * p0,
                r1 * (1.0 - r1) / n1 + ratio * ratio * r0 * (1.0 - r0) / n0,
            )
        }
    };
    let z = if var > 0.0 {
        stat / var.sqrt()
    } else if stat == 0.0 {
        0.0
    } else {
        // Zero variance at the boundary (a proportion of exactly 0 or 1 there) and the
        // data off it: the data cannot have arisen under the null.
        stat.signum() * f64::INFINITY
    };
    let p_value = match tail {
        Tail::Larger => normal::sf(z),
        Tail::Smaller => normal::cdf(z),
    };
    Some(ProportionTest {
        p_canary: p1,
        p_baseline: p0,
        z,
        p_value,
    })
}

/// Exact conditional test of the error-rate ratio, for counts too small for any
/// normal approximation (a canary's first minutes): given the total errors
/// `T = x1 + x0`, the canary's errors are Binomial(T, q) with
/// `q = ratio * s / (ratio * s + 1 - s)` and `s = n1 / (n1 + n0)` when its per-request
/// rate is `ratio` times the baseline's (Poisson requests; with Bernoulli requests the
/// law is hypergeometric, more concentrated, so the test is conservative). Returns
/// the one-sided p-value; counts are rounded to whole errors.
pub fn conditional_ratio_test(
    x1: f64,
    n1: f64,
    x0: f64,
    n0: f64,
    ratio: f64,
    tail: Tail,
) -> Option<f64> {
    use statrs::distribution::{Binomial, DiscreteCDF};
    let ok = |x: f64, n: f64| x.is_finite() && n.is_finite() && x >= 0.0 && n > 0.0 && x <= n;
    if !(ok(x1, n1) && ok(x0, n0) && ratio > 0.0 && ratio.is_finite()) {
        return None;
    }
    let (e1, e0) = (x1.round() as u64, x0.round() as u64);
    let total = e1 + e0;
    if total == 0 {
        return Some(1.0);
    }
    let s = n1 / (n1 + n0);
    let q = ratio * s / (ratio * s + 1.0 - s);
    let b = Binomial::new(q, total).ok()?;
    Some(match tail {
        Tail::Larger if e1 == 0 => 1.0,
        Tail::Larger => b.sf(e1 - 1),
        Tail::Smaller => b.cdf(e1),
    })
}

/// Wilson score interval for `x / n` at two-sided `confidence`.
pub fn wilson(x: f64, n: f64, confidence: f64) -> (f64, f64) {
    let z = normal::ppf(1.0 - (1.0 - confidence) / 2.0);
    let z2 = z * z;
    let centre = (x + z2 / 2.0) / (n + z2);
    let half = z * (x * (n - x) / n + z2 / 4.0).max(0.0).sqrt() / (n + z2);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's hybrid score interval (method 10, Stat. Med. 1998) for
/// `x1/n1 - x0/n0` at two-sided `confidence`.
pub fn newcombe_difference(x1: f64, n1: f64, x0: f64, n0: f64, confidence: f64) -> (f64, f64) {
    let (p1, p0) = (x1 / n1, x0 / n0);
    let (l1, u1) = wilson(x1, n1, confidence);
    let (l0, u0) = wilson(x0, n0, confidence);
    let d = p1 - p0;
    (
        d - ((p1 - l1).powi(2) + (u0 - p0).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p0 - l0).powi(2)).sqrt(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcombe_published_example() {
        // Newcombe (1998), Table II example (b): 56/70 - 48/80, 95% interval
        // by method 10: 0.0524 to 0.3339.
        let (lo, hi) = newcombe_difference(56.0, 70.0, 48.0, 80.0, 0.95);
        assert!((lo - 0.0524).abs() < 5e-5, "{lo}");
        assert!((hi - 0.3339).abs() < 5e-5, "{hi}");
    }

    #[test]
    fn rejects_impossible_counts() {
        let m = Margin::Absolute(0.0);
        assert!(two_proportions(5.0, 3.0, 1.0, 10.0, m, Tail::Larger).is_none());
        assert!(two_proportions(1.0, 0.0, 1.0, 10.0, m, Tail::Larger).is_none());
        assert!(two_proportions(f64::NAN, 3.0, 1.0, 10.0, m, Tail::Larger).is_none());
        assert!(two_proportions(1.0, 3.0, 1.0, 10.0, Margin::Ratio(0.0), Tail::Larger).is_none());
    }

    #[test]
    fn conditional_test_matches_hand_computed_binomial_tails() {
        // 3 of 4 errors on a 10% canary: P(X >= 3) = 4 * 0.1^3 * 0.9 + 0.1^4 = 0.0037.
        let p = conditional_ratio_test(3.0, 100.0, 1.0, 900.0, 1.0, Tail::Larger).unwrap();
        assert!((p - 0.0037).abs() < 1e-12, "{p}");
        // Ratio 2 at 50%: q = 2/3; P(X <= 1 of 3) = 1/27 + 3 * (2/3) * (1/9) = 7/27.
        let p = conditional_ratio_test(1.0, 50.0, 2.0, 50.0, 2.0, Tail::Smaller).unwrap();
        assert!((p - 7.0 / 27.0).abs() < 1e-12, "{p}");
        assert_eq!(
            conditional_ratio_test(0.0, 50.0, 0.0, 50.0, 1.0, Tail::Larger),
            Some(1.0)
        );
        assert_eq!(
            conditional_ratio_test(0.0, 50.0, 5.0, 50.0, 1.0, Tail::Larger),
            Some(1.0)
        );
        assert!(conditional_ratio_test(60.0, 50.0, 5.0, 50.0, 1.0, Tail::Larger).is_none());
    }

    #[test]
    fn no_errors_anywhere_is_no_evidence() {
        let t =
            two_proportions(0.0, 500.0, 0.0, 5000.0, Margin::Absolute(0.0), Tail::Larger).unwrap();
        assert!(t.p_value >= 0.5);
    }
}
