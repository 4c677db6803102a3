//! The statistics kernels against values computed offline by scipy, statsmodels and
//! R (`tests/data/gen_stats_reference.py` -> `tests/data/stats_reference.json`).

use serde::Deserialize;
use serin::analysis::stats::{
    finite_sorted, hodges_lehmann, mann_whitney_u, newcombe_difference, two_proportions, Margin,
    Tail,
};

#[derive(Deserialize)]
struct Reference {
    mann_whitney: Vec<SampleCase>,
    proportions: Vec<PropCase>,
    newcombe: Vec<NewcombeCase>,
}

#[derive(Deserialize)]
struct SampleCase {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    u: f64,
    p_value: f64,
    hl_median: f64,
    hl: Vec<RInterval>,
}

#[derive(Deserialize)]
struct RInterval {
    confidence: f64,
    low: f64,
    high: f64,
    r_p_value: f64,
}

#[derive(Deserialize)]
struct PropCase {
    x1: f64,
    n1: f64,
    x0: f64,
    n0: f64,
    compare: String,
    value: f64,
    alternative: String,
    p_value: f64,
}

#[derive(Deserialize)]
struct NewcombeCase {
    x1: f64,
    n1: f64,
    x0: f64,
    n0: f64,
    confidence: f64,
    low: f64,
    high: f64,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/stats_reference.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

#[test]
fn mann_whitney_matches_scipy_and_r() {
    let r = reference();
    assert!(r.mann_whitney.len() >= 10);
    for c in &r.mann_whitney {
        let got = mann_whitney_u(&c.x, &c.y).unwrap();
        assert_eq!(got.u, c.u, "{}: U", c.name);
        assert!(
            rel(got.p_value, c.p_value) < 1e-6,
            "{}: p {} vs scipy {}",
            c.name,
            got.p_value,
            c.p_value
        );
        for h in &c.hl {
            assert!(rel(got.p_value, h.r_p_value) < 1e-6, "{}: p vs R", c.name);
        }
    }
}

#[test]
fn hodges_lehmann_matches_brute_force_median_and_r_intervals() {
    let r = reference();
    assert!(r.mann_whitney.iter().filter(|c| c.hl.len() == 2).count() >= 10);
    for c in &r.mann_whitney {
        let (x, _) = finite_sorted(&c.x);
        let (y, _) = finite_sorted(&c.y);
        let hl95 = hodges_lehmann(&x, &y, 0.95).unwrap();
        assert!(
            (hl95.estimate - c.hl_median).abs() <= 1e-12 * c.hl_median.abs().max(1.0),
            "{}: estimate {} vs median of differences {}",
            c.name,
            hl95.estimate,
            c.hl_median
        );
        for h in &c.hl {
            let got = hodges_lehmann(&x, &y, h.confidence).unwrap();
            // R's uniroot stops within 1e-4 of the step function's jump, which is the
            // exact pairwise difference returned here.
            assert!(
                (got.low - h.low).abs() < 2e-4 && (got.high - h.high).abs() < 2e-4,
                "{} at {}: [{}, {}] vs R [{}, {}]",
                c.name,
                h.confidence,
                got.low,
                got.high,
                h.low,
                h.high
            );
        }
    }
}

#[test]
fn proportions_match_statsmodels_score_test() {
    let r = reference();
    assert!(r.proportions.len() >= 40);
    for c in &r.proportions {
        let margin = match c.compare.as_str() {
            "diff" => Margin::Absolute(c.value),
            _ => Margin::Ratio(c.value),
        };
        let tail = match c.alternative.as_str() {
            "larger" => Tail::Larger,
            _ => Tail::Smaller,
        };
        let got = two_proportions(c.x1, c.n1, c.x0, c.n0, margin, tail).unwrap();
        assert!(
            rel(got.p_value, c.p_value) < 1e-6,
            "{}/{} vs {}/{} {} {} {}: p {} vs statsmodels {}",
            c.x1,
            c.n1,
            c.x0,
            c.n0,
            c.compare,
            c.value,
            c.alternative,
            got.p_value,
            c.p_value
        );
    }
}

#[test]
fn newcombe_matches_statsmodels() {
    for c in reference().newcombe {
        let (lo, hi) = newcombe_difference(c.x1, c.n1, c.x0, c.n0, c.confidence);
        assert!(
            (lo - c.low).abs() < 1e-9 && (hi - c.high).abs() < 1e-9,
            "{lo} {hi} vs {} {}",
            c.low,
            c.high
        );
    }
}
