//! Graphite's render API: `GET /render?target=&from=&until=&format=json`, answered
//! `[{"target": .., "datapoints": [[value|null, ts], ...]}]`.
//!
//! A query is asked over `[at - lookback, at]`; its value is the last non-null point
//! of exactly one series. graphite-web answers errors as HTML or text, so what reaches
//! the status from an error is the HTTP status alone.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::http::{self, Answer};
use super::registry::Provider;
use super::{CredentialKeys, MetricError, MetricSource, ProviderCredentials};
use crate::crd::{GraphiteProviderSpec, ProviderKind};

/// Window asked when the spec sets no `lookback`.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);

/// Graphite's facts for the registry.
pub(crate) static PROVIDER: Provider = Provider {
    kind: ProviderKind::Graphite,
    address: |spec| spec.graphite.as_ref().map(|p| p.address.as_str()),
    credential_keys: |spec| {
        spec.graphite
            .as_ref()
            .and_then(|p| p.secret_ref.clone())
            .map(CredentialKeys::Http)
    },
    build: |spec, credentials, settings| {
        let Some(p) = &spec.graphite else {
            return Err(MetricError::Config("provider.graphite is not set".into()));
        };
        let timeout = http::duration(
            "provider.graphite.timeout",
            p.timeout.as_deref(),
            settings.default_timeout,
        )?;
        Ok(Arc::new(GraphiteSource::new(
            p,
            credentials,
            timeout,
            settings.max_body,
        )?))
    },
};

/// One graphite-web.
pub struct GraphiteSource {
    client: reqwest::Client,
    render_url: Url,
    lookback: Duration,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for GraphiteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphiteSource")
            .field("render_url", &self.render_url.as_str())
            .field("lookback", &self.lookback)
            .finish()
    }
}

impl GraphiteSource {
    pub fn new(
        spec: &GraphiteProviderSpec,
        credentials: Option<&ProviderCredentials>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, MetricError> {
        let base = http::base_url(
            "provider.graphite.address",
            &spec.address,
            "http://graphite.monitoring:8080",
        )?;
        let lookback = http::duration(
            "provider.graphite.lookback",
            spec.lookback.as_deref(),
            DEFAULT_LOOKBACK,
        )?;
        let credentials = http::credentials_for(
            "provider.graphite.secretRef",
            spec.secret_ref.as_ref().map(|r| r.name.as_str()),
            credentials,
        )?;
        let headers = http::default_headers("graphite", &[], &credentials, "Bearer")?;
        Ok(Self {
            client: http::client(
                timeout,
                headers,
                credentials.ca_pem.as_deref(),
                spec.insecure_skip_verify,
            )?,
            render_url: http::endpoint(&base, "render"),
            lookback,
            timeout,
            max_body,
        })
    }

    async fn series(
        &self,
        target: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<http::Series>, MetricError> {
        let (from, until) = http::window(at, self.lookback);
        let mut url = self.render_url.clone();
        url.query_pairs_mut()
            .append_pair("target", target)
            .append_pair("from", &from.to_string())
            .append_pair("until", &until.to_string())
            .append_pair("format", "json");
        let answer = http::get(&self.client, url, self.timeout, self.max_body).await?;
        decode(&answer)
    }
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    target: String,
    #[serde(default)]
    datapoints: Vec<[Option<f64>; 2]>,
}

/// The series of an answer with their values in time order, or an error saying
/// what to change. Takes any bytes.
fn decode(answer: &Answer) -> Result<Vec<http::Series>, MetricError> {
    let status = answer.status;
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(MetricError::Auth(format!("HTTP {status}")));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(MetricError::RateLimited { retry_in: None });
    }
    if status == StatusCode::BAD_REQUEST {
        return Err(MetricError::BadQuery(format!(
            "HTTP {status} from graphite-web (body not shown): check the target expression and its functions"
        )));
    }
    if !status.is_success() {
        return Err(MetricError::Unreachable(format!(
            "HTTP {status} from graphite-web, body not shown"
        )));
    }
    let parsed = answer
        .is_json()
        .then(|| serde_json::from_slice::<Vec<Series>>(&answer.body).ok())
        .flatten()
        .ok_or_else(|| {
            MetricError::Unreachable(format!(
                "HTTP {status} without a Graphite render response (body not shown); is the address graphite-web, e.g. http://graphite:8080?"
            ))
        })?;
    Ok(parsed
        .into_iter()
        .map(|s| {
            let values = s.datapoints.into_iter().map(|[v, _ts]| v).collect();
            (s.target, values)
        })
        .collect())
}

#[async_trait]
impl MetricSource for GraphiteSource {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        http::last_of_one(&self.series(query, at).await?)
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        http::last_of_each(&self.series(query, at).await?)
    }
}

#[cfg(test)]
#[path = "graphite_tests.rs"]
mod tests;
