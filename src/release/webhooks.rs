//! The Canary's outgoing webhooks within a release step: which calls are due and what
//! their answers mean (planned by `gates`, pure), starting them once the decision is
//! persisted, and announcing Events to event and post-rollout hooks. Calls run in the
//! background; a release step never waits for a receiver.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{ReleaseDeps, ReleaseError, ReleaseSubject};
use crate::crd::{CanaryStatus, WebhookType};
use crate::gates::{
    plan_hooks, HookInput, HookPlan, HookRunner, HookStart, SecretString, WebhookPayload,
};
use crate::rollout::{Note, ReleasePlan};
use crate::traffic::RouteTarget;
use crate::workloads::WorkloadState;

/// The background webhook runner and the secrets of one Canary's hooks (by hook name).
#[derive(Clone)]
pub struct Hooks {
    pub runner: Arc<HookRunner>,
    pub secrets: BTreeMap<String, SecretString>,
}

impl Hooks {
    /// Pick up the answers of calls in flight and plan the calls due now.
    pub(super) fn plan(
        &self,
        subject: &ReleaseSubject<'_>,
        plan: &ReleasePlan,
        state: &WorkloadState,
        now: DateTime<Utc>,
    ) -> HookPlan {
        plan_hooks(
            &HookInput {
                hooks: &subject.spec.webhooks,
                status: subject.status,
                plan,
                serving: state.canary_ready || state.canary_available,
                now,
            },
            |run| self.runner.poll(subject.namespace, subject.name, run),
        )
    }

    /// Without hooks (or with a configuration problem): the recorded runs stand.
    pub(super) fn none(status: &CanaryStatus) -> HookPlan {
        HookPlan {
            runs: status.hooks.clone(),
            ..HookPlan::default()
        }
    }

    /// Forget runs the persisted status no longer holds and start the due calls.
    pub(super) fn start(
        &self,
        deps: &ReleaseDeps,
        target: &RouteTarget,
        persisted: &CanaryStatus,
        starts: &[HookStart],
        may_write: &(dyn Fn() -> Result<(), ReleaseError> + Send + Sync),
    ) -> Result<(), ReleaseError> {
        let (ns, name) = (target.namespace.as_str(), target.name.as_str());
        let keep: Vec<&str> = persisted.hooks.iter().map(|r| r.name.as_str()).collect();
        self.runner.forget(ns, name, &keep);
        for start in starts {
            may_write()?;
            deps.stage("starting webhooks");
            let payload = WebhookPayload::new(ns, name, persisted, &start.hook);
            self.runner.start(
                ns,
                name,
                start.hook.clone(),
                self.secrets.get(&start.hook.name).cloned(),
                payload,
                &start.revision,
                &start.passage,
            );
        }
        Ok(())
    }
}

/// Event hooks hear every note; post-rollout hooks hear the end of a release. Both run
/// in the background: a slow receiver never holds a release up. Called once the
/// decision is persisted, so a refused status write announces nothing.
pub fn announce(h: &Hooks, subject: &ReleaseSubject<'_>, status: &CanaryStatus, notes: &[Note]) {
    for note in notes {
        let finished = note.reason.release_end().is_some();
        for hook in &subject.spec.webhooks {
            let wanted = hook.type_ == WebhookType::Event
                || (finished && hook.type_ == WebhookType::PostRollout);
            if wanted {
                let payload =
                    WebhookPayload::for_note(subject.namespace, subject.name, status, hook, note);
                // Fire and forget: the task reports its own failures.
                drop(h.runner.caller().spawn_informational(
                    hook.clone(),
                    h.secrets.get(&hook.name).cloned(),
                    payload,
                ));
            }
        }
    }
}
