//! Gates: the one way a human (or a webhook) moves a waiting release, reached through
//! the CLI, the HTTP API and Slack buttons alike, plus the outgoing webhooks.
//!
//! Every door ends in [`apply_decision`], run by the controller once the caller is
//! authorized for exactly that action (a SubjectAccessReview on a virtual subresource
//! of the Canary): one status record of who decided what, when and how, written under
//! the approver field manager with the resourceVersion it was planned from, so two
//! decisions at once never both land; records are pruned to the current release plus
//! a short history as they are written.
//!
//! The same API registers releases from CI ([`register_release`]): new images for a
//! Canary's Deployment, written under their own field manager once the caller may
//! `create` on `canaries/release`.

mod api;
mod auth;
mod error;
mod hook_runs;
mod image_ref;
mod openapi;
mod policy_records;
mod ratelimit;
mod record;
mod register;
mod replay;
mod runner;
mod secret;
mod server;
mod sign;
mod slack;
mod slack_identity;
#[cfg(test)]
pub(crate) mod testrecv;
#[cfg(test)]
mod tests;
mod webhooks;
mod wiring;

pub(crate) use api::valid_name;
pub use api::{api_router, ApiState};
pub(crate) use api::{bearer, check_names, decision_of, parse_verb};
pub use auth::{
    access_review, reviewed_user, Authenticator, KubeAuthenticator, ResourceCheck, UserInfo,
    DEFAULT_API_AUDIENCE, RELEASE_SUBRESOURCE,
};
pub use error::GateError;
pub use hook_runs::{
    plan_hooks, wanted_passage, HookInput, HookPlan, HookStart, Polled, HOOK_ERROR_MAX_CHARS,
};
pub use image_ref::{parse_image_ref, ImageRef, ImageRefError, IMAGE_REF_FORMAT};
pub use openapi::openapi_document;
pub use policy_records::pending_passage;
pub use ratelimit::{RateLimit, RateLimiter};
pub use record::{
    apply_decision, bounded_records, command_id, plan_decision, records_patch, Approver,
    DecisionRequest, GateRef, Outcome, OverrideRequest, Planned, Verb, Via, ACTION_RBAC_VERB,
    APPROVER_FIELD_MANAGER, CURRENT_RECORDS_MAX, RECORD_HISTORY,
};
pub use register::{
    plan_release, register_release, release_owned_containers, Registered, ReleasePlan,
    ReleaseRequest, RELEASE_FIELD_MANAGER, RELEASE_IMAGES_MAX, RELEASE_REASON_MAX_CHARS,
};
pub use replay::{Replay, ReplayGuard};
pub use runner::{HookClock, HookRunner, HOOK_CALLS_IN_FLIGHT};
pub use secret::SecretString;
pub use server::{certified_key, serve_api, ApiTransport, ServeError, TlsFiles};
pub use sign::{hmac_sha256_hex, verify_hmac_sha256_hex};
pub use slack::{
    approval_blocks, button_value, parse_button_value, slack_router, verify_slack_signature,
    SlackError, SlackState, ACTION_APPROVE, ACTION_REJECT, SLACK_MAX_SKEW_SECS,
};
pub(crate) use slack::{parse_payload, read_click};
pub use slack_identity::{IdentityError, IdentitySource, SlackIdentities};
pub use webhooks::{
    effective_gates, gate_approvals_from_confirm_hooks, gate_of, hook_checks, pending_confirm_kind,
    rollback_requested, sign_body, HookResult, WebhookCaller, WebhookPayload, SIGNATURE_HEADER,
};
pub use wiring::{ApiOptions, ApiServer};

/// A Canary waiting (or not) at a gate, as the gate tests read it.
#[cfg(test)]
pub(crate) fn test_canary_json(phase: &str, gate: Option<&str>) -> serde_json::Value {
    record::tests::canary_json(phase, gate)
}
