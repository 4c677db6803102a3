//! Statistics kernels: pure functions of numbers, no I/O, no clock.
//!
//! Each kernel is checked against published vectors and scipy / statsmodels values
//! (`tests/data/`), never against itself.

pub mod hodges_lehmann;
pub mod mann_whitney;
pub mod normal;

pub mod proportions;
pub mod select;
pub mod sequential;

pub use hodges_lehmann::{hodges_lehmann, HodgesLehmann};
pub use mann_whitney::{mann_whitney_u, mann_whitney_u_sorted, MannWhitney};
pub use proportions::{newcombe_difference, two_proportions, wilson, Margin, ProportionTest, Tail};
pub use sequential::{CountIncrement, SequentialLook, SequentialState, SequentialTest};

/// Keep the finite values, sorted ascending; return them and how many were dropped.
pub fn finite_sorted(values: &[f64]) -> (Vec<f64>, usize) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let dropped = values.len() - v.len();
    v.sort_unstable_by(f64::total_cmp);
    (v, dropped)
}

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    // Kahan-free pairwise-ish accumulation is not needed at these sizes; f64 sum is
    // accurate to ~1e-12 relative for the sample counts a release produces.
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Median of an ascending-sorted slice; `None` when empty.
pub fn median_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}
