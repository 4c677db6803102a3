//! Kubernetes Events (events.k8s.io/v1) for every transition, behind [`EventSink`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

use crate::rollout::{Note, NoteType};

/// Where notes about a Canary go.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, regarding: &ObjectReference, action: &str, note: &Note);
}

/// Publishes Events; failures are logged, never fatal: an Event is not worth a retry
/// of the release step that already happened.
pub struct KubeEvents {
    recorder: Recorder,
}

impl KubeEvents {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "serin.dev/controller".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }
}

#[async_trait]
impl EventSink for KubeEvents {
    async fn publish(&self, regarding: &ObjectReference, action: &str, note: &Note) {
        let ev = Event {
            type_: match note.type_ {
                NoteType::Normal => EventType::Normal,
                NoteType::Warning => EventType::Warning,
            },
            reason: note.reason.into(),
            // The API server caps notes at 1 kB.
            note: Some(truncate(&note.message, 1000)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::warn!(error = %e, reason = note.reason, "could not publish Event");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
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
                reason: note.reason.into(),
                warning: note.type_ == NoteType::Warning,
                message: note.message.clone(),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        let s = "é".repeat(600);
        let t = truncate(&s, 1000);
        assert!(t.len() <= 1000 && t.ends_with("..."));
    }
}
