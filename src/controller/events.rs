//! Kubernetes Events (events.k8s.io/v1) for every transition, behind [`EventSink`].
//!
//! serin records Events itself instead of through kube-runtime's `Recorder`: that one
//! aggregates by (type, action, reason, object), so "revision b2c3 promoted" was counted
//! into the Event saying "revision a1b2 promoted" and no Event named b2c3. Here the note
//! is part of the key: every distinct message gets its own Event, and only identical
//! repeats become a `series` (count, lastObservedTime), as the API server expects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::Clock;
use crate::rollout::{Note, NoteType};

/// Where notes about a Canary go.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, regarding: &ObjectReference, action: &str, note: &Note);
}

/// `reportingController` of every Event serin writes.
pub const REPORTING_CONTROLLER: &str = "serin.dev/controller";

/// A repeat within this time of the last one extends that Event's series; later, it is
/// a new Event (client-go's isolation window).
pub const ISOLATION_WINDOW: chrono::Duration = chrono::Duration::minutes(6);

/// A series is sent to the API server on its first repeat, then at most once per this
/// time (with the occurrence that comes after it, or by [`KubeEvents::flush`]): a note
/// repeated at every check of a thousand Canaries is not a thousand PATCHes per
/// interval. client-go sends a series on a heartbeat the same way.
pub const SERIES_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

/// Events remembered for aggregation: enough for thousands of Canaries, small enough
/// (notes are at most 1 kB) that the cache stays a few MB at worst.
pub const CACHE_LIMIT: usize = 4096;

/// The API server rejects longer notes.
pub const NOTE_MAX_BYTES: usize = 1024;

/// What makes two Events the same: a repeat of all of it is counted, anything else is
/// a new Event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    /// The object's uid, or namespace/kind/name without one.
    regarding: String,
    warning: bool,
    reason: String,
    action: String,
    note: String,
}

/// An Event serin wrote and may extend.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    namespace: String,
    /// Occurrences so far (1 for an isolated Event).
    count: i32,
    last: DateTime<Utc>,
    /// The count the API server has, and when it was sent.
    sent: i32,
    sent_at: DateTime<Utc>,
}

impl Seen {
    /// Occurrences the API server has not been told of.
    fn unsent(&self) -> bool {
        self.count > self.sent
    }
}

/// Recent Events by key, bounded in size and age.
struct EventCache {
    entries: HashMap<EventKey, Seen>,
    limit: usize,
    /// Series forgotten with occurrences still unsent: the next flush sends them.
    finished: Vec<Seen>,
}

impl EventCache {
    /// The live Event for `key`, after forgetting every one past the window.
    fn lookup(&mut self, key: &EventKey, now: DateTime<Utc>) -> Option<Seen> {
        let finished = &mut self.finished;
        self.entries.retain(|_, s| {
            let live = now - s.last < ISOLATION_WINDOW;
            if !live && s.unsent() {
                finished.push(s.clone());
            }
            live
        });
        self.entries.get(key).cloned()
    }

    fn remember(&mut self, key: EventKey, seen: Seen) {
        self.entries.insert(key, seen);
        while self.entries.len() > self.limit {
            // Linear, but only when full, and Events are rare next to reconciles.
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(s) = self.entries.remove(&oldest).filter(Seen::unsent) {
                self.finished.push(s);
            }
        }
    }
}

/// Publishes Events; failures are logged, never fatal: an Event is not worth a retry
/// of the release step that already happened.
pub struct KubeEvents {
    client: Client,
    instance: String,
    clock: Clock,
    cache: Mutex<EventCache>,
    /// Makes Event names unique within the process, whatever the clock says.
    sequence: AtomicU64,
}

impl KubeEvents {
    /// `instance` is this replica's identity (`reportingInstance`).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Self {
            client,
            instance: instance.unwrap_or_else(|| REPORTING_CONTROLLER.into()),
            clock: Arc::new(Utc::now),
            cache: Mutex::new(EventCache {
                entries: HashMap::new(),
                limit: CACHE_LIMIT,
                finished: Vec::new(),
            }),
            sequence: AtomicU64::new(0),
        }
    }

    /// Read the time from `clock` (the controller's), so tests control the window.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Remember at most `limit` Events (at least one).
    pub fn with_cache_limit(self, limit: usize) -> Self {
        self.lock().limit = limit.max(1);
        self
    }

    /// Events currently remembered for aggregation.
    pub fn cached(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EventCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `<object name>.<hex time>-<sequence>`: the time keeps names apart across
    /// restarts, the sequence within this process.
    fn event_name(&self, regarding: &ObjectReference, now: DateTime<Utc>) -> String {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let nanos = now.timestamp_nanos_opt().unwrap_or_default().max(0);
        let suffix = format!(".{nanos:x}-{seq:x}");
        let base = regarding.name.as_deref().unwrap_or("serin");
        // Names are DNS subdomains of at most 253 characters; labels end alphanumeric.
        let mut end = base.len().min(253 - suffix.len());
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        let base = base[..end].trim_end_matches(['-', '.']);
        format!("{base}{suffix}")
    }

    async fn create(
        &self,
        api: &Api<K8sEvent>,
        regarding: &ObjectReference,
        key: &EventKey,
        now: DateTime<Utc>,
    ) -> Result<Seen, kube::Error> {
        let name = self.event_name(regarding, now);
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            regarding: Some(regarding.clone()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.into()),
            action: Some(key.action.clone()),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(self.instance.clone()),
            event_time: Some(micro_time(now)),
            ..K8sEvent::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok(Seen {
            name,
            namespace: regarding.namespace.clone().unwrap_or_default(),
            count: 1,
            last: now,
            sent: 1,
            sent_at: now,
        })
    }

    /// Send `seen`'s series as it is: only the series changes.
    async fn send_series(&self, seen: &Seen, now: DateTime<Utc>) -> Result<Seen, kube::Error> {
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &seen.namespace);
        let patch = serde_json::json!({
            "series": EventSeries {
                count: seen.count,
                last_observed_time: micro_time(seen.last),
            }
        });
        api.patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(Seen {
            sent: seen.count,
            sent_at: now,
            ..seen.clone()
        })
    }

    /// One more occurrence of `seen`: counted, and sent when the API server has no
    /// series yet or its series is older than [`SERIES_REFRESH`].
    async fn extend(&self, seen: &Seen, now: DateTime<Utc>) -> Result<Seen, kube::Error> {
        let next = Seen {
            count: seen.count.saturating_add(1),
            last: now,
            ..seen.clone()
        };
        let fresh = (now - seen.sent_at).to_std().unwrap_or_default() < SERIES_REFRESH;
        if seen.sent >= 2 && fresh {
            return Ok(next);
        }
        self.send_series(&next, now).await
    }

    /// Send every series with occurrences the API server has not been told of (run
    /// every [`SERIES_REFRESH`] by [`KubeEvents::flush_every`]).
    pub async fn flush(&self) {
        let now = (self.clock)();
        let due: Vec<(Option<EventKey>, Seen)> = {
            let mut cache = self.lock();
            let mut due: Vec<(Option<EventKey>, Seen)> =
                cache.finished.drain(..).map(|s| (None, s)).collect();
            due.extend(
                cache
                    .entries
                    .iter()
                    .filter(|(_, s)| s.unsent())
                    .map(|(k, s)| (Some(k.clone()), s.clone())),
            );
            due
        };
        for (key, seen) in due {
            match self.send_series(&seen, now).await {
                Ok(sent) => {
                    if let Some(key) = key {
                        let mut cache = self.lock();
                        // Unless it was extended meanwhile, it is sent up to its count.
                        if let Some(s) = cache.entries.get_mut(&key) {
                            s.sent = s.sent.max(sent.sent);
                            s.sent_at = now;
                        }
                    }
                }
                // Gone (Events live an hour): nothing left to count on.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::warn!(error = %e, event = %seen.name, "could not send an Event series")
                }
            }
        }
    }

    /// Flush every [`SERIES_REFRESH`], for as long as the returned task runs.
    pub fn flush_every(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SERIES_REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                me.flush().await;
            }
        })
    }
}

#[async_trait]
impl EventSink for KubeEvents {
    async fn publish(&self, regarding: &ObjectReference, action: &str, note: &Note) {
        let now = (self.clock)();
        let key = EventKey {
            regarding: regarding_key(regarding),
            warning: note.type_ == NoteType::Warning,
            reason: note.reason.as_str().into(),
            action: action.into(),
            note: bound_note(&note.message),
        };
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), ns);
        // The lock is not held across the requests. Two publishes for one object do not
        // race: the controller reconciles an object at most once at a time.
        let repeat = self.lock().lookup(&key, now);
        let result = match repeat {
            Some(seen) => match self.extend(&seen, now).await {
                // Events live one hour: the one we would extend is gone, start anew.
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.create(&api, regarding, &key, now).await
                }
                r => r,
            },
            None => self.create(&api, regarding, &key, now).await,
        };
        match result {
            Ok(seen) => self.lock().remember(key, seen),
            Err(e) => {
                tracing::warn!(error = %e, reason = note.reason.as_str(), "could not publish Event")
            }
        }
    }
}

fn regarding_key(r: &ObjectReference) -> String {
    match r.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}/{}",
            r.namespace.as_deref().unwrap_or_default(),
            r.kind.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default()
        ),
    }
}

fn micro_time(t: DateTime<Utc>) -> MicroTime {
    MicroTime(Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or_default())
}

/// `s` cut to [`NOTE_MAX_BYTES`] on a char boundary, ending in "…" when cut.
pub(crate) fn bound_note(s: &str) -> String {
    if s.len() <= NOTE_MAX_BYTES {
        return s.to_string();
    }
    const ELLIPSIS: &str = "…";
    let mut end = NOTE_MAX_BYTES - ELLIPSIS.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

/// An Event as a test or the local backend sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub name: String,
    pub action: String,
    pub reason: String,
    pub warning: bool,
    pub message: String,
}

/// Keeps events in memory (tests, local runs).
#[derive(Default, Clone)]
pub struct MemoryEvents(pub Arc<Mutex<Vec<RecordedEvent>>>);

impl MemoryEvents {
    pub fn take(&self) -> Vec<RecordedEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl EventSink for MemoryEvents {
    async fn publish(&self, regarding: &ObjectReference, action: &str, note: &Note) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedEvent {
                name: regarding.name.clone().unwrap_or_default(),
                action: action.into(),
                reason: note.reason.as_str().into(),
                warning: note.type_ == NoteType::Warning,
                message: note.message.clone(),
            });
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
