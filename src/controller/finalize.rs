//! A deleted Canary hands its Deployment back before its finalizer goes: in every
//! phase, and with or without a working router (the apex Service is restored by the
//! plain Service router then).

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::reconcile::{may_write, owner_of, reference, FINALIZER};
use super::{Context, ReconcileError};
use crate::crd::Canary;
use crate::release::{hand_back, ReleaseDeps, ReleaseSubject};
use crate::rollout::{EventReason, Note, NoteType};
use crate::traffic::{ServiceRouter, TrafficRouter};
use crate::workloads::HandBack;

/// Canary deleted: hand the Deployment back, then let the Canary go.
pub(super) async fn finalize(
    api: &Api<Canary>,
    canary: &Canary,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        ctx.metrics.canaries.forget(&ns, &name);
        return Ok(Action::await_change());
    }
    may_write(ctx)?;
    let router: Arc<dyn TrafficRouter> =
        match ctx.routers.pick(canary.spec.router.as_deref(), &ns, &name) {
            Ok(r) => r,
            Err(e) => {
                // The mesh or ingress is gone with its objects; the apex Service is
                // what still routes, and the plain Service router restores it.
                warn!(error = %e, "router unavailable: restoring the apex Service only");
                Arc::new(ServiceRouter::new(ctx.client.clone()))
            }
        };
    let status = canary.status.clone().unwrap_or_default();
    let deps = ReleaseDeps {
        workloads: ctx.workloads.clone(),
        router,
        sources: ctx.sources.clone(),
        check_timeout: ctx.check_timeout,
        hooks: None,
        metrics: ctx.metrics.clone(),
        queries: None,
        deadline: None,
        progress: None,
    };
    let subject = ReleaseSubject {
        namespace: &ns,
        name: &name,
        spec: &canary.spec,
        status: &status,
        owner: owner_of(canary),
        checks: &[],
        config_problem: None,
        policy: Default::default(),
    };
    let target = &canary.spec.target_ref.name;
    let message = match hand_back(&deps, &subject).await? {
        HandBack::Pending(why) => {
            info!(%why, "handing back");
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        HandBack::Done => format!(
            "Deployment {target} handed back: it runs revision {} on its own again",
            status.stable_revision.as_deref().unwrap_or("(unchanged)")
        ),
        HandBack::TargetGone => {
            format!("Deployment {target} no longer exists; serin's objects for it are removed")
        }
    };
    may_write(ctx)?;
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.canaries.forget(&ns, &name);
    let note = Note {
        type_: NoteType::Normal,
        reason: EventReason::HandedBack,
        message,
    };
    ctx.events
        .publish(&reference(canary), "Finalize", &note)
        .await;
    Ok(Action::await_change())
}
