use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ProviderSpec;

/// Metrics that judge a release, with PromQL templated by `{{variables}}`.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at",
    category = "serin"
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// Arguments usable as `{{args.NAME}}`; an argument without a default is required.
    #[serde(default)]
    pub args: Vec<TemplateArg>,
    /// The metrics; names must be unique across all templates a Canary uses.
    pub metrics: Vec<MetricTemplate>,
    /// Where the metrics come from; unset means the controller's default Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// Failed checks (cumulative within a release) that roll back a release using
    /// this template. The smallest of this, other templates' and the Canary's
    /// `analysis.failureLimit` applies, so a template can only tighten it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_limit: Option<i32>,
    /// Inconclusive checks (no data, NaN) that roll back a release using this
    /// template; combined with the Canary's `analysis.inconclusiveLimit` like
    /// `failureLimit` (smallest wins). Unset everywhere: hold until the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub inconclusive_limit: Option<i32>,
    /// Consecutive `Error` verdicts (provider unreachable, bad query) of one metric
    /// after which its verdict becomes `Fail`. Unset: errors only ever hold the
    /// release until the progress deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub consecutive_error_limit: Option<i32>,
}

/// The same as an AnalysisTemplate, usable from every namespace.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    shortname = "cat",
    category = "serin"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAnalysisTemplateSpec {
    #[serde(flatten)]
    pub template: AnalysisTemplateSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateArg {
    /// Used as `{{args.NAME}}`; a Canary sets it in `analysis.templates[].args`.
    pub name: String,
    /// Value when the Canary gives none; without one the argument is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplate {
    /// Shown in status, Events and notifications.
    pub name: String,
    /// PromQL; must return a single value.
    pub query: String,
    /// Check interval for this metric (humantime, at least 1s); defaults to the
    /// Canary's. A longer interval queries the metric only when due, keeping its
    /// last verdict in between; it is also the `{{interval}}` of its query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Pass while `min <= value <= max`; each bound a number or `"{{args.NAME}}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdTemplate>,
    /// Judge the canary against the primary with a statistical test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<super::CompareSpec>,
    /// Judge error counts with an anytime-valid sequential test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<super::SequentialSpec>,
    /// Measured and reported, never deciding.
    #[serde(default)]
    pub dry_run: bool,
    /// One failure rolls the release back.
    #[serde(default)]
    pub critical: bool,
}

/// A threshold as written in a template: bounds may name template arguments.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<ThresholdValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<ThresholdValue>,
}

/// A number, or a string rendered with the template's variables (e.g.
/// `"{{args.maxErrorRate}}"`) that must then read as a number.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ThresholdValue {
    Number(f64),
    Template(String),
}

impl ThresholdValue {
    /// The number; NaN for a string, which `serin::analysis::resolve_metrics`
    /// renders into a number before any judge sees it (so a judge validating it
    /// reports an unrendered value as out of range).
    pub fn number(&self) -> f64 {
        match self {
            ThresholdValue::Number(n) => *n,
            ThresholdValue::Template(_) => f64::NAN,
        }
    }
}

impl From<f64> for ThresholdValue {
    fn from(n: f64) -> Self {
        ThresholdValue::Number(n)
    }
}

// A field that is a number or a string has no structural schema type of its own;
// Kubernetes accepts either under x-kubernetes-preserve-unknown-fields.
impl JsonSchema for ThresholdValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ThresholdValue".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A number, or a string such as \"{{args.maxErrorRate}}\" that renders to a number.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

/// Pass while `min <= value <= max`, with the bounds resolved to numbers.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}
