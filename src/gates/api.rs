//! The approval HTTP API: JSON over axum, Kubernetes bearer tokens (TokenReview for
//! the API's own audience), RBAC via SubjectAccessReview.
//!
//! Every action needs `create` on one virtual subresource of the Canary
//! (`canaries/approve` for approve and reject, `canaries/abort`, `canaries/retry`,
//! `canaries/pause` for pause and resume; [`ResourceCheck::for_action`]); registering
//! a release needs `create` on `canaries/release` (`super::register`); reading needs
//! `get` on `canaries`. `kubectl serin` calls this API too, so one Role serves every
//! door, and it grants the action only: the controller writes the record.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::Client;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Authenticator, ResourceCheck, UserInfo};
use super::ratelimit::RateLimiter;
use super::record::{
    apply_decision, canary_view, get_canary, Approver, DecisionRequest, GateRef, OverrideRequest,
    Verb, Via,
};
use super::GateError;
use crate::rollout::text::one_line;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The controller's client: it writes the records once the caller is authorized.
    pub client: Client,
    pub auth: Arc<dyn Authenticator>,
    pub limiter: Arc<RateLimiter>,
}

/// The API as a Router the controller mounts. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so rate limiting sees the
/// client address (without it all anonymous callers share one bucket).
pub fn api_router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/namespaces/{ns}/canaries/{name}", get(get_one))
        // A literal segment wins over `{action}`: `release` is not a decision verb.
        .route(
            "/api/v1/namespaces/{ns}/canaries/{name}/release",
            post(super::register::release),
        )
        .route(
            "/api/v1/namespaces/{ns}/canaries/{name}/{action}",
            post(act),
        )
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(state.clone(), limit_by_ip))
        .with_state(state)
}

/// An error answer: `{error, message}` with the matching status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            retry_after: None,
        }
    }

    /// What the caller is told (the JSON body's `message`).
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn rate_limited(wait: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        e
    }
}

impl From<GateError> for ApiError {
    fn from(e: GateError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &e {
            // Upstream details may name internal endpoints; keep them in logs.
            GateError::Kube(inner) => {
                tracing::warn!(error = %inner, "kubernetes API call failed");
                "the Kubernetes API call failed".to_string()
            }
            other => other.to_string(),
        };
        Self::new(status, e.category(), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

async fn limit_by_ip(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "ip:unknown".to_string(), |c| format!("ip:{}", c.0.ip()));
    match state.limiter.check(&key) {
        Ok(()) => next.run(req).await,
        Err(wait) => ApiError::rate_limited(wait).into_response(),
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauth = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauth("missing Authorization: Bearer <token>"))?;
    let value = value
        .to_str()
        .map_err(|_| unauth("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauth("malformed Authorization header"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauth("expected Authorization: Bearer <token>"));
    }
    Ok(token)
}

/// A review the controller could not get answered is its own trouble (e.g. missing
/// `system:auth-delegator`), never the caller's 401/403.
fn review_failed(e: GateError) -> ApiError {
    tracing::warn!(error = %e, "TokenReview/SubjectAccessReview failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "cannot review the request with the Kubernetes API; try again later",
    )
}

/// Authenticate, rate limit per user, authorize `check`.
pub(super) async fn admit(
    state: &ApiState,
    headers: &HeaderMap,
    check: ResourceCheck,
) -> Result<UserInfo, ApiError> {
    let token = bearer(headers)?;
    let user = state
        .auth
        .authenticate(token)
        .await
        .map_err(review_failed)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the bearer token is not valid",
            )
        })?;
    state
        .limiter
        .check(&format!("user:{}", user.username))
        .map_err(ApiError::rate_limited)?;
    if !state
        .auth
        .authorize(&user, &check)
        .await
        .map_err(review_failed)?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may not do this to canary {}/{}: it needs RBAC {}",
                user.username,
                check.namespace,
                check.name,
                check.describe()
            ),
        ));
    }
    Ok(user)
}

/// A DNS-1123 subdomain (namespace and Canary names are stricter, this is the bound).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn check_names(ns: &str, name: &str) -> Result<(), ApiError> {
    if valid_name(ns) && valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "namespace and name must be DNS-1123 names",
        ))
    }
}

async fn get_one(
    State(state): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_names(&ns, &name)?;
    admit(
        &state,
        &headers,
        ResourceCheck::for_action(&ns, &name, None),
    )
    .await?;
    let canary = get_canary(&state.client, &ns, &name).await?;
    Ok(Json(canary_view(&canary)).into_response())
}

/// Optional body of an action: the gate passage the caller saw, so a stale view
/// cannot approve a later gate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    gate: Option<crate::crd::GateKind>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    step: Option<i32>,
    /// Override only: why (required).
    #[serde(default)]
    reason: Option<String>,
    /// Override only: how long (humantime); absent: until the release ends.
    #[serde(default, rename = "for")]
    for_: Option<String>,
}

/// The action named by the last path segment.
pub(crate) fn parse_verb(action: &str) -> Result<Verb, ApiError> {
    Verb::parse(action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown action {:?}", one_line(action, 64)),
        )
    })
}

/// The decision an action's `body` asks for: optional, and only approve and reject
/// name a gate passage.
pub(crate) fn decision_of(verb: Verb, body: &[u8]) -> Result<DecisionRequest, ApiError> {
    let invalid = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    let (expect, emergency) = parse_body(body)?;
    if expect.is_some() && !matches!(verb, Verb::Approve | Verb::Reject) {
        return Err(invalid(
            "gate, revision and step apply to approve and reject only",
        ));
    }
    match (verb, &emergency) {
        (Verb::Override, None) => return Err(invalid(
            "an override needs a reason: {\"reason\": \"why\", \"for\": \"2h\"} (for is optional)",
        )),
        (Verb::Override, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid("reason and for apply to override only")),
    }
    Ok(DecisionRequest {
        expect,
        emergency,
        ..DecisionRequest::new(verb)
    })
}

fn parse_body(body: &[u8]) -> Result<(Option<GateRef>, Option<OverrideRequest>), ApiError> {
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    // serde's reason may quote the body: bounded.
    let b: ActionBody = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "invalid JSON body: {}",
            one_line(&e.to_string(), 200)
        ))
    })?;
    let expect = match (b.gate, b.revision, b.step) {
        (None, None, None) => None,
        (Some(gate), Some(revision), Some(step)) => Some(GateRef {
            gate,
            revision,
            step,
        }),
        _ => {
            return Err(invalid(
                "gate, revision and step go together: give all three or none".into(),
            ))
        }
    };
    let duration = match &b.for_ {
        None => None,
        Some(d) => Some(humantime::parse_duration(d.trim()).map_err(|e| {
            invalid(format!(
                "for: {:?} is not a duration ({e}): use e.g. \"30m\" or \"2h\"",
                one_line(d, 64)
            ))
        })?),
    };
    let emergency = match (b.reason, duration) {
        (Some(reason), duration) => Some(OverrideRequest { reason, duration }),
        (None, Some(_)) => return Err(invalid("for needs a reason".into())),
        (None, None) => None,
    };
    Ok((expect, emergency))
}

async fn act(
    State(state): State<ApiState>,
    Path((ns, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let verb = parse_verb(&action)?;
    check_names(&ns, &name)?;
    let user = admit(
        &state,
        &headers,
        ResourceCheck::for_action(&ns, &name, Some(verb)),
    )
    .await?;
    let mut decision = decision_of(verb, &body)?;
    decision.approver = Some(Approver {
        username: user.username.clone(),
        groups: user.groups.clone(),
    });
    let outcome = apply_decision(
        &state.client,
        &ns,
        &name,
        &decision,
        &user.username,
        Via::Api,
    )
    .await?;
    tracing::info!(namespace = %ns, name = %name, verb = verb.as_str(), user = %user.username,
        changed = outcome.changed, "gate decision via API");
    Ok(Json(outcome).into_response())
}

async fn openapi() -> Response {
    Json(super::openapi::openapi_document()).into_response()
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
