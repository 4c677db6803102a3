//! Metric sources behind [`MetricSource`], chosen by [`registry`] from a template's
//! provider: Prometheus, Datadog, InfluxDB 1.x and Graphite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::crd::ProviderSpec;

mod allow;
mod answer;
pub mod credentials;
pub mod datadog;
#[cfg(test)]
pub(crate) mod fake_prometheus;
pub mod graphite;
mod http;
pub mod influxdb;
pub mod prometheus;
pub mod registry;
mod response;

pub use allow::AllowedAddresses;
pub use answer::decode_body;
pub use credentials::{
    opted_in, CredentialKeys, ProviderAuth, ProviderCredentials, CREDENTIALS_LABEL,
};
pub use prometheus::{scalar_of, series_of, vector_of, PrometheusConfig, PrometheusSource};
pub use registry::{PrometheusSources, ProviderSources};
pub use response::DEFAULT_MAX_BODY;

/// Why a metric could not be measured. Each message says what to change.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("metrics provider unreachable: {0}")]
    Unreachable(String),
    #[error("query timed out after {}; raise the provider's timeout (provider.<name>.timeout, e.g. provider.prometheus.timeout) or make the query cheaper (shorter range, fewer series)", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("query rejected: {0}")]
    BadQuery(String),
    #[error("query returned no series: check that its labels match what the workload's telemetry exports and that it received traffic in the interval")]
    NoData,
    #[error(
        "query returned {0}, not a finite number (NaN is usually 0/0: no requests in the interval)"
    )]
    NotFinite(f64),
    #[error("query returned {count} series where one was expected (e.g. {example}); aggregate it, e.g. sum(...) or max(...)")]
    MultipleSeries { count: usize, example: String },
    /// A successful answer that carries warnings: Thanos, Cortex and Mimir answer
    /// this way when a store is unreachable, so the value may miss series.
    #[error("partial answer, not counted as evidence: the provider warned {0:?}")]
    Partial(String),
    /// The answer passed the controller's body cap; reading stopped there.
    #[error("response larger than {limit} bytes (the controller's --prometheus-max-body); the query selects too many series: aggregate it, e.g. sum(...)")]
    TooLarge { limit: usize },
    #[error("metrics provider refused the credentials: {0}; check the provider's secretRef")]
    Auth(String),
    #[error("provider configuration: {0}")]
    Config(String),
    /// The provider refused the query for now (HTTP 429).
    #[error("metrics provider rate-limited the query (HTTP 429){}; check less often or with fewer metrics", match .retry_in { Some(d) => format!(", its limit resets in {}", humantime::format_duration(*d)), None => String::new() })]
    RateLimited { retry_in: Option<Duration> },
}

impl MetricError {
    pub fn category(&self) -> &'static str {
        match self {
            MetricError::Unreachable(_) => "unreachable",
            MetricError::Timeout(_) => "timeout",
            MetricError::BadQuery(_) => "bad_query",
            MetricError::NoData => "no_data",
            MetricError::NotFinite(_) => "not_finite",
            MetricError::MultipleSeries { .. } => "multiple_series",
            MetricError::Partial(_) => "partial",
            MetricError::TooLarge { .. } => "too_large",
            MetricError::Auth(_) => "auth",
            MetricError::Config(_) => "config",
            MetricError::RateLimited { .. } => "rate_limited",
        }
    }

    /// No usable evidence, as opposed to not being able to ask.
    pub fn is_no_evidence(&self) -> bool {
        matches!(
            self,
            MetricError::NoData | MetricError::NotFinite(_) | MetricError::Partial(_)
        )
    }
}

/// Answers PromQL-like queries.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// A single finite value.
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError>;
    /// One finite value per series (e.g. per pod), or per point of a range vector (a
    /// subquery such as `q[5m:30s]`: one value per step); empty is `NoData`.
    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError>;
    /// Whether [`MetricSource::query_range`] evaluates the query at exactly
    /// `start + k * step`, as Prometheus does; history analysis asks window by window
    /// otherwise (Datadog picks its own rollup; InfluxDB and Graphite have none here).
    /// Wrappers forward it.
    fn answers_range_at_steps(&self) -> bool {
        false
    }
    /// The one series `query` yields over `[start, end]`, evaluated every `step`, as
    /// `(time, value)` pairs. Non-finite points are kept: the caller decides.
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
        let _ = (query, start, end, step);
        Err(MetricError::Config(
            "this metrics provider does not answer range queries; use instant queries".into(),
        ))
    }
}

/// Hands out a source for a template's provider settings (or the default).
pub trait MetricSources: Send + Sync {
    /// Whether a template may use `provider` at all (its address is allowed); the
    /// controller asks before it reads the provider's Secret. Default: any.
    fn check_provider(&self, provider: Option<&ProviderSpec>) -> Result<(), MetricError> {
        let _ = provider;
        Ok(())
    }

    /// `credentials` are those read from the provider's `secretRef`, if it has one.
    fn source(
        &self,
        provider: Option<&ProviderSpec>,
        credentials: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError>;
}
