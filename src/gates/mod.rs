//! Gates: the one way a human (or a webhook) moves a waiting release, reached through
//! the CLI, the HTTP API and Slack buttons alike, plus the outgoing webhooks.
//!
//! Every door ends in [`apply_decision`]: one status record of who decided what, when
//! and how, written with server-side apply under an approver field manager so it never
//! touches the controller's fields.

mod api;
mod auth;
mod error;
mod hook_runs;
mod openapi;
mod ratelimit;
mod record;
mod runner;
mod secret;
mod sign;
mod slack;
#[cfg(test)]
pub(crate) mod testrecv;
mod webhooks;

pub use api::{api_router, ApiState};
pub use auth::{Authenticator, KubeAuthenticator, ResourceCheck, UserInfo};
pub use error::GateError;
pub use hook_runs::{
    plan_hooks, wanted_passage, HookInput, HookPlan, HookStart, Polled, HOOK_ERROR_MAX_CHARS,
};
pub use openapi::openapi_document;
pub use ratelimit::{RateLimit, RateLimiter};
pub use record::{
    apply_decision, approver_field_manager, command_id, plan_decision, status_patch, Decision,
    GateRef, Outcome, Planned, Verb, Via, APPROVER_FIELD_MANAGER,
};
pub use runner::{HookClock, HookRunner, HOOK_CALLS_IN_FLIGHT};
pub use secret::SecretString;
pub use sign::{hmac_sha256_hex, verify_hmac_sha256_hex};
pub use slack::{
    approval_blocks, button_value, parse_button_value, parse_slack_allow_list, slack_router,
    verify_slack_signature, SlackError, SlackState, ACTION_APPROVE, ACTION_REJECT,
    SLACK_MAX_SKEW_SECS,
};
pub use webhooks::{
    effective_gates, gate_approvals_from_confirm_hooks, gate_of, hook_checks, pending_confirm_kind,
    rollback_requested, sign_body, HookResult, WebhookCaller, WebhookPayload, SIGNATURE_HEADER,
};
