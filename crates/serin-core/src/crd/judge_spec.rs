//! Configuration of the statistical judges: `compare` (canary against the primary)
//! and `sequential` (anytime-valid test on error counts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ThresholdValue;

/// What a compare judge receives from its queries.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CompareKind {
    /// Many values per variant (latency per pod or per interval, histogram samples):
    /// Mann-Whitney U with a Hodges-Lehmann shift interval, as Kayenta.
    #[default]
    Samples,
    /// Errors and requests per variant: a score test of the two proportions.
    Counts,
}

/// Which change of the canary against the baseline is a regression.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Higher is worse (latency, error rate).
    #[default]
    Increase,
    /// Lower is worse (throughput, success rate).
    Decrease,
    /// Any significant change is a regression.
    Either,
}

/// Compare the canary with the primary (baseline) under a statistical test.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompareSpec {
    /// `samples` (Mann-Whitney on many values) or `counts` (errors / requests).
    #[serde(default)]
    pub kind: CompareKind,
    /// Which change is a regression: `increase` (default), `decrease` or `either`.
    #[serde(default)]
    pub direction: Direction,
    /// Allowed increase as a ratio canary / baseline (of the means for samples, of the
    /// rates for counts) before a significant increase fails, e.g. 1.1 for +10%; a
    /// number or `"{{args.NAME}}"`. Default 1.0: any significant increase fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_increase: Option<ThresholdValue>,
    /// Allowed decrease as a ratio canary / baseline, e.g. 0.9 for -10%. Default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_decrease: Option<f64>,
    /// Counts only: allowed increase of the rate as an absolute difference
    /// (0.005 = half a percentage point). Takes precedence over `allowedIncrease`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_absolute_increase: Option<f64>,
    /// Counts only: allowed decrease of the rate as an absolute difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_absolute_decrease: Option<f64>,
    /// Confidence of the test and of the reported interval; default 0.95.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Samples only: fewer finite values than this on either side is inconclusive;
    /// default 10.
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
    /// Counts only: fewer requests than this on either side is inconclusive;
    /// default 100.
    #[serde(default = "default_min_requests")]
    pub min_requests: f64,
    /// PromQL for the baseline when it differs from the metric's query with
    /// `{{workload}}` set to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_query: Option<String>,
    /// Counts only: PromQL of the requests (the metric's query gives the errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_query: Option<String>,
}

impl Default for CompareSpec {
    fn default() -> Self {
        CompareSpec {
            kind: CompareKind::default(),
            direction: Direction::default(),
            allowed_increase: None,
            allowed_decrease: None,
            allowed_absolute_increase: None,
            allowed_absolute_decrease: None,
            confidence: default_confidence(),
            min_samples: default_min_samples(),
            min_requests: default_min_requests(),
            baseline_query: None,
            requests_query: None,
        }
    }
}

/// Watch error counts continuously with an anytime-valid test that knows serin's own
/// traffic split: roll back at the first look where the evidence suffices, while the
/// chance of a false rollback over the whole release stays at most `alpha`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SequentialSpec {
    /// Bound on the probability of a false rollback over every look of a release;
    /// default 0.01.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// PromQL of the measured workload's error counter total (e.g.
    /// `sum(requests_total{...,code=~"5.."}) or vector(0)`, no rate()); each look judges
    /// the increase since the previous look. Unset means the metric's query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_query: Option<String>,
    /// PromQL of the measured workload's request counter total (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_query: Option<String>,
    /// The primary's error total when it cannot be selected by rendering the errors
    /// query with `{{workload}}` = primary (e.g. ingress-nginx labels only the canary's
    /// upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_errors_query: Option<String>,
    /// The primary's request total, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_requests_query: Option<String>,
    /// Largest ratio of error rates (canary / baseline) that is not a regression; a
    /// number or `"{{args.NAME}}"`; default 1.0.
    #[serde(default = "default_ratio")]
    pub allowed_increase: ThresholdValue,
    /// Regressions the test is tuned to find, as multiples (> 1) of
    /// `allowedIncrease`; default [1.25, 1.5, 2, 3, 4.5, 7, 10].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternatives: Option<Vec<f64>>,
    /// Fewer canary requests than this in the current step is inconclusive;
    /// default 100.
    #[serde(default = "default_min_requests")]
    pub min_requests: f64,
    /// Let a step advance before its planned checks when there is evidence the
    /// canary is not worse than a margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance_early: Option<AdvanceEarlySpec>,
}

impl Default for SequentialSpec {
    fn default() -> Self {
        SequentialSpec {
            alpha: default_alpha(),
            errors_query: None,
            requests_query: None,
            baseline_errors_query: None,
            baseline_requests_query: None,
            allowed_increase: default_ratio(),
            alternatives: None,
            min_requests: default_min_requests(),
            advance_early: None,
        }
    }
}

/// Evidence that the canary's error rate is below `margin` times the baseline's.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdvanceEarlySpec {
    /// Error-rate ratio (canary / baseline) the canary is shown to stay under, > 1;
    /// default 1.5.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Bound on the probability of advancing early a canary that is `margin` times
    /// worse or more; default 0.05.
    #[serde(default = "default_beta")]
    pub beta: f64,
}

impl Default for AdvanceEarlySpec {
    fn default() -> Self {
        AdvanceEarlySpec {
            margin: default_margin(),
            beta: default_beta(),
        }
    }
}

fn default_confidence() -> f64 {
    0.95
}
fn default_min_samples() -> u32 {
    10
}
fn default_min_requests() -> f64 {
    100.0
}
fn default_alpha() -> f64 {
    0.01
}
fn default_ratio() -> ThresholdValue {
    ThresholdValue::Number(1.0)
}
fn default_margin() -> f64 {
    1.5
}
fn default_beta() -> f64 {
    0.05
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AnalysisTemplate, MetricTemplate};
    use kube_core::CustomResourceExt;

    #[test]
    fn yaml_uses_camel_case_and_defaults() {
        let m: MetricTemplate = serde_yaml::from_str(
            "name: latency\nquery: q\ncompare:\n  direction: either\n  allowedIncrease: 1.1\n  minSamples: 30\nsequential:\n  advanceEarly: {}\n",
        )
        .unwrap();
        let c = m.compare.unwrap();
        assert_eq!(
            (c.kind, c.direction),
            (CompareKind::Samples, Direction::Either)
        );
        assert_eq!(
            (c.allowed_increase, c.min_samples, c.confidence),
            (Some(ThresholdValue::Number(1.1)), 30, 0.95)
        );
        let s = m.sequential.unwrap();
        assert_eq!(
            (s.alpha, s.allowed_increase),
            (0.01, ThresholdValue::Number(1.0))
        );
        assert_eq!(
            s.advance_early,
            Some(AdvanceEarlySpec {
                margin: 1.5,
                beta: 0.05
            })
        );
        assert!(serde_yaml::from_str::<CompareSpec>("kind: histogram\n").is_err());
    }

    #[test]
    fn crd_schema_documents_the_judges() {
        let crd = serde_json::to_string(&AnalysisTemplate::crd()).unwrap();
        for needle in [
            "allowedAbsoluteIncrease",
            "advanceEarly",
            "Bound on the probability of a false rollback",
        ] {
            assert!(crd.contains(needle), "{needle}");
        }
    }
}
