//! Handing the user's Deployment back: the last promoted spec at the primary's scale,
//! then serin's field ownership released (fields stay, owned by nobody, as on objects
//! written before server-side apply), then serin's objects removed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use super::primary::{restored_template, selector_keys};
use super::records::{self, ignore_missing};
use super::{apply, configs, KubeWorkloads};
use crate::crd::{FIELD_MANAGER, RELEASE_FIELD_MANAGER};
use crate::workloads::pods::{config_refs, readiness};
use crate::workloads::{HandBack, WorkloadError, WorkloadRef};

/// Give the target the stable spec at the primary's scale. The body is the same on
/// every call (the stable template whenever one is known), so a second call never
/// drops fields the first one took over.
pub(super) async fn restore_target(
    k: &KubeWorkloads,
    w: &WorkloadRef,
    stable_revision: Option<&str>,
    replicas: Option<i32>,
) -> Result<HandBack, WorkloadError> {
    let target = k.target(w).await?;
    let primary = k
        .deployments(&w.namespace)
        .get_opt(&w.primary_name())
        .await?;
    let keys = selector_keys(&target)?;
    // The spec of `stable_revision`: the primary's when it runs it, else its record,
    // else whatever the primary runs; without either, the target keeps its own.
    let primary_rev = primary
        .as_ref()
        .and_then(|p| p.metadata.annotations.as_ref())
        .and_then(|a| a.get(super::primary::REVISION_ANNOTATION))
        .map(String::as_str);
    let primary_spec = match (&primary, stable_revision) {
        (Some(p), Some(rev)) if primary_rev == Some(rev) => p.spec.clone(),
        (p, Some(rev)) => match records::load(&k.client, w, rev).await? {
            Some(spec) => Some(spec),
            None => p.as_ref().and_then(|p| p.spec.clone()),
        },
        (Some(p), None) => p.spec.clone(),
        (None, None) => None,
    };
    let replicas = primary
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.replicas)
        .or(replicas)
        .or_else(|| target.spec.as_ref().and_then(|s| s.replicas))
        .unwrap_or(1)
        .max(1);
    let mut spec = json!({"replicas": replicas});
    if let Some(ps) = &primary_spec {
        let tracked = ps
            .template
            .spec
            .as_ref()
            .map(config_refs)
            .unwrap_or_default();
        let template = restored_template(ps, &keys, &tracked);
        spec["template"] = serde_json::to_value(template).unwrap_or_default();
    }
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": w.name, "namespace": w.namespace}, "spec": spec});
    let updated = k
        .deployments(&w.namespace)
        .patch(&w.name, &apply(), &Patch::Apply(&body))
        .await?;
    let ready = readiness(&updated).0;
    k.wrote(&w.namespace, &w.name, Some(updated));
    if ready {
        Ok(HandBack::Done)
    } else {
        Ok(HandBack::Pending(format!(
            "waiting for Deployment {} to be ready with {replicas} replicas before moving traffic back",
            w.name
        )))
    }
}

/// Drop serin's server-side-apply entries from the target's managedFields (its own and
/// those of images registered by CI), so later applies by serin's absence remove
/// nothing and its owners apply without conflicts.
async fn release_fields(k: &KubeWorkloads, w: &WorkloadRef) -> Result<(), WorkloadError> {
    let api = k.deployments(&w.namespace);
    let Some(target) = api.get_opt(&w.name).await? else {
        return Ok(());
    };
    let entries = target.metadata.managed_fields.clone().unwrap_or_default();
    let ours = |e: &ManagedFieldsEntry| matches!(e.manager.as_deref(), Some(m) if m == FIELD_MANAGER || m == RELEASE_FIELD_MANAGER);
    if !entries.iter().any(ours) {
        return Ok(());
    }
    let rest: Vec<&ManagedFieldsEntry> = entries.iter().filter(|e| !ours(e)).collect();
    // An empty list would leave managedFields untouched; `[{}]` clears it.
    let value = if rest.is_empty() {
        json!([{}])
    } else {
        json!(rest)
    };
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": target.metadata.resource_version},
        {"op": "replace", "path": "/metadata/managedFields", "value": value},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch)
        .map_err(|e| WorkloadError::Backend(format!("building the managedFields patch: {e}")))?;
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let updated = api
        .patch(&w.name, &pp, &Patch::<Deployment>::Json(patch))
        .await?;
    k.wrote(&w.namespace, &w.name, Some(updated));
    Ok(())
}

/// Release the target's fields, then delete the primary, its config copies, the
/// Services, the HPA copy and the records. Every step tolerates "already gone".
pub(super) async fn release_and_remove(
    k: &KubeWorkloads,
    w: &WorkloadRef,
) -> Result<(), WorkloadError> {
    release_fields(k, w).await?;
    let dp = DeleteParams::background();
    let deps = k.deployments(&w.namespace);
    if let Some(p) = deps.get_opt(&w.primary_name()).await? {
        let tracked = p
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(config_refs)
            .unwrap_or_default();
        configs::delete_copies(&k.client, &w.namespace, &tracked).await?;
        ignore_missing(deps.delete(&w.primary_name(), &dp).await.map(|_| ()))?;
        k.wrote(&w.namespace, &w.primary_name(), None);
    }
    let services: Api<Service> = Api::namespaced(k.client.clone(), &w.namespace);
    let svc = w.service_name();
    for name in [format!("{svc}-primary"), format!("{svc}-canary")] {
        ignore_missing(services.delete(&name, &dp).await.map(|_| ()))?;
    }
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(k.client.clone(), &w.namespace);
    for h in hpas.list(&ListParams::default()).await?.items {
        let mirrors_ours = h
            .spec
            .as_ref()
            .is_some_and(|s| s.scale_target_ref.name == w.primary_name());
        if let (true, Some(name)) = (mirrors_ours, h.metadata.name) {
            ignore_missing(hpas.delete(&name, &dp).await.map(|_| ()))?;
        }
    }
    records::delete_all(&k.client, &k.records, w).await
}
