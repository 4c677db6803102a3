//! InfluxDB 1.x over its `/query` endpoint: `GET /query?db=&q=&epoch=s`, InfluxQL.
//!
//! InfluxQL has its own `now()`, so a query says its window itself, e.g.
//! `WHERE time > now() - 5m`. The value is the last non-null value of exactly one
//! series whose columns are `time` and one field. What reaches the status from an
//! answer: the HTTP status and the answer's `error` (top-level or the statement's),
//! cleaned and bounded. Never the body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::answer::clean;
use super::http::{self, Answer};
use super::registry::Provider;
use super::{CredentialKeys, MetricError, MetricSource, ProviderCredentials};
use crate::crd::{InfluxDbProviderSpec, ProviderKind};

/// InfluxDB's facts for the registry.
pub(crate) static PROVIDER: Provider = Provider {
    kind: ProviderKind::InfluxDb,
    address: |spec| spec.influxdb.as_ref().map(|p| p.address.as_str()),
    credential_keys: |spec| {
        spec.influxdb
            .as_ref()
            .and_then(|p| p.secret_ref.clone())
            .map(CredentialKeys::Http)
    },
    build: |spec, credentials, settings| {
        let Some(p) = &spec.influxdb else {
            return Err(MetricError::Config("provider.influxdb is not set".into()));
        };
        let timeout = http::duration(
            "provider.influxdb.timeout",
            p.timeout.as_deref(),
            settings.default_timeout,
        )?;
        Ok(Arc::new(InfluxDbSource::new(
            p,
            credentials,
            timeout,
            settings.max_body,
        )?))
    },
};

/// One InfluxDB database.
pub struct InfluxDbSource {
    client: reqwest::Client,
    query_url: Url,
    database: String,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for InfluxDbSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxDbSource")
            .field("query_url", &self.query_url.as_str())
            .field("database", &self.database)
            .finish()
    }
}

impl InfluxDbSource {
    pub fn new(
        spec: &InfluxDbProviderSpec,
        credentials: Option<&ProviderCredentials>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, MetricError> {
        let base = http::base_url(
            "provider.influxdb.address",
            &spec.address,
            "http://influxdb.monitoring:8086",
        )?;
        if spec.database.trim().is_empty() {
            return Err(MetricError::Config(
                "provider.influxdb.database is empty; accepted: the name of the database the queries read".into(),
            ));
        }
        let credentials = http::credentials_for(
            "provider.influxdb.secretRef",
            spec.secret_ref.as_ref().map(|r| r.name.as_str()),
            credentials,
        )?;
        // InfluxDB takes a token as `Authorization: Token <token>`, not Bearer.
        let headers = http::default_headers("influxdb", &[], &credentials, "Token")?;
        Ok(Self {
            client: http::client(
                timeout,
                headers,
                credentials.ca_pem.as_deref(),
                spec.insecure_skip_verify,
            )?,
            query_url: http::endpoint(&base, "query"),
            database: spec.database.clone(),
            timeout,
            max_body,
        })
    }

    async fn series(&self, query: &str) -> Result<Vec<http::Series>, MetricError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("db", &self.database)
            .append_pair("q", query)
            .append_pair("epoch", "s");
        let answer = http::get(&self.client, url, self.timeout, self.max_body).await?;
        decode(&answer)
    }
}

#[derive(Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    results: Option<Vec<Statement>>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

/// The series of an answer, each named by its measurement and tags with the values
/// of its one field in time order; or an error saying what to change.
fn decode(answer: &Answer) -> Result<Vec<http::Series>, MetricError> {
    let status = answer.status;
    let parsed = serde_json::from_slice::<QueryAnswer>(&answer.body).ok();
    let error = parsed.as_ref().and_then(|p| p.error.as_deref()).map(clean);
    let detail = || error.clone().map(|e| format!(": {e}")).unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(MetricError::Auth(format!("HTTP {status}{}", detail())));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(MetricError::RateLimited { retry_in: None });
    }
    if status == StatusCode::BAD_REQUEST {
        return Err(MetricError::BadQuery(format!("HTTP {status}{}", detail())));
    }
    if !status.is_success() {
        return Err(MetricError::Unreachable(format!(
            "HTTP {status} from InfluxDB{}",
            error.map_or_else(|| ", body not shown".into(), |e| format!(": {e}"))
        )));
    }
    let Some(QueryAnswer {
        results: Some(results),
        error: None,
    }) = parsed.filter(|_| answer.is_json())
    else {
        if let Some(e) = error {
            return Err(MetricError::BadQuery(e));
        }
        return Err(MetricError::Unreachable(format!(
            "HTTP {status} without an InfluxDB /query response (body not shown); is the address the InfluxDB 1.x HTTP API, e.g. http://influxdb:8086?"
        )));
    };
    let statement = match results.as_slice() {
        [one] => one,
        _ => {
            return Err(MetricError::BadQuery(format!(
                "the query has {} statements; accepted: exactly one SELECT",
                results.len()
            )))
        }
    };
    if let Some(e) = &statement.error {
        return Err(MetricError::BadQuery(clean(e)));
    }
    statement.series.iter().map(series_values).collect()
}

fn series_values(s: &Series) -> Result<(String, Vec<Option<f64>>), MetricError> {
    let name = if s.tags.is_empty() {
        s.name.clone()
    } else {
        let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{}{{{}}}", s.name, tags.join(","))
    };
    let field = match s.columns.as_slice() {
        [time, field] if time == "time" => 1,
        _ => {
            return Err(MetricError::BadQuery(format!(
                "the query returns columns {}; accepted: time and exactly one field, e.g. SELECT mean(\"value\") FROM ...",
                clean(&s.columns.join(", "))
            )))
        }
    };
    let mut values = Vec::with_capacity(s.values.len());
    for row in &s.values {
        values.push(match row.get(field) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(_) => {
                return Err(MetricError::BadQuery(format!(
                    "field {:?} of the query is not numeric",
                    clean(&s.columns[field])
                )))
            }
        });
    }
    Ok((name, values))
}

#[async_trait]
impl MetricSource for InfluxDbSource {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        let _ = at; // InfluxQL's window is relative to the server's now().
        http::last_of_one(&self.series(query).await?)
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        let _ = at;
        http::last_of_each(&self.series(query).await?)
    }
}

#[cfg(test)]
#[path = "influxdb_tests.rs"]
mod tests;
