//! Reading a provider's HTTP answer into data or an error that says what to change.
//!
//! What reaches a Canary's status from an answer is a fixed set: the HTTP status, and
//! from a Prometheus JSON error its `errorType` and `error` (and a success's first
//! warning), cleaned of control characters and bounded. Never a response body: a
//! template's address may point anywhere its author likes, and the status is read by
//! everyone who can read the Canary.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use prometheus_http_query::response::{Data, PromqlResult};

use super::response::{read_capped, ReadError};
use super::MetricError;
use crate::rollout::text::one_line;

/// Longest text taken from an error of the HTTP stack or from Prometheus.
pub(super) const DETAIL_MAX_CHARS: usize = 200;

/// A field read from an answer, fit for the status: control characters dropped, one
/// line, at most [`DETAIL_MAX_CHARS`].
pub(super) fn clean(s: &str) -> String {
    let printable: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line(&printable, DETAIL_MAX_CHARS)
}

/// Why a request failed, with its causes (refused, DNS, certificate: the part that says
/// what to fix), bounded. reqwest's own Display is left out: it appends the request URL.
pub(super) fn transport_cause(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() {
        "reading the response"
    } else if e.is_decode() {
        "decoding the response"
    } else if e.is_redirect() {
        "a redirect (redirects are not followed)"
    } else if e.is_request() {
        "sending the request"
    } else {
        "HTTP client"
    };
    let mut parts = vec![what.to_string()];
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let text = s.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    let mut text = parts.join(": ");
    // Causes do not quote the URL today; make sure none ever does.
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<request>");
    }
    clean(&text)
}

/// Prometheus's response envelope; `data` of a success is a [`PromqlResult`].
/// `infos` (annotations such as "metric might not be a counter") are not read: they
/// do not make the value partial.
#[derive(serde::Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Envelope {
    Success {
        data: PromqlResult,
        #[serde(default)]
        warnings: Vec<String>,
    },
    Error(prometheus_http_query::error::PrometheusError),
}

/// Read a provider's answer: refused early when it redirects, denies or is not JSON;
/// otherwise read under `max_body` (`--prometheus-max-body`) and decoded.
pub(super) async fn decode(
    mut response: reqwest::Response,
    timeout: Duration,
    max_body: usize,
) -> Result<Data, MetricError> {
    let status = response.status();
    if status.is_redirection() {
        // Following it would send the query (and the credentials) to an address no
        // one allowed.
        return Err(MetricError::Unreachable(format!(
            "HTTP {status} from the provider: a redirect, and redirects are not followed; set the provider's address to where it redirects"
        )));
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(MetricError::Auth(format!("HTTP {status}")));
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(not_prometheus(status));
    }
    let too_large = || MetricError::TooLarge { limit: max_body };
    // A declared length over the cap is refused before reading anything.
    if response
        .content_length()
        .is_some_and(|n| n > max_body as u64)
    {
        return Err(too_large());
    }
    let body = read_capped(&mut response, max_body)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => too_large(),
            ReadError::Read(e) if e.is_timeout() => MetricError::Timeout(timeout),
            ReadError::Read(e) => MetricError::Unreachable(transport_cause(&e)),
        })?;
    decode_body(status.as_u16(), &body, timeout)
}

/// The Prometheus API envelope in a JSON answer's `body`, with the answer's HTTP
/// `status`: the data, or an error whose text holds only the fields named at the top of
/// this module. Takes any bytes (it is fuzzed).
pub fn decode_body(status: u16, body: &[u8], timeout: Duration) -> Result<Data, MetricError> {
    let status = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::OK);
    match serde_json::from_slice::<Envelope>(body) {
        // A warning in a success means the answer may lack series (a store down
        // behind Thanos/Cortex/Mimir): no evidence rather than a wrong value.
        Ok(Envelope::Success { warnings, .. }) if !warnings.is_empty() => {
            Err(MetricError::Partial(clean(&warnings[0])))
        }
        Ok(Envelope::Success { data, .. }) => Ok(data.into_inner().0),
        Ok(Envelope::Error(e)) => Err(prometheus_error(&e, status, timeout)),
        Err(_) => Err(not_prometheus(status)),
    }
}

/// An answer that is not the Prometheus API's: its status and a fixed description.
fn not_prometheus(status: reqwest::StatusCode) -> MetricError {
    MetricError::Unreachable(if status.is_success() {
        format!("HTTP {status} without a Prometheus API response (body not shown); is the address the Prometheus server itself?")
    } else {
        format!("HTTP {status} from the provider, body not shown")
    })
}

fn prometheus_error(
    e: &prometheus_http_query::error::PrometheusError,
    status: reqwest::StatusCode,
    timeout: Duration,
) -> MetricError {
    let kind = clean(&e.error_type().to_string());
    if e.is_timeout() {
        MetricError::Timeout(timeout)
    } else if e.is_bad_data() || e.is_execution() {
        MetricError::BadQuery(format!("{} (errorType {kind})", clean(e.message())))
    } else {
        MetricError::Unreachable(format!(
            "HTTP {status}, errorType {kind}: {}",
            clean(e.message())
        ))
    }
}
