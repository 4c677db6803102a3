//! The spec of every revision serin writes to the primary, kept in an `apps/v1`
//! ControllerRevision (as StatefulSets and DaemonSets keep theirs). While a release or
//! a rolled-back revision sits on the user's Deployment, this record is the only copy
//! of the stable spec: a deleted primary is recreated from it, and the hand-back gives
//! it to the user's Deployment.

use k8s_openapi::api::apps::v1::{ControllerRevision, DeploymentSpec};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch};
use kube::{Api, Client};

use super::apply;
use crate::crd::CANARY_LABEL;
use crate::workloads::{WorkloadError, WorkloadRef};

/// Label naming the primary a record belongs to.
pub const RECORD_LABEL: &str = "serin.dev/primary";

/// How many records a primary keeps (the stable one and a few before it).
const KEEP: usize = 3;

fn api(client: &Client, ns: &str) -> Api<ControllerRevision> {
    Api::namespaced(client.clone(), ns)
}

pub fn record_name(w: &WorkloadRef, revision: &str) -> String {
    format!("{}-{revision}", w.primary_name())
}

/// Record `spec` (replicas left out: the scale is not part of a revision) as the spec
/// of `revision`, and prune the oldest records beyond [`KEEP`].
pub async fn save(
    client: &Client,
    w: &WorkloadRef,
    revision: &str,
    spec: &DeploymentSpec,
) -> Result<(), WorkloadError> {
    let api = api(client, &w.namespace);
    let selector = format!("{RECORD_LABEL}={}", w.primary_name());
    let mut existing = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let name = record_name(w, revision);
    let mut spec = spec.clone();
    spec.replicas = None;
    let data = serde_json::to_value(&spec)
        .map_err(|e| WorkloadError::Backend(format!("encoding the primary's spec: {e}")))?;
    let same = existing
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name.as_str()));
    let number = match same {
        Some(r) => r.revision,
        None => existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1,
    };
    if same.is_none_or(|r| r.data.as_ref().map(|d| &d.0) != Some(&data)) {
        let body = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(w.namespace.clone()),
                labels: Some(
                    [
                        (RECORD_LABEL.to_string(), w.primary_name()),
                        (CANARY_LABEL.to_string(), w.canary_name()),
                    ]
                    .into(),
                ),
                owner_references: w.owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: number,
        };
        let mut value = serde_json::to_value(&body)
            .map_err(|e| WorkloadError::Backend(format!("encoding a ControllerRevision: {e}")))?;
        value["apiVersion"] = "apps/v1".into();
        value["kind"] = "ControllerRevision".into();
        api.patch(&name, &apply(), &Patch::Apply(&value)).await?;
    }
    existing.retain(|r| r.metadata.name.as_deref() != Some(name.as_str()));
    existing.sort_by_key(|r| std::cmp::Reverse(r.revision));
    for old in existing.iter().skip(KEEP - 1) {
        if let Some(n) = &old.metadata.name {
            ignore_missing(api.delete(n, &DeleteParams::background()).await.map(|_| ()))?;
        }
    }
    Ok(())
}

/// The recorded spec of `revision`, if serin wrote that revision to the primary.
pub async fn load(
    client: &Client,
    w: &WorkloadRef,
    revision: &str,
) -> Result<Option<DeploymentSpec>, WorkloadError> {
    let Some(r) = api(client, &w.namespace)
        .get_opt(&record_name(w, revision))
        .await?
    else {
        return Ok(None);
    };
    let Some(data) = r.data else {
        return Ok(None);
    };
    serde_json::from_value(data.0).map(Some).map_err(|e| {
        WorkloadError::Backend(format!(
            "ControllerRevision {} does not hold a Deployment spec: {e}",
            record_name(w, revision)
        ))
    })
}

/// Remove every record of the primary (on hand-back).
pub async fn delete_all(client: &Client, w: &WorkloadRef) -> Result<(), WorkloadError> {
    let api = api(client, &w.namespace);
    let selector = format!("{RECORD_LABEL}={}", w.primary_name());
    for r in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        if let Some(n) = &r.metadata.name {
            ignore_missing(api.delete(n, &DeleteParams::background()).await.map(|_| ()))?;
        }
    }
    Ok(())
}

pub(crate) fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}
