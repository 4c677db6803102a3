//! Watch caches of what every reconcile checks beside the primary: the namespace's
//! HPAs (to find the one scaling the target, and its twin) and the Services serin owns
//! (their selectors). Reading them from a watch instead of a LIST of HPAs and two GETs
//! per reconcile is most of the steady load a Canary puts on the API server.
//!
//! The caches only ever say "all is well": a missing or drifted object is confirmed
//! by a fresh read before serin repairs anything, so a cache that lags our own writes
//! costs a read, never a wrong write. Until a cache holds its first list, every check
//! reads as before.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::deployment_cache::DeploymentCache;
use crate::crd::CANARY_LABEL;
use crate::workloads::cached_service::PortKey;
use crate::workloads::fresh_store::{listed, watched, FreshStore};
use crate::workloads::service_store::{watched_services, ServiceCache, ServiceStore};

/// The caches, each filled by its own watch (the Deployments by the controller's).
#[derive(Clone)]
pub struct OwnedCaches {
    hpas: Store<HorizontalPodAutoscaler>,
    pub(super) services: ServiceCache,
    pub(super) deployments: DeploymentCache,
}

/// Only what the checks compare is kept of an HPA: its name and spec (a Service is
/// kept as a [`crate::workloads::cached_service::CachedService`]).
fn slim_hpa(h: &mut HorizontalPodAutoscaler) {
    h.metadata.managed_fields = None;
    h.metadata.annotations = None;
    h.status = None;
}

impl OwnedCaches {
    /// Watch the HPAs and serin's Services of `namespace` (`None`: all), in background
    /// tasks that end with the runtime.
    pub fn start(client: &Client, namespace: Option<&str>) -> Self {
        let (hpas, _) = watched(
            scoped(client, namespace),
            watcher::Config::default(),
            slim_hpa,
        );
        let (services, progress) = watched_services(
            scoped(client, namespace),
            watcher::Config::default().labels(CANARY_LABEL),
        );
        Self {
            hpas,
            // Slimmed on the way in: written copies are converted by the caller.
            services: FreshStore::new(services, |_| {}).with_progress(progress),
            deployments: DeploymentCache::default(),
        }
    }

    /// serin's Services (the apex included once serin has routed it), for the Service
    /// router.
    pub fn services(&self) -> ServiceCache {
        self.services.clone()
    }

    /// Caches over stores filled elsewhere (tests); Deployments are read from the API
    /// until [`OwnedCaches::with_deployments`].
    pub fn from_stores(hpas: Store<HorizontalPodAutoscaler>, services: ServiceStore) -> Self {
        let (store, _) = reflector::store();
        Self {
            hpas,
            services: FreshStore::new(services, |_| {}),
            deployments: DeploymentCache::from_parts(store, None),
        }
    }

    pub fn with_deployments(mut self, deployments: DeploymentCache) -> Self {
        self.deployments = deployments;
        self
    }

    /// The HPAs of `ns`; `None` until the cache holds its first list.
    pub fn hpas(&self, ns: &str) -> Option<Vec<HorizontalPodAutoscaler>> {
        listed(&self.hpas).then(|| {
            self.hpas
                .state_filter(|h| h.metadata.namespace.as_deref() == Some(ns))
                .into_iter()
                .map(|h| (*h).clone())
                .collect()
        })
    }

    /// Whether serin's Service `ns/name` selects exactly `selector`; `None` when the
    /// cache cannot tell (not listed yet, or behind serin's own write).
    pub fn service_selects(
        &self,
        ns: &str,
        name: &str,
        selector: &BTreeMap<String, String>,
    ) -> Option<bool> {
        let found = self.services.get(ns, name)?;
        Some(found.is_some_and(|s| s.selects(selector)))
    }

    /// Whether serin's Service `ns/name` is already as `body` (a [`super::service_body`])
    /// would make it: labels, owners, selector and ports; `None` when the cache cannot
    /// tell.
    pub fn service_is(&self, ns: &str, name: &str, body: &serde_json::Value) -> Option<bool> {
        let found = self.services.get(ns, name)?;
        let Some(svc) = found else {
            return Some(false);
        };
        let Ok(want) = serde_json::from_value::<Service>(body.clone()) else {
            return Some(false);
        };
        let labels_kept = want
            .metadata
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| svc.labels().get(k) == Some(v.as_str()));
        // A Canary deleted and created again owns its Services anew.
        let owned_alike = svc.owned_by(
            want.metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.as_str()),
        );
        let want_selector = want
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        Some(
            labels_kept
                && owned_alike
                && svc.selects(&want_selector)
                && svc.ports() == PortKey::of(want.spec.as_ref()),
        )
    }
}

/// `namespace`'s objects, or all namespaces'.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
