//! `kubectl serin approve|reject|abort|retry|pause|resume`: the CLI asks the
//! controller's approval API, with a bearer token for the API's audience, instead of
//! writing the Canary itself. The controller authenticates the token (TokenReview),
//! checks `create` on the action's virtual subresource (SubjectAccessReview) and
//! writes the record; the user needs no right to write the Canary or its status.
//!
//! Why not the API server's service proxy (`.../services/https:serin:api/proxy/...`):
//! the API server authenticates the user and then drops the `Authorization` header
//! before proxying, so the controller would not learn who is asking; and
//! `services/proxy` on the controller's Service would be one more broad right to grant.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::Value;

use crate::gates::{DecisionRequest, Outcome, Verb};

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The API answered with an error (`{error, message}`).
    #[error("{message} (HTTP {status}, {error})")]
    Refused {
        status: u16,
        error: String,
        message: String,
    },
    #[error("cannot reach the serin API at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("requesting a token: {0}")]
    Token(#[from] kube::Error),
}

/// An HTTP client for the approval API: trusts only `ca_pem` when given (the API's
/// certificate is usually from a private issuer), the system's roots otherwise.
pub fn api_client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, DecideError> {
    let mut b = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| DecideError::Config(format!("--api-ca-file: {e}")))?;
        if certs.is_empty() {
            return Err(DecideError::Config(
                "--api-ca-file holds no certificate".into(),
            ));
        }
        b = b.tls_certs_only(certs);
    }
    b.build()
        .map_err(|e| DecideError::Config(format!("HTTP client: {e}")))
}

/// The URL of `verb` on Canary `ns/name` under the API's base URL.
pub fn action_url(base: &str, ns: &str, name: &str, verb: Verb) -> String {
    format!(
        "{}/api/v1/namespaces/{ns}/canaries/{name}/{}",
        base.trim_end_matches('/'),
        verb.as_str()
    )
}

/// Ask the approval API at `base` to record `decision`, as the holder of `token`.
pub async fn decide(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    ns: &str,
    name: &str,
    decision: &DecisionRequest,
) -> Result<Outcome, DecideError> {
    let url = action_url(base, ns, name, decision.verb);
    let mut req = http.post(&url).bearer_auth(token);
    if let Some(g) = &decision.expect {
        req =
            req.json(&serde_json::json!({"gate": g.gate, "revision": g.revision, "step": g.step}));
    }
    if let Some(o) = &decision.emergency {
        let mut body = serde_json::json!({"reason": o.reason});
        if let Some(d) = o.duration {
            body["for"] = humantime::format_duration(d).to_string().into();
        }
        req = req.json(&body);
    }
    let transport = |e: reqwest::Error| DecideError::Transport {
        url: base.to_string(),
        message: e.without_url().to_string(),
    };
    let resp = req.send().await.map_err(transport)?;
    answer(resp).await
}

/// The approval API's answer: the outcome (2xx, `T` in JSON) or its refusal
/// (`{error, message}`).
pub(crate) async fn answer<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, DecideError> {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return serde_json::from_value(body).map_err(|e| DecideError::Refused {
            status,
            error: "invalid".into(),
            message: format!("unexpected answer: {e}"),
        });
    }
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    Err(DecideError::Refused {
        status,
        error: text("error"),
        message: match text("message") {
            m if m.is_empty() => "the serin API refused the request".into(),
            m => m,
        },
    })
}

/// A short-lived token of ServiceAccount `ns/name` for `audience` (TokenRequest, as
/// `kubectl create token NAME --audience AUDIENCE` does); needs `create` on
/// `serviceaccounts/token` for it. The token is good for the approval API only.
pub async fn service_account_token(
    client: &Client,
    ns: &str,
    name: &str,
    audience: &str,
    ttl: Duration,
) -> Result<String, DecideError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(ttl.as_secs() as i64),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let pp = PostParams::default();
    let call = api.create_token_request(name, &pp, &req);
    let answer = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .map_err(|_| DecideError::Config("TokenRequest not answered within 30s".into()))??;
    answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| DecideError::Config("TokenRequest answered without a token".into()))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
