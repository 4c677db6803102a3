//! The metric providers, chosen in one place from a template's typed provider spec.
//!
//! [`PROVIDERS`] holds the facts of each provider (which spec field selects it, which
//! Secret keys it reads, how a source is built); [`ProviderSources`] is the one
//! [`MetricSources`] the controller holds. What every provider gets from it, whoever
//! wrote the provider: the allow-list on its address, the body cap, a source cached
//! per configuration, and query metrics labelled with its name.
//!
//! Adding a provider: a field in `crd::ProviderSpec` and a `ProviderKind`, a module
//! here with its `PROVIDER` facts, and one line in [`PROVIDERS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::response::DEFAULT_MAX_BODY;
use super::{
    AllowedAddresses, CredentialKeys, MetricError, MetricSource, MetricSources, PrometheusConfig,
    PrometheusSource, ProviderCredentials,
};
use crate::crd::{ProviderKind, ProviderSpec};
use crate::metrics::QueryMetrics;

/// What [`ProviderSources`] passes every provider's builder.
#[derive(Clone, Copy, Debug)]
pub struct BuildSettings {
    /// Timeout of a query whose spec sets none.
    pub default_timeout: Duration,
    /// Largest response body read (`--prometheus-max-body`).
    pub max_body: usize,
}

/// Builds a provider's source from its spec and the credentials read for it.
pub type BuildFn = fn(
    &ProviderSpec,
    Option<&ProviderCredentials>,
    BuildSettings,
) -> Result<Arc<dyn MetricSource>, MetricError>;

/// The facts of one provider.
pub struct Provider {
    pub kind: ProviderKind,
    /// The address the spec names (checked against the allow-list before anything).
    pub address: fn(&ProviderSpec) -> Option<&str>,
    /// The Secret keys its spec names, which the controller reads for it.
    pub credential_keys: fn(&ProviderSpec) -> Option<CredentialKeys>,
    /// A source for the spec, with the credentials read from its Secret.
    pub build: BuildFn,
}

/// Every provider serin can ask, one line each.
pub static PROVIDERS: [&Provider; 4] = [
    &super::prometheus::PROVIDER,
    &super::datadog::PROVIDER,
    &super::influxdb::PROVIDER,
    &super::graphite::PROVIDER,
];

/// The facts of the provider `spec` selects, or why it selects none or several.
pub fn provider_of(spec: &ProviderSpec) -> Result<&'static Provider, MetricError> {
    let kind = spec.kind().map_err(MetricError::Config)?;
    PROVIDERS
        .iter()
        .copied()
        .find(|p| p.kind == kind)
        .ok_or_else(|| MetricError::Config(format!("provider {kind} is not built in")))
}

/// The Secret keys a template's provider reads; `None` without a provider, a Secret,
/// or with an invalid provider (which `check_provider` reports).
pub fn credential_keys(spec: Option<&ProviderSpec>) -> Option<CredentialKeys> {
    let spec = spec?;
    (provider_of(spec).ok()?.credential_keys)(spec)
}

/// Sources kept per distinct configuration beyond which the cache is reset (a
/// rotated Secret leaves its old entry behind).
const CACHE_LIMIT: usize = 64;

/// A configuration as the cache knows it: the provider, its spec as JSON (`None`
/// for the controller's default) and the credentials read for it.
type CacheKey = (ProviderKind, Option<String>, Option<ProviderCredentials>);

/// The controller's metric sources: any built-in provider a template names, and a
/// default Prometheus for templates that name none.
pub struct ProviderSources {
    default: Option<PrometheusConfig>,
    default_timeout: Duration,
    max_body: usize,
    cache: Mutex<HashMap<CacheKey, Arc<dyn MetricSource>>>,
    metrics: Option<QueryMetrics>,
    /// The addresses templates may name, whatever the provider; the default's is
    /// always among them.
    allowed: AllowedAddresses,
}

/// The name the controller's source had when Prometheus was its only provider.
pub type PrometheusSources = ProviderSources;

impl ProviderSources {
    pub fn new(default_address: Option<String>, default_timeout: Duration) -> Self {
        Self::with_default(
            default_address.map(|a| PrometheusConfig::new(a, default_timeout)),
            default_timeout,
        )
    }

    /// A default Prometheus with headers, credentials or TLS options of its own.
    pub fn with_default(default: Option<PrometheusConfig>, default_timeout: Duration) -> Self {
        Self {
            default,
            default_timeout,
            max_body: DEFAULT_MAX_BODY,
            cache: Mutex::default(),
            metrics: None,
            allowed: AllowedAddresses::default(),
        }
    }

    /// Templates may name only these provider addresses (`--allowed-provider-urls`);
    /// the default Prometheus is always allowed. Empty: any address.
    pub fn with_allowed(mut self, allowed: AllowedAddresses) -> Self {
        self.allowed = match &self.default {
            Some(d) if !allowed.is_empty() => allowed.with(&d.address),
            _ => allowed,
        };
        self
    }

    /// Every source handed out records its queries in `metrics`, labelled with its
    /// provider.
    pub fn with_metrics(mut self, metrics: QueryMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Every source handed out refuses answers larger than `bytes` (default 1 MiB):
    /// "response larger than N bytes", an `Error` verdict naming the metric.
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    fn settings(&self) -> BuildSettings {
        BuildSettings {
            default_timeout: self.default_timeout,
            max_body: self.max_body,
        }
    }

    /// The controller's default Prometheus, for templates that name no provider.
    fn default_source(&self) -> Result<Arc<dyn MetricSource>, MetricError> {
        let config = self.default.clone().ok_or_else(|| {
            MetricError::Config(
                "the template names no provider and the controller has no default Prometheus (--prometheus-url)".into(),
            )
        })?;
        Ok(Arc::new(
            PrometheusSource::new(&config)?.with_max_body(self.max_body),
        ))
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<dyn MetricSource>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).cloned()
    }
}

impl MetricSources for ProviderSources {
    fn check_provider(&self, provider: Option<&ProviderSpec>) -> Result<(), MetricError> {
        let Some(spec) = provider else {
            return Ok(());
        };
        let facts = provider_of(spec)?;
        match (facts.address)(spec) {
            Some(address) => self
                .allowed
                .check_field(&format!("provider.{}.address", facts.kind), address),
            None => Ok(()),
        }
    }

    fn source(
        &self,
        provider: Option<&ProviderSpec>,
        credentials: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        // Checked again here, whoever asks: nothing is sent to an address not allowed.
        self.check_provider(provider)?;
        let chosen = provider
            .map(|spec| provider_of(spec).map(|f| (spec, f)))
            .transpose()?;
        let key: CacheKey = match chosen {
            Some((spec, facts)) => {
                let json = serde_json::to_string(spec)
                    .map_err(|e| MetricError::Config(format!("provider spec: {e}")))?;
                (facts.kind, Some(json), credentials.cloned())
            }
            None => (ProviderKind::Prometheus, None, None),
        };
        if let Some(s) = self.cached(&key) {
            return Ok(s);
        }
        let source = match chosen {
            Some((spec, facts)) => (facts.build)(spec, credentials, self.settings())?,
            None => self.default_source()?,
        };
        let source: Arc<dyn MetricSource> = match &self.metrics {
            Some(m) => Arc::new(Observed {
                inner: source,
                provider: key.0.as_str(),
                metrics: m.clone(),
            }),
            None => source,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(&key) {
            return Ok(s.clone());
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, source.clone());
        Ok(source)
    }
}

/// A source whose queries are timed and whose errors are counted, by provider.
struct Observed {
    inner: Arc<dyn MetricSource>,
    provider: &'static str,
    metrics: QueryMetrics,
}

impl Observed {
    async fn observe<T>(
        &self,
        query: impl std::future::Future<Output = Result<T, MetricError>>,
    ) -> Result<T, MetricError> {
        let start = std::time::Instant::now();
        let result = query.await;
        let error = result.as_ref().err().map(MetricError::category);
        self.metrics.observe(self.provider, start.elapsed(), error);
        result
    }
}

#[async_trait]
impl MetricSource for Observed {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        self.observe(self.inner.query_scalar(query, at)).await
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.observe(self.inner.query_vector(query, at)).await
    }

    fn answers_range_at_steps(&self) -> bool {
        self.inner.answers_range_at_steps()
    }

    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
        self.observe(self.inner.query_range(query, start, end, step))
            .await
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
