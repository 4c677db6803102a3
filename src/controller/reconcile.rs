//! The Canary reconciler: fresh read, finalizer, config checks, one release step,
//! status write, Events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::status::{set_config_condition, write_status};
use super::templates::{load_hook_secrets, load_metrics};
use super::{Context, ReconcileError};
use crate::crd::Canary;
use crate::metrics::ControllerKind;
use crate::notify::NotifyEvent;
use crate::release::{
    hand_back, reconcile_release, Hooks, ReleaseDeps, ReleaseError, ReleaseSubject,
};
use crate::rollout::{Note, NoteType, ReleasePlan};
use crate::workloads::HandBack;

/// Holds the Canary until its Deployment has been handed back.
pub const FINALIZER: &str = "serin.dev/finalizer";

const CONFIG_RETRY: Duration = Duration::from_secs(300);

fn owner_of(c: &Canary) -> Option<OwnerReference> {
    c.controller_owner_ref(&())
}

fn reference(c: &Canary) -> ObjectReference {
    c.object_ref(&())
}

#[instrument(skip_all, fields(namespace = obj.namespace().as_deref().unwrap_or(""), name = %obj.name_any()))]
pub async fn reconcile_canary(
    obj: Arc<Canary>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let result = reconcile(obj, &ctx).await;
    let error = result.as_ref().err().map(ReconcileError::category);
    ctx.metrics
        .observe_reconcile(ControllerKind::Canary, start.elapsed(), error);
    result
}

async fn reconcile(obj: Arc<Canary>, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    // Read fresh: the watch cache may not have our own last status write yet.
    let Some(canary) = api.get_opt(&obj.name_any()).await? else {
        ctx.metrics.forget_canary(&ns, &obj.name_any());
        return Ok(Action::await_change());
    };
    if canary.metadata.deletion_timestamp.is_some() {
        return finalize(&api, &canary, ctx).await;
    }
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = canary.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        // resourceVersion makes this a compare-and-swap on the list.
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
        api.patch(
            &canary.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let now = (ctx.clock)();
    let status = canary.status.clone().unwrap_or_default();
    let generation = canary.metadata.generation;

    let (router, metrics) = match check_config(&canary, ctx, &ns).await? {
        Ok(ok) => ok,
        Err((reason, message)) => {
            return config_problem(&api, &canary, ctx, status, reason, message, now).await;
        }
    };

    let hooks = match (&ctx.webhooks, canary.spec.webhooks.is_empty()) {
        (Some(caller), false) => {
            match load_hook_secrets(&ctx.client, &ns, &canary.spec.webhooks).await? {
                Ok(secrets) => Some(Hooks {
                    caller: caller.clone(),
                    secrets,
                }),
                Err(message) => {
                    return config_problem(
                        &api,
                        &canary,
                        ctx,
                        status,
                        "InvalidWebhook",
                        message,
                        now,
                    )
                    .await;
                }
            }
        }
        _ => None,
    };
    let deps = ReleaseDeps {
        workloads: ctx.workloads.clone(),
        router,
        sources: ctx.sources.clone(),
        check_timeout: ctx.check_timeout,
        hooks,
        metrics: ctx.metrics.clone(),
    };
    let subject = ReleaseSubject {
        namespace: &ns,
        name: &canary.name_any(),
        spec: &canary.spec,
        status: &status,
        owner: owner_of(&canary),
        metrics: &metrics,
    };
    let decision = match reconcile_release(&deps, &subject, now).await {
        Ok(d) => d,
        Err(e) if e.category() == "config" || e.category() == "not_found" => {
            let message = e.to_string();
            return config_problem(&api, &canary, ctx, status, "InvalidSpec", message, now).await;
        }
        Err(e) => return Err(e.into()),
    };
    let mut next = decision.status;
    set_config_condition(&mut next, None, generation, now);
    next.observed_generation = generation;
    if next != status || canary.status.is_none() {
        write_status(&api, &canary, &next).await?;
    }
    let name = canary.name_any();
    ctx.metrics
        .observe_canary(&ns, &name, next.phase, next.canary_weight);
    ctx.metrics.observe_notes(&ns, &name, &decision.notes);
    for note in &decision.notes {
        info!(reason = note.reason, message = %note.message, "transition");
        ctx.events
            .publish(&reference(&canary), next.phase.as_str(), note)
            .await;
        if let Some(n) = &ctx.notify {
            // Non-blocking: a receiver that is down never slows a release.
            n.send(NotifyEvent::from_note(
                &ns,
                &canary.name_any(),
                &canary.spec,
                &next,
                note,
                now,
            ));
        }
    }
    Ok(Action::requeue(decision.requeue_after))
}

/// A problem the user must fix: say so on the Canary (condition, message, one Warning
/// Event when it first appears) and look again later, touching nothing else.
async fn config_problem(
    api: &Api<Canary>,
    canary: &Canary,
    ctx: &Context,
    mut status: crate::crd::CanaryStatus,
    reason: &'static str,
    message: String,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Action, ReconcileError> {
    let changed = set_config_condition(
        &mut status,
        Some((reason, message.clone())),
        canary.metadata.generation,
        now,
    );
    status.message = message.clone();
    write_status(api, canary, &status).await?;
    ctx.metrics.observe_canary(
        &canary.namespace().unwrap_or_default(),
        &canary.name_any(),
        status.phase,
        status.canary_weight,
    );
    if changed {
        let note = Note {
            type_: NoteType::Warning,
            reason,
            message,
        };
        ctx.events
            .publish(&reference(canary), "Validate", &note)
            .await;
    }
    Ok(Action::requeue(CONFIG_RETRY))
}

type Ready = (
    Arc<dyn crate::traffic::TrafficRouter>,
    Vec<crate::analysis::ResolvedMetric>,
);

/// Router, plan and templates: a user-fixable problem as `Err((reason, message))`.
async fn check_config(
    canary: &Canary,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Ready, (&'static str, String)>, ReconcileError> {
    let router = match ctx
        .routers
        .pick(canary.spec.router.as_deref(), ns, &canary.name_any())
    {
        Ok(r) => r,
        Err(e) => return Ok(Err(("RouterUnavailable", e.to_string()))),
    };
    if let Err(e) =
        ReleasePlan::from_spec(&canary.spec, router.replica_weighting(canary.spec.strategy))
    {
        return Ok(Err(("InvalidSpec", e.to_string())));
    }
    match load_metrics(
        &ctx.client,
        ns,
        &canary.spec.analysis.templates,
        &ctx.controller_namespace,
    )
    .await?
    {
        Ok(m) => Ok(Ok((router, m))),
        Err(e) => Ok(Err((
            if e.category() == "template_not_found" {
                "TemplateNotFound"
            } else {
                "InvalidTemplate"
            },
            e.to_string(),
        ))),
    }
}

/// Canary deleted: hand the Deployment back, then let it go.
async fn finalize(
    api: &Api<Canary>,
    canary: &Canary,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = canary.namespace().unwrap_or_default();
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        ctx.metrics.forget_canary(&ns, &canary.name_any());
        return Ok(Action::await_change());
    }
    let router = ctx
        .routers
        .pick(canary.spec.router.as_deref(), &ns, &canary.name_any());
    let status = canary.status.clone().unwrap_or_default();
    let name = canary.name_any();
    if let Ok(router) = router {
        let deps = ReleaseDeps {
            workloads: ctx.workloads.clone(),
            router,
            sources: ctx.sources.clone(),
            check_timeout: ctx.check_timeout,
            hooks: None,
            metrics: ctx.metrics.clone(),
        };
        let subject = ReleaseSubject {
            namespace: &ns,
            name: &name,
            spec: &canary.spec,
            status: &status,
            owner: owner_of(canary),
            metrics: &[],
        };
        match hand_back(&deps, &subject).await {
            Ok(HandBack::Done) => {}
            Ok(HandBack::Pending(why)) => {
                info!(%why, "handing back");
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            Err(ReleaseError::Workload(crate::workloads::WorkloadError::Invalid(why))) => {
                warn!(%why, "cannot restore the Deployment; releasing it as it is");
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        warn!("router unavailable: serin's routing objects are left for garbage collection");
    }
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.forget_canary(&ns, &name);
    let note = Note {
        type_: NoteType::Normal,
        reason: "HandedBack",
        message: format!(
            "Deployment {} handed back: it serves traffic on its own again",
            canary.spec.target_ref.name
        ),
    };
    ctx.events
        .publish(&reference(canary), "Finalize", &note)
        .await;
    Ok(Action::await_change())
}

/// Retry soon on conflicts (a fresh read fixes them), back off on anything else.
pub fn error_policy(_obj: Arc<Canary>, err: &ReconcileError, _ctx: Arc<Context>) -> Action {
    warn!(error = %err, category = err.category(), "reconcile failed");
    match err.category() {
        "conflict" => Action::requeue(Duration::from_secs(1)),
        _ => Action::requeue(Duration::from_secs(15)),
    }
}
