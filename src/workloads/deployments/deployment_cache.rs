//! The Deployments every reconcile observes (the user's and its primary), from the
//! watch that also wakes the Canaries, instead of two GETs per reconcile.
//!
//! The controller's trigger watch fills the store through a reflector, which updates
//! the store before the event wakes a Canary: a reconcile woken by a change always
//! sees at least that change. Serin's own writes are the exception, which
//! [`FreshStore`] covers.
//!
//! What is kept of a Deployment is what `observe` reads: metadata without
//! managedFields or foreign annotations, replicas, selector, the pod template's
//! metadata, the status counts, and, for a pod template that tracks no ConfigMaps or
//! Secrets, its revision (computed here once per change) and container images in
//! place of the pod spec. Writes never start from a cached copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{self, store::Writer, Store};

use super::primary::without_serin_annotations;
use crate::workloads::fresh_store::FreshStore;
use crate::workloads::pods::config_refs;
use crate::workloads::revision::revision_of;

/// On a cached copy only (never written to the API): the pod template's revision,
/// present when the template tracks no configs (its revision is the template's alone).
pub(super) const CACHED_REVISION: &str = "cache.serin.dev/revision";

/// On a cached copy with [`CACHED_REVISION`]: container name to image, as JSON, in
/// place of the pod spec (k8s-openapi's PodSpec and Container are kilobytes even when
/// nearly empty, and a cache holds one per Deployment).
pub(super) const CACHED_IMAGES: &str = "cache.serin.dev/images";

/// The Deployment store, aware of serin's writes, and its writer until taken.
#[derive(Clone)]
pub struct DeploymentCache {
    pub(super) fresh: FreshStore<Deployment>,
    /// Taken once by whoever runs the watch that fills the store.
    writer: Arc<Mutex<Option<Writer<Deployment>>>>,
}

/// The write half of a [`DeploymentCache`], for the controller's Deployment watch:
/// reflect the watch through [`DeploymentFeed::slim`] into `writer`. The writer is
/// shared: other controllers may `subscribe` to the same watch and read `store`.
pub struct DeploymentFeed {
    pub writer: Writer<Deployment>,
    pub store: Store<Deployment>,
}

impl DeploymentFeed {
    /// What the cache keeps of a Deployment the watch delivers.
    pub fn slim(d: &mut Deployment) {
        slim_for_cache(d)
    }
}

/// Changes the shared watch buffers for a subscriber that lags (then it waits).
const SUBSCRIBER_BUFFER: usize = 1024;

impl Default for DeploymentCache {
    fn default() -> Self {
        let (store, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
        Self::from_parts(store, Some(writer))
    }
}

impl DeploymentCache {
    /// A cache over `store`; `writer` is handed to the watch that fills it (tests fill
    /// the store themselves and pass `None`).
    pub fn from_parts(store: Store<Deployment>, writer: Option<Writer<Deployment>>) -> Self {
        Self {
            fresh: FreshStore::new(store, slim_for_cache),
            writer: Arc::new(Mutex::new(writer)),
        }
    }

    /// The writer, the first time only.
    pub fn take_feed(&self) -> Option<DeploymentFeed> {
        let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let store = self.fresh.store();
        slot.take().map(|writer| DeploymentFeed { writer, store })
    }
}

fn slim_for_cache(d: &mut Deployment) {
    d.metadata.managed_fields = None;
    if let Some(a) = d.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(crate::annotations::PREFIX));
    }
    if let Some(st) = d.status.as_mut() {
        st.conditions = None;
    }
    let Some(spec) = d.spec.as_mut() else {
        return;
    };
    spec.strategy = None;
    spec.revision_history_limit = None;
    spec.progress_deadline_seconds = None;
    // The revision exactly as `target_revision` computes it from the whole template.
    let mut template = spec.template.clone();
    without_serin_annotations(&mut template);
    let tracked = template.spec.as_ref().map(config_refs).unwrap_or_default();
    if !tracked.is_empty() {
        // Its revision needs the configs' data at reconcile time: keep the template.
        return;
    }
    let revision = revision_of(
        &serde_json::to_value(&template).unwrap_or_default(),
        &BTreeMap::new(),
    );
    let images: BTreeMap<String, String> = spec
        .template
        .spec
        .take()
        .map(|pod| {
            pod.containers
                .into_iter()
                .filter_map(|c| Some((c.name, c.image?)))
                .collect()
        })
        .unwrap_or_default();
    let annotations = d.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(CACHED_REVISION.to_string(), revision);
    annotations.insert(
        CACHED_IMAGES.to_string(),
        serde_json::to_string(&images).unwrap_or_default(),
    );
}
