//! Standard normal distribution helpers.
//!
//! `cdf`/`sf` use libm's `erfc` (a port of the FreeBSD/musl implementation, < 1 ulp):
//! statrs' `erfc` is off by ~1e-11 near z = 1, too coarse for p-values that must match
//! scipy to 1e-6 relative deep in the tail. `ppf` starts from statrs' `erfc_inv` and is
//! polished by Newton steps on the accurate `cdf`.

use statrs::function::erf::erfc_inv;

const SQRT_2PI: f64 = 2.506_628_274_631_000_7;

/// P(Z <= z).
pub fn cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// P(Z > z), accurate in the upper tail (no `1 - cdf` cancellation).
pub fn sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Standard normal density.
pub fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / SQRT_2PI
}

/// The z with P(Z <= z) = p, for 0 < p < 1 (NaN outside).
pub fn ppf(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let mut z = -std::f64::consts::SQRT_2 * erfc_inv(2.0 * p);
    for _ in 0..2 {
        // Work in the smaller tail so the residual keeps its relative precision.
        let r = if z > 0.0 {
            (1.0 - p) - sf(z)
        } else {
            cdf(z) - p
        };
        let d = pdf(z);
        if d > 0.0 && r.is_finite() {
            z += if z > 0.0 { r / d } else { -r / d };
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // scipy.stats.norm: ppf(0.975), ppf(0.95), cdf(1), sf(5), sf(10).
        assert!((ppf(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        assert!((ppf(0.95) - 1.644_853_626_951_472_2).abs() < 1e-12);
        assert!((ppf(0.005) + 2.575_829_303_548_900_4).abs() < 1e-12);
        assert!((cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((sf(5.0) / 2.866_515_718_791_933e-7 - 1.0).abs() < 1e-12);
        assert!((sf(10.0) / 7.619_853_024_160_47e-24 - 1.0).abs() < 1e-12);
        assert!(ppf(0.0).is_nan() && ppf(1.0).is_nan());
    }
}
