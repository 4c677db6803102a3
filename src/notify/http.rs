use std::time::Duration;

use async_trait::async_trait;

use super::render::{generic_json, slack_message, teams_card};
use super::{Notifier, NotifyError, NotifyEvent};
use crate::crd::{NotifierSpec, NotifierType, Severity};
use crate::gates::SecretString;

/// Slack, Teams or generic webhook delivery over HTTP.
#[derive(Debug, Clone)]
pub struct HttpNotifier {
    key: String,
    kind: NotifierType,
    url: SecretString,
    channel: Option<String>,
    min_severity: Severity,
    canaries: Vec<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl HttpNotifier {
    /// From a Notifier spec and its Secret's URL. `key` names it (e.g.
    /// `Notifier/shop/releases` with the Secret's resourceVersion, so a rotated URL gets
    /// a fresh worker).
    pub fn from_spec(
        key: impl Into<String>,
        spec: &NotifierSpec,
        url: SecretString,
        http: reqwest::Client,
    ) -> Self {
        Self {
            key: key.into(),
            kind: spec.type_,
            url,
            channel: spec.channel.clone(),
            min_severity: spec.severity,
            canaries: spec.canaries.clone(),
            http,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The body this notifier posts for `event`.
    pub fn render(&self, event: &NotifyEvent) -> serde_json::Value {
        match self.kind {
            NotifierType::Slack => slack_message(event, self.channel.as_deref()),
            NotifierType::Teams => teams_card(event),
            NotifierType::Webhook => generic_json(event),
        }
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    fn key(&self) -> &str {
        &self.key
    }

    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn accepts(&self, event: &NotifyEvent) -> bool {
        event.severity >= self.min_severity
            && (self.canaries.is_empty() || self.canaries.iter().any(|c| c == &event.name))
    }

    async fn deliver(&self, event: &NotifyEvent) -> Result<(), NotifyError> {
        let body = self.render(event);
        let resp = self
            .http
            .post(self.url.expose())
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            // The URL is the secret (Slack/Teams webhook tokens live in it).
            .map_err(|e| NotifyError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(NotifyError::Status(status))
        }
    }
}
