//! Datadog's metrics query API (v1): `GET {site}/api/v1/query?from=&to=&query=`,
//! authenticated by the `DD-API-KEY` and `DD-APPLICATION-KEY` headers.
//!
//! A query is asked over `[at - lookback, at]`; its value is the last non-null point
//! of exactly one series. What reaches the status from an answer: the HTTP status,
//! the answer's first `errors[]` entry or its `error` field (cleaned, bounded), and
//! the rate limit's reset delay. Never the body.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::answer::clean;
use super::http::{self, Answer};
use super::registry::Provider;
use super::{CredentialKeys, MetricError, MetricSource};
use crate::crd::{DatadogProviderSpec, ProviderKind};

/// Window asked when the spec sets no `lookback`.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);

/// Datadog's facts for the registry.
pub(crate) static PROVIDER: Provider = Provider {
    kind: ProviderKind::Datadog,
    address: |spec| spec.datadog.as_ref().map(|p| p.address.as_str()),
    credential_keys: |spec| {
        spec.datadog
            .as_ref()
            .map(|p| CredentialKeys::datadog(&p.secret_ref))
    },
    build: |spec, credentials, settings| {
        let Some(p) = &spec.datadog else {
            return Err(MetricError::Config("provider.datadog is not set".into()));
        };
        let timeout = http::duration(
            "provider.datadog.timeout",
            p.timeout.as_deref(),
            settings.default_timeout,
        )?;
        Ok(Arc::new(DatadogSource::new(
            p,
            credentials,
            timeout,
            settings.max_body,
        )?))
    },
};

/// One Datadog site, with one pair of keys.
pub struct DatadogSource {
    client: reqwest::Client,
    query_url: Url,
    lookback: Duration,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for DatadogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSource")
            .field("query_url", &self.query_url.as_str())
            .field("lookback", &self.lookback)
            .finish()
    }
}

impl DatadogSource {
    pub fn new(
        spec: &DatadogProviderSpec,
        credentials: Option<&super::ProviderCredentials>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, MetricError> {
        let base = http::base_url(
            "provider.datadog.address",
            &spec.address,
            "https://api.datadoghq.com",
        )?;
        let lookback = http::duration(
            "provider.datadog.lookback",
            spec.lookback.as_deref(),
            DEFAULT_LOOKBACK,
        )?;
        let credentials = http::credentials_for(
            "provider.datadog.secretRef",
            Some(&spec.secret_ref.name),
            credentials,
        )?;
        let headers = http::default_headers("datadog", &[], &credentials, "Bearer")?;
        Ok(Self {
            client: http::client(timeout, headers, None, false)?,
            query_url: http::endpoint(&base, "api/v1/query"),
            lookback,
            timeout,
            max_body,
        })
    }

    async fn series(&self, query: &str, from: i64, to: i64) -> Result<Vec<Timed>, MetricError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("from", &from.to_string())
            .append_pair("to", &to.to_string())
            .append_pair("query", query);
        let answer = http::get(&self.client, url, self.timeout, self.max_body).await?;
        decode(&answer)
    }
}

/// A series named by its expression, with its points as (milliseconds, value).
type Timed = (String, Vec<(i64, Option<f64>)>);

/// Datadog's answer: `series` on success; `status: "error"` with `error` when the
/// query is refused with 200.
#[derive(Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    series: Option<Vec<Series>>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<[Option<f64>; 2]>,
    #[serde(default)]
    expression: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// The error shape of every non-2xx answer: `{"errors": ["..."]}`.
#[derive(Deserialize)]
struct Errors {
    errors: Vec<String>,
}

fn first_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Errors>(body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|e| clean(&e))
}

/// The series of an answer, each named by its expression (or scope) and its points
/// as (milliseconds, value); or an error saying what to change. Takes any bytes.
fn decode(answer: &Answer) -> Result<Vec<Timed>, MetricError> {
    let status = answer.status;
    let detail = || {
        first_error(&answer.body)
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(MetricError::Auth(format!(
            "HTTP {status}{}; the Secret's DD-API-KEY and DD-APPLICATION-KEY must belong to this site and allow timeseries_query",
            detail()
        )));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Datadog's X-RateLimit-Reset is the seconds left in the current period.
        let retry_in = answer
            .headers
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(MetricError::RateLimited { retry_in });
    }
    if status == StatusCode::BAD_REQUEST {
        return Err(MetricError::BadQuery(format!("HTTP {status}{}", detail())));
    }
    if !status.is_success() {
        return Err(MetricError::Unreachable(format!(
            "HTTP {status} from Datadog{}",
            match first_error(&answer.body) {
                Some(e) => format!(": {e}"),
                None => ", body not shown".into(),
            }
        )));
    }
    let parsed = answer
        .is_json()
        .then(|| serde_json::from_slice::<QueryAnswer>(&answer.body).ok())
        .flatten();
    let Some(parsed) = parsed else {
        return Err(not_datadog(status));
    };
    if parsed.status.as_deref() == Some("error") {
        let why = parsed
            .error
            .as_deref()
            .map_or_else(|| "no error given".into(), clean);
        return Err(MetricError::BadQuery(why));
    }
    let Some(series) = parsed.series else {
        return Err(not_datadog(status));
    };
    Ok(series
        .into_iter()
        .map(|s| {
            let name = s.expression.or(s.scope).unwrap_or_default();
            let points = s
                .pointlist
                .into_iter()
                .filter_map(|[t, v]| t.filter(|t| t.is_finite()).map(|t| (t as i64, v)))
                .collect();
            (name, points)
        })
        .collect())
}

fn not_datadog(status: StatusCode) -> MetricError {
    MetricError::Unreachable(format!(
        "HTTP {status} without a Datadog query API response (body not shown); is the address the site's API, e.g. https://api.datadoghq.com?"
    ))
}

fn values(series: &[Timed]) -> Vec<http::Series> {
    series
        .iter()
        .map(|(n, p)| (n.clone(), p.iter().map(|(_, v)| *v).collect()))
        .collect()
}

#[async_trait]
impl MetricSource for DatadogSource {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        let (from, to) = http::window(at, self.lookback);
        http::last_of_one(&values(&self.series(query, from, to).await?))
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        let (from, to) = http::window(at, self.lookback);
        http::last_of_each(&values(&self.series(query, from, to).await?))
    }

    /// The points of the one series over `[start, end]`; Datadog picks the rollup, so
    /// `step` is not sent. Null points are NaN: the caller decides.
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
        let _ = step;
        if end < start {
            return Err(MetricError::Config(format!(
                "range query needs start <= end (got {start} .. {end})"
            )));
        }
        let series = self
            .series(query, start.timestamp(), end.timestamp())
            .await?;
        match series.as_slice() {
            [] => Err(MetricError::NoData),
            [(_, points)] => Ok(points
                .iter()
                .filter_map(|(ms, v)| {
                    DateTime::from_timestamp_millis(*ms).map(|t| (t, v.unwrap_or(f64::NAN)))
                })
                .collect()),
            [(name, _), ..] => Err(MetricError::MultipleSeries {
                count: series.len(),
                example: clean(name),
            }),
        }
    }
}

#[cfg(test)]
#[path = "datadog_tests.rs"]
mod tests;
