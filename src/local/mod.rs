//! serin without a cluster: the demo app's processes as workloads, a real nginx as the
//! traffic router, a real Prometheus as the metric source, state in a JSON file.
//!
//! [`LocalCluster`] implements both [`crate::workloads::WorkloadBackend`] and
//! [`crate::traffic::TrafficRouter`], so the shared release driver
//! ([`crate::release::reconcile_release`]) runs unchanged; [`LocalController`] is the
//! loop around it that a Kubernetes controller's reconciler would be.

mod backend;
mod driver;
pub mod loadgen;
pub mod nginx;
pub mod procs;
pub mod prometheus;
pub mod state;
pub mod telemetry;

use std::path::Path;

pub use backend::{LocalCluster, LocalConfig};
pub use driver::{LocalController, StepReport};
pub use loadgen::{LoadCounts, LoadGen, LoadOptions};
pub use nginx::{NginxControl, NginxServer};
pub use prometheus::PrometheusServer;
pub use state::{approve_local, set_target, AppTemplate, LocalState, StateStore, TargetSpec};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("state file {path}: {message}")]
    StateFormat { path: String, message: String },
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("{0}")]
    Invalid(String),
    #[error("analysis templates: {0}")]
    Analysis(#[from] crate::analysis::AnalysisConfigError),
    #[error("release: {0}")]
    Release(#[from] crate::release::ReleaseError),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl LocalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LocalError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Bounded label for metrics and messages.
    pub fn category(&self) -> &'static str {
        match self {
            LocalError::Io { .. } => "io",
            LocalError::StateFormat { .. } => "state",
            LocalError::Spawn { .. } => "spawn",
            LocalError::Proxy(_) => "proxy",
            LocalError::Metrics(_) => "metrics",
            LocalError::Invalid(_) | LocalError::Analysis(_) => "config",
            LocalError::Release(e) => e.category(),
            LocalError::Timeout(_) => "timeout",
        }
    }
}
