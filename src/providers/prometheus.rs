//! Prometheus over its HTTP API (prometheus-http-query).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Error as PromError};

use super::{MetricError, MetricSource, MetricSources};
use crate::crd::ProviderSpec;

/// One Prometheus server.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    timeout: Duration,
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
    pub fn new(address: &str, timeout: Duration) -> Result<Self, MetricError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| MetricError::Config(format!("HTTP client: {e}")))?;
        let client = Client::from(http, address)
            .map_err(|e| MetricError::Config(format!("address {address:?}: {e}")))?;
        Ok(Self { client, timeout })
    }

    async fn instant(&self, query: &str, at: DateTime<Utc>) -> Result<Data, MetricError> {
        let call = self
            .client
            .query(query)
            .at(at.timestamp())
            .timeout(self.timeout.as_millis() as i64)
            .get();
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(MetricError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(map_error(e, self.timeout)),
            Ok(Ok(r)) => Ok(r.into_inner().0),
        }
    }
}

fn map_error(e: PromError, timeout: Duration) -> MetricError {
    match e {
        PromError::Prometheus(p) if p.is_timeout() => MetricError::Timeout(timeout),
        PromError::Prometheus(p) if p.is_bad_data() || p.is_execution() => {
            MetricError::BadQuery(p.message().to_string())
        }
        PromError::Prometheus(p) => MetricError::Unreachable(p.message().to_string()),
        PromError::ParseUrl(u) => MetricError::Config(u.to_string()),
        other => {
            let timed_out =
                matches!(&other, PromError::Client(c) if c.inner().is_some_and(|r| r.is_timeout()));
            if timed_out {
                MetricError::Timeout(timeout)
            } else {
                MetricError::Unreachable(other.to_string())
            }
        }
    }
}

fn finite(v: f64) -> Result<f64, MetricError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(MetricError::NotFinite(v))
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

#[async_trait]
impl MetricSource for PrometheusSource {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        let data = self.instant(query, at).await?;
        if let Data::Matrix(_) = data {
            return Err(MetricError::BadQuery(
                "a range vector was returned; wrap it in a function such as rate()".into(),
            ));
        }
        match data_values(&data).as_slice() {
            [] => Err(MetricError::NoData),
            [v] => finite(*v),
            many => Err(MetricError::MultipleSeries(many.len())),
        }
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        let values = data_values(&self.instant(query, at).await?);
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
}

/// Prometheus sources by address, with a controller-wide default.
pub struct PrometheusSources {
    default_address: Option<String>,
    default_timeout: Duration,
    cache: Mutex<HashMap<(String, Duration), Arc<PrometheusSource>>>,
}

impl PrometheusSources {
    pub fn new(default_address: Option<String>, default_timeout: Duration) -> Self {
        Self {
            default_address,
            default_timeout,
            cache: Mutex::default(),
        }
    }
}

impl MetricSources for PrometheusSources {
    fn source(
        &self,
        provider: Option<&ProviderSpec>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        let spec = provider.and_then(|p| p.prometheus.as_ref());
        let address = match spec {
            Some(p) => p.address.clone(),
            None => self.default_address.clone().ok_or_else(|| {
                MetricError::Config(
                    "the template names no provider and the controller has no default Prometheus (--prometheus-url)".into(),
                )
            })?,
        };
        let timeout = match spec.and_then(|p| p.timeout.as_deref()) {
            Some(t) => humantime::parse_duration(t).map_err(|e| {
                MetricError::Config(format!("provider.prometheus.timeout {t:?}: {e}"))
            })?,
            None => self.default_timeout,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(&(address.clone(), timeout)) {
            return Ok(s.clone());
        }
        let source = Arc::new(PrometheusSource::new(&address, timeout)?);
        cache.insert((address, timeout), source.clone());
        Ok(source)
    }
}
