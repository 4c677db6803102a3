//! The people's controller: a second Canary controller, with slots of its own, for the
//! Canaries holding a person's input serin has yet to act on (an approval, an abort, a
//! retry). kube-runtime's scheduler has no priorities, so behind a burst of analyses
//! that came due together an approval would wait for all of them. The routine
//! controller reconciles these Canaries too; the caller's reconcile keeps the two from
//! running one Canary at once.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ReflectHandle, Store};
use kube::runtime::Controller;

use super::run::ReconcileFuture;
use super::{error_policy, Context};
use crate::crd::Canary;
use crate::rollout::awaits_action_on_input;

/// Canary changes the shared watch buffers for this controller. It keeps up: it drops
/// all but the few Canaries holding a person's input.
pub(super) const SUBSCRIBER_BUFFER: usize = 1024;

/// The Canaries of the shared watch that hold a person's input.
pub(super) fn holding_input(
    changes: ReflectHandle<Canary>,
) -> impl Stream<Item = Arc<Canary>> + Send + 'static {
    changes.filter(|c| std::future::ready(c.status.as_ref().is_some_and(awaits_action_on_input)))
}

/// Run the controller over `changes` (none: nothing to run) with `slots` reconciles at
/// once. Each Canary is reconciled once per change: whatever comes next (the step's
/// checks, a retry after an error) the routine controller schedules, which the same
/// change woke too.
pub(super) async fn run<S, F>(
    changes: Option<S>,
    store: Store<Canary>,
    slots: u16,
    reconcile: F,
    ctx: Arc<Context>,
) where
    S: Stream<Item = Arc<Canary>> + Send + 'static,
    F: Fn(Arc<Canary>, Arc<Context>) -> ReconcileFuture + Send + Sync + 'static,
{
    let Some(changes) = changes else {
        return;
    };
    Controller::for_shared_stream(changes, store)
        .with_config(controller::Config::default().concurrency(slots))
        .shutdown_on_signal()
        .run(
            move |c: Arc<Canary>, ctx: Arc<Context>| -> ReconcileFuture {
                let run = reconcile(c.clone(), ctx.clone());
                Box::pin(async move {
                    if let Err(e) = run.await {
                        // Logged and counted as the routine controller does.
                        error_policy(c, &e, ctx);
                    }
                    Ok(Action::await_change())
                })
            },
            |_, _, _| Action::await_change(),
            ctx,
        )
        .for_each(|_| async {})
        .await
}
