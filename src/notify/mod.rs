//! Notifications: one message per release transition to Slack (Block Kit), Microsoft
//! Teams (Adaptive Card) or any JSON endpoint, delivered from a bounded background
//! queue so a receiver that is down never blocks or slows a release.

mod event;
mod http;
pub mod mrkdwn;
mod queue;
mod registry;
mod render;

pub use event::NotifyEvent;
pub use http::HttpNotifier;
pub use queue::{
    notifier_queue, notifier_queue_with_metrics, NotifyHandle, NotifyStats, QueueConfig,
    StatsSnapshot,
};
pub use registry::{NotifierRegistry, NotifierSource, ScopedNotifier};
pub use render::{generic_json, slack_message, teams_card};

pub use crate::crd::Severity;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NotifyError {
    #[error("receiver answered HTTP {0}")]
    Status(u16),
    #[error("receiver unreachable: {0}")]
    Transport(String),
    #[error("cannot encode the message: {0}")]
    Encode(String),
}

impl NotifyError {
    pub fn category(&self) -> &'static str {
        match self {
            NotifyError::Status(_) => "http_status",
            NotifyError::Transport(_) => "transport",
            NotifyError::Encode(_) => "encode",
        }
    }

    /// Worth another attempt: transport trouble, 5xx, 429.
    pub fn retryable(&self) -> bool {
        match self {
            NotifyError::Status(s) => *s >= 500 || *s == 429,
            NotifyError::Transport(_) => true,
            NotifyError::Encode(_) => false,
        }
    }
}

/// A place notifications go.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Stable identity (e.g. `Notifier/shop/slack-releases`): ordering, deduplication
    /// and the rate cap are per key.
    fn key(&self) -> &str;
    /// Bounded kind for metrics labels (`slack`, `teams`, `webhook`, ...).
    fn kind(&self) -> &'static str {
        "other"
    }
    /// Whether this notifier wants `event` (severity filter, canary filter).
    fn accepts(&self, event: &NotifyEvent) -> bool;
    /// One attempt, bounded by the notifier's own timeout.
    async fn deliver(&self, event: &NotifyEvent) -> Result<(), NotifyError>;
}
