//! Hodges-Lehmann shift estimate and its asymptotic confidence interval, as R's
//! `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)` (which
//! Kayenta's judge ports).
//!
//! R finds each bound with `uniroot` on
//! `f(d) = (U(d) - nm/2 - 0.5 sign(.)) / sigma - z`, where `U(d)` is the Mann-Whitney
//! statistic of `x - d` against `y`. Between pairwise differences `U(d)` is
//! `#{x_i - y_j > d}`, and sigma only has the within-sample ties, so `f` is a
//! non-increasing step function whose root is a pairwise difference:
//! the lower bound is `D(K)` with `K = ceil(nm/2 - 0.5 - z sigma)` and the upper one
//! `D(floor(nm/2 + 0.5 + z sigma) + 1)` (1-based order statistics of the differences,
//! clamped to `[D(1), D(nm)]` as R clamps to `[min x - max y, max x - min y]`). We
//! return those differences exactly; R's `uniroot` lands within its 1e-4 tolerance.
//!
//! The estimate is the median of the pairwise differences. R's asymptotic estimate
//! is a root of the same function at z = 0 without correction; that root set is the
//! interval between the two middle differences, whose midpoint is this median
//! (Kayenta's vector: 22.5).

use super::mann_whitney::tie_term_sorted;
use super::normal;
use super::select::kth_differences;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HodgesLehmann {
    /// Median of `x_i - y_j`.
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
}

/// Shift estimate of `x` relative to `y` with a two-sided interval at `confidence`
/// (0 < confidence < 1). Inputs ascending, finite, non-empty; else `None`.
pub fn hodges_lehmann(x: &[f64], y: &[f64], confidence: f64) -> Option<HodgesLehmann> {
    if x.is_empty() || y.is_empty() || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let nm = x.len() as u64 * y.len() as u64;
    let n = nx + ny;
    let ties = tie_term_sorted(x) + tie_term_sorted(y);
    let var = nx * ny / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let half = nm as f64 / 2.0;
    // 1-based ranks of the two middle differences (the same one when nm is odd).
    let mid = (nm.div_ceil(2), nm / 2 + 1);
    let (k_lo, k_hi) = if var > 0.0 {
        let zs = normal::ppf(1.0 - (1.0 - confidence) / 2.0) * var.sqrt();
        (
            ((half - 0.5 - zs).ceil().max(1.0) as u64).min(nm),
            ((half + 0.5 + zs).floor() + 1.0).clamp(1.0, nm as f64) as u64,
        )
    } else {
        mid
    };
    let d = kth_differences(x, y, &[k_lo - 1, mid.0 - 1, mid.1.min(nm) - 1, k_hi - 1])?;
    let estimate = (d[1] + d[2]) / 2.0;
    let (low, high) = if var > 0.0 {
        (d[0], d[3])
    } else {
        // Both samples constant: every difference is the same number.
        (estimate, estimate)
    };
    Some(HodgesLehmann {
        estimate,
        low,
        high,
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kayenta_published_vector() {
        let r = hodges_lehmann(&[10.0, 20.0, 30.0, 40.0], &[1.0, 2.0, 3.0, 4.0], 0.95).unwrap();
        assert_eq!((r.estimate, r.low, r.high), (22.5, 6.0, 39.0));
    }

    #[test]
    fn constant_samples() {
        let r = hodges_lehmann(&[3.0, 3.0], &[1.0, 1.0, 1.0], 0.9).unwrap();
        assert_eq!((r.estimate, r.low, r.high), (2.0, 2.0, 2.0));
        assert!(hodges_lehmann(&[1.0], &[1.0], 1.0).is_none());
    }
}
