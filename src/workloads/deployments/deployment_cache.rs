//! The Deployments every reconcile observes (the user's and its primary), from the
//! watch that also wakes the Canaries, instead of two GETs per reconcile.
//!
//! The controller's trigger watch fills the store through a reflector, which updates
//! the store before the event wakes a Canary: a reconcile woken by a change always
//! sees at least that change. Serin's own writes are the exception, which
//! [`FreshStore`] covers.
//!
//! What is kept of a Deployment is what `observe` reads: metadata without
//! managedFields or foreign annotations, replicas, selector, the pod template's labels
//! and annotations, the status counts, and, for a pod template that tracks no
//! ConfigMaps or Secrets, its revision (computed here once per change) and container
//! images in place of the pod spec. It is kept as a [`CachedDeployment`], not as a
//! k8s-openapi `Deployment`: that struct is 2.4 kB inline (the `PodSpec` is inline even
//! when absent), and the cache holds two per Canary. Writes never start from a cached
//! copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::runtime::reflector::{self, store::Writer, Store};

use super::primary::without_serin_annotations;
use crate::workloads::fresh_store::{FreshStore, WatchProgress};
use crate::workloads::pairs::Pairs;
use crate::workloads::pods::config_refs;
use crate::workloads::revision::revision_of;

/// On a cached copy only (never written to the API): the pod template's revision,
/// present when the template tracks no configs (its revision is the template's alone).
pub(super) const CACHED_REVISION: &str = "cache.serin.dev/revision";

/// On a cached copy with [`CACHED_REVISION`]: container name to image, as JSON, in
/// place of the pod spec (k8s-openapi's PodSpec and Container are kilobytes even when
/// nearly empty, and a cache holds one per Deployment).
pub(super) const CACHED_IMAGES: &str = "cache.serin.dev/images";

/// A Deployment as the cache keeps it (see the module docs). It is a `Resource` of
/// kind Deployment, so it is watched, stored, owned and referred to as one; it
/// deserializes from a Deployment, slimming it on the way in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedDeployment {
    /// Identity and owners only: the labels and annotations are kept as pairs below.
    pub metadata: ObjectMeta,
    labels: Pairs,
    /// Serin's own, and the cached revision and images.
    annotations: Pairs,
    spec: Option<CachedSpec>,
    status: Option<DeploymentStatus>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct CachedSpec {
    replicas: Option<i32>,
    min_ready_seconds: Option<i32>,
    paused: Option<bool>,
    match_labels: Option<Pairs>,
    match_expressions: Option<Vec<LabelSelectorRequirement>>,
    template_labels: Option<Pairs>,
    template_annotations: Option<Pairs>,
    /// The whole pod template, kept only when it tracks configs (its revision needs
    /// their data at reconcile time); the two fields above are then empty.
    tracked_template: Option<Box<PodTemplateSpec>>,
}

impl From<Deployment> for CachedDeployment {
    fn from(mut d: Deployment) -> Self {
        slim_for_cache(&mut d);
        let spec = d.spec.map(|s| {
            let DeploymentSpec {
                replicas,
                min_ready_seconds,
                paused,
                selector,
                template,
                ..
            } = s;
            let mut cached = CachedSpec {
                replicas,
                min_ready_seconds,
                paused,
                match_labels: selector.match_labels.map(Pairs::from),
                match_expressions: selector.match_expressions,
                ..Default::default()
            };
            if template.spec.is_some() {
                cached.tracked_template = Some(Box::new(template));
            } else if let Some(m) = template.metadata {
                cached.template_labels = m.labels.map(Pairs::from);
                cached.template_annotations = m.annotations.map(Pairs::from);
            }
            cached
        });
        let mut metadata = d.metadata;
        Self {
            labels: Pairs::take_from(&mut metadata.labels),
            annotations: Pairs::take_from(&mut metadata.annotations),
            metadata,
            spec,
            status: d.status,
        }
    }
}

impl CachedDeployment {
    /// Only the metadata (from a metadata-only watch), slimmed as the cache slims.
    pub fn from_metadata(metadata: ObjectMeta) -> Self {
        Self::from(Deployment {
            metadata,
            ..Default::default()
        })
    }

    /// Its labels (also what `ResourceExt::labels` would answer, which reads the
    /// emptied `metadata` and is shadowed by this).
    pub fn labels(&self) -> &Pairs {
        &self.labels
    }

    /// Its annotations: serin's, and the cache's own (shadows `ResourceExt` as
    /// [`Self::labels`] does).
    pub fn annotations(&self) -> &Pairs {
        &self.annotations
    }

    /// The cached copy as a Deployment, for code that reads Deployments.
    pub fn to_deployment(&self) -> Deployment {
        let spec = self.spec.as_ref().map(|s| DeploymentSpec {
            replicas: s.replicas,
            min_ready_seconds: s.min_ready_seconds,
            paused: s.paused,
            selector: LabelSelector {
                match_labels: s.match_labels.as_ref().map(Pairs::to_map),
                match_expressions: s.match_expressions.clone(),
            },
            template: match &s.tracked_template {
                Some(t) => (**t).clone(),
                None => PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: s.template_labels.as_ref().map(Pairs::to_map),
                        annotations: s.template_annotations.as_ref().map(Pairs::to_map),
                        ..Default::default()
                    }),
                    spec: None,
                },
            },
            ..Default::default()
        });
        Deployment {
            metadata: ObjectMeta {
                labels: self.labels.to_optional_map(),
                annotations: self.annotations.to_optional_map(),
                ..self.metadata.clone()
            },
            spec,
            status: self.status.clone(),
        }
    }
}

cached_resource!(CachedDeployment, Deployment);

/// The Deployment store, aware of serin's writes, and its writer until taken.
#[derive(Clone)]
pub struct DeploymentCache {
    pub(super) fresh: FreshStore<CachedDeployment>,
    /// Taken once by whoever runs the watch that fills the store.
    writer: Arc<Mutex<Option<Writer<CachedDeployment>>>>,
    progress: Arc<WatchProgress>,
}

/// The write half of a [`DeploymentCache`], for the controller's Deployment watch:
/// reflect a watch of [`CachedDeployment`]s into `writer`. The writer is shared: other
/// controllers may `subscribe` to the same watch and read `store`.
pub struct DeploymentFeed {
    pub writer: Writer<CachedDeployment>,
    pub store: Store<CachedDeployment>,
    /// For the watch to report its events to before the writer stores them.
    pub progress: Arc<WatchProgress>,
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
    pub fn from_parts(
        store: Store<CachedDeployment>,
        writer: Option<Writer<CachedDeployment>>,
    ) -> Self {
        let progress = Arc::new(WatchProgress::default());
        let mut fresh = FreshStore::new(store, |_| {});
        // Only a watch fed through `take_feed` reports its progress.
        if writer.is_some() {
            fresh = fresh.with_progress(progress.clone());
        }
        Self {
            // Slimmed on the way in: written copies are converted by the caller.
            fresh,
            writer: Arc::new(Mutex::new(writer)),
            progress,
        }
    }

    /// The writer, the first time only.
    pub fn take_feed(&self) -> Option<DeploymentFeed> {
        let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let store = self.fresh.store();
        slot.take().map(|writer| DeploymentFeed {
            writer,
            store,
            progress: self.progress.clone(),
        })
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
