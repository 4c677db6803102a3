//! Outgoing webhooks with Flagger's semantics: calls (signed, timed out, retried with
//! bounded backoff) and pure mappings from their results to the core's inputs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::record::{command_id, Via};
use super::secret::SecretString;
use super::sign::hmac_sha256_hex;
use crate::crd::{
    Approval, CanaryPhase, CanarySpec, CanaryStatus, Command, CommandKind, GateKind, GatesSpec,
    MetricStatus, MetricVerdict, WebhookSpec, WebhookType,
};
use crate::metrics::WebhookMetrics;
use crate::rollout::{Note, NoteType};

/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Serin-Signature";

/// The JSON body every hook receives.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WebhookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub revision: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub metadata: BTreeMap<String, String>,
}

impl WebhookPayload {
    pub fn new(ns: &str, name: &str, status: &CanaryStatus, hook: &WebhookSpec) -> Self {
        Self {
            name: name.into(),
            namespace: ns.into(),
            phase: status.phase.as_str().into(),
            revision: status
                .canary_revision
                .clone()
                .or_else(|| status.stable_revision.clone())
                .unwrap_or_default(),
            type_: hook.type_.as_str().into(),
            metadata: hook.metadata.clone(),
        }
    }

    /// For `event` hooks: the note rides in the metadata, as in Flagger.
    pub fn for_note(
        ns: &str,
        name: &str,
        status: &CanaryStatus,
        hook: &WebhookSpec,
        note: &Note,
    ) -> Self {
        let mut p = Self::new(ns, name, status, hook);
        p.metadata
            .insert("eventMessage".into(), note.message.clone());
        p.metadata
            .insert("eventReason".into(), note.reason.as_str().into());
        let t = match note.type_ {
            NoteType::Normal => "Normal",
            NoteType::Warning => "Warning",
        };
        p.metadata.insert("eventType".into(), t.into());
        p
    }
}

/// What one hook answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookResult {
    pub name: String,
    pub type_: WebhookType,
    /// The last HTTP status, if any answer came.
    pub status: Option<u16>,
    pub attempts: u32,
    /// Transport error or bad configuration.
    pub error: Option<String>,
}

impl HookResult {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The HTTP status and a fixed text: never the receiver's body.
    fn describe(&self) -> String {
        match (&self.status, &self.error) {
            (Some(s @ 300..=399), _) => format!(
                "HTTP {s} after {} attempt(s): a redirect, and redirects are not followed; set the hook's url to where it redirects",
                self.attempts
            ),
            (Some(s), _) => format!("HTTP {s} after {} attempt(s)", self.attempts),
            (None, Some(e)) => format!("{e} after {} attempt(s)", self.attempts),
            (None, None) => "no answer".into(),
        }
    }
}

/// `sha256=<hex>` for the signature header.
pub fn sign_body(secret: &SecretString, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hmac_sha256_hex(secret.expose().as_bytes(), &[body])
    )
}

/// Calls hooks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WebhookCaller {
    http: reqwest::Client,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Counts every call as `serin_webhook_deliveries_total`.
    metrics: Option<WebhookMetrics>,
}

impl WebhookCaller {
    /// With its own HTTP client, which follows no redirect: a hook's signed payload
    /// goes to its url and nowhere else. Each call has the hook's own timeout.
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            metrics: None,
        })
    }

    /// Count deliveries in `metrics`.
    pub fn with_metrics(mut self, metrics: WebhookMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// POST `payload` to `hook`, retrying transport errors, 5xx and 429.
    pub async fn call(
        &self,
        hook: &WebhookSpec,
        secret: Option<&SecretString>,
        payload: &WebhookPayload,
    ) -> HookResult {
        let result = self.deliver(hook, secret, payload).await;
        if let Some(m) = &self.metrics {
            let outcome = match result.status {
                _ if result.ok() => "ok",
                Some(_) => "rejected",
                None => "error",
            };
            m.observe(hook.type_.as_str(), outcome);
        }
        result
    }

    async fn deliver(
        &self,
        hook: &WebhookSpec,
        secret: Option<&SecretString>,
        payload: &WebhookPayload,
    ) -> HookResult {
        let mut result = HookResult {
            name: hook.name.clone(),
            type_: hook.type_,
            status: None,
            attempts: 0,
            error: None,
        };
        // Over a cap is a configuration error (validated before any call), never lowered.
        let limits = match hook.limits(0) {
            Ok(l) => l,
            Err(e) => {
                result.error = Some(e.to_string());
                return result;
            }
        };
        let timeout = limits.timeout;
        let body = match serde_json::to_vec(payload) {
            Ok(b) => b,
            Err(e) => {
                result.error = Some(format!("cannot encode payload: {e}"));
                return result;
            }
        };
        let signature = secret.map(|s| sign_body(s, &body));
        let attempts = limits.attempts;
        let mut backoff = self.base_backoff;
        for attempt in 1..=attempts {
            result.attempts = attempt;
            let mut req = self
                .http
                .post(&hook.url)
                .timeout(timeout)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(sig) = &signature {
                req = req.header(SIGNATURE_HEADER, sig);
            }
            let retry = match req.send().await {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    result.status = Some(code);
                    result.error = None;
                    code >= 500 || code == 429
                }
                Err(e) => {
                    result.status = None;
                    // The URL may carry a token: keep it out of status and logs.
                    result.error = Some(e.without_url().to_string());
                    true
                }
            };
            if !retry || attempt == attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
        if !result.ok() {
            tracing::info!(hook = %hook.name, kind = hook.type_.as_str(), outcome = %result.describe(),
                "webhook did not answer 2xx");
        }
        result
    }

    /// Informational hooks (event, post-rollout) in the background: never waited on.
    pub fn spawn_informational(
        &self,
        hook: WebhookSpec,
        secret: Option<SecretString>,
        payload: WebhookPayload,
    ) -> tokio::task::JoinHandle<HookResult> {
        let caller = self.clone();
        tokio::spawn(async move { caller.call(&hook, secret.as_ref(), &payload).await })
    }
}

/// The gate a confirm hook holds.
pub fn gate_of(kind: WebhookType) -> Option<GateKind> {
    match kind {
        WebhookType::ConfirmRollout => Some(GateKind::BeforeRollout),
        WebhookType::ConfirmTrafficIncrease => Some(GateKind::BeforeTrafficIncrease),
        WebhookType::ConfirmPromotion => Some(GateKind::BeforePromotion),
        _ => None,
    }
}

/// Gates to build the release plan with: a confirm hook closes its gate like a human
/// gate does (either an approval or the hook's 2xx opens it).
pub fn effective_gates(spec: &CanarySpec) -> GatesSpec {
    let has = |g: GateKind| spec.webhooks.iter().any(|h| gate_of(h.type_) == Some(g));
    GatesSpec {
        before_rollout: spec.gates.before_rollout || has(GateKind::BeforeRollout),
        before_traffic_increase: spec.gates.before_traffic_increase
            || has(GateKind::BeforeTrafficIncrease),
        before_promotion: spec.gates.before_promotion || has(GateKind::BeforePromotion),
        approval_timeout: spec.gates.approval_timeout.clone(),
    }
}

/// The confirm hooks to call now: those of the gate the release waits at.
pub fn pending_confirm_kind(status: &CanaryStatus) -> Option<WebhookType> {
    if status.phase != CanaryPhase::WaitingApproval {
        return None;
    }
    match status.pending_gate? {
        GateKind::BeforeRollout => Some(WebhookType::ConfirmRollout),
        GateKind::BeforeTrafficIncrease => Some(WebhookType::ConfirmTrafficIncrease),
        GateKind::BeforePromotion => Some(WebhookType::ConfirmPromotion),
    }
}

/// Approvals for the pending gate when every confirm hook of it answered 2xx; add them
/// to `Observation::approvals`. Anything but 2xx from any of them means wait: none.
pub fn gate_approvals_from_confirm_hooks(
    results: &[HookResult],
    status: &CanaryStatus,
    now: DateTime<Utc>,
) -> Vec<Approval> {
    let Some(kind) = pending_confirm_kind(status) else {
        return vec![];
    };
    let Some(gate) = gate_of(kind) else {
        return vec![];
    };
    let relevant: Vec<&HookResult> = results.iter().filter(|r| r.type_ == kind).collect();
    if relevant.is_empty() || !relevant.iter().all(|r| r.ok()) {
        return vec![];
    }
    let revision = status.canary_revision.clone().unwrap_or_default();
    let names: Vec<&str> = relevant.iter().map(|r| r.name.as_str()).collect();
    vec![Approval {
        id: Approval::key(gate, &revision, status.current_step),
        gate,
        revision,
        step: status.current_step,
        approved: true,
        by: format!("webhook:{}", names.join(",")),
        via: Via::Webhook.as_str().into(),
        at: now,
        groups: Vec::new(),
    }]
}

/// An abort when a rollback hook answered 2xx during a release in flight; add it to
/// `Observation::commands`.
pub fn rollback_requested(
    results: &[HookResult],
    status: &CanaryStatus,
    now: DateTime<Utc>,
) -> Option<Command> {
    if !matches!(
        status.phase,
        CanaryPhase::Progressing | CanaryPhase::WaitingApproval
    ) {
        return None;
    }
    let hook = results
        .iter()
        .find(|r| r.type_ == WebhookType::Rollback && r.ok())?;
    let revision = status.canary_revision.clone()?;
    Some(Command {
        id: command_id(CommandKind::Abort, &revision, status.release_started_at),
        kind: CommandKind::Abort,
        revision,
        by: format!("webhook:{}", hook.name),
        via: Via::Webhook.as_str().into(),
        at: now,
    })
}

/// pre-rollout and rollout results as metric verdicts, to merge into the check's
/// `AnalysisReport::metrics`: non-2xx is a failed check.
pub fn hook_checks(results: &[HookResult], now: DateTime<Utc>) -> Vec<MetricStatus> {
    results
        .iter()
        .filter(|r| matches!(r.type_, WebhookType::PreRollout | WebhookType::Rollout))
        .map(|r| MetricStatus {
            points: Vec::new(),
            name: format!("webhook/{}", r.name),
            value: r.status.map(f64::from),
            baseline: None,
            effect: None,
            p_value: None,
            interval_low: None,
            interval_high: None,
            verdict: if r.ok() {
                MetricVerdict::Pass
            } else {
                MetricVerdict::Fail
            },
            reason: format!("{} webhook {}: {}", r.type_.as_str(), r.name, r.describe()),
            dry_run: false,
            consecutive_errors: 0,
            sequential: None,
            checked_at: now,
        })
        .collect()
}

#[cfg(test)]
#[path = "webhooks_tests.rs"]
mod tests;
