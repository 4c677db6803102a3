//! Traffic routers: one adapter per mesh or ingress behind [`TrafficRouter`].

pub mod annotations;
mod apply;
pub mod detect;
mod gateway_api;
mod ingress_nginx;
mod istio;
pub mod registry;
mod service;
mod smi;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::crd::{RoutingSpec, Strategy};
use crate::error_kind::ErrorKind;

pub use apply::WEIGHT_ANNOTATION;
pub use detect::{check_available, detect_routers};
pub use gateway_api::GatewayApiRouter;
pub use ingress_nginx::{IngressNginxRouter, DEFAULT_ANNOTATION_PREFIX};
pub use istio::IstioRouter;
pub use registry::{build_available, RouterKind, RouterOptions};
pub use service::{ServiceRouter, WithApexService};
pub use smi::SmiRouter;

/// Everything a router needs to know about one Canary's traffic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTarget {
    pub namespace: String,
    /// The Canary's name (also the user's Deployment's name).
    pub name: String,
    /// Apex Service; `<service>-primary` and `<service>-canary` exist beside it.
    pub service: String,
    pub port: i32,
    pub port_name: String,
    /// Container port (number or name) the Services target; defaults to `port`.
    pub target_port: Option<String>,
    /// Pod labels that select the primary's pods only.
    pub primary_selector: BTreeMap<String, String>,
    /// Pod labels that select the canary's pods only (the user's selector).
    pub canary_selector: BTreeMap<String, String>,
    /// Labels both versions' pods carry (replica-ratio weighting selects on these).
    pub shared_labels: BTreeMap<String, String>,
    pub strategy: Strategy,
    pub routing: RoutingSpec,
    /// Owner of every object the router creates (the Canary), for garbage collection.
    pub owner: Option<OwnerReference>,
}

impl RouteTarget {
    pub fn primary_service(&self) -> String {
        format!("{}-primary", self.service)
    }
    pub fn canary_service(&self) -> String {
        format!("{}-canary", self.service)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The Canary asks for something the cluster or the spec cannot give.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Backend(String),
}

impl RouterError {
    /// Bounded label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        self.kind().as_label()
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            RouterError::Kube(kube::Error::Api(s)) if s.code == 409 => ErrorKind::Conflict,
            RouterError::Kube(_) => ErrorKind::Kube,
            RouterError::Config(_) => ErrorKind::Config,
            RouterError::Backend(_) => ErrorKind::Backend,
        }
    }
}

/// Shifts traffic between the primary and the canary.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    fn kind(&self) -> RouterKind;

    /// The router approximates weights by replica counts (no per-request split).
    fn replica_weighting(&self, _strategy: Strategy) -> bool {
        false
    }

    /// Create or update the routing objects so `weight` percent goes to the canary.
    /// Idempotent; weight 0 sends everything to the primary.
    async fn set_weight(&self, target: &RouteTarget, weight: i32) -> Result<(), RouterError>;

    /// The canary weight currently in force; `None` when the objects do not exist yet.
    async fn observed_weight(&self, target: &RouteTarget) -> Result<Option<i32>, RouterError>;

    /// Hand traffic back to the user's own Deployment and remove what serin added.
    async fn finalize(&self, target: &RouteTarget) -> Result<(), RouterError>;
}
