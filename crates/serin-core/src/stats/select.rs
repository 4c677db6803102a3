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

const SAMPLE: usize = 8192;
const MIN_SAMPLE: usize = 256;

/// The `k`-th smallest (0-based) of `x[i] - y[j]` over all pairs.
///
/// `x` and `y` must be ascending, finite and non-empty, and `k < x.len() * y.len()`;
/// otherwise `None`.
pub fn kth_difference(x: &[f64], y: &[f64], k: u64) -> Option<f64> {
    kth_differences(x, y, &[k]).map(|v| v[0])
}

/// The `k`-th and `k+1`-th smallest differences (0-based), for an even-count median.
pub fn kth_difference_pair(x: &[f64], y: &[f64], k: u64) -> Option<(f64, f64)> {
    kth_differences(x, y, &[k, k.checked_add(1)?]).map(|v| (v[0], v[1]))
}

/// Several order statistics of the differences at once (0-based ranks, any order).
/// The ranks share the first rounds while they lie close together, as the median
/// and the confidence bounds of a Hodges-Lehmann interval do.
pub fn kth_differences(x: &[f64], y: &[f64], ks: &[u64]) -> Option<Vec<f64>> {
    let (n, m) = (x.len(), y.len());
    let nm = (n as u64).checked_mul(m as u64)?;
    if n == 0 || m == 0 || ks.is_empty() || ks.iter().any(|&k| k >= nm) {
        return None;
    }
    let yd: Vec<f64> = y.iter().rev().copied().collect();
    let mut w = Work {
        x,
        yd: &yd,
        lo: vec![0; n],
        hi: vec![m; n],
        less: vec![0; n],
        le: vec![0; n],
        sample: Vec::with_capacity(SAMPLE),
        rng: SplitMix64(0x5EED ^ (n as u64) << 32 ^ m as u64 ^ ks[0].rotate_left(17)),
        limit: (2 * (n + m)).max(4096) as u64,
    };
    let kmin = ks.iter().copied().min()?;
    let kmax = ks.iter().copied().max()?;
    // Shared rounds while the band between the ranks is small next to the candidates.
    match w.narrow(kmin, kmax, true)? {
        Narrowed::Equal(v) => return Some(vec![v; ks.len()]),
        Narrowed::Small => return w.materialize(ks),
        Narrowed::Wide => {}
    }
    let (lo, hi) = (w.lo.clone(), w.hi.clone());
    // Then per group of nearby ranks (a median's two middle ranks share every round).
    let mut order: Vec<usize> = (0..ks.len()).collect();
    order.sort_unstable_by_key(|&i| ks[i]);
    let mut out = vec![0.0; ks.len()];
    let mut g = 0;
    while g < order.len() {
        let mut e = g + 1;
        while e < order.len() && ks[order[e]] - ks[order[e - 1]] <= w.limit / 4 {
            e += 1;
        }
        let group: Vec<u64> = order[g..e].iter().map(|&i| ks[i]).collect();
        w.lo.copy_from_slice(&lo);
        w.hi.copy_from_slice(&hi);
        let vals = match w.narrow(group[0], group[group.len() - 1], group.len() > 1)? {
            Narrowed::Equal(v) => vec![v; group.len()],
            Narrowed::Small => w.materialize(&group)?,
            Narrowed::Wide => {
                // A stalled group: finish its ranks one by one.
                let mut v = Vec::with_capacity(group.len());
                for &k in &group {
                    w.lo.copy_from_slice(&lo);
                    w.hi.copy_from_slice(&hi);
                    v.push(match w.narrow(k, k, false)? {
                        Narrowed::Equal(x) => x,
                        _ => w.materialize(&[k])?[0],
                    });
                }
                v
            }
        };
        for (&i, v) in order[g..e].iter().zip(vals) {
            out[i] = v;
        }
        g = e;
    }
    Some(out)
}

enum Narrowed {
    /// Every requested rank holds this value.
    Equal(f64),
    /// The candidates fit in memory.
    Small,
    /// The band between the ranks dominates what is left (shared phase only).
    Wide,
}

struct Work<'a> {
    x: &'a [f64],
    yd: &'a [f64],
    lo: Vec<usize>,
    hi: Vec<usize>,
    less: Vec<usize>,
    le: Vec<usize>,
    sample: Vec<f64>,
    rng: SplitMix64,
    limit: u64,
}

impl Work<'_> {
    fn totals(&self) -> (u64, u64) {
        let below = self.lo.iter().map(|&l| l as u64).sum();
        let total = self
            .lo
            .iter()
            .zip(&self.hi)
            .map(|(&l, &h)| (h - l) as u64)
            .sum();
        (below, total)
    }

    /// Shrink the candidates (columns `lo[i]..hi[i]` of each row) around ranks
    /// `kmin..=kmax`, keeping the invariant `below <= kmin <= kmax < below + total`.
    fn narrow(&mut self, kmin: u64, kmax: u64, shared: bool) -> Option<Narrowed> {
        let n = self.x.len();
        let mut single_pivot = false;
        loop {
            let (below, total) = self.totals();
            let (rmin, rmax) = (kmin.checked_sub(below)?, kmax.checked_sub(below)?);
            if rmax >= total {
                return None;
            }
            if total <= self.limit {
                return Some(Narrowed::Small);
            }
            if shared && (rmax - rmin + 1) * 4 > total {
                return Some(Narrowed::Wide);
            }
            // +-3 sd of the sample rank spans ~3/sqrt(s) of the candidates: draw no more
            // than it takes to get under `limit` in one round.
            let want = 12.0 * (total as f64 / self.limit as f64).powi(2);
            let size = (want.ceil() as usize).clamp(MIN_SAMPLE, SAMPLE);
            self.draw_sample(total, size);
            let s = size as f64;
            // Sample ranks of the targets have sd <= sqrt(s)/2: +-3 sd brackets them
            // nearly always, and a miss only costs another round.
            let delta = if single_pivot { 0.0 } else { 1.5 * s.sqrt() };
            let at = |r: u64, d: f64| {
                ((r as f64 / total as f64 * s + d).floor().max(0.0) as usize).min(size - 1)
            };
            let (a, b) = (
                at(rmin, -delta),
                at(rmax, delta + 1.0).max(at(rmin, -delta)),
            );
            let cmp = f64::total_cmp;
            let (_, &mut p_lo, upper) = self.sample.select_nth_unstable_by(a, cmp);
            let p_hi = if b > a {
                *upper.select_nth_unstable_by(b - a - 1, cmp).1
            } else {
                p_lo
            };
            let (n_less, n_le) =
                count_rows_below(self.x, self.yd, p_lo, p_hi, &mut self.less, &mut self.le);
            if kmax < n_less {
                for i in 0..n {
                    self.hi[i] = self.hi[i].min(self.less[i]);
                }
            } else if kmin >= n_le {
                for i in 0..n {
                    self.lo[i] = self.lo[i].max(self.le[i]);
                }
            } else {
                if kmin >= n_less && kmax < n_le && p_lo == p_hi {
                    return Some(Narrowed::Equal(p_lo));
                }
                if kmin >= n_less {
                    for i in 0..n {
                        self.lo[i] = self.lo[i].max(self.less[i]);
                    }
                }
                if kmax < n_le {
                    for i in 0..n {
                        self.hi[i] = self.hi[i].min(self.le[i]);
                    }
                }
            }
            let (_, new_total) = self.totals();
            // Heavy ties can stall the bracket; one pivot always removes itself.
            single_pivot = new_total == total;
            if single_pivot && shared {
                return Some(Narrowed::Wide);
            }
        }
    }

    /// A stratified sample of the candidates: one uniform draw in each of `size`
    /// equal slices of the candidate index space, located by one walk over the rows.
    fn draw_sample(&mut self, total: u64, size: usize) {
        self.sample.clear();
        let s = size as u64;
        // `narrow` only samples above `limit` candidates, and never more than that.
        debug_assert!(total >= s);
        // Slice t is [start, start + width (+1 for the first `total % s` slices)).
        let (width, extra) = (total / s, total % s);
        let mut start = 0u64;
        let mut row = 0usize;
        let mut row_start = 0u64;
        let mut row_end = (self.hi[0] - self.lo[0]) as u64;
        for t in 0..s {
            let len = width + u64::from(t < extra);
            let r = start + self.rng.below(len);
            start += len;
            while r >= row_end {
                row += 1;
                row_start = row_end;
                row_end += (self.hi[row] - self.lo[row]) as u64;
            }
            let j = self.lo[row] + (r - row_start) as usize;
            self.sample.push(self.x[row] - self.yd[j]);
        }
    }

    fn materialize(&self, ks: &[u64]) -> Option<Vec<f64>> {
        let (below, total) = self.totals();
        let mut cand = Vec::with_capacity(usize::try_from(total).ok()?);
        for (i, (&l, &h)) in self.lo.iter().zip(&self.hi).enumerate() {
            cand.extend(self.yd[l..h].iter().map(|&b| self.x[i] - b));
        }
        ks.iter()
            .map(|&k| {
                let r = usize::try_from(k.checked_sub(below)?).ok()?;
                if r >= cand.len() {
                    return None;
                }
                Some(*cand.select_nth_unstable_by(r, f64::total_cmp).1)
            })
            .collect()
    }
}

/// Per row `i`, how many columns `j` have `x[i] - yd[j] < lo` (into `less`) and
/// `<= hi` (into `le`); returns both totals.
///
/// Each count is a merge walk over the rows (last first) and the columns: a step
/// either moves to the next column or ends the row, without a data-dependent branch.
/// Such a walk is bound by the latency of its load-compare-add chain, so the two
/// independent walks are interleaved in one loop to overlap (~2x at n = m = 10k).
fn count_rows_below(
    x: &[f64],
    yd: &[f64],
    lo: f64,
    hi: f64,
    less: &mut [usize],
    le: &mut [usize],
) -> (u64, u64) {
    let m = yd.len();
    let (mut i1, mut j1) = (x.len(), 0usize);
    let (mut i2, mut j2) = (x.len(), 0usize);
    loop {
        let (a, b) = (i1 > 0 && j1 < m, i2 > 0 && j2 < m);
        if a {
            let take = x[i1 - 1] - yd[j1] < lo;
            less[i1 - 1] = j1;
            j1 += usize::from(take);
            i1 -= usize::from(!take);
        }
        if b {
            let take = x[i2 - 1] - yd[j2] <= hi;
            le[i2 - 1] = j2;
            j2 += usize::from(take);
            i2 -= usize::from(!take);
        }
        if !a && !b {
            break;
        }
    }
    // Rows left when the columns ran out hold in every column.
    less[..i1].fill(m);
    le[..i2].fill(m);
    let total = |c: &[usize]| c.iter().map(|&v| v as u64).sum();
    (total(less), total(le))
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
    fn several_ranks_at_once_match_brute_force() {
        let mut rng = SplitMix64(9);
        for levels in [13, 1 << 40] {
            let mut x: Vec<f64> = (0..900).map(|_| rng.below(levels) as f64).collect();
            let mut y: Vec<f64> = (0..800).map(|_| rng.below(levels) as f64 * 0.5).collect();
            x.sort_unstable_by(f64::total_cmp);
            y.sort_unstable_by(f64::total_cmp);
            let all = brute(&x, &y);
            let nm = all.len() as u64;
            let ks = [nm / 10, nm / 2 - 1, nm / 2, nm / 2 + 3000, 9 * nm / 10];
            let want: Vec<f64> = ks.iter().map(|&k| all[k as usize]).collect();
            assert_eq!(kth_differences(&x, &y, &ks), Some(want), "levels {levels}");
        }
        assert_eq!(kth_differences(&[1.0], &[1.0], &[]), None);
    }

    #[test]
    fn rejects_bad_ranks() {
        assert_eq!(kth_difference(&[1.0], &[1.0], 1), None);
        assert_eq!(kth_difference(&[], &[1.0], 0), None);
    }
}
