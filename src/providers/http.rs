//! The HTTP side every provider shares: one client per configuration (no redirects,
//! timeouts, headers, credentials, CA bundle), and a GET read under the body cap.
//!
//! Errors built here never quote a request URL (its query string is the whole query)
//! nor a response body: only the origin, the transport's cause and the HTTP status.

use std::time::Duration;

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::answer::transport_cause;
use super::response::{read_capped, ReadError};
use super::{MetricError, ProviderAuth, ProviderCredentials};

/// A parsed humantime duration from a spec field, positive; `default` when unset.
pub(crate) fn duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, MetricError> {
    match value {
        None => Ok(default),
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(MetricError::Config(format!(
                "{field} {t:?} is not a positive duration; accepted: e.g. \"10s\" or \"1m\""
            ))),
        },
    }
}

/// A provider's base URL: http(s), no query; a path prefix is kept.
pub(crate) fn base_url(field: &str, address: &str, example: &str) -> Result<Url, MetricError> {
    let bad = || {
        MetricError::Config(format!(
            "{field} {:?} is not an http(s) URL; accepted: e.g. {example}",
            super::answer::clean(address)
        ))
    };
    let url = Url::parse(address).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    Ok(url)
}

/// `base` with `path` appended to its own path (a prefix such as /graphite is kept).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// The credentials a spec's `secretRef` named, or an error when it names one the
/// controller has not read.
pub(crate) fn credentials_for(
    field: &str,
    secret: Option<&str>,
    credentials: Option<&ProviderCredentials>,
) -> Result<ProviderCredentials, MetricError> {
    match (secret, credentials) {
        (Some(name), None) => Err(MetricError::Config(format!(
            "{field} {name:?} has not been read; the controller resolves it before querying (does the Secret exist in the template's namespace?)"
        ))),
        (_, c) => Ok(c.cloned().unwrap_or_default()),
    }
}

/// Headers sent on every request: plain `headers` from the spec, then the
/// credentials (bearer as `<token_scheme> <token>`, basic, or headers from the Secret).
pub(crate) fn default_headers(
    provider: &str,
    headers: &[(String, String)],
    credentials: &ProviderCredentials,
    token_scheme: &str,
) -> Result<HeaderMap, MetricError> {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            MetricError::Config(format!(
                "provider.{provider}.headers: {name:?} is not a valid HTTP header name"
            ))
        })?;
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            MetricError::Config(format!(
                "provider.{provider}.headers: the value of {name:?} is not a valid HTTP header value (printable ASCII)"
            ))
        })?;
        v.set_sensitive(true);
        out.append(n, v);
    }
    let not_header = || {
        MetricError::Config(
            "the credentials in the provider's Secret contain characters not allowed in an HTTP header".into(),
        )
    };
    let secret_value = |text: &str| -> Result<HeaderValue, MetricError> {
        let mut v = HeaderValue::from_str(text).map_err(|_| not_header())?;
        v.set_sensitive(true);
        Ok(v)
    };
    match &credentials.auth {
        ProviderAuth::None => {}
        ProviderAuth::Bearer(token) => {
            out.insert(
                AUTHORIZATION,
                secret_value(&format!("{token_scheme} {token}"))?,
            );
        }
        ProviderAuth::Basic { username, password } => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            out.insert(AUTHORIZATION, secret_value(&format!("Basic {encoded}"))?);
        }
        ProviderAuth::Headers(pairs) => {
            for (name, value) in pairs {
                let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| not_header())?;
                out.insert(n, secret_value(value)?);
            }
        }
    }
    Ok(out)
}

/// An HTTP client for one provider configuration. Redirects are not followed:
/// following one would send the query and the credentials to an address neither the
/// template nor the allow-list names.
pub(crate) fn client(
    timeout: Duration,
    headers: HeaderMap,
    ca_pem: Option<&[u8]>,
    insecure_skip_verify: bool,
) -> Result<reqwest::Client, MetricError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .default_headers(headers);
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                MetricError::Config(
                    "secretRef.caKey does not hold PEM certificates (-----BEGIN CERTIFICATE-----)"
                        .into(),
                )
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    if insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| MetricError::Config(format!("HTTP client: {e}")))
}

/// An answer read whole (under the cap): what a provider decodes.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_json(&self) -> bool {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    }
}

/// GET `url` and read the answer under `max_body` bytes, the whole exchange under
/// `timeout`. Redirects and transport failures are errors here; the status and the
/// body are the provider's to judge.
pub(crate) async fn get(
    client: &reqwest::Client,
    url: Url,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, MetricError> {
    let origin = url.origin().ascii_serialization();
    let exchange = async {
        let mut response = client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                return MetricError::Timeout(timeout);
            }
            let cause = transport_cause(&e);
            let hint = if cause.contains("certificate") {
                "; to trust a private CA, put its PEM in the provider's Secret and name the key in secretRef.caKey"
            } else {
                ""
            };
            MetricError::Unreachable(format!("{origin}: {cause}{hint}"))
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(MetricError::Unreachable(format!(
                "HTTP {status} from the provider: a redirect, and redirects are not followed; set the provider's address to where it redirects"
            )));
        }
        let too_large = || MetricError::TooLarge { limit: max_body };
        if response
            .content_length()
            .is_some_and(|n| n > max_body as u64)
        {
            return Err(too_large());
        }
        let headers = response.headers().clone();
        let body = read_capped(&mut response, max_body)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => too_large(),
                ReadError::Read(e) if e.is_timeout() => MetricError::Timeout(timeout),
                ReadError::Read(e) => MetricError::Unreachable(transport_cause(&e)),
            })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(MetricError::Timeout(timeout)),
        Ok(r) => r,
    }
}

/// A series as the time-window providers read it: a label for messages and its
/// points' values in time order (null: no data at that point).
pub(crate) type Series = (String, Vec<Option<f64>>);

/// The value of an answer of series, each a label for messages and its points'
/// values in time order: the last non-null point of exactly one series. No series, or
/// only nulls, is no data (never a pass).
pub(crate) fn last_of_one(series: &[Series]) -> Result<f64, MetricError> {
    match series {
        [] => Err(MetricError::NoData),
        [(_, points)] => last_point(points),
        [(label, _), ..] => Err(MetricError::MultipleSeries {
            count: series.len(),
            example: super::answer::clean(label),
        }),
    }
}

/// The last non-null point of each series (one value per series); no series, or
/// none with a point, is no data.
pub(crate) fn last_of_each(series: &[Series]) -> Result<Vec<f64>, MetricError> {
    let values: Vec<f64> = series
        .iter()
        .filter_map(|(_, points)| points.iter().rev().find_map(|p| *p))
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return Err(MetricError::NoData);
    }
    Ok(values)
}

fn last_point(points: &[Option<f64>]) -> Result<f64, MetricError> {
    match points.iter().rev().find_map(|p| *p) {
        None => Err(MetricError::NoData),
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(MetricError::NotFinite(v)),
    }
}

/// The window `[at - lookback, at]` in unix seconds, as the time-window APIs take it.
pub(crate) fn window(at: chrono::DateTime<chrono::Utc>, lookback: Duration) -> (i64, i64) {
    let to = at.timestamp();
    let back = i64::try_from(lookback.as_secs()).unwrap_or(i64::MAX);
    (to.saturating_sub(back), to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(label: &str, points: &[Option<f64>]) -> (String, Vec<Option<f64>>) {
        (label.to_string(), points.to_vec())
    }

    #[test]
    fn the_value_is_the_last_non_null_point_of_exactly_one_series() {
        assert_eq!(
            last_of_one(&[s("a", &[Some(1.0), Some(2.5), None])]),
            Ok(2.5)
        );
        assert_eq!(last_of_one(&[]), Err(MetricError::NoData));
        assert_eq!(
            last_of_one(&[s("a", &[None, None])]),
            Err(MetricError::NoData)
        );
        assert_eq!(last_of_one(&[s("a", &[])]), Err(MetricError::NoData));
        assert_eq!(
            last_of_one(&[s("a{x}", &[Some(1.0)]), s("b", &[Some(2.0)])]),
            Err(MetricError::MultipleSeries {
                count: 2,
                example: "a{x}".into()
            })
        );
        assert_eq!(
            last_of_each(&[
                s("a", &[Some(1.0), None]),
                s("b", &[None]),
                s("c", &[Some(3.0)])
            ]),
            Ok(vec![1.0, 3.0])
        );
        assert_eq!(last_of_each(&[s("b", &[None])]), Err(MetricError::NoData));
    }

    #[test]
    fn addresses_keep_their_path_prefix_and_durations_are_checked() {
        let base = base_url("f", "http://g.example:8080/graphite/", "x").unwrap();
        assert_eq!(
            endpoint(&base, "render").as_str(),
            "http://g.example:8080/graphite/render"
        );
        let e = base_url(
            "provider.graphite.address",
            "g.example:8080",
            "http://graphite:8080",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "provider configuration: provider.graphite.address \"g.example:8080\" is not an http(s) URL; accepted: e.g. http://graphite:8080"
        );
        assert_eq!(
            duration("provider.datadog.lookback", None, Duration::from_secs(300)),
            Ok(Duration::from_secs(300))
        );
        let e = duration("provider.datadog.lookback", Some("0s"), Duration::ZERO).unwrap_err();
        assert!(
            e.to_string()
                .contains("provider.datadog.lookback \"0s\" is not a positive duration"),
            "{e}"
        );
    }
}
