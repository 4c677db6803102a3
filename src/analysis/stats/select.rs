//! k-th smallest pairwise difference `x[i] - y[j]` without forming the n*m matrix.
//!
//! With `x` ascending and `y` read descending, every row `i` of the implicit matrix
//! is non-decreasing, and so is every column (floating subtraction is monotone in
//! each argument), so "how many differences are < p" is a two-pointer walk in
//! O(n + m). Each round draws a random sample of the remaining candidates, takes
//! two pivots that bracket the target rank with high probability (Floyd & Rivest,
//! CACM 1975; the matrix form is Monahan's HLQEST, ACM TOMS 1984), and keeps per row
//! only the columns between them. A round shrinks the candidates ~20x; once they fit
//! in O(n + m) memory they are materialized and selected directly. The result is
//! exact: the randomness only affects speed.

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny deterministic generator so the
/// library never touches an OS entropy source.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..bound` (bound > 0), Lemire's multiply-shift.
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next() as u128 * bound as u128) >> 64) as u64
    }
}

const SAMPLE: usize = 2048;

/// The `k`-th smallest (0-based) of `x[i] - y[j]` over all pairs.
///
/// `x` and `y` must be ascending, finite and non-empty, and `k < x.len() * y.len()`;
/// otherwise `None`.
pub fn kth_difference(x: &[f64], y: &[f64], k: u64) -> Option<f64> {
    let (n, m) = (x.len(), y.len());
    if n == 0 || m == 0 || k >= n as u64 * m as u64 {
        return None;
    }
    let yd: Vec<f64> = y.iter().rev().copied().collect();
    let mut lo = vec![0usize; n];
    let mut hi = vec![m; n];
    let mut less = vec![0usize; n];
    let mut le = vec![0usize; n];
    let mut prefix = vec![0u64; n + 1];
    let mut sample = Vec::with_capacity(SAMPLE);
    let mut rng = SplitMix64(0x5EED ^ (n as u64) << 32 ^ m as u64 ^ k.rotate_left(17));
    let limit = (4 * (n + m)).max(4096) as u64;
    let mut single_pivot = false;
    loop {
        for i in 0..n {
            prefix[i + 1] = prefix[i] + (hi[i] - lo[i]) as u64;
        }
        let total = prefix[n];
        let below: u64 = lo.iter().map(|&l| l as u64).sum();
        // Invariant: below <= k < below + total.
        let rank = k.checked_sub(below)?;
        if total <= limit {
            let mut cand = Vec::with_capacity(total as usize);
            for i in 0..n {
                cand.extend(yd[lo[i]..hi[i]].iter().map(|&b| x[i] - b));
            }
            let r = usize::try_from(rank).ok()?;
            if r >= cand.len() {
                return None;
            }
            let (_, v, _) = cand.select_nth_unstable_by(r, f64::total_cmp);
            return Some(*v);
        }
        sample.clear();
        for _ in 0..SAMPLE {
            let r = rng.below(total);
            let i = prefix.partition_point(|&p| p <= r) - 1;
            let j = lo[i] + (r - prefix[i]) as usize;
            sample.push(x[i] - yd[j]);
        }
        sample.sort_unstable_by(f64::total_cmp);
        let s = SAMPLE as f64;
        let centre = rank as f64 / total as f64 * s;
        // The sample rank of the target has sd <= sqrt(s)/2: +-4 sd misses rarely.
        let delta = if single_pivot { 0.0 } else { 2.0 * s.sqrt() };
        let a = ((centre - delta).floor().max(0.0) as usize).min(SAMPLE - 1);
        let b = ((centre + delta).ceil().max(0.0) as usize).min(SAMPLE - 1);
        let (p_lo, p_hi) = (sample[a], sample[b]);
        let n_less = count_rows(x, &yd, |d| d < p_lo, &mut less);
        let n_le = count_rows(x, &yd, |d| d <= p_hi, &mut le);
        if k < n_less {
            for i in 0..n {
                hi[i] = hi[i].min(less[i]);
            }
        } else if k >= n_le {
            for i in 0..n {
                lo[i] = lo[i].max(le[i]);
            }
        } else {
            if p_lo == p_hi {
                return Some(p_lo);
            }
            for i in 0..n {
                lo[i] = lo[i].max(less[i]);
                hi[i] = hi[i].min(le[i]);
            }
        }
        let new_total: u64 = lo.iter().zip(&hi).map(|(&l, &h)| (h - l) as u64).sum();
        // Heavy ties can stall the bracket; one pivot always removes itself.
        single_pivot = new_total == total;
    }
}

/// The `k`-th and `k+1`-th smallest differences (0-based), for an even-count median:
/// one selection plus an O(n + m) walk for the successor.
pub fn kth_difference_pair(x: &[f64], y: &[f64], k: u64) -> Option<(f64, f64)> {
    let a = kth_difference(x, y, k)?;
    if k + 1 >= x.len() as u64 * y.len() as u64 {
        return None;
    }
    let yd: Vec<f64> = y.iter().rev().copied().collect();
    let mut le = vec![0usize; x.len()];
    if count_rows(x, &yd, |d| d <= a, &mut le) > k + 1 {
        return Some((a, a));
    }
    // The successor is the smallest first-element-above-`a` over the rows.
    let b = le
        .iter()
        .enumerate()
        .filter(|&(_, &j)| j < yd.len())
        .map(|(i, &j)| x[i] - yd[j])
        .min_by(f64::total_cmp)?;
    Some((a, b))
}

/// Per row, how many columns satisfy `pred(x[i] - yd[j])`, for a predicate that holds
/// on a prefix of every row and on shorter prefixes as `i` grows. Returns the total.
fn count_rows(x: &[f64], yd: &[f64], pred: impl Fn(f64) -> bool, out: &mut [usize]) -> u64 {
    let m = yd.len();
    let mut j = 0usize;
    let mut total = 0u64;
    for i in (0..x.len()).rev() {
        while j < m && pred(x[i] - yd[j]) {
            j += 1;
        }
        out[i] = j;
        total += j as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(x: &[f64], y: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = x
            .iter()
            .flat_map(|a| y.iter().map(move |b| a - b))
            .collect();
        d.sort_unstable_by(f64::total_cmp);
        d
    }

    #[test]
    fn matches_brute_force_including_ties_and_large_grids() {
        let mut rng = SplitMix64(42);
        for &(n, m, levels) in &[
            (1, 1, 5),
            (3, 7, 3),
            (40, 25, 1000),
            (300, 200, 7),
            (700, 650, 1 << 30),
        ] {
            let mut x: Vec<f64> = (0..n).map(|_| rng.below(levels) as f64 * 0.5).collect();
            let mut y: Vec<f64> = (0..m).map(|_| rng.below(levels) as f64 * 0.25).collect();
            x.sort_unstable_by(f64::total_cmp);
            y.sort_unstable_by(f64::total_cmp);
            let all = brute(&x, &y);
            let nm = all.len() as u64;
            for k in [0, 1, nm / 3, nm / 2, nm.saturating_sub(2), nm - 1] {
                let k = k.min(nm - 1);
                assert_eq!(
                    kth_difference(&x, &y, k),
                    Some(all[k as usize]),
                    "n={n} m={m} k={k}"
                );
                if k + 1 < nm {
                    let pair = (all[k as usize], all[k as usize + 1]);
                    assert_eq!(kth_difference_pair(&x, &y, k), Some(pair), "pair k={k}");
                }
            }
        }
    }

    #[test]
    fn rejects_bad_ranks() {
        assert_eq!(kth_difference(&[1.0], &[1.0], 1), None);
        assert_eq!(kth_difference(&[], &[1.0], 0), None);
    }
}
