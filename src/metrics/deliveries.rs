//! What serin sends out: webhook calls and notifications, by result.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    r#type: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    kind: &'static str,
    result: &'static str,
}

/// Outgoing webhook calls. Cloning shares the series.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    deliveries: Family<WebhookLabels, Counter>,
}

impl WebhookMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            deliveries: Family::default(),
        };
        r.register(
            "serin_webhook_deliveries",
            "Outgoing webhook calls by hook type and result (ok, rejected, error)",
            m.deliveries.clone(),
        );
        m
    }

    /// One outgoing webhook call (retries included): `ok` (2xx), `rejected` (another
    /// answer) or `error` (no answer).
    pub fn observe(&self, hook_type: &'static str, result: &'static str) {
        self.deliveries
            .get_or_create(&WebhookLabels {
                r#type: hook_type,
                result,
            })
            .inc();
    }
}

/// Notifications. Cloning shares the series.
#[derive(Clone, Debug)]
pub struct NotificationMetrics {
    deliveries: Family<NotificationLabels, Counter>,
}

impl NotificationMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            deliveries: Family::default(),
        };
        r.register(
            "serin_notification_deliveries",
            "Notifications by notifier kind and result",
            m.deliveries.clone(),
        );
        m
    }

    /// One notification outcome: `delivered`, `retried`, `failed`, `rate_limited` or
    /// `dropped` (a full queue; `kind="none"` when it was dropped before routing).
    pub fn observe(&self, kind: &'static str, result: &'static str) {
        self.deliveries
            .get_or_create(&NotificationLabels { kind, result })
            .inc();
    }
}
