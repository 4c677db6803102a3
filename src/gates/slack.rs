//! Slack interactivity: the Approve / Reject buttons of a "waiting for approval"
//! message. Each request is verified with Slack's v0 signature and acted on once
//! (replays within the timestamp window are refused); the clicking Slack user is
//! mapped to a Kubernetes identity (`SlackIdentities`) and must pass the same
//! SubjectAccessReview as any other door, in the Canary's namespace; the message is
//! replaced with the outcome. Everything echoed back is escaped for mrkdwn.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{Authenticator, ResourceCheck, UserInfo};
use super::ratelimit::{RateLimit, RateLimiter};
use super::record::{apply_decision, DecisionRequest, GateRef, Verb, Via};
use super::replay::{Replay, ReplayGuard};
use super::secret::SecretString;
use super::sign::verify_hmac_sha256_hex;
use super::slack_identity::{IdentitySource, SlackIdentities};
use crate::crd::GateKind;
use crate::notify::mrkdwn::{code, escape};
use crate::rollout::text::one_line;

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
    #[error("request already received")]
    Replayed,
    #[error("malformed payload: {0}")]
    BadPayload(String),
}

impl SlackError {
    pub fn category(&self) -> &'static str {
        match self {
            SlackError::MissingHeader(_) | SlackError::BadTimestamp => "malformed",
            SlackError::Expired => "expired",
            SlackError::BadSignature => "bad_signature",
            SlackError::Replayed => "replayed",
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

/// A payload that does not parse: serde's reason, which may quote the input, bounded.
fn bad_payload(e: impl std::fmt::Display) -> SlackError {
    SlackError::BadPayload(one_line(&e.to_string(), 200))
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

/// Longest revision a button may name.
const REVISION_MAX: usize = 128;

/// Slack's limit on a button's value.
const BUTTON_VALUE_MAX: usize = 2000;

/// The `value` of an Approve/Reject button (JSON, well under Slack's 2000 characters
/// for Kubernetes-sized names). Slack shows it nowhere; the handler parses it
/// strictly and authorizes what it names, so it grants nothing by itself.
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

/// Namespace, name and gate passage from a button value; the names must be
/// Kubernetes names (nothing else is ever echoed back or looked up).
pub fn parse_button_value(value: &str) -> Result<(String, String, GateRef), SlackError> {
    let v: ButtonValue = serde_json::from_str(value).map_err(bad_payload)?;
    if !super::api::valid_name(&v.ns) || !super::api::valid_name(&v.name) {
        return Err(SlackError::BadPayload(
            "namespace and name must be DNS-1123 names".into(),
        ));
    }
    // serin writes revisions of a few characters; the reply quotes this one.
    if v.rev.is_empty() || v.rev.len() > REVISION_MAX || v.rev.chars().any(char::is_control) {
        return Err(SlackError::BadPayload(format!(
            "revision must be 1 to {REVISION_MAX} printable characters"
        )));
    }
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
/// The labels are fixed plain text; the Reject confirmation (mrkdwn) escapes the
/// names it shows. A value over Slack's limit gets the CLI command instead.
pub fn approval_blocks(ns: &str, name: &str, gate: &GateRef) -> Value {
    let value = button_value(ns, name, gate);
    if value.len() > BUTTON_VALUE_MAX {
        return json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("Approve with {}", code(&format!("kubectl serin approve {name} -n {ns}")))}]});
    }
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
                "text": {"type": "mrkdwn", "text": format!("Revision {} of {} will be rolled back.",
                    code(&gate.revision), code(&format!("{ns}/{name}")))},
                "confirm": {"type": "plain_text", "text": "Reject"},
                "deny": {"type": "plain_text", "text": "Cancel"}}}
        ]
    })
}

/// What the Slack handler needs.
#[derive(Clone)]
pub struct SlackState {
    /// The controller's client: it writes the record once the mapped identity is
    /// authorized.
    pub client: Client,
    /// SubjectAccessReviews for the mapped identity.
    pub auth: Arc<dyn Authenticator>,
    pub signing_secret: SecretString,
    /// Slack user id -> Kubernetes identity.
    pub identities: IdentitySource,
    /// Outgoing client for `response_url`; each call also has `response_timeout`.
    pub http: reqwest::Client,
    pub response_timeout: Duration,
    /// `response_url` must start with this (Slack's is `https://hooks.slack.com/`), so a
    /// signed-but-odd payload cannot make the controller call elsewhere.
    pub response_url_prefix: String,
    /// Per client address, before the signature is checked (Slack's own addresses
    /// carry every click, so this one is generous).
    pub ip_limiter: Arc<RateLimiter>,
    /// Per Slack user, once the request is verified.
    pub user_limiter: Arc<RateLimiter>,
    /// Each verified request is acted on once.
    pub replay: Arc<ReplayGuard>,
}

impl SlackState {
    pub fn new(
        client: Client,
        auth: Arc<dyn Authenticator>,
        signing_secret: SecretString,
        identities: IdentitySource,
    ) -> Self {
        Self {
            client,
            auth,
            signing_secret,
            identities,
            http: reqwest::Client::new(),
            response_timeout: Duration::from_secs(5),
            response_url_prefix: "https://hooks.slack.com/".into(),
            ip_limiter: Arc::new(RateLimiter::new(RateLimit {
                burst: 100,
                per_second: 20.0,
            })),
            user_limiter: Arc::new(RateLimiter::new(RateLimit::default())),
            // Twice the window: a timestamp that old can no longer pass the check.
            replay: Arc::new(ReplayGuard::new(2 * SLACK_MAX_SKEW_SECS, 10_000)),
        }
    }
}

/// `POST /slack/interactions`, merged into the controller's API server.
pub fn slack_router(state: SlackState) -> Router {
    Router::new()
        .route("/slack/interactions", post(interactions))
        .layer(middleware::from_fn_with_state(state.clone(), limit_by_ip))
        .with_state(state)
}

fn too_many(wait: Duration) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": "rate_limited", "message": "too many requests; slow down"})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

async fn limit_by_ip(State(state): State<SlackState>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "slack-ip:unknown".to_string(),
            |c| format!("slack-ip:{}", c.0.ip()),
        );
    match state.ip_limiter.check(&key) {
        Ok(()) => next.run(req).await,
        Err(wait) => too_many(wait),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Payload {
    #[serde(rename = "type")]
    type_: String,
    user: SlackUser,
    #[serde(default)]
    team: Option<SlackTeam>,
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
struct SlackTeam {
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

pub(crate) fn parse_payload(body: &[u8]) -> Result<Payload, SlackError> {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(bad_payload)?;
    let raw = form
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or_else(|| SlackError::BadPayload("no payload field".into()))?;
    serde_json::from_str(&raw).map_err(bad_payload)
}

async fn interactions(
    State(state): State<SlackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let verified = header(&headers, "x-slack-request-timestamp").and_then(|ts| {
        let sig = header(&headers, "x-slack-signature")?;
        verify_slack_signature(
            state.signing_secret.expose().as_bytes(),
            ts,
            sig,
            &body,
            now,
        )?;
        // Verified, so the timestamp parses.
        let ts: i64 = ts.trim().parse().map_err(|_| SlackError::BadTimestamp)?;
        // Full: more genuine requests within the window than it holds; refusing is
        // the safe side (Slack shows the user an error, nothing is decided twice).
        state
            .replay
            .admit(sig, ts, now)
            .map_err(|(Replay::Seen | Replay::Full)| SlackError::Replayed)
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
    let team = payload.team.as_ref().map_or("", |t| t.id.as_str());
    if let Err(wait) = state
        .user_limiter
        .check(&format!("slack-user:{team}/{}", payload.user.id))
    {
        return too_many(wait);
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

/// What a verified click asks for, read without any call: who it is (as mapped), the
/// verb and the exact gate passage.
pub(crate) struct Click<'a> {
    pub(crate) slack_id: &'a str,
    pub(crate) user: &'a UserInfo,
    pub(crate) verb: Verb,
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) gate: GateRef,
}

/// Longest Slack user ID quoted back (real ones are about 11 characters).
const SLACK_ID_QUOTED_MAX: usize = 32;

/// Read a click from `payload`; `Err` is the text to answer the user with.
pub(crate) fn read_click<'a>(
    payload: &'a Payload,
    identities: &'a SlackIdentities,
) -> Result<Click<'a>, String> {
    let slack_id = payload.user.id.as_str();
    let team = payload.team.as_ref().map(|t| t.id.as_str());
    let Some(user) = identities.lookup(team, slack_id) else {
        tracing::warn!(slack_user = %one_line(slack_id, SLACK_ID_QUOTED_MAX),
            "Slack user not mapped to a Kubernetes identity");
        return Err(format!(
            "Your Slack user ({}) is not mapped to a Kubernetes identity, so you cannot \
             approve releases from Slack. Ask the serin administrators to add you to the \
             Slack identity mapping, or use `kubectl serin`.",
            escape(&one_line(slack_id, SLACK_ID_QUOTED_MAX))
        ));
    };
    let Some(action) = payload
        .actions
        .iter()
        .find(|a| a.action_id == ACTION_APPROVE || a.action_id == ACTION_REJECT)
    else {
        return Err("Unknown action.".into());
    };
    let verb = if action.action_id == ACTION_APPROVE {
        Verb::Approve
    } else {
        Verb::Reject
    };
    let (ns, name, gate) = action
        .value
        .as_deref()
        .ok_or_else(|| SlackError::BadPayload("button without value".into()))
        .and_then(parse_button_value)
        .map_err(|e| format!("Malformed button: {}", escape(&e.to_string())))?;
    Ok(Click {
        slack_id,
        user,
        verb,
        ns,
        name,
        gate,
    })
}

async fn decide(state: &SlackState, payload: &Payload) -> Value {
    let identities = state.identities.current().await;
    let Click {
        slack_id,
        user,
        verb,
        ns,
        name,
        gate,
    } = match read_click(payload, &identities) {
        Ok(click) => click,
        Err(text) => return ephemeral(text),
    };
    let what = code(&format!("{ns}/{name}"));
    let check = ResourceCheck::for_action(&ns, &name, Some(verb));
    match state.auth.authorize(user, &check).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(slack_user = %slack_id, user = %user.username, namespace = %ns,
                name = %name, "Slack decision denied by RBAC");
            return ephemeral(format!(
                "You ({}) may not {} {what}: that needs RBAC {} in namespace {}.",
                escape(&user.username),
                verb.as_str(),
                code(&check.describe()),
                code(&ns)
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "SubjectAccessReview for a Slack decision failed");
            return ephemeral(format!(
                "Could not check your permission to {} {what}; try again later.",
                verb.as_str()
            ));
        }
    }
    let actor = format!("{} (slack:{slack_id})", user.username);
    let decision = DecisionRequest {
        expect: Some(gate.clone()),
        approver: Some(super::Approver {
            username: user.username.clone(),
            groups: user.groups.clone(),
        }),
        ..DecisionRequest::new(verb)
    };
    match apply_decision(&state.client, &ns, &name, &decision, &actor, Via::Slack).await {
        Ok(outcome) => {
            let icon = if verb == Verb::Approve {
                ":white_check_mark:"
            } else {
                ":x:"
            };
            let text = format!(
                "{icon} {what}: {} (revision {}, step {})",
                escape(&outcome.message),
                code(&gate.revision),
                gate.step
            );
            json!({
                "replace_original": true,
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
            })
        }
        Err(e) => {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "Slack decision failed");
            ephemeral(format!(
                "Could not {} {what}: {}",
                verb.as_str(),
                escape(&e.to_string())
            ))
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
