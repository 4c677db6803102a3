//! Workloads on Kubernetes: the user's Deployment is the canary; serin keeps a
//! `<name>-primary` copy that serves stable traffic, plus `-primary` copies of the
//! ConfigMaps and Secrets it references, `<svc>-primary`/`<svc>-canary` Services, a
//! mirrored HPA and a ControllerRevision per revision written to the primary.

mod caches;
mod configs;
mod deployment_cache;
mod handback;
pub mod primary;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use self::primary::{
    owned_labels, primary_deployment, primary_from_record, selector_keys, selectors,
    without_serin_annotations, CONFIG_HASH_ANNOTATION, REVISION_ANNOTATION,
};
use super::pods::{config_refs, readiness, shared_labels, ConfigRef, PRIMARY_SUFFIX};
use super::revision::revision_of;
use super::{HandBack, WorkloadBackend, WorkloadError, WorkloadRef, WorkloadState};
use crate::crd::FIELD_MANAGER;

pub(crate) use caches::scoped;
pub use caches::OwnedCaches;
pub use deployment_cache::{CachedDeployment, DeploymentCache, DeploymentFeed};

/// Deployments, Services, HPAs and configs through the Kubernetes API.
#[derive(Clone)]
pub struct KubeWorkloads {
    client: Client,
    /// Watch caches for the checks every reconcile makes; `None`: read each time.
    caches: Option<OwnedCaches>,
    records: Arc<records::RecordBook>,
}

/// The target's revision, the configs it tracks and their digest.
struct TargetRevision {
    revision: String,
    tracked: BTreeSet<ConfigRef>,
    /// Digest of the tracked configs' data; `None` without tracked configs.
    config_hash: Option<String>,
}

impl KubeWorkloads {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            caches: None,
            records: Default::default(),
        }
    }

    /// Check the HPAs and serin's Services from these caches (a fresh read confirms
    /// anything missing before it is repaired).
    pub fn with_caches(mut self, caches: OwnedCaches) -> Self {
        self.caches = Some(caches);
        self
    }

    fn deployments(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn target(&self, w: &WorkloadRef) -> Result<Deployment, WorkloadError> {
        self.deployments(&w.namespace)
            .get_opt(&w.name)
            .await?
            .ok_or_else(|| WorkloadError::TargetNotFound {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            })
    }

    /// `ns/name` from the Deployment cache when it can answer, else from the API. The
    /// copy may be slim: for observing, never as the base of a write.
    async fn observed_deployment(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<Deployment>>, WorkloadError> {
        let cached = self
            .caches
            .as_ref()
            .and_then(|c| c.deployments.fresh.get(ns, name));
        Ok(match cached {
            Some(found) => found.map(|c| Arc::new(c.to_deployment())),
            None => self.deployments(ns).get_opt(name).await?.map(Arc::new),
        })
    }

    /// Serin wrote (or deleted, `None`) `ns/name`: until the cache has this version,
    /// the written copy answers for it.
    fn wrote(&self, ns: &str, name: &str, written: Option<Deployment>) {
        if let Some(c) = &self.caches {
            match written {
                Some(d) => c.deployments.fresh.note_write(&CachedDeployment::from(d)),
                None => c.deployments.fresh.note_delete(ns, name),
            }
        }
    }

    async fn target_revision(
        &self,
        w: &WorkloadRef,
        target: &Deployment,
    ) -> Result<TargetRevision, WorkloadError> {
        // A cached copy of a template that tracks no configs carries its revision.
        if let Some(revision) = annotation(target, deployment_cache::CACHED_REVISION) {
            return Ok(TargetRevision {
                revision,
                tracked: BTreeSet::new(),
                config_hash: None,
            });
        }
        let mut template = target.spec.as_ref().map(|s| s.template.clone());
        // serin's own marks on the pod template are not part of the revision.
        if let Some(t) = template.as_mut() {
            without_serin_annotations(t);
        }
        let tracked = template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .map(config_refs)
            .unwrap_or_default();
        let data = configs::fingerprints(&self.client, &w.namespace, &tracked).await?;
        let template_json = serde_json::to_value(&template).unwrap_or_default();
        let config_hash = (!tracked.is_empty()).then(|| revision_of(&json!(null), &data));
        Ok(TargetRevision {
            revision: revision_of(&template_json, &data),
            tracked,
            config_hash,
        })
    }

    /// Write the primary at `revision` (from the target if it has that revision, else
    /// from its record), then the Services and the HPA copy beside it.
    async fn write_primary(
        &self,
        w: &WorkloadRef,
        revision: &str,
        replicas: Option<i32>,
    ) -> Result<(), WorkloadError> {
        let target = self.target(w).await?;
        let found = self.target_revision(w, &target).await?;
        let target_replicas = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let replicas = replicas.unwrap_or(target_replicas).max(1);
        let primary = if found.revision == revision {
            configs::copy_for_primary(&self.client, w, &found.tracked).await?;
            let primary = primary_deployment(&target, w, revision, replicas, &found.tracked)?;
            if let Some(spec) = &primary.spec {
                records::save(&self.client, &self.records, w, revision, spec).await?;
            }
            primary
        } else {
            match records::load(&self.client, w, revision).await? {
                Some(spec) => primary_from_record(
                    spec,
                    target.metadata.labels.as_ref(),
                    w,
                    revision,
                    replicas,
                ),
                None => {
                    return Err(WorkloadError::RevisionMoved {
                        expected: revision.to_string(),
                        found: found.revision,
                    })
                }
            }
        };
        let written = self
            .deployments(&w.namespace)
            .patch(&w.primary_name(), &apply(), &Patch::Apply(&primary))
            .await?;
        self.wrote(&w.namespace, &w.primary_name(), Some(written));
        let (canary_sel, primary_sel) = selectors(&target)?;
        self.apply_services(w, &primary_sel, &canary_sel).await?;
        self.mirror_hpa(w).await
    }

    /// The target's HPA, if it has one, and all HPAs of its namespace: from the cache
    /// when `cached` allows and it has them (the bool says so), else listed.
    async fn target_hpa(
        &self,
        w: &WorkloadRef,
        cached: bool,
    ) -> Result<
        (
            Option<HorizontalPodAutoscaler>,
            Vec<HorizontalPodAutoscaler>,
            bool,
        ),
        WorkloadError,
    > {
        let from_cache = self
            .caches
            .as_ref()
            .filter(|_| cached)
            .and_then(|c| c.hpas(&w.namespace));
        let (all, was_cached) = match from_cache {
            Some(all) => (all, true),
            None => {
                let hpas: Api<HorizontalPodAutoscaler> =
                    Api::namespaced(self.client.clone(), &w.namespace);
                (hpas.list(&ListParams::default()).await?.items, false)
            }
        };
        let target = all
            .iter()
            .find(|h| {
                h.spec.as_ref().is_some_and(|s| {
                    s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == w.name
                })
            })
            .cloned();
        Ok((target, all, was_cached))
    }

    /// An HPA scaling the target gets a twin scaling the primary.
    async fn mirror_hpa(&self, w: &WorkloadRef) -> Result<(), WorkloadError> {
        // From the cache when it has listed: the twin copies the user's HPA as of a
        // moment ago, as it would between two promotions anyway, and an HPA the cache
        // has not shown yet is found by the next check (`owned_missing` confirms with a
        // fresh list) and mirrored then.
        let (Some(hpa), _, _) = self.target_hpa(w, true).await? else {
            return Ok(());
        };
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), &w.namespace);
        let name = format!("{}{PRIMARY_SUFFIX}", hpa.metadata.name.unwrap_or_default());
        let mut spec = hpa.spec.unwrap_or_default();
        spec.scale_target_ref.name = w.primary_name();
        let body = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": w.namespace, "ownerReferences": w.owner.iter().collect::<Vec<_>>(),
                         "labels": owned_labels(hpa.metadata.labels.as_ref(), w)},
            "spec": spec,
        });
        hpas.patch(&name, &apply(), &Patch::Apply(&body)).await?;
        Ok(())
    }

    async fn apply_services(
        &self,
        w: &WorkloadRef,
        primary_sel: &BTreeMap<String, String>,
        canary_sel: &BTreeMap<String, String>,
    ) -> Result<(), WorkloadError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &w.namespace);
        for (name, selector) in owned_services(w, primary_sel, canary_sel) {
            let body = service_body(w, &name, &selector);
            let unchanged = self
                .caches
                .as_ref()
                .and_then(|c| c.service_is(&w.namespace, &name, &body));
            if unchanged == Some(true) {
                continue;
            }
            let written = services
                .patch(&name, &apply(), &Patch::Apply(&body))
                .await?;
            if let Some(c) = &self.caches {
                c.services.note_write(&written.into());
            }
        }
        Ok(())
    }

    /// Owned objects beside the primary that are missing or drifted: the two Services
    /// (selector) and the HPA copy (when the target has an HPA).
    async fn owned_missing(
        &self,
        w: &WorkloadRef,
        primary_sel: &BTreeMap<String, String>,
        canary_sel: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, WorkloadError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &w.namespace);
        let mut missing = Vec::new();
        for (name, selector) in owned_services(w, primary_sel, canary_sel) {
            let cached = self
                .caches
                .as_ref()
                .and_then(|c| c.service_selects(&w.namespace, &name, &selector));
            if cached == Some(true) {
                continue;
            }
            let ok = services
                .get_opt(&name)
                .await?
                .and_then(|s| s.spec)
                .and_then(|s| s.selector)
                .is_some_and(|s| s == selector);
            if !ok {
                missing.push(format!("Service {name}"));
            }
        }
        let twin_missing = |hpa: Option<HorizontalPodAutoscaler>,
                            all: &[HorizontalPodAutoscaler]| {
            let twin = format!("{}{PRIMARY_SUFFIX}", hpa?.metadata.name.unwrap_or_default());
            let ok = all.iter().any(|h| {
                h.metadata.name.as_deref() == Some(twin.as_str())
                    && h.spec
                        .as_ref()
                        .is_some_and(|s| s.scale_target_ref.name == w.primary_name())
            });
            (!ok).then_some(twin)
        };
        let (hpa, all, cached) = self.target_hpa(w, true).await?;
        let mut twin = twin_missing(hpa, &all);
        if twin.is_some() && cached {
            // The cache may not have our own latest write yet: confirm first.
            let (hpa, all, _) = self.target_hpa(w, false).await?;
            twin = twin_missing(hpa, &all);
        }
        if let Some(twin) = twin {
            missing.push(format!("HorizontalPodAutoscaler {twin}"));
        }
        Ok(missing)
    }

    /// Scale the target and stamp its pod template with the tracked configs' digest, so
    /// the canary's pods restart when only a ConfigMap or Secret changed.
    async fn scale_target(&self, w: &WorkloadRef, replicas: i32) -> Result<(), WorkloadError> {
        // Only the tracked configs' digest comes from the target, which a cached copy
        // has (the body is replicas and that digest, never the copy).
        let target = self
            .observed_deployment(&w.namespace, &w.name)
            .await?
            .ok_or_else(|| WorkloadError::TargetNotFound {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            })?;
        let found = self.target_revision(w, &target).await?;
        let mut spec = json!({"replicas": replicas});
        if let Some(hash) = found.config_hash {
            spec["template"] = json!({"metadata": {"annotations": {CONFIG_HASH_ANNOTATION: hash}}});
        }
        // Forced: `.spec.replicas` is owned by whoever created the Deployment (409
        // FieldManagerConflict otherwise); serin takes it over while it manages the app.
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": w.name, "namespace": w.namespace}, "spec": spec});
        let written = self
            .deployments(&w.namespace)
            .patch(&w.name, &apply(), &Patch::Apply(&body))
            .await?;
        self.wrote(&w.namespace, &w.name, Some(written));
        Ok(())
    }
}

/// `<svc>-primary` and `<svc>-canary` with their selectors.
fn owned_services(
    w: &WorkloadRef,
    primary_sel: &BTreeMap<String, String>,
    canary_sel: &BTreeMap<String, String>,
) -> [(String, BTreeMap<String, String>); 2] {
    let svc = w.service_name();
    [
        (format!("{svc}-primary"), primary_sel.clone()),
        (format!("{svc}-canary"), canary_sel.clone()),
    ]
}

/// Server-side apply as serin, forcing ownership of exactly the fields in the body.
pub(crate) fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A ClusterIP Service `name` selecting `selector`, owned by the Canary.
pub(crate) fn service_body(
    w: &WorkloadRef,
    name: &str,
    selector: &BTreeMap<String, String>,
) -> serde_json::Value {
    let target_port = match w.service.target_port.as_deref() {
        Some(p) => p
            .parse::<i32>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(p)),
        None => json!(w.service.port),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": w.namespace,
                     "labels": owned_labels(None, w),
                     "ownerReferences": w.owner.iter().collect::<Vec<_>>()},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": w.service.port_name, "port": w.service.port,
                       "targetPort": target_port, "protocol": "TCP"}]
        }
    })
}

/// Container name to image of `d`'s pod template (what a downstream environment
/// compares with what its upstream promoted).
fn images_of(d: &Deployment) -> BTreeMap<String, String> {
    if let Some(images) = annotation(d, deployment_cache::CACHED_IMAGES) {
        return serde_json::from_str(&images).unwrap_or_default();
    }
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn annotation(d: &Deployment, key: &str) -> Option<String> {
    d.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

#[async_trait]
impl WorkloadBackend for KubeWorkloads {
    async fn observe(&self, w: &WorkloadRef) -> Result<WorkloadState, WorkloadError> {
        let target = self
            .observed_deployment(&w.namespace, &w.name)
            .await?
            .ok_or_else(|| WorkloadError::TargetNotFound {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            })?;
        let found = self.target_revision(w, &target).await?;
        let (canary_selector, primary_selector) = selectors(&target)?;
        let keys = selector_keys(&target)?;
        let primary = self
            .observed_deployment(&w.namespace, &w.primary_name())
            .await?;
        let (canary_ready, canary_available) = readiness(&target);
        let template_labels = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default()
        };
        let stamped = target
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned());
        let mut state = WorkloadState {
            target_revision: found.revision,
            canary_replicas: target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            canary_ready,
            canary_available,
            canary_config_stale: found.config_hash.is_some() && stamped != found.config_hash,
            target_images: images_of(&target),
            ..Default::default()
        };
        if let Some(p) = primary {
            state.primary_exists = true;
            state.primary_revision = annotation(&p, REVISION_ANNOTATION);
            state.primary_ready = readiness(&p).0;
            state.primary_replicas = p.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            state.shared_labels =
                shared_labels(&template_labels(&target), &template_labels(&p), &keys);
            state.owned_missing = self
                .owned_missing(w, &primary_selector, &canary_selector)
                .await?;
        }
        state.primary_selector = primary_selector;
        state.canary_selector = canary_selector;
        Ok(state)
    }

    async fn initialize_primary(
        &self,
        w: &WorkloadRef,
        revision: &str,
        replicas: Option<i32>,
    ) -> Result<(), WorkloadError> {
        self.write_primary(w, revision, replicas).await
    }

    async fn promote_primary(&self, w: &WorkloadRef, revision: &str) -> Result<(), WorkloadError> {
        // Keep the primary's current scale (an HPA may own it).
        let current = self
            .observed_deployment(&w.namespace, &w.primary_name())
            .await?
            .and_then(|p| p.spec.as_ref().and_then(|s| s.replicas));
        self.write_primary(w, revision, current).await
    }

    async fn scale_canary(&self, w: &WorkloadRef, replicas: i32) -> Result<(), WorkloadError> {
        self.scale_target(w, replicas).await
    }

    async fn restore_target(
        &self,
        w: &WorkloadRef,
        stable_revision: Option<&str>,
        replicas: Option<i32>,
    ) -> Result<HandBack, WorkloadError> {
        handback::restore_target(self, w, stable_revision, replicas).await
    }

    async fn remove_primary(&self, w: &WorkloadRef) -> Result<(), WorkloadError> {
        handback::release_and_remove(self, w).await
    }

    fn deployment_feed(&self) -> Option<DeploymentFeed> {
        self.caches.as_ref()?.deployments.take_feed()
    }
}

#[cfg(test)]
mod tests;
