//! Number formatting for one-line reasons.

use super::threshold::fmt;

/// `+23.0%` / `-4.1%` for a ratio, `n/a` when undefined.
pub fn pct_change(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r.is_finite() => format!("{:+.1}%", (r - 1.0) * 100.0),
        Some(r) if r > 0.0 => "+inf%".to_string(),
        _ => "n/a".to_string(),
    }
}

/// A proportion as a percentage with enough digits for small error rates.
pub fn rate(p: f64) -> String {
    if p != 0.0 && p.abs() < 0.001 {
        format!("{:.3}%", p * 100.0)
    } else {
        format!("{:.2}%", p * 100.0)
    }
}

/// A difference of proportions in percentage points, signed.
pub(crate) fn pp(d: f64) -> String {
    format!("{:+.2}pp", d * 100.0)
}

pub(crate) fn num(v: f64) -> String {
    fmt(v)
}

/// `0.0004` style p-values; tiny ones in exponent form.
pub(crate) fn p(v: f64) -> String {
    if v < 1e-4 {
        format!("{v:.1e}")
    } else {
        format!("{v:.4}")
    }
}

/// Confidence as a percentage without trailing zeros (`95%`, `99.5%`).
pub(crate) fn level(c: f64) -> String {
    let s = format!("{:.2}", c * 100.0);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(pct_change(Some(1.23)), "+23.0%");
        assert_eq!(pct_change(Some(f64::INFINITY)), "+inf%");
        assert_eq!(pct_change(None), "n/a");
        assert_eq!(rate(0.005), "0.50%");
        assert_eq!(rate(0.0004), "0.040%");
        assert_eq!(pp(0.019), "+1.90pp");
        assert_eq!(level(0.95), "95%");
        assert_eq!(level(0.995), "99.5%");
        assert_eq!(p(0.00001), "1.0e-5");
    }
}
