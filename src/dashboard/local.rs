//! The demo's dashboard: the local backend's state file is the Canary, and actions
//! are planned by the same record logic as the approval API's
//! ([`crate::gates::plan_decision`]), written under the state file's lock.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use super::source::{Change, Listing, Source};
use super::view::EventRow;
use super::DashboardError;
use crate::crd::{Approval, Canary, Command};
use crate::gates::{plan_decision, DecisionRequest, GateError, Outcome, Planned, Via};
use crate::local::{LocalError, LocalState, StateStore};

/// Notes kept for the demo's release page.
const FEED_MAX: usize = 300;
/// How often the state file is looked at for changes (server side; the page is told).
const POLL: Duration = Duration::from_millis(300);

/// What the demo's controller said (its Events, in a cluster), for the release page.
#[derive(Clone, Default)]
pub struct DemoFeed {
    rows: Arc<Mutex<VecDeque<EventRow>>>,
}

impl DemoFeed {
    /// What the controller said, as its Event would.
    pub fn record_note(&self, n: &crate::rollout::Note) {
        let type_ = match n.type_ {
            crate::rollout::NoteType::Warning => "Warning",
            crate::rollout::NoteType::Normal => "Normal",
        };
        self.record(type_, &n.reason.to_string(), &n.message);
    }

    pub fn record(&self, type_: &str, reason: &str, note: &str) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if rows.len() >= FEED_MAX {
            rows.pop_front();
        }
        rows.push_back(EventRow {
            at: Some(Utc::now()),
            type_: type_.to_string(),
            reason: reason.to_string(),
            note: note.to_string(),
            count: 1,
        });
    }

    fn rows(&self) -> Vec<EventRow> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter().cloned().collect()
    }
}

pub struct LocalSource {
    store: StateStore,
    feed: DemoFeed,
    /// Recorded as the decider: the person running the demo.
    actor: String,
}

/// The local state as the Canary a cluster would hold.
fn canary_of(s: &LocalState) -> Canary {
    let mut c = Canary::new(&s.name, s.spec.clone());
    c.metadata.namespace = Some(s.namespace.clone());
    c.status = Some(s.status.clone());
    c
}

fn unavailable(e: LocalError) -> DashboardError {
    DashboardError::Unavailable(e.to_string())
}

impl LocalSource {
    pub fn new(state_file: impl Into<PathBuf>, feed: DemoFeed, actor: impl Into<String>) -> Self {
        Self {
            store: StateStore::new(state_file),
            feed,
            actor: actor.into(),
        }
    }

    fn load(&self) -> Result<LocalState, DashboardError> {
        self.store.load().map_err(unavailable)
    }
}

#[async_trait]
impl Source for LocalSource {
    fn describe(&self) -> String {
        "serin demo (local backend)".into()
    }

    async fn list(&self) -> Result<Listing, DashboardError> {
        Ok(Listing {
            canaries: vec![canary_of(&self.load()?)],
            notes: Vec::new(),
        })
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Canary, DashboardError> {
        let s = self.load()?;
        if s.namespace != namespace || s.name != name {
            return Err(DashboardError::NotFound(format!(
                "canary {namespace}/{name}"
            )));
        }
        Ok(canary_of(&s))
    }

    async fn events(&self, namespace: &str, name: &str) -> Result<Vec<EventRow>, DashboardError> {
        self.get(namespace, name).await?;
        Ok(self.feed.rows())
    }

    async fn act(
        &self,
        namespace: &str,
        name: &str,
        decision: &DecisionRequest,
    ) -> Result<Outcome, DashboardError> {
        let decided: Result<Outcome, GateError> = self
            .store
            .update(|s| {
                if s.namespace != namespace || s.name != name {
                    return Ok(Err(GateError::NotFound {
                        namespace: namespace.into(),
                        name: name.into(),
                    }));
                }
                let planned = plan_decision(
                    &canary_of(s),
                    decision,
                    &self.actor,
                    Via::Dashboard,
                    Utc::now(),
                );
                Ok(planned.and_then(|p| apply(s, p)))
            })
            .map_err(unavailable)?;
        Ok(decided?)
    }

    fn changes(&self) -> BoxStream<'static, Result<Change, DashboardError>> {
        let store = StateStore::new(self.store.path());
        // What a page shows of the state; a change of it is a change of the Canary.
        let snapshot = |s: &LocalState| {
            let shown = serde_json::to_string(&(&s.spec, &s.status)).ok();
            (
                shown,
                Change {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                },
            )
        };
        // Changes from now on: the state as it is when asked is the baseline.
        let first = store.load().ok().and_then(|s| snapshot(&s).0);
        stream::unfold((store, first), move |(store, last)| async move {
            let mut last = last;
            loop {
                tokio::time::sleep(POLL).await;
                let (now, change) = match store.load() {
                    Ok(s) => snapshot(&s),
                    Err(e) => return Some((Err(unavailable(e)), (store, last))),
                };
                if now != last && last.is_some() {
                    return Some((Ok(change), (store, now)));
                }
                last = now;
            }
        })
        .boxed()
    }
}

/// Write what was planned into the local state, as the approval API writes it to
/// the Canary.
fn apply(s: &mut LocalState, planned: Planned) -> Result<Outcome, GateError> {
    match planned {
        Planned::Unchanged { message } => Ok(Outcome {
            changed: false,
            id: None,
            message,
        }),
        Planned::Suspend { suspend, message } => {
            s.spec.suspend = suspend;
            Ok(Outcome {
                changed: true,
                id: None,
                message,
            })
        }
        Planned::Status { id, patch, message } => {
            let records = &patch["status"];
            let bad = |e: serde_json::Error| GateError::Invalid(format!("record: {e}"));
            s.status.approvals =
                serde_json::from_value::<Vec<Approval>>(records["approvals"].clone())
                    .map_err(bad)?;
            s.status.commands =
                serde_json::from_value::<Vec<Command>>(records["commands"].clone()).map_err(bad)?;
            Ok(Outcome {
                changed: true,
                id: Some(id),
                message,
            })
        }
    }
}
