//! Slack interactivity: the Approve / Reject buttons of a "waiting for approval"
//! message. Requests are verified with Slack's v0 signature, the clicking user must be
//! on an allow-list, and the message is replaced with the outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::record::{apply_decision, Decision, GateRef, Verb, Via};
use super::secret::SecretString;
use super::sign::verify_hmac_sha256_hex;
use crate::crd::GateKind;

/// Requests older (or newer) than this are refused as replays.
pub const SLACK_MAX_SKEW_SECS: i64 = 300;

pub const ACTION_APPROVE: &str = "serin_approve";
pub const ACTION_REJECT: &str = "serin_reject";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlackError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed request timestamp")]
    BadTimestamp,
    #[error("request timestamp outside the {SLACK_MAX_SKEW_SECS}s window")]
    Expired,
    #[error("signature mismatch")]
    BadSignature,
    #[error("malformed payload: {0}")]
    BadPayload(String),
}

impl SlackError {
    pub fn category(&self) -> &'static str {
        match self {
            SlackError::MissingHeader(_) | SlackError::BadTimestamp => "malformed",
            SlackError::Expired => "expired",
            SlackError::BadSignature => "bad_signature",
            SlackError::BadPayload(_) => "bad_payload",
        }
    }
}

/// Check `X-Slack-Signature` (`v0=<hex>`) over `v0:{timestamp}:{body}` in constant time,
/// and that the timestamp is within [`SLACK_MAX_SKEW_SECS`] of `now_unix`.
pub fn verify_slack_signature(
    signing_secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SlackError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SlackError::BadTimestamp)?;
    if (now_unix - ts).abs() > SLACK_MAX_SKEW_SECS {
        return Err(SlackError::Expired);
    }
    let hex = signature
        .strip_prefix("v0=")
        .ok_or(SlackError::BadSignature)?;
    let parts: [&[u8]; 4] = [b"v0:", timestamp.as_bytes(), b":", body];
    if verify_hmac_sha256_hex(signing_secret, &parts, hex) {
        Ok(())
    } else {
        Err(SlackError::BadSignature)
    }
}

/// What a button carries: the exact gate passage it approves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ButtonValue {
    ns: String,
    name: String,
    gate: GateKind,
    rev: String,
    step: i32,
}

/// The `value` of an Approve/Reject button (JSON, well under Slack's 2000 characters
/// for Kubernetes-sized names).
pub fn button_value(ns: &str, name: &str, gate: &GateRef) -> String {
    let v = ButtonValue {
        ns: ns.into(),
        name: name.into(),
        gate: gate.gate,
        rev: gate.revision.clone(),
        step: gate.step,
    };
    serde_json::to_string(&v).unwrap_or_default()
}

/// Namespace, name and gate passage from a button value.
pub fn parse_button_value(value: &str) -> Result<(String, String, GateRef), SlackError> {
    let v: ButtonValue =
        serde_json::from_str(value).map_err(|e| SlackError::BadPayload(e.to_string()))?;
    Ok((
        v.ns,
        v.name,
        GateRef {
            gate: v.gate,
            revision: v.rev,
            step: v.step,
        },
    ))
}

/// The Block Kit `actions` block with Approve and Reject buttons for a pending gate.
pub fn approval_blocks(ns: &str, name: &str, gate: &GateRef) -> Value {
    let value = button_value(ns, name, gate);
    json!({
        "type": "actions",
        "block_id": "serin_gate",
        "elements": [
            {"type": "button", "action_id": ACTION_APPROVE, "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}, "value": value},
            {"type": "button", "action_id": ACTION_REJECT, "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}, "value": value,
             "confirm": {
                "title": {"type": "plain_text", "text": "Reject the release?"},
                "text": {"type": "mrkdwn", "text": format!("Revision `{}` of `{ns}/{name}` will be rolled back.", gate.revision)},
                "confirm": {"type": "plain_text", "text": "Reject"},
                "deny": {"type": "plain_text", "text": "Cancel"}}}
        ]
    })
}

/// An allow-list from `U024BE7LH=alice,U0G9QF9C6=bob` (as a flag or ConfigMap value).
pub fn parse_slack_allow_list(s: &str) -> Result<BTreeMap<String, String>, SlackError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, name) = item.split_once('=').ok_or_else(|| {
            SlackError::BadPayload(format!("allow-list entry {item:?} is not SLACK_ID=name"))
        })?;
        let (id, name) = (id.trim(), name.trim());
        if id.is_empty() || name.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SlackError::BadPayload(format!(
                "allow-list entry {item:?} is not SLACK_ID=name"
            )));
        }
        out.insert(id.to_string(), name.to_string());
    }
    Ok(out)
}

/// What the Slack handler needs.
#[derive(Clone)]
pub struct SlackState {
    /// The controller's client; Slack users act through the allow-list, not RBAC.
    pub client: Client,
    pub signing_secret: SecretString,
    /// Slack user id -> name recorded as `by`.
    pub allowed_users: BTreeMap<String, String>,
    /// Outgoing client for `response_url`; each call also has `response_timeout`.
    pub http: reqwest::Client,
    pub response_timeout: Duration,
    /// `response_url` must start with this (Slack's is `https://hooks.slack.com/`), so a
    /// signed-but-odd payload cannot make the controller call elsewhere.
    pub response_url_prefix: String,
}

impl SlackState {
    pub fn new(
        client: Client,
        signing_secret: SecretString,
        allowed_users: BTreeMap<String, String>,
    ) -> Self {
        Self {
            client,
            signing_secret,
            allowed_users,
            http: reqwest::Client::new(),
            response_timeout: Duration::from_secs(5),
            response_url_prefix: "https://hooks.slack.com/".into(),
        }
    }
}

/// `POST /slack/interactions`, for the lead to merge into the controller's server.
pub fn slack_router(state: SlackState) -> Router {
    Router::new()
        .route("/slack/interactions", post(interactions))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    type_: String,
    user: SlackUser,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    actions: Vec<SlackAction>,
}

#[derive(Debug, Deserialize)]
struct SlackUser {
    id: String,
}

#[derive(Debug, Deserialize)]
struct SlackAction {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

fn reject(status: StatusCode, e: &SlackError) -> Response {
    (
        status,
        Json(json!({"error": e.category(), "message": e.to_string()})),
    )
        .into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, SlackError> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(SlackError::MissingHeader(name))
}

fn parse_payload(body: &[u8]) -> Result<Payload, SlackError> {
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| SlackError::BadPayload(e.to_string()))?;
    let raw = form
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or_else(|| SlackError::BadPayload("no payload field".into()))?;
    serde_json::from_str(&raw).map_err(|e| SlackError::BadPayload(e.to_string()))
}

async fn interactions(
    State(state): State<SlackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = header(&headers, "x-slack-request-timestamp").and_then(|ts| {
        let sig = header(&headers, "x-slack-signature")?;
        let now = chrono::Utc::now().timestamp();
        verify_slack_signature(
            state.signing_secret.expose().as_bytes(),
            ts,
            sig,
            &body,
            now,
        )
    });
    if let Err(e) = verified {
        tracing::warn!(reason = e.category(), "rejected Slack request");
        return reject(StatusCode::UNAUTHORIZED, &e);
    }
    let payload = match parse_payload(&body) {
        Ok(p) => p,
        Err(e) => return reject(StatusCode::BAD_REQUEST, &e),
    };
    let Some(response_url) = payload
        .response_url
        .clone()
        .filter(|u| u.starts_with(&state.response_url_prefix))
    else {
        let e = SlackError::BadPayload("missing or unexpected response_url".into());
        return reject(StatusCode::BAD_REQUEST, &e);
    };
    if payload.type_ != "block_actions" {
        return StatusCode::OK.into_response();
    }
    // Slack wants an answer within 3 seconds: decide and report in the background.
    tokio::spawn(async move {
        let reply = decide(&state, &payload).await;
        post_response(&state, &response_url, &reply).await;
    });
    StatusCode::OK.into_response()
}

fn ephemeral(text: String) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": text})
}

async fn decide(state: &SlackState, payload: &Payload) -> Value {
    let Some(who) = state.allowed_users.get(&payload.user.id) else {
        tracing::warn!(slack_user = %payload.user.id, "Slack user not on the allow-list");
        return ephemeral("You are not allowed to approve releases.".into());
    };
    let Some(action) = payload
        .actions
        .iter()
        .find(|a| a.action_id == ACTION_APPROVE || a.action_id == ACTION_REJECT)
    else {
        return ephemeral("Unknown action.".into());
    };
    let verb = if action.action_id == ACTION_APPROVE {
        Verb::Approve
    } else {
        Verb::Reject
    };
    let parsed = action
        .value
        .as_deref()
        .ok_or_else(|| SlackError::BadPayload("button without value".into()))
        .and_then(parse_button_value);
    let (ns, name, gate) = match parsed {
        Ok(x) => x,
        Err(e) => return ephemeral(format!("Malformed button: {e}")),
    };
    let actor = format!("{who} (slack:{})", payload.user.id);
    let decision = Decision {
        verb,
        expect: Some(gate.clone()),
    };
    match apply_decision(&state.client, &ns, &name, &decision, &actor, Via::Slack).await {
        Ok(outcome) => {
            let icon = if verb == Verb::Approve {
                ":white_check_mark:"
            } else {
                ":x:"
            };
            let text = format!(
                "{icon} `{ns}/{name}`: {} (revision `{}`, step {})",
                outcome.message, gate.revision, gate.step
            );
            json!({
                "replace_original": true,
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
            })
        }
        Err(e) => {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "Slack decision failed");
            ephemeral(format!("Could not {} `{ns}/{name}`: {e}", verb.as_str()))
        }
    }
}

async fn post_response(state: &SlackState, url: &str, body: &Value) {
    let sent = state
        .http
        .post(url)
        .timeout(state.response_timeout)
        .json(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(
            status = r.status().as_u16(),
            "Slack response_url refused the update"
        ),
        Err(e) => tracing::warn!(error = %e.without_url(), "Slack response_url unreachable"),
    }
}

#[cfg(test)]
#[path = "slack_tests.rs"]
mod tests;
