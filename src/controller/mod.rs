//! Kubernetes wiring: watches, reconcile, status writes, events, leader lease.

pub mod events;
mod failures;
pub mod fence;
mod finalize;
mod health;
pub mod lease;
pub mod materialize;
pub mod notifiers;
mod people;
pub mod policies;
pub mod policy_status;
mod reconcile;
pub mod run;
pub mod selector;
pub mod shard;
pub mod status;
pub mod templates;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Client;

use crate::error_kind::ErrorKind;
use crate::providers::MetricSources;
use crate::release::ReleaseError;
use crate::traffic::{RouterError, RouterKind, TrafficRouter};
use crate::workloads::WorkloadBackend;

pub use events::{EventSink, KubeEvents, RecordedEvent};
pub use fence::{Fence, Fenced};
pub use reconcile::{error_policy, reconcile_canary, DEADLINE_RETRY, FINALIZER};

/// The clock the controller reads (the core never does); tests pin it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Routers by kind, with the controller-wide default.
#[derive(Clone)]
pub struct Routers {
    pub by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>>,
    pub default: RouterKind,
}

impl Routers {
    /// The router a Canary asks for (or the default); a clear error when the cluster
    /// does not have it.
    pub fn pick(
        &self,
        requested: Option<&str>,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<dyn TrafficRouter>, RouterError> {
        let kind = match requested {
            None => self.default,
            Some(r) => RouterKind::parse(r).ok_or_else(|| {
                RouterError::Config(format!(
                    "router {r:?} is unknown; expected {}",
                    RouterKind::accepted()
                ))
            })?,
        };
        let mut available: Vec<RouterKind> = self.by_kind.keys().copied().collect();
        available.sort_by_key(|k| k.as_str());
        crate::traffic::check_available(kind, &available, namespace, name)?;
        self.by_kind.get(&kind).cloned().ok_or_else(|| {
            RouterError::Config(format!("router {} is not available", kind.as_str()))
        })
    }
}

/// Everything a reconcile needs.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub workloads: Arc<dyn WorkloadBackend>,
    pub routers: Routers,
    pub sources: Arc<dyn MetricSources>,
    pub events: Arc<dyn EventSink>,
    pub clock: Clock,
    /// Upper bound of one check; less than `reconcile_deadline`.
    pub check_timeout: Duration,
    /// No reconcile runs longer than this, whatever it waits for (`--reconcile-deadline`).
    pub reconcile_deadline: Duration,
    /// Metric queries in flight across all reconciles (`--max-queries-in-flight`);
    /// `None`: unbounded.
    pub queries: Option<Arc<crate::limits::KeyedLimiter>>,
    /// Where Secrets named by ClusterAnalysisTemplates live.
    pub controller_namespace: String,
    /// Calls the Canaries' outgoing webhooks in the background; `None` disables them.
    pub webhooks: Option<Arc<crate::gates::HookRunner>>,
    /// Notification queue (never blocks a reconcile); `None` disables notifications.
    pub notify: Option<crate::notify::NotifyHandle>,
    /// The controller's own metrics, served on `/metrics`.
    pub metrics: Arc<crate::metrics::ControllerMetrics>,
    /// Each Canary's resourceVersion as this controller last wrote it: a reconcile
    /// whose watch-cache copy is at that version reads the Canary no more.
    pub written: Arc<status::WrittenVersions>,
    /// Whether this replica may still write as the leader; [`run`](run::run) sets it
    /// (`Fence::unfenced()` without leader election).
    pub fence: Fence,
    /// The release policies' watch caches; [`run`](run::run) sets them. `None`: no
    /// policy applies (tests that do not need them).
    pub policies: Option<Arc<policies::PolicyCaches>>,
    /// The AnalysisTemplates' watch caches; [`run`](run::run) sets them. `None`: read
    /// each template from the API.
    pub templates: Option<templates::TemplateCaches>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("Canary has no namespace")]
    NoNamespace,
    /// The reconcile ran into `--reconcile-deadline`; it was stopped where it was.
    #[error("reconcile stopped at its deadline ({}) while {stage}", humantime::format_duration(*deadline))]
    DeadlineExceeded {
        deadline: Duration,
        stage: &'static str,
    },
}

impl ReconcileError {
    /// A conflict (someone wrote in between) or a target that moved while promoting: a
    /// fresh read fixes both, so look again at once instead of backing off.
    pub fn retry_soon(&self) -> bool {
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
        match self {
            ReconcileError::Kube(e) => conflict(e),
            ReconcileError::Release(ReleaseError::Workload(w)) => match w {
                crate::workloads::WorkloadError::Kube(e) => conflict(e),
                crate::workloads::WorkloadError::RevisionMoved { .. } => true,
                _ => false,
            },
            ReconcileError::Release(ReleaseError::Router(RouterError::Kube(e))) => conflict(e),
            _ => false,
        }
    }

    /// Bounded label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        self.kind().as_label()
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ReconcileError::Kube(kube::Error::Api(s)) if s.code == 409 => ErrorKind::Conflict,
            ReconcileError::Kube(_) => ErrorKind::Kube,
            ReconcileError::Release(e) => e.kind(),
            ReconcileError::NoNamespace => ErrorKind::Config,
            ReconcileError::DeadlineExceeded { .. } => ErrorKind::Deadline,
        }
    }
}

#[cfg(test)]
mod tests;
