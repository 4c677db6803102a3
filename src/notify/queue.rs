//! The delivery queue: `send` never waits; a dispatcher filters, deduplicates and rate
//! caps; one worker per notifier delivers in order with retries, so a stalled receiver
//! delays only its own messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Notifier, NotifierSource, NotifyEvent};
use crate::gates::{RateLimit, RateLimiter};
use crate::metrics::NotificationMetrics;

#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Events waiting for the dispatcher; beyond this `send` drops.
    pub capacity: usize,
    /// Messages waiting per notifier; beyond this the dispatcher drops.
    pub per_notifier_capacity: usize,
    /// Attempts per message (first included).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Messages per minute per notifier (also the burst).
    pub per_minute: u32,
    /// How long a transition is remembered for deduplication.
    pub dedupe_ttl: Duration,
    pub dedupe_max: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            per_notifier_capacity: 128,
            max_attempts: 4,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            per_minute: 30,
            dedupe_ttl: Duration::from_secs(3600),
            dedupe_max: 10_000,
        }
    }
}

/// Counters, for the controller's metrics.
#[derive(Debug, Default)]
pub struct NotifyStats {
    pub queued: AtomicU64,
    /// `send` found the queue full (or closed).
    pub dropped_full: AtomicU64,
    /// A notifier's own queue was full.
    pub dropped_notifier_full: AtomicU64,
    pub filtered: AtomicU64,
    pub deduplicated: AtomicU64,
    pub rate_limited: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queued: u64,
    pub dropped_full: u64,
    pub dropped_notifier_full: u64,
    pub filtered: u64,
    pub deduplicated: u64,
    pub rate_limited: u64,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
}

impl NotifyStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            queued: g(&self.queued),
            dropped_full: g(&self.dropped_full),
            dropped_notifier_full: g(&self.dropped_notifier_full),
            filtered: g(&self.filtered),
            deduplicated: g(&self.deduplicated),
            rate_limited: g(&self.rate_limited),
            delivered: g(&self.delivered),
            retried: g(&self.retried),
            failed: g(&self.failed),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct NotifyHandle {
    tx: mpsc::Sender<NotifyEvent>,
    stats: Arc<NotifyStats>,
    metrics: Option<NotificationMetrics>,
}

impl NotifyHandle {
    /// Enqueue without waiting; false (and a counted drop) when the queue is full.
    pub fn send(&self, event: NotifyEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                inc(&self.stats.queued);
                true
            }
            Err(_) => {
                inc(&self.stats.dropped_full);
                // Not routed yet: no notifier kind to name.
                count(&self.metrics, "none", "dropped");
                false
            }
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// Start the queue. The task ends when every handle is dropped.
pub fn notifier_queue(
    source: Arc<dyn NotifierSource>,
    config: QueueConfig,
) -> (NotifyHandle, JoinHandle<()>) {
    start(source, config, None)
}

/// [`notifier_queue`] that also counts outcomes as `serin_notification_deliveries_total`.
pub fn notifier_queue_with_metrics(
    source: Arc<dyn NotifierSource>,
    config: QueueConfig,
    metrics: NotificationMetrics,
) -> (NotifyHandle, JoinHandle<()>) {
    start(source, config, Some(metrics))
}

fn start(
    source: Arc<dyn NotifierSource>,
    config: QueueConfig,
    metrics: Option<NotificationMetrics>,
) -> (NotifyHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    let stats = Arc::new(NotifyStats::default());
    let task = tokio::spawn(dispatch(rx, source, config, stats.clone(), metrics.clone()));
    let handle = NotifyHandle { tx, stats, metrics };
    (handle, task)
}

fn count(metrics: &Option<NotificationMetrics>, kind: &'static str, result: &'static str) {
    if let Some(m) = metrics {
        m.observe(kind, result);
    }
}

type Job = (Arc<dyn Notifier>, NotifyEvent);

struct Dispatcher {
    config: QueueConfig,
    stats: Arc<NotifyStats>,
    metrics: Option<NotificationMetrics>,
    seen: HashMap<String, Instant>,
    limiter: RateLimiter,
    workers: HashMap<String, mpsc::Sender<Job>>,
}

async fn dispatch(
    mut rx: mpsc::Receiver<NotifyEvent>,
    source: Arc<dyn NotifierSource>,
    config: QueueConfig,
    stats: Arc<NotifyStats>,
    metrics: Option<NotificationMetrics>,
) {
    let per_minute = config.per_minute.max(1);
    let mut d = Dispatcher {
        limiter: RateLimiter::new(RateLimit {
            burst: per_minute,
            per_second: f64::from(per_minute) / 60.0,
        }),
        config,
        stats,
        metrics,
        seen: HashMap::new(),
        workers: HashMap::new(),
    };
    while let Some(event) = rx.recv().await {
        for notifier in source.notifiers_for(&event.namespace) {
            d.route(notifier, &event);
        }
    }
}

impl Dispatcher {
    fn route(&mut self, notifier: Arc<dyn Notifier>, event: &NotifyEvent) {
        if !notifier.accepts(event) {
            return inc(&self.stats.filtered);
        }
        let key = notifier.key().to_string();
        if !self.first_time(format!("{key}|{}", event.dedupe_key())) {
            return inc(&self.stats.deduplicated);
        }
        if self.limiter.check(&key).is_err() {
            tracing::warn!(notifier = %key, reason = %event.reason, "notification rate cap reached; dropped");
            count(&self.metrics, notifier.kind(), "rate_limited");
            return inc(&self.stats.rate_limited);
        }
        let tx = self.workers.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.config.per_notifier_capacity.max(1));
            let (config, stats) = (self.config.clone(), self.stats.clone());
            tokio::spawn(work(rx, config, stats, self.metrics.clone()));
            tx
        });
        let kind = notifier.kind();
        if tx.try_send((notifier, event.clone())).is_err() {
            tracing::warn!(notifier = %key, "notifier queue full; dropped");
            inc(&self.stats.dropped_notifier_full);
            count(&self.metrics, kind, "dropped");
        }
    }

    fn first_time(&mut self, id: String) -> bool {
        let now = Instant::now();
        let ttl = self.config.dedupe_ttl;
        if let Some(t) = self.seen.get(&id) {
            if now.duration_since(*t) < ttl {
                return false;
            }
        }
        if self.seen.len() >= self.config.dedupe_max {
            self.seen.retain(|_, t| now.duration_since(*t) < ttl);
            if self.seen.len() >= self.config.dedupe_max {
                // Still full of live entries: forget the oldest.
                if let Some(oldest) = self
                    .seen
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    self.seen.remove(&oldest);
                }
            }
        }
        self.seen.insert(id, now);
        true
    }
}

async fn work(
    mut rx: mpsc::Receiver<Job>,
    config: QueueConfig,
    stats: Arc<NotifyStats>,
    metrics: Option<NotificationMetrics>,
) {
    while let Some((notifier, event)) = rx.recv().await {
        let kind = notifier.kind();
        let mut backoff = config.base_backoff;
        let attempts = config.max_attempts.max(1);
        for attempt in 1..=attempts {
            match notifier.deliver(&event).await {
                Ok(()) => {
                    inc(&stats.delivered);
                    count(&metrics, kind, "delivered");
                    break;
                }
                Err(e) if e.retryable() && attempt < attempts => {
                    inc(&stats.retried);
                    count(&metrics, kind, "retried");
                    tracing::debug!(notifier = %notifier.key(), error = %e, attempt, "notification failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.max_backoff);
                }
                Err(e) => {
                    inc(&stats.failed);
                    count(&metrics, kind, "failed");
                    tracing::warn!(notifier = %notifier.key(), reason = %event.reason,
                        error = %e, category = e.category(), "notification not delivered");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
pub(crate) mod tests;
