//! Prometheus over its HTTP API (prometheus-http-query).
//!
//! Responses are read raw and decoded here, so an HTTP status, a proxy's plain-text
//! page or a Prometheus `errorType` each become an error that says what to change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Error as PromError};

use super::answer::{clean, decode, transport_cause};
use super::http;
use super::registry::Provider;
use super::response::DEFAULT_MAX_BODY;
use super::{CredentialKeys, MetricError, MetricSource, ProviderCredentials};
use crate::crd::{PrometheusProviderSpec, ProviderKind};

/// The `provider` label of this source's metrics.
const PROVIDER_LABEL: &str = "prometheus";

/// Everything needed to talk to one Prometheus.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct PrometheusConfig {
    pub address: String,
    pub timeout: Duration,
    /// Extra headers (name, value) on every query.
    pub headers: Vec<(String, String)>,
    pub insecure_skip_verify: bool,
    pub credentials: ProviderCredentials,
}

// Header values may be API keys: only their names are shown.
impl std::fmt::Debug for PrometheusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PrometheusConfig")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("headers", &names)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl PrometheusConfig {
    pub fn new(address: impl Into<String>, timeout: Duration) -> Self {
        Self {
            address: address.into(),
            timeout,
            ..Self::default()
        }
    }

    /// From a template's provider spec and the credentials read from its Secret.
    pub fn from_spec(
        spec: &PrometheusProviderSpec,
        credentials: Option<&ProviderCredentials>,
        default_timeout: Duration,
    ) -> Result<Self, MetricError> {
        let timeout = match spec.timeout.as_deref() {
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    return Err(MetricError::Config(format!(
                        "provider.prometheus.timeout {t:?} is not a positive duration; accepted: e.g. \"10s\" or \"1m\""
                    )))
                }
            },
            None => default_timeout,
        };
        let credentials = match (&spec.secret_ref, credentials) {
            (Some(r), None) => {
                return Err(MetricError::Config(format!(
                    "provider.prometheus.secretRef {:?} has not been read; the controller resolves it before querying (does the Secret exist in the template's namespace?)",
                    r.name
                )))
            }
            (_, c) => c.cloned().unwrap_or_default(),
        };
        Ok(Self {
            address: spec.address.clone(),
            timeout,
            headers: spec
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            insecure_skip_verify: spec.insecure_skip_verify,
            credentials,
        })
    }
}

/// One Prometheus server.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    timeout: Duration,
    /// Largest response body read (`--prometheus-max-body`).
    max_body: usize,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("address", &self.client.base_url().as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PrometheusSource {
    pub fn new(config: &PrometheusConfig) -> Result<Self, MetricError> {
        let headers = http::default_headers(
            PROVIDER_LABEL,
            &config.headers,
            &config.credentials,
            "Bearer",
        )?;
        let http = http::client(
            config.timeout,
            headers,
            config.credentials.ca_pem.as_deref(),
            config.insecure_skip_verify,
        )?;
        let client = Client::from(http, &config.address).map_err(|e| {
            MetricError::Config(format!(
                "provider.prometheus.address {:?}: {e}; accepted: an http(s) URL such as http://prometheus.monitoring:9090",
                config.address
            ))
        })?;
        Ok(Self {
            client,
            timeout: config.timeout,
            max_body: DEFAULT_MAX_BODY,
        })
    }

    /// Refuse answers larger than `bytes` (default 1 MiB).
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    fn timeout_ms(&self) -> i64 {
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX)
    }

    async fn send(
        &self,
        call: impl std::future::Future<Output = Result<reqwest::Response, PromError>>,
    ) -> Result<Data, MetricError> {
        let exchange = async {
            let response = call.await.map_err(|e| self.transport_error(e))?;
            decode(response, self.timeout, self.max_body).await
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(MetricError::Timeout(self.timeout)),
            Ok(r) => r,
        }
    }

    /// A request that got no answer. Never quotes the request URL: its query string is
    /// the whole URL-encoded PromQL, which once filled a status with 2 kB of `%7B`.
    fn transport_error(&self, e: PromError) -> MetricError {
        let origin = self.client.base_url().origin().ascii_serialization();
        match e {
            PromError::Client(c) => match c.inner() {
                Some(r) if r.is_timeout() => MetricError::Timeout(self.timeout),
                Some(r) => {
                    let cause = transport_cause(r);
                    let hint = if cause.contains("certificate") {
                        "; to trust a private CA, put its PEM in the provider's Secret and name the key in secretRef.caKey"
                    } else {
                        ""
                    };
                    MetricError::Unreachable(format!("{origin}: {cause}{hint}"))
                }
                // The client's own message, without the reqwest error's URL.
                None => MetricError::Unreachable(format!("{origin}: {c}")),
            },
            PromError::Prometheus(p) => MetricError::Unreachable(format!(
                "{origin}: errorType {}: {}",
                clean(&p.error_type().to_string()),
                clean(p.message())
            )),
            other => MetricError::Unreachable(format!("{origin}: {}", clean(&other.to_string()))),
        }
    }

    async fn instant(&self, query: &str, at: DateTime<Utc>) -> Result<Data, MetricError> {
        let call = self
            .client
            .query(query)
            .at(at.timestamp())
            .timeout(self.timeout_ms())
            .get_raw();
        self.send(call).await
    }
}

fn finite(v: f64) -> Result<f64, MetricError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(MetricError::NotFinite(v))
    }
}

/// One series' labels for a message: they come from the answer, so they are cleaned
/// and bounded like any other field read from it.
fn labels(metric: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    pairs.sort();
    clean(&format!("{{{}}}", pairs.join(",")))
}

fn multiple(count: usize, first: &HashMap<String, String>) -> MetricError {
    MetricError::MultipleSeries {
        count,
        example: labels(first),
    }
}

/// Values of an instant result: a vector's samples or a scalar.
pub(crate) fn data_values(data: &Data) -> Vec<f64> {
    match data {
        Data::Vector(v) => v.iter().map(|s| s.sample().value()).collect(),
        Data::Scalar(s) => vec![s.value()],
        Data::Matrix(m) => m
            .iter()
            .flat_map(|r| r.samples().iter().map(|s| s.value()))
            .collect(),
    }
}

fn range_vector_error() -> MetricError {
    MetricError::BadQuery(
        "the query returns a range vector (x[5m]); wrap it in a function such as rate() or avg_over_time()".into(),
    )
}

#[async_trait]
impl MetricSource for PrometheusSource {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        self.scalar(query, at).await
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.vector(query, at).await
    }

    fn answers_range_at_steps(&self) -> bool {
        true
    }

    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
        self.range(query, start, end, step).await
    }
}

impl PrometheusSource {
    async fn scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        scalar_of(&self.instant(query, at).await?)
    }

    async fn vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        vector_of(&self.instant(query, at).await?)
    }

    async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
        if end < start || step.is_zero() {
            return Err(MetricError::Config(format!(
                "range query needs start <= end and a positive step (got {start} .. {end}, step {step:?})"
            )));
        }
        let call = self
            .client
            .query_range(
                query,
                start.timestamp(),
                end.timestamp(),
                step.as_secs_f64(),
            )
            .timeout(self.timeout_ms())
            .get_raw();
        series_of(&self.send(call).await?)
    }
}

/// The one value of an instant answer: a scalar, or a vector of exactly one sample.
pub fn scalar_of(data: &Data) -> Result<f64, MetricError> {
    match data {
        Data::Matrix(_) => Err(range_vector_error()),
        Data::Scalar(s) => finite(s.value()),
        Data::Vector(v) => match v.as_slice() {
            [] => Err(MetricError::NoData),
            [one] => finite(one.sample().value()),
            [first, ..] => Err(multiple(v.len(), first.metric())),
        },
    }
}

/// The finite values of an instant answer (one per pod, say). A range vector is
/// accepted: a subquery's points are the samples.
pub fn vector_of(data: &Data) -> Result<Vec<f64>, MetricError> {
    let values = data_values(data);
    if values.is_empty() {
        return Err(MetricError::NoData);
    }
    // Non-finite entries (a pod without traffic) are dropped, not judged.
    let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return Err(MetricError::NotFinite(f64::NAN));
    }
    Ok(finite)
}

/// The points of a range answer of exactly one series.
pub fn series_of(data: &Data) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
    let Data::Matrix(matrix) = data else {
        return Err(MetricError::BadQuery(
            "a range query did not return a matrix".into(),
        ));
    };
    match matrix.as_slice() {
        [] => Err(MetricError::NoData),
        [one] => Ok(one
            .samples()
            .iter()
            .filter_map(|s| {
                let ms = (s.timestamp() * 1000.0).round();
                // NaN and out-of-range timestamps name no instant: dropped.
                if !ms.is_finite() {
                    return None;
                }
                DateTime::from_timestamp_millis(ms as i64).map(|t| (t, s.value()))
            })
            .collect()),
        [first, ..] => Err(multiple(matrix.len(), first.metric())),
    }
}

/// Prometheus's facts for the registry.
pub(crate) static PROVIDER: Provider = Provider {
    kind: ProviderKind::Prometheus,
    address: |spec| spec.prometheus.as_ref().map(|p| p.address.as_str()),
    credential_keys: |spec| {
        spec.prometheus
            .as_ref()
            .and_then(|p| p.secret_ref.clone())
            .map(CredentialKeys::Http)
    },
    build: |spec, credentials, settings| {
        let Some(p) = &spec.prometheus else {
            return Err(MetricError::Config("provider.prometheus is not set".into()));
        };
        let config = PrometheusConfig::from_spec(p, credentials, settings.default_timeout)?;
        Ok(Arc::new(
            PrometheusSource::new(&config)?.with_max_body(settings.max_body),
        ))
    },
};

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "prometheus_tls_tests.rs"]
mod tls_tests;

#[cfg(test)]
#[path = "prometheus_exposure_tests.rs"]
mod exposure_tests;
