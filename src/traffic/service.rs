//! The plain Kubernetes Service router: no mesh, no ingress.
//!
//! Blue/green switches the apex Service's selector from the primary's pods to the
//! canary's. Canary weights are approximated by replica counts: between 0 and 100 the
//! apex selects the labels both versions' pods share, and the canary is scaled so its
//! share of ready pods matches the weight (the core computes the replicas).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::api::Patch;
use kube::{Api, Client};
use serde_json::json;

use super::{RouteTarget, RouterError, RouterKind, TrafficRouter, WEIGHT_ANNOTATION};
use crate::crd::{Strategy, CANARY_LABEL};
use crate::workloads::cached_service::CachedService;
use crate::workloads::deployments::apply;
use crate::workloads::service_store::ServiceCache;

#[derive(Clone)]
pub struct ServiceRouter {
    client: Client,
    /// serin's Services from a watch (the apex carries the Canary label once routed):
    /// the weight in place is read from it instead of a GET per reconcile.
    cache: Option<ServiceCache>,
}

impl ServiceRouter {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: None,
        }
    }

    pub fn with_cache(mut self, cache: Option<ServiceCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The apex Service as serin routed it: cached when the cache can answer, else
    /// read. `None`: not routed by serin (or gone), so its weight is unknown.
    async fn apex(&self, t: &RouteTarget) -> Result<Option<Arc<CachedService>>, RouterError> {
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&t.namespace, &t.service));
        Ok(match cached {
            Some(Some(svc)) => Some(svc),
            // Absent from the listed cache of labelled Services: serin has not routed
            // it (no label yet, or the label was taken off), or it is gone. Either way
            // no weight of serin's is on it, which a read would only confirm; the
            // next write applies it whole (and creates it if gone).
            Some(None) => None,
            None => self
                .api(&t.namespace)
                .get_opt(&t.service)
                .await?
                .map(|s| Arc::new(s.into())),
        })
    }

    /// Apply the apex and tell the cache which version that made.
    async fn apply_apex(
        &self,
        t: &RouteTarget,
        body: &serde_json::Value,
    ) -> Result<(), RouterError> {
        let written = self
            .api(&t.namespace)
            .patch(&t.service, &apply(), &Patch::Apply(body))
            .await?;
        if let Some(c) = &self.cache {
            c.note_write(&written.into());
        }
        Ok(())
    }

    fn api(&self, ns: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// The apex selector that realizes `weight`.
pub fn apex_selector(
    t: &RouteTarget,
    weight: i32,
) -> Result<&BTreeMap<String, String>, RouterError> {
    match weight {
        w if w <= 0 => Ok(&t.primary_selector),
        w if w >= 100 => Ok(&t.canary_selector),
        _ if t.shared_labels.is_empty() => Err(RouterError::Config(format!(
            "router service: canary weights need a pod label that both {name} and {name}-primary carry \
             outside the selector (e.g. app.kubernetes.io/name), so the Service can select both; \
             add one to the pod template, use serin.dev/strategy: blue-green, or a mesh router",
            name = t.name
        ))),
        _ => Ok(&t.shared_labels),
    }
}

/// Whether serin routes the apex (it then carries the Canary label, so serin's watches
/// see it) or hands it back (label and weight annotation dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apex {
    Routed,
    HandedBack,
}

/// The apex Service as serin applies it.
pub fn apex_body(
    t: &RouteTarget,
    selector: &BTreeMap<String, String>,
    weight: Option<i32>,
    apex: Apex,
) -> serde_json::Value {
    let target_port = match t.target_port.as_deref() {
        Some(p) => p
            .parse::<i32>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(p)),
        None => json!(t.port),
    };
    let mut metadata = json!({"name": t.service, "namespace": t.namespace});
    if let Some(w) = weight {
        metadata["annotations"] = json!({ WEIGHT_ANNOTATION: w.to_string() });
    }
    if apex == Apex::Routed {
        metadata["labels"] = json!({ CANARY_LABEL: t.name });
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": selector,
            "ports": [{"name": t.port_name, "port": t.port, "targetPort": target_port, "protocol": "TCP"}]
        }
    })
}

#[async_trait]
impl TrafficRouter for ServiceRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Service
    }

    fn replica_weighting(&self, strategy: Strategy) -> bool {
        strategy == Strategy::Canary
    }

    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        let selector = apex_selector(t, weight)?;
        let body = apex_body(t, selector, Some(weight), Apex::Routed);
        self.apply_apex(t, &body).await
    }

    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        let Some(svc) = self.apex(t).await? else {
            return Ok(None);
        };
        // Someone else changed the selector: report unknown so serin re-applies.
        Ok(svc
            .weight()
            .filter(|w| apex_selector(t, *w).is_ok_and(|s| svc.selects(s))))
    }

    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        if self.api(&t.namespace).get_opt(&t.service).await?.is_none() {
            return Ok(());
        }
        let body = apex_body(t, &t.canary_selector, None, Apex::HandedBack);
        self.apply_apex(t, &body).await
    }
}

/// A mesh or ingress router plus the apex Service: clients outside the mesh (and DNS)
/// still resolve `<svc>`, so it selects the primary's pods while the router splits.
pub struct WithApexService {
    inner: std::sync::Arc<dyn TrafficRouter>,
    apex: ServiceRouter,
}

impl WithApexService {
    /// `apex` writes the apex Service (a [`ServiceRouter`], with its cache if any).
    pub fn new(apex: ServiceRouter, inner: std::sync::Arc<dyn TrafficRouter>) -> Self {
        Self { inner, apex }
    }
}

#[async_trait]
impl TrafficRouter for WithApexService {
    fn kind(&self) -> RouterKind {
        self.inner.kind()
    }

    fn replica_weighting(&self, strategy: Strategy) -> bool {
        self.inner.replica_weighting(strategy)
    }

    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        let body = apex_body(t, &t.primary_selector, None, Apex::Routed);
        self.apex.apply_apex(t, &body).await?;
        self.inner.set_weight(t, weight).await
    }

    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        self.inner.observed_weight(t).await
    }

    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        self.inner.finalize(t).await?;
        self.apex.finalize(t).await
    }
}
