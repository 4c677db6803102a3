use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
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
    /// Per attempt (humantime, e.g. "10s"), at most 5m.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Extra attempts after a transport error or a 5xx, with exponential backoff; at
    /// most 5.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 5))]
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

/// Longest time one attempt of a hook may take.
pub const WEBHOOK_MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Most extra attempts a hook may make.
pub const WEBHOOK_MAX_RETRIES: u32 = 5;

/// A webhook in `spec.webhooks` that serin will not call, with the field, the value
/// given and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSpecError {
    #[error("spec.webhooks[{index}].name is empty: every webhook needs a name (it is shown in status and Events)")]
    NoName { index: usize },
    #[error("spec.webhooks[{index}].name {name:?} is used twice: each webhook needs its own name")]
    DuplicateName { index: usize, name: String },
    #[error("spec.webhooks[{index}].url {url:?} of webhook {name:?} is not an http(s) URL; accepted: e.g. http://loadtester.test/")]
    Url {
        index: usize,
        name: String,
        url: String,
    },
    #[error("spec.webhooks[{index}].timeout {given:?} of webhook {name:?} is not a duration; accepted: a duration from 1ms to {max}, e.g. \"10s\"")]
    Timeout {
        index: usize,
        name: String,
        given: String,
        max: String,
    },
    #[error("spec.webhooks[{index}].timeout {given:?} of webhook {name:?} is over the limit; accepted: a duration from 1ms to {max} per attempt (use retries for more attempts)")]
    TimeoutOverCap {
        index: usize,
        name: String,
        given: String,
        max: String,
    },
    #[error("spec.webhooks[{index}].retries {given} of webhook {name:?} is over the limit; accepted: 0 to {max} extra attempts")]
    RetriesOverCap {
        index: usize,
        name: String,
        given: u32,
        max: u32,
    },
}

/// How one hook is called, once its spec is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookLimits {
    pub timeout: Duration,
    pub attempts: u32,
}

impl WebhookSpec {
    /// Timeout and attempts within the caps, or why not (`index` names the entry).
    pub fn limits(&self, index: usize) -> Result<HookLimits, WebhookSpecError> {
        let max = humantime::format_duration(WEBHOOK_MAX_TIMEOUT).to_string();
        let timeout = match humantime::parse_duration(self.timeout.trim()) {
            Ok(t) if !t.is_zero() => t,
            _ => {
                return Err(WebhookSpecError::Timeout {
                    index,
                    name: self.name.clone(),
                    given: self.timeout.clone(),
                    max,
                })
            }
        };
        if timeout > WEBHOOK_MAX_TIMEOUT {
            return Err(WebhookSpecError::TimeoutOverCap {
                index,
                name: self.name.clone(),
                given: self.timeout.clone(),
                max,
            });
        }
        if self.retries > WEBHOOK_MAX_RETRIES {
            return Err(WebhookSpecError::RetriesOverCap {
                index,
                name: self.name.clone(),
                given: self.retries,
                max: WEBHOOK_MAX_RETRIES,
            });
        }
        Ok(HookLimits {
            timeout,
            attempts: 1 + self.retries,
        })
    }
}

/// Every webhook of a Canary must be callable within the caps: a value over a cap is a
/// configuration error, never silently lowered.
pub fn validate_webhooks(hooks: &[WebhookSpec]) -> Result<(), WebhookSpecError> {
    for (index, h) in hooks.iter().enumerate() {
        if h.name.trim().is_empty() {
            return Err(WebhookSpecError::NoName { index });
        }
        if hooks[..index].iter().any(|o| o.name == h.name) {
            return Err(WebhookSpecError::DuplicateName {
                index,
                name: h.name.clone(),
            });
        }
        let url = h.url.trim().to_ascii_lowercase();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WebhookSpecError::Url {
                index,
                name: h.name.clone(),
                url: h.url.clone(),
            });
        }
        h.limits(index)?;
    }
    Ok(())
}

/// The latest call of one webhook that judges or gates the release (pre-rollout,
/// rollout, rollback, confirm-*), in `status.hooks`. Calls run in the background; the
/// reconcile records when one started and, later, what it answered.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    /// The webhook's name in `spec.webhooks`.
    pub name: String,
    #[serde(rename = "type")]
    pub type_: WebhookType,
    /// The revision under release when it was called.
    pub revision: String,
    /// Which call this is within the release: the check, pre-rollout round or gate it
    /// answers for (e.g. `1763805600/step-1/check-1763805720`).
    pub passage: String,
    pub started_at: DateTime<Utc>,
    /// Unset while the call runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The last HTTP status it answered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    #[serde(default)]
    pub attempts: u32,
    /// Transport error (timeout, refused) of the last attempt, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HookRun {
    pub fn running(&self) -> bool {
        self.finished_at.is_none()
    }

    /// Finished with a 2xx answer.
    pub fn ok(&self) -> bool {
        self.finished_at.is_some() && self.http_status.is_some_and(|s| (200..300).contains(&s))
    }

    /// "HTTP 503 after 3 attempt(s)", "timed out after 2 attempt(s)", "running since ...".
    pub fn describe(&self) -> String {
        match (self.finished_at, self.http_status, &self.error) {
            (None, _, _) => format!("running since {}", self.started_at.format("%H:%M:%S")),
            (Some(_), Some(s), _) => format!("HTTP {s} after {} attempt(s)", self.attempts),
            (Some(_), None, Some(e)) => format!("{e} after {} attempt(s)", self.attempts),
            (Some(_), None, None) => "no answer".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, timeout: &str, retries: u32) -> WebhookSpec {
        WebhookSpec {
            name: name.into(),
            type_: WebhookType::Rollout,
            url: "http://loadtester.test/".into(),
            timeout: timeout.into(),
            retries,
            metadata: BTreeMap::new(),
            secret_ref: None,
        }
    }

    #[test]
    fn webhook_timeout_over_the_cap_is_rejected_with_field_value_and_range() {
        let hooks = vec![hook("smoke", "10s", 2), hook("load-test", "1h", 2)];
        let e = validate_webhooks(&hooks).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.webhooks[1].timeout \"1h\" of webhook \"load-test\" is over the limit; \
             accepted: a duration from 1ms to 5m per attempt (use retries for more attempts)"
        );
        // The cap itself is accepted; one millisecond more is not.
        assert_eq!(
            hook("x", "5m", 0).limits(0),
            Ok(HookLimits {
                timeout: WEBHOOK_MAX_TIMEOUT,
                attempts: 1
            })
        );
        assert!(matches!(
            hook("x", "5m 1ms", 0).limits(0),
            Err(WebhookSpecError::TimeoutOverCap { .. })
        ));
    }

    #[test]
    fn retries_over_the_cap_and_other_bad_entries_are_named_precisely() {
        let cases: Vec<(Vec<WebhookSpec>, &str)> = vec![
            (
                vec![hook("lt", "10s", 9)],
                "spec.webhooks[0].retries 9 of webhook \"lt\" is over the limit; accepted: 0 to 5 extra attempts",
            ),
            (
                vec![hook("lt", "soon", 0)],
                "spec.webhooks[0].timeout \"soon\" of webhook \"lt\" is not a duration; accepted: a duration from 1ms to 5m, e.g. \"10s\"",
            ),
            (
                vec![hook("lt", "0s", 0)],
                "spec.webhooks[0].timeout \"0s\" of webhook \"lt\" is not a duration; accepted: a duration from 1ms to 5m, e.g. \"10s\"",
            ),
            (
                vec![hook("lt", "1s", 0), hook("lt", "1s", 0)],
                "spec.webhooks[1].name \"lt\" is used twice: each webhook needs its own name",
            ),
            (
                vec![hook(" ", "1s", 0)],
                "spec.webhooks[0].name is empty: every webhook needs a name (it is shown in status and Events)",
            ),
            (
                vec![WebhookSpec {
                    url: "loadtester.test".into(),
                    ..hook("lt", "1s", 0)
                }],
                "spec.webhooks[0].url \"loadtester.test\" of webhook \"lt\" is not an http(s) URL; accepted: e.g. http://loadtester.test/",
            ),
        ];
        for (hooks, want) in cases {
            assert_eq!(validate_webhooks(&hooks).unwrap_err().to_string(), want);
        }
        validate_webhooks(&[hook("a", "5m", 5), hook("b", "250ms", 0)]).unwrap();
    }

    #[test]
    fn the_crd_schema_caps_retries_too() {
        let schema = serde_json::to_value(schemars::schema_for!(WebhookSpec)).unwrap();
        assert_eq!(schema["properties"]["retries"]["maximum"], 5);
    }
}
