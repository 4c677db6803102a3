//! The `Valid` condition of `ReleasePolicy` and `ClusterReleasePolicy`: each is
//! compiled when it changes; one that does not compile says where and why on itself
//! (condition and a Warning Event), while the Canaries it selects are held until it is
//! fixed (fail closed, decided in `crate::policy::evaluate`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::{Clock, EventSink, Fence};
use crate::crd::{
    find_condition, set_condition, ClusterReleasePolicy, Condition, ReleasePolicy,
    ReleasePolicyStatus, FIELD_MANAGER,
};
use crate::policy::{compile_cluster, compile_namespaced, PolicyError};
use crate::rollout::{EventReason, Note, NoteType};

/// The condition type: the spec compiled.
pub const VALID: &str = "Valid";

/// What the policy status reconcilers need.
pub struct PolicyStatusContext {
    pub client: Client,
    /// The controller's namespace (`--namespace`): ReleasePolicies are kept there
    /// only; `None`: everywhere.
    pub namespace: Option<String>,
    pub events: Arc<dyn EventSink>,
    pub clock: Clock,
    pub fence: Fence,
}

/// The status `compiled` asks for, from the `current` one (keeping the condition's
/// transition time while its status stays); `None` when nothing changes.
pub fn next_status(
    current: Option<&ReleasePolicyStatus>,
    compiled: &Result<(), PolicyError>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<ReleasePolicyStatus> {
    let mut status = current.cloned().unwrap_or_default();
    let (ok, reason, message) = match compiled {
        Ok(()) => (true, "Compiled", String::new()),
        Err(e) => (
            false,
            EventReason::InvalidPolicy.as_str(),
            format!("{e}; the Canaries this policy selects are held until it is fixed"),
        ),
    };
    let changed = set_condition(
        &mut status.conditions,
        Condition {
            type_: VALID.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            last_transition_time: now,
            observed_generation: generation,
        },
    );
    let seen = status.observed_generation != generation;
    status.observed_generation = generation;
    (changed || seen).then_some(status)
}

fn became_invalid(before: Option<&ReleasePolicyStatus>, after: &ReleasePolicyStatus) -> bool {
    let valid = |s: Option<&ReleasePolicyStatus>| {
        s.and_then(|s| find_condition(&s.conditions, VALID))
            .map(|c| c.status == "True")
    };
    valid(Some(after)) == Some(false) && valid(before) != Some(false)
}

async fn write<K>(
    api: &Api<K>,
    obj: &K,
    status: &ReleasePolicyStatus,
    ctx: &PolicyStatusContext,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if ctx.fence.check().is_err() {
        return Ok(());
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any(), "namespace": obj.namespace()},
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    tokio::time::timeout(
        Duration::from_secs(10),
        api.patch_status(&obj.name_any(), &pp, &Patch::Apply(&body)),
    )
    .await
    .map_err(|_| {
        kube::Error::Api(
            kube::core::Status::failure("status write timed out", "Timeout")
                .with_code(504)
                .boxed(),
        )
    })??;
    Ok(())
}

async fn settle<K>(
    api: Api<K>,
    obj: &K,
    current: Option<&ReleasePolicyStatus>,
    compiled: Result<(), PolicyError>,
    ctx: &PolicyStatusContext,
) -> Result<Action, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let now = (ctx.clock)();
    if let Some(next) = next_status(current, &compiled, obj.meta().generation, now) {
        write(&api, obj, &next, ctx).await?;
        if let (true, Err(e)) = (became_invalid(current, &next), &compiled) {
            let note = Note {
                type_: NoteType::Warning,
                reason: EventReason::InvalidPolicy,
                message: format!(
                    "{e}; the Canaries this policy selects are held until it is fixed"
                ),
            };
            ctx.events
                .publish(&obj.object_ref(&()), "Validate", &note)
                .await;
        }
    }
    Ok(Action::await_change())
}

async fn reconcile_namespaced(
    p: Arc<ReleasePolicy>,
    ctx: Arc<PolicyStatusContext>,
) -> Result<Action, kube::Error> {
    let api = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    let compiled = compile_namespaced(&p).map(|_| ());
    settle(api, p.as_ref(), p.status.as_ref(), compiled, &ctx).await
}

async fn reconcile_cluster(
    p: Arc<ClusterReleasePolicy>,
    ctx: Arc<PolicyStatusContext>,
) -> Result<Action, kube::Error> {
    let api = Api::all(ctx.client.clone());
    let compiled = compile_cluster(&p).map(|_| ());
    settle(api, p.as_ref(), p.status.as_ref(), compiled, &ctx).await
}

fn retry<K>(_: Arc<K>, e: &kube::Error, _: Arc<PolicyStatusContext>) -> Action {
    tracing::warn!(error = %e, "writing a release policy's status failed");
    Action::requeue(Duration::from_secs(15))
}

/// Keep the `Valid` condition of every policy in the cluster. Runs until shutdown.
pub async fn run_policy_status(ctx: Arc<PolicyStatusContext>) {
    let namespaced = Controller::new(
        super::policies::release_policies(&ctx.client, ctx.namespace.as_deref()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(reconcile_namespaced, retry, ctx.clone())
    .for_each(|_| async {});
    let cluster = Controller::new(
        Api::<ClusterReleasePolicy>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(reconcile_cluster, retry, ctx)
    .for_each(|_| async {});
    tokio::join!(namespaced, cluster);
}

#[cfg(test)]
#[path = "policy_status_tests.rs"]
mod tests;
