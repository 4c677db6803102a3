//! Where the dashboard's data come from and where its actions go: a cluster (the
//! user's kubeconfig) or the demo's local backend.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;

use super::view::EventRow;
use super::DashboardError;
use crate::crd::Canary;
use crate::gates::{DecisionRequest, Outcome};

/// The Canaries a person may read, and what could not be read.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub canaries: Vec<Canary>,
    /// Said above the list: e.g. "listing all namespaces is forbidden; showing shop".
    pub notes: Vec<String>,
}

/// A Canary changed (or went away): pages showing it fetch it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub namespace: String,
    pub name: String,
}

#[async_trait]
pub trait Source: Send + Sync {
    /// What the page says it shows ("cluster kind-prod", "serin demo").
    fn describe(&self) -> String;
    async fn list(&self) -> Result<Listing, DashboardError>;
    async fn get(&self, namespace: &str, name: &str) -> Result<Canary, DashboardError>;
    /// The Events about the Canary, oldest first.
    async fn events(&self, namespace: &str, name: &str) -> Result<Vec<EventRow>, DashboardError>;
    /// Record a decision, as the CLI would for this person.
    async fn act(
        &self,
        namespace: &str,
        name: &str,
        decision: &DecisionRequest,
    ) -> Result<Outcome, DashboardError>;
    /// Changes from now on; ends (or yields errors) when the source cannot watch.
    fn changes(&self) -> BoxStream<'static, Result<Change, DashboardError>>;
}
