//! Workloads on Kubernetes: the user's Deployment is the canary; serin keeps a
//! `<name>-primary` copy that serves stable traffic, plus `-primary` copies of the
//! ConfigMaps and Secrets it references, `<svc>-primary`/`<svc>-canary` Services and a
//! mirrored HPA.

mod configs;
pub mod primary;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use self::primary::{
    primary_deployment, restored_template, selector_keys, selectors, REVISION_ANNOTATION,
};
use super::pods::{config_refs, readiness, shared_labels, ConfigRef, PRIMARY_SUFFIX};
use super::revision::revision_of;
use super::{HandBack, WorkloadBackend, WorkloadError, WorkloadRef, WorkloadState};
use crate::crd::FIELD_MANAGER;

/// Deployments, Services, HPAs and configs through the Kubernetes API.
#[derive(Clone)]
pub struct KubeWorkloads {
    client: Client,
}

impl KubeWorkloads {
    pub fn new(client: Client) -> Self {
        Self { client }
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

    /// The target's revision and the configs it tracks.
    async fn target_revision(
        &self,
        w: &WorkloadRef,
        target: &Deployment,
    ) -> Result<(String, BTreeSet<ConfigRef>), WorkloadError> {
        let template = target.spec.as_ref().map(|s| &s.template);
        let tracked = template
            .and_then(|t| t.spec.as_ref())
            .map(config_refs)
            .unwrap_or_default();
        let data = configs::fingerprints(&self.client, &w.namespace, &tracked).await?;
        let template_json = serde_json::to_value(template).unwrap_or_default();
        Ok((revision_of(&template_json, &data), tracked))
    }

    /// Write the primary from the target, refusing if the target moved off `revision`.
    async fn write_primary(
        &self,
        w: &WorkloadRef,
        revision: &str,
        replicas: Option<i32>,
    ) -> Result<Deployment, WorkloadError> {
        let target = self.target(w).await?;
        let (found, tracked) = self.target_revision(w, &target).await?;
        if found != revision {
            return Err(WorkloadError::RevisionMoved {
                expected: revision.to_string(),
                found,
            });
        }
        configs::copy_for_primary(&self.client, w, &tracked).await?;
        let replicas = match replicas {
            Some(r) => r,
            None => target
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                .max(1),
        };
        let primary = primary_deployment(&target, w, revision, replicas, &tracked)?;
        self.deployments(&w.namespace)
            .patch(&w.primary_name(), &apply(), &Patch::Apply(&primary))
            .await?;
        self.mirror_hpa(w).await?;
        Ok(target)
    }

    /// An HPA scaling the target gets a twin scaling the primary.
    async fn mirror_hpa(&self, w: &WorkloadRef) -> Result<(), WorkloadError> {
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), &w.namespace);
        let list = hpas.list(&ListParams::default()).await?;
        let Some(hpa) = list.items.into_iter().find(|h| {
            h.spec.as_ref().is_some_and(|s| {
                s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == w.name
            })
        }) else {
            return Ok(());
        };
        let name = format!("{}{PRIMARY_SUFFIX}", hpa.metadata.name.unwrap_or_default());
        let mut spec = hpa.spec.unwrap_or_default();
        spec.scale_target_ref.name = w.primary_name();
        let body = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": w.namespace, "ownerReferences": w.owner.iter().collect::<Vec<_>>(),
                         "labels": hpa.metadata.labels},
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
        let svc = w.service_name();
        for (name, selector) in [
            (format!("{svc}-primary"), primary_sel),
            (format!("{svc}-canary"), canary_sel),
        ] {
            let body = service_body(w, &name, selector);
            services
                .patch(&name, &apply(), &Patch::Apply(&body))
                .await?;
        }
        Ok(())
    }

    async fn scale(&self, ns: &str, name: &str, replicas: i32) -> Result<(), WorkloadError> {
        // Forced: `.spec.replicas` is owned by whoever created the Deployment (409
        // FieldManagerConflict otherwise); serin takes it over while it manages the app.
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": replicas}});
        self.deployments(ns)
            .patch(name, &apply(), &Patch::Apply(&body))
            .await?;
        Ok(())
    }
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
                     "ownerReferences": w.owner.iter().collect::<Vec<_>>()},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": w.service.port_name, "port": w.service.port,
                       "targetPort": target_port, "protocol": "TCP"}]
        }
    })
}

#[async_trait]
impl WorkloadBackend for KubeWorkloads {
    async fn observe(&self, w: &WorkloadRef) -> Result<WorkloadState, WorkloadError> {
        let target = self.target(w).await?;
        let (target_revision, _) = self.target_revision(w, &target).await?;
        let (canary_selector, primary_selector) = selectors(&target)?;
        let keys = selector_keys(&target)?;
        let primary = self
            .deployments(&w.namespace)
            .get_opt(&w.primary_name())
            .await?;
        let (canary_ready, canary_available) = readiness(&target);
        let template_labels = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default()
        };
        let mut state = WorkloadState {
            target_revision,
            canary_replicas: target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            canary_ready,
            canary_available,
            primary_selector,
            canary_selector,
            ..Default::default()
        };
        if let Some(p) = primary {
            state.primary_exists = true;
            state.primary_revision = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION).cloned());
            state.primary_ready = readiness(&p).0;
            state.primary_replicas = p.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            state.shared_labels =
                shared_labels(&template_labels(&target), &template_labels(&p), &keys);
        }
        Ok(state)
    }

    async fn initialize_primary(
        &self,
        w: &WorkloadRef,
        revision: &str,
    ) -> Result<(), WorkloadError> {
        let target = self.write_primary(w, revision, None).await?;
        let (canary_sel, primary_sel) = selectors(&target)?;
        self.apply_services(w, &primary_sel, &canary_sel).await
    }

    async fn promote_primary(&self, w: &WorkloadRef, revision: &str) -> Result<(), WorkloadError> {
        // Keep the primary's current scale (an HPA may own it).
        let current = self
            .deployments(&w.namespace)
            .get_opt(&w.primary_name())
            .await?
            .and_then(|p| p.spec.and_then(|s| s.replicas));
        self.write_primary(w, revision, current).await.map(|_| ())
    }

    async fn scale_canary(&self, w: &WorkloadRef, replicas: i32) -> Result<(), WorkloadError> {
        self.scale(&w.namespace, &w.name, replicas).await
    }

    async fn restore_target(&self, w: &WorkloadRef) -> Result<HandBack, WorkloadError> {
        let target = self.target(w).await?;
        let Some(primary) = self
            .deployments(&w.namespace)
            .get_opt(&w.primary_name())
            .await?
        else {
            return Ok(HandBack::Done);
        };
        let primary_rev = primary
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION).cloned());
        let (target_rev, _) = self.target_revision(w, &target).await?;
        let replicas = primary
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(1);
        let mut spec = json!({"replicas": replicas});
        if primary_rev.as_deref() != Some(target_rev.as_str()) {
            // The user's Deployment holds a rolled-back revision: give it the stable one.
            let keys = selector_keys(&target)?;
            let tracked = primary
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(config_refs)
                .unwrap_or_default();
            if let Some(t) = restored_template(&primary, &keys, &tracked) {
                spec["template"] = serde_json::to_value(t).unwrap_or_default();
            }
        }
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": w.name, "namespace": w.namespace}, "spec": spec});
        let updated = self
            .deployments(&w.namespace)
            .patch(&w.name, &apply(), &Patch::Apply(&body))
            .await?;
        if readiness(&updated).0 {
            Ok(HandBack::Done)
        } else {
            Ok(HandBack::Pending(format!(
                "waiting for Deployment {} to be ready with {replicas} replicas before moving traffic back",
                w.name
            )))
        }
    }

    async fn remove_primary(&self, w: &WorkloadRef) -> Result<(), WorkloadError> {
        let dp = DeleteParams::background();
        let ignore_missing = |r: Result<(), kube::Error>| match r {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other,
        };
        let deps = self.deployments(&w.namespace);
        let primary = deps.get_opt(&w.primary_name()).await?;
        if let Some(p) = &primary {
            let tracked = p
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(config_refs)
                .unwrap_or_default();
            configs::delete_copies(&self.client, &w.namespace, &tracked).await?;
            ignore_missing(deps.delete(&w.primary_name(), &dp).await.map(|_| ()))?;
        }
        let services: Api<Service> = Api::namespaced(self.client.clone(), &w.namespace);
        let svc = w.service_name();
        for name in [format!("{svc}-primary"), format!("{svc}-canary")] {
            ignore_missing(services.delete(&name, &dp).await.map(|_| ()))?;
        }
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), &w.namespace);
        for h in hpas.list(&ListParams::default()).await?.items {
            let mirrors_ours = h
                .spec
                .as_ref()
                .is_some_and(|s| s.scale_target_ref.name == w.primary_name());
            if let (true, Some(name)) = (mirrors_ours, h.metadata.name) {
                ignore_missing(hpas.delete(&name, &dp).await.map(|_| ()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
