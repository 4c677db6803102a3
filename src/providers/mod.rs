//! Metric sources behind [`MetricSource`]; Prometheus is the one shipped.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::crd::ProviderSpec;

pub mod prometheus;

pub use prometheus::{PrometheusSource, PrometheusSources};

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("metrics provider unreachable: {0}")]
    Unreachable(String),
    #[error("query timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("query rejected: {0}")]
    BadQuery(String),
    #[error("query returned no data")]
    NoData,
    #[error("query returned {0}, not a finite number")]
    NotFinite(f64),
    #[error("query returned {0} series where one was expected; aggregate it (e.g. sum(...))")]
    MultipleSeries(usize),
    #[error("provider configuration: {0}")]
    Config(String),
}

impl MetricError {
    pub fn category(&self) -> &'static str {
        match self {
            MetricError::Unreachable(_) => "unreachable",
            MetricError::Timeout(_) => "timeout",
            MetricError::BadQuery(_) => "bad_query",
            MetricError::NoData => "no_data",
            MetricError::NotFinite(_) => "not_finite",
            MetricError::MultipleSeries(_) => "multiple_series",
            MetricError::Config(_) => "config",
        }
    }

    /// No usable evidence, as opposed to not being able to ask.
    pub fn is_no_evidence(&self) -> bool {
        matches!(self, MetricError::NoData | MetricError::NotFinite(_))
    }
}

/// Answers PromQL-like queries.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// A single finite value.
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError>;
    /// One finite value per series (e.g. per pod); empty is `NoData`.
    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError>;
}

/// Hands out a source for a template's provider settings (or the default).
pub trait MetricSources: Send + Sync {
    fn source(&self, provider: Option<&ProviderSpec>)
        -> Result<Arc<dyn MetricSource>, MetricError>;
}
