use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the Canary's (or Notifier's) namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// When an outgoing webhook is called and what its answer means (Flagger's semantics).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookType {
    /// Before any traffic reaches the canary; non-2xx counts as a failed check.
    PreRollout,
    /// At every check; non-2xx counts as a failed check.
    Rollout,
    /// Before the release starts; anything but 2xx means wait.
    ConfirmRollout,
    /// Before each traffic increase; anything but 2xx means wait.
    ConfirmTrafficIncrease,
    /// Before promotion; anything but 2xx means wait.
    ConfirmPromotion,
    /// After a promotion or a rollback; informational.
    PostRollout,
    /// During the release; 2xx means roll back now.
    Rollback,
    /// Every event of the release; informational.
    Event,
}

impl WebhookType {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookType::PreRollout => "pre-rollout",
            WebhookType::Rollout => "rollout",
            WebhookType::ConfirmRollout => "confirm-rollout",
            WebhookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            WebhookType::ConfirmPromotion => "confirm-promotion",
            WebhookType::PostRollout => "post-rollout",
            WebhookType::Rollback => "rollback",
            WebhookType::Event => "event",
        }
    }
}

/// An outgoing webhook of a Canary.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Unique within the Canary; named in status and Events.
    pub name: String,
    #[serde(rename = "type")]
    pub type_: WebhookType,
    /// http(s) URL the JSON payload is POSTed to.
    pub url: String,
    /// Per attempt (humantime, e.g. "10s").
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Extra attempts after a transport error or a 5xx, with exponential backoff.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Passed to the receiver as `metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// HMAC key for the `X-Serin-Signature` header; unsigned when unset. The Secret
    /// must carry the label `serin.dev/credentials: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

fn default_timeout() -> String {
    "10s".into()
}
fn default_retries() -> u32 {
    2
}
