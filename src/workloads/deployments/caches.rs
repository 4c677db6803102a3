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

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::crd::CANARY_LABEL;

/// The caches, each filled by its own watch.
#[derive(Clone)]
pub struct OwnedCaches {
    hpas: Store<HorizontalPodAutoscaler>,
    services: Store<Service>,
}

/// Only what the checks compare is kept: an HPA's name and spec, a Service's name,
/// labels and selector.
fn slim_hpa(h: &mut HorizontalPodAutoscaler) {
    h.metadata.managed_fields = None;
    h.metadata.annotations = None;
    h.status = None;
}

fn slim_service(s: &mut Service) {
    s.metadata.managed_fields = None;
    s.metadata.annotations = None;
    s.status = None;
    if let Some(spec) = s.spec.as_mut() {
        let selector = spec.selector.take();
        *spec = Default::default();
        spec.selector = selector;
    }
}

impl OwnedCaches {
    /// Watch the HPAs and serin's Services of `namespace` (`None`: all), in background
    /// tasks that end with the runtime.
    pub fn start(client: &Client, namespace: Option<&str>) -> Self {
        let (hpas, hpa_writer) = reflector::store();
        let (services, service_writer) = reflector::store();
        let hpa_api: Api<HorizontalPodAutoscaler> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let service_api: Api<Service> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let hpa_stream = reflector::reflector(
            hpa_writer,
            watcher(hpa_api, watcher::Config::default())
                .default_backoff()
                .modify(slim_hpa),
        );
        let service_stream = reflector::reflector(
            service_writer,
            watcher(service_api, watcher::Config::default().labels(CANARY_LABEL))
                .default_backoff()
                .modify(slim_service),
        );
        tokio::spawn(hpa_stream.for_each(|_| async {}));
        tokio::spawn(service_stream.for_each(|_| async {}));
        Self { hpas, services }
    }

    /// Caches over stores filled elsewhere (tests).
    pub fn from_stores(hpas: Store<HorizontalPodAutoscaler>, services: Store<Service>) -> Self {
        Self { hpas, services }
    }

    fn ready<K>(store: &Store<K>) -> bool
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone,
    {
        matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    /// The HPAs of `ns`; `None` until the cache holds its first list.
    pub fn hpas(&self, ns: &str) -> Option<Vec<HorizontalPodAutoscaler>> {
        Self::ready(&self.hpas).then(|| {
            self.hpas
                .state_filter(|h| h.metadata.namespace.as_deref() == Some(ns))
                .into_iter()
                .map(|h| (*h).clone())
                .collect()
        })
    }

    /// Whether serin's Service `ns/name` selects exactly `selector`; `None` when the
    /// cache cannot tell (not listed yet).
    pub fn service_selects(
        &self,
        ns: &str,
        name: &str,
        selector: &BTreeMap<String, String>,
    ) -> Option<bool> {
        if !Self::ready(&self.services) {
            return None;
        }
        let found = self.services.get(&ObjectRef::new(name).within(ns));
        Some(found.is_some_and(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| s == selector)
        }))
    }
}
