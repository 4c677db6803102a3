//! Two-sided Mann-Whitney U test, normal approximation with tie and continuity
//! correction: the same numbers as `scipy.stats.mannwhitneyu(x, y,
//! method="asymptotic", use_continuity=True, alternative="two-sided")` and R's
//! `wilcox.test(x, y, exact=FALSE, correct=TRUE)`.

use super::{finite_sorted, normal};

/// The test's statistics, oriented so that `u` is the U statistic of `x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: the number of pairs with x > y, ties counting half.
    pub u: f64,
    /// Continuity-corrected z of `u` (positive when x tends to be larger).
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    pub n_x: usize,
    pub n_y: usize,
}

/// The test on raw samples; non-finite values are dropped. `None` if a side is empty.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (xs, _) = finite_sorted(x);
    let (ys, _) = finite_sorted(y);
    mann_whitney_u_sorted(&xs, &ys)
}

/// The test on ascending-sorted, finite samples, in O(n + m).
/// `None` if a side is empty.
pub fn mann_whitney_u_sorted(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n_x, n_y) = (x.len(), y.len());
    if n_x == 0 || n_y == 0 {
        return None;
    }
    // Merge walk: each run of equal values gets the mid-rank of the positions it
    // occupies; the tie term sums t^3 - t over the runs.
    let (mut i, mut j) = (0usize, 0usize);
    let mut pos = 0f64;
    let mut rank_sum_x = 0f64;
    let mut tie_term = 0f64;
    while i < n_x || j < n_y {
        let v = match (x.get(i), y.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let start_i = i;
        while i < n_x && x[i] == v {
            i += 1;
        }
        let start_j = j;
        while j < n_y && y[j] == v {
            j += 1;
        }
        let cx = (i - start_i) as f64;
        let t = cx + (j - start_j) as f64;
        rank_sum_x += cx * (pos + (t + 1.0) / 2.0);
        tie_term += t * t * t - t;
        pos += t;
    }
    let (nx, ny) = (n_x as f64, n_y as f64);
    let n = nx + ny;
    let u = rank_sum_x - nx * (nx + 1.0) / 2.0;
    let mu = nx * ny / 2.0;
    let var = nx * ny / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let d = u - mu;
    if var <= 0.0 || d == 0.0 {
        // Every value tied, or the statistic exactly at its mean: no evidence of a shift.
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_value: 1.0,
            n_x,
            n_y,
        });
    }
    let sigma = var.sqrt();
    let z = (d - 0.5 * d.signum()) / sigma;
    let p_value = (2.0 * normal::sf(z.abs())).min(1.0);
    Some(MannWhitney {
        u,
        z,
        p_value,
        n_x,
        n_y,
    })
}

/// Sum of t^3 - t over runs of equal values of a sorted slice.
pub(crate) fn tie_term_sorted(s: &[f64]) -> f64 {
    let mut sum = 0f64;
    let mut k = 0usize;
    while k < s.len() {
        let start = k;
        while k < s.len() && s[k] == s[start] {
            k += 1;
        }
        let t = (k - start) as f64;
        sum += t * t * t - t;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kayenta_vector_is_significant_at_5_percent() {
        // R: wilcox.test(c(10,20,30,40), c(1,2,3,4), exact=FALSE) gives W = 16,
        // p-value = 0.03038.
        let r = mann_whitney_u(&[10.0, 20.0, 30.0, 40.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(r.u, 16.0);
        assert!((r.p_value - 0.030_382_821_98).abs() < 1e-9, "{}", r.p_value);
        assert!(r.z > 0.0);
    }

    #[test]
    fn all_tied_and_empty() {
        let r = mann_whitney_u(&[1.0, 1.0], &[1.0, 1.0, 1.0]).unwrap();
        assert_eq!(r.p_value, 1.0);
        assert!(mann_whitney_u(&[], &[1.0]).is_none());
        assert!(mann_whitney_u(&[f64::NAN], &[1.0]).is_none());
    }

    #[test]
    fn orientation_is_antisymmetric() {
        let a = [1.0, 5.0, 7.0, 7.0, 9.0];
        let b = [2.0, 3.0, 7.0, 4.0];
        let ab = mann_whitney_u(&a, &b).unwrap();
        let ba = mann_whitney_u(&b, &a).unwrap();
        assert_eq!(ab.u + ba.u, 20.0);
        assert!((ab.z + ba.z).abs() < 1e-12);
        assert!((ab.p_value - ba.p_value).abs() < 1e-12);
    }
}
