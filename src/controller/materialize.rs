//! Annotation onboarding: a Deployment with `serin.dev/enabled: "true"` gets a Canary
//! of the same name, owned by it; removing the annotation deletes that Canary (whose
//! finalizer hands the Deployment back). Canaries written by hand are never touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::instrument;

use super::events::EventSink;
use super::reconcile::FINALIZER;
use super::shard::Shard;
use super::status::{put_config_condition, write_status, WrittenVersions, INVALID_ANNOTATION};
use super::{Clock, ReconcileError};
use crate::annotations::{is_enabled, spec_from_annotations, AnnotationError};
use crate::crd::{Canary, FIELD_MANAGER};
use crate::metrics::{ControllerKind, ControllerMetrics};
use crate::rollout::{EventReason, Note, NoteType};
use crate::workloads::deployments::CachedDeployment;

/// Label on Canaries serin wrote from annotations.
pub const MANAGED_BY: &str = "serin.dev/managed-by";
pub const MANAGED_BY_ANNOTATIONS: &str = "annotations";

pub struct MaterializeContext {
    pub client: Client,
    /// Canaries as the Canary controller's watch sees them (no API call per Deployment).
    pub canaries: Store<Canary>,
    pub events: Arc<dyn EventSink>,
    pub clock: Clock,
    pub metrics: Arc<ControllerMetrics>,
    /// With `--label-selector`, the Canary carries the Deployment's shard labels (and
    /// the Canary store above only holds this shard's Canaries).
    pub shard: Shard,
    /// Leader fencing: nothing is written once this replica may no longer lead.
    pub fence: super::Fence,
    /// The Canary controller's record of serin's writes: the Canary applied here is
    /// its first reconcile's copy, so that reconcile does not read it again.
    pub written: Arc<WrittenVersions>,
}

fn managed(c: &Canary) -> bool {
    c.labels().get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_ANNOTATIONS)
}

/// The Canary serin applies for an annotated Deployment; `shard_labels` (the
/// Deployment's labels that `--label-selector` reads) put it in the Deployment's shard.
/// It carries serin's finalizer from its creation: one write instead of two, and no
/// moment in which a deleted Canary could go without handing its Deployment back.
pub fn canary_apply_body(
    d: &CachedDeployment,
    spec: &crate::crd::CanarySpec,
    shard_labels: &BTreeMap<String, String>,
) -> serde_json::Value {
    let mut labels = shard_labels.clone();
    labels.insert(MANAGED_BY.into(), MANAGED_BY_ANNOTATIONS.into());
    json!({
        "apiVersion": "serin.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {
            "name": d.name_any(),
            "namespace": d.namespace(),
            "labels": labels,
            "finalizers": [FINALIZER],
            "ownerReferences": d.controller_owner_ref(&()).map(|mut o| { o.controller = Some(false); o }).into_iter().collect::<Vec<_>>(),
        },
        "spec": spec,
    })
}

fn errors_message(errors: &[AnnotationError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[instrument(skip_all, fields(namespace = d.namespace().as_deref().unwrap_or(""), name = %d.name_any()))]
pub async fn reconcile_deployment(
    d: Arc<CachedDeployment>,
    ctx: Arc<MaterializeContext>,
) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let result = materialize(d, &ctx).await;
    let error = result.as_ref().err().map(ReconcileError::category);
    ctx.metrics
        .reconciles
        .observe(ControllerKind::Materialize, start.elapsed(), error);
    result
}

async fn materialize(
    d: Arc<CachedDeployment>,
    ctx: &MaterializeContext,
) -> Result<Action, ReconcileError> {
    let ns = d.namespace().ok_or(ReconcileError::NoNamespace)?;
    // Every branch below may write: a fenced replica stops here.
    ctx.fence
        .check()
        .map_err(|e| crate::release::ReleaseError::Fenced(e.to_string()))?;
    let name = d.name_any();
    let mut existing = ctx.canaries.get(&ObjectRef::new(&name).within(&ns));
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    let annotations = &d.annotations().to_map();
    let enabled =
        is_enabled(annotations).map(|on| on.then(|| spec_from_annotations(&name, annotations)));
    if existing.is_none() && ctx.shard.labels.is_some() && matches!(enabled, Ok(Some(_))) {
        // The store only holds this shard's Canaries: one outside it (written by hand
        // without the shard label, or still labelled for the Deployment's old shard)
        // must be seen before applying over it.
        existing = api.get_opt(&name).await?.map(Arc::new);
    }
    let shard_labels = ctx.shard.labels_to_copy(&d.labels().to_map());
    let outcome = match enabled {
        Ok(None) => {
            if let Some(c) =
                existing.filter(|c| managed(c) && c.metadata.deletion_timestamp.is_none())
            {
                api.delete(&c.name_any(), &DeleteParams::default()).await?;
                let note = Note {
                    type_: NoteType::Normal,
                    reason: EventReason::Disabled,
                    message: "serin.dev/enabled removed: handing the Deployment back".into(),
                };
                ctx.events
                    .publish(&d.object_ref(&()), "Disable", &note)
                    .await;
            }
            return Ok(Action::await_change());
        }
        Ok(Some(Ok(mut spec))) => {
            // Pause/resume (`kubectl serin pause`) is the operator's, not the annotations'.
            if let Some(c) = existing.as_ref() {
                spec.suspend = c.spec.suspend;
            }
            Ok(spec)
        }
        Ok(Some(Err(errors))) => Err(errors),
        Err(e) => Err(vec![e]),
    };
    match outcome {
        Ok(spec) => {
            let current = existing.as_ref().filter(|c| managed(c));
            // Up to date: the spec, and the shard labels (a Deployment moved between
            // shards moves its Canary with it).
            let up_to_date = current.is_some_and(|c| {
                c.spec == spec
                    && ctx.shard.labels.as_ref().is_none_or(|sel| {
                        sel.keys()
                            .into_iter()
                            .all(|k| c.labels().get(k) == shard_labels.get(k))
                    })
            });
            if existing.is_some() && current.is_none() {
                // A hand-written Canary of the same name wins; say so once per change.
                let note = Note {
                    type_: NoteType::Warning,
                    reason: EventReason::CanaryExists,
                    message: format!(
                        "a Canary {name} not written by serin exists; annotations are ignored"
                    ),
                };
                ctx.events
                    .publish(&d.object_ref(&()), "Onboard", &note)
                    .await;
                return Ok(Action::await_change());
            }
            if !up_to_date {
                let body = canary_apply_body(&d, &spec, &shard_labels);
                let applied = api
                    .patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&body),
                    )
                    .await?;
                ctx.written.record(&applied);
            }
            // Clear an earlier annotation problem.
            if let Some(c) = current {
                let mut status = c.status.clone().unwrap_or_default();
                let was_bad = status
                    .conditions
                    .iter()
                    .any(|x| EventReason::parse(&x.reason) == Some(EventReason::InvalidAnnotation));
                if was_bad {
                    put_config_condition(&mut status, None, c.metadata.generation, (ctx.clock)());
                    write_status(&api, c, &status).await?;
                }
            }
        }
        Err(errors) => {
            let message = errors_message(&errors);
            let note = Note {
                type_: NoteType::Warning,
                reason: EventReason::InvalidAnnotation,
                message: message.clone(),
            };
            ctx.events
                .publish(&d.object_ref(&()), "Onboard", &note)
                .await;
            // The Canary keeps its last good spec; its status says why it is not updated.
            if let Some(c) = existing.filter(|c| managed(c)) {
                let mut status = c.status.clone().unwrap_or_default();
                if put_config_condition(
                    &mut status,
                    Some((INVALID_ANNOTATION, message)),
                    c.metadata.generation,
                    (ctx.clock)(),
                ) {
                    write_status(&api, &c, &status).await?;
                }
            }
        }
    }
    Ok(Action::await_change())
}

pub fn materialize_error_policy(
    _d: Arc<CachedDeployment>,
    err: &ReconcileError,
    _ctx: Arc<MaterializeContext>,
) -> Action {
    tracing::warn!(error = %err, category = err.category(), "onboarding failed");
    Action::requeue(Duration::from_secs(15))
}
