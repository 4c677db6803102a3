//! The Canary reconciler: fresh read, finalizer, config checks, then decide, persist,
//! act: the status is written (under a resourceVersion precondition) before anything
//! in the world moves, and the actions are derived from what was persisted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::failures;
use super::status::{set_config_condition, write_status};
use super::templates::{load_hook_secrets, load_metrics};
use super::{Context, ReconcileError};
use crate::analysis::{builtin_metrics, checks_from, ChecksFrom};
use crate::crd::{validate_webhooks, Canary, CanaryPhase, CanaryStatus};
use crate::metrics::ControllerKind;
use crate::notify::NotifyEvent;
use crate::release::{
    act, announce, build_plan, decide, Deadline, Hooks, Progress, ReleaseDeps, ReleaseError,
    ReleaseSubject,
};
use crate::rollout::{EventReason, Note, NoteType, Recheck};

/// Holds the Canary until its Deployment has been handed back.
pub const FINALIZER: &str = "serin.dev/finalizer";

/// A reconcile stopped at its deadline is tried again this soon.
pub const DEADLINE_RETRY: Duration = Duration::from_secs(5);

/// The Warning Event about a reconcile stopped at its deadline gets this long, in the
/// background: it never extends the reconcile.
const DEADLINE_EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one reconcile is and when it must end.
pub(super) struct Run {
    pub progress: Arc<Progress>,
    pub deadline: Deadline,
}

impl Run {
    pub fn stage(&self, stage: &'static str) {
        self.progress.set(stage);
    }
}

pub(super) fn owner_of(c: &Canary) -> Option<OwnerReference> {
    c.controller_owner_ref(&())
}

pub(super) fn reference(c: &Canary) -> ObjectReference {
    c.object_ref(&())
}

/// Leader fencing: a replica that may no longer lead writes nothing.
pub(super) fn may_write(ctx: &Context) -> Result<(), ReleaseError> {
    ctx.fence
        .check()
        .map_err(|e| ReleaseError::Fenced(e.to_string()))
}

#[instrument(skip_all, fields(namespace = obj.namespace().as_deref().unwrap_or(""), name = %obj.name_any()))]
pub async fn reconcile_canary(
    obj: Arc<Canary>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let limit = ctx.reconcile_deadline;
    let run = Run {
        progress: Arc::default(),
        deadline: Deadline {
            at: tokio::time::Instant::now() + limit,
            // Time kept after the check for the status write and the actions.
            reserve: limit / 4,
        },
    };
    // Nothing the reconcile awaits (API server, Prometheus, a router) can extend it:
    // at the deadline it is dropped where it is. Decide, persist, act makes that safe:
    // before the status write nothing moved, after it the next reconcile redoes
    // exactly the missing actions from what was written.
    let result = match tokio::time::timeout(limit, reconcile(obj.clone(), &ctx, &run)).await {
        Ok(r) => r,
        Err(_) => Err(deadline_exceeded(&obj, &ctx, limit, run.progress.get())),
    };
    let error = result.as_ref().err().map(ReconcileError::category);
    ctx.metrics
        .reconciles
        .observe(ControllerKind::Canary, start.elapsed(), error);
    result
}

/// Log, count and tell (a Warning Event, sent in the background) that a reconcile was
/// stopped at its deadline, and where.
fn deadline_exceeded(
    obj: &Canary,
    ctx: &Context,
    deadline: Duration,
    stage: &'static str,
) -> ReconcileError {
    let err = ReconcileError::DeadlineExceeded { deadline, stage };
    let note = Note {
        type_: NoteType::Warning,
        reason: EventReason::ReconcileDeadlineExceeded,
        message: format!(
            "{err}: nothing after that point was done, what was already written stands and the next reconcile carries on from it (in {}); raise --reconcile-deadline or look at what {stage} waits for",
            humantime::format_duration(DEADLINE_RETRY)
        ),
    };
    let (events, regarding) = (ctx.events.clone(), reference(obj));
    tokio::spawn(async move {
        let publish = events.publish(&regarding, "Reconcile", &note);
        if tokio::time::timeout(DEADLINE_EVENT_TIMEOUT, publish)
            .await
            .is_err()
        {
            warn!("the Event about a reconcile deadline could not be sent in time");
        }
    });
    err
}

async fn reconcile(obj: Arc<Canary>, ctx: &Context, run: &Run) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    run.stage("reading the Canary");
    // The watch cache may not have our own last status write yet: see WrittenVersions.
    let cached = ctx.written.current(&obj);
    let read = match cached {
        Some(c) => Some(c),
        None => {
            let read = api.get_opt(&obj.name_any()).await?;
            // Until the watch brings this version, it answers as a write of ours would.
            if let Some(c) = &read {
                ctx.written.record(c);
            }
            read
        }
    };
    let Some(canary) = read else {
        ctx.written.forget(&ns, &obj.name_any());
        ctx.metrics.canaries.forget(&ns, &obj.name_any());
        if let Some(runner) = &ctx.webhooks {
            runner.forget(&ns, &obj.name_any(), &[]);
        }
        return Ok(Action::await_change());
    };
    if canary.metadata.deletion_timestamp.is_some() {
        if let Some(runner) = &ctx.webhooks {
            runner.forget(&ns, &canary.name_any(), &[]);
        }
        run.stage("handing the Deployment back");
        return super::finalize::finalize(&api, &canary, ctx).await;
    }
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        may_write(ctx)?;
        let mut finalizers = canary.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        // resourceVersion makes this a compare-and-swap on the list.
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
        let written = api
            .patch(
                &canary.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        ctx.written.record(&written);
        return Ok(Action::requeue(Duration::ZERO));
    }
    let now = (ctx.clock)();
    let status = canary.status.clone().unwrap_or_default();
    let generation = canary.metadata.generation;

    // Without the router nothing can be routed, not even rolled back: touch nothing.
    let router = match ctx
        .routers
        .pick(canary.spec.router.as_deref(), &ns, &canary.name_any())
    {
        Ok(r) => r,
        Err(e) => {
            let problem = (EventReason::RouterUnavailable, e.to_string());
            return config_problem(&api, &canary, ctx, status, problem, now).await;
        }
    };
    // Anything else the user must fix fails the checks of a release in flight (under
    // its progress deadline), and keeps a new release from starting.
    let mut problem: Option<(EventReason, String)> = None;
    run.stage("loading templates and Secrets");
    let checks = checks_from(&canary.spec.analysis, router.kind());
    let metrics = match checks {
        Ok(ChecksFrom::Templates) => {
            load_metrics(
                &ctx.client,
                ctx.templates.as_ref(),
                &ns,
                &canary.spec.analysis.templates,
                &ctx.controller_namespace,
                ctx.sources.as_ref(),
            )
            .await?
        }
        Ok(ChecksFrom::Builtin(t)) => builtin_metrics(t),
        Ok(ChecksFrom::Nothing) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    let metrics = metrics.unwrap_or_else(|e| {
        problem.get_or_insert((e.reason(), e.to_string()));
        Vec::new()
    });
    let hooks = match (&ctx.webhooks, canary.spec.webhooks.is_empty()) {
        (Some(runner), false) => match validate_webhooks(&canary.spec.webhooks) {
            // Over a cap (timeout, retries) is a configuration error, never lowered.
            Err(e) => {
                problem.get_or_insert((EventReason::InvalidWebhook, e.to_string()));
                None
            }
            Ok(()) => match load_hook_secrets(&ctx.client, &ns, &canary.spec.webhooks).await? {
                Ok(secrets) => Some(Hooks {
                    runner: runner.clone(),
                    secrets,
                }),
                Err(message) => {
                    problem.get_or_insert((EventReason::InvalidWebhook, message));
                    None
                }
            },
        },
        _ => None,
    };
    let weighting = router.replica_weighting(canary.spec.strategy);
    let plan = match build_plan(&canary.spec, weighting, &metrics, hooks.is_some()) {
        Ok((plan, invalid)) => {
            if let Some(e) = invalid {
                problem = Some((EventReason::InvalidSpec, e.to_string()));
            }
            Ok(plan)
        }
        Err(e) => {
            problem = Some((EventReason::InvalidSpec, e.to_string()));
            Err(e)
        }
    };
    if let (Some(problem), CanaryPhase::Initializing) = (&problem, status.phase) {
        // Nothing is set up yet: set up nothing on a broken configuration.
        return config_problem(&api, &canary, ctx, status, problem.clone(), now).await;
    }
    // Release policies, from the watch caches. A Canary that may take a slot of a
    // `maxInFlight` queue decides under the admission lock, held until its status is
    // written, so two Canaries never take the last slot together.
    let mut admission = None;
    let policy = match &ctx.policies {
        Some(p) if !p.ready().await => {
            // Deciding without them could start a release a freeze forbids.
            warn!("release policies not read yet; deciding later");
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        // An upstream (`serin.dev/promote-from`) gates the release with no policy.
        Some(p) if p.any_in_scope(&ns) || has_upstream(&canary) => {
            let mut inputs = p.gather(&canary);
            let queued = inputs
                .selected
                .iter()
                .any(|s| s.rules.max_in_flight.is_some());
            let may_start = status.phase.is_idle() || status.phase == CanaryPhase::Waiting;
            if queued && may_start {
                run.stage("waiting for the release-policy admission lock");
                admission = Some(p.admission.lock().await);
                inputs = p.gather(&canary);
            }
            inputs
        }
        _ => Default::default(),
    };
    let deps = ReleaseDeps {
        workloads: ctx.workloads.clone(),
        router,
        sources: ctx.sources.clone(),
        check_timeout: ctx.check_timeout,
        hooks,
        metrics: ctx.metrics.clone(),
        queries: ctx.queries.clone(),
        deadline: Some(run.deadline),
        progress: Some(run.progress.clone()),
    };
    let name = canary.name_any();
    let subject = ReleaseSubject {
        namespace: &ns,
        name: &name,
        spec: &canary.spec,
        status: &status,
        owner: owner_of(&canary),
        checks: &metrics,
        config_problem: problem.as_ref().map(|(_, m)| m.clone()),
        policy,
    };

    // Decide: observe (and check) without writing anything.
    let decided = match plan {
        Ok(plan) => decide(&deps, &subject, plan, now).await,
        Err(e) => Err(e.into()),
    };
    let prepared = match decided {
        Ok(p) => p,
        Err(e) if e.kind().is_for_the_user_to_fix() => {
            let problem = (EventReason::InvalidSpec, e.to_string());
            return config_problem(&api, &canary, ctx, status, problem, now).await;
        }
        Err(e) => return Err(e.into()),
    };
    let mut next = prepared.decision.status.clone();
    let config_changed = set_config_condition(
        &mut next,
        problem.as_ref().map(|(r, m)| (r.as_str(), m.clone())),
        generation,
        now,
    );
    next.observed_generation = generation;
    let acting = !prepared.decision.actions.is_empty();
    let failure_kept = acting && failures::carry(&status, &mut next);

    // Persist: a 409 here means someone wrote in between; nothing has moved yet, the
    // retry reads again and decides again.
    let mut persisted = canary.clone();
    if next != status || canary.status.is_none() {
        may_write(ctx)?;
        run.stage("writing the status");
        persisted = write_status(&api, &canary, &next).await?;
        ctx.written.record(&persisted);
    }
    if let (Some(_), Some(p)) = (admission.take(), &ctx.policies) {
        let started = !next.phase.is_idle() && next.phase != CanaryPhase::Waiting;
        if started {
            p.note_started(subject.policy.canary.clone());
        }
    }
    ctx.metrics
        .canaries
        .observe(&ns, &name, next.phase, next.canary_weight);
    ctx.metrics
        .policies
        .observe(status.policy_wait.as_deref(), next.policy_wait.as_deref());
    ctx.metrics
        .canaries
        .observe_notes(&ns, &name, &prepared.decision.notes);
    let mut notes = prepared.decision.notes.clone();
    if config_changed {
        if let Some((reason, message)) = &problem {
            notes.push(Note {
                type_: NoteType::Warning,
                reason: *reason,
                message: message.clone(),
            });
        }
    }
    run.stage("publishing Events");
    publish(ctx, &canary, &subject, &deps, &next, &notes, now).await;

    // Act on what was persisted.
    match act(&deps, &prepared, &next, now, &|| may_write(ctx)).await {
        Ok(()) => {
            if failure_kept {
                // The actions went through: the core's Ready condition stands again.
                let mut cleared = next.clone();
                crate::crd::set_condition(
                    &mut cleared.conditions,
                    crate::crd::find_condition(
                        &prepared.decision.status.conditions,
                        crate::crd::condition_type::READY,
                    )
                    .cloned()
                    .unwrap_or_default(),
                );
                may_write(ctx)?;
                let written = write_status(&api, &persisted, &cleared).await?;
                ctx.written.record(&written);
            }
        }
        Err(e) => {
            run.stage("recording the failed action");
            if let Some((reason, message)) = failures::classify(&e) {
                let mut failed = next.clone();
                if failures::record(&mut failed, reason, &message, now) {
                    if may_write(ctx).is_ok() {
                        match write_status(&api, &persisted, &failed).await {
                            Ok(written) => ctx.written.record(&written),
                            Err(w) => warn!(error = %w, "could not record the failed action"),
                        }
                    }
                    let note = Note {
                        type_: NoteType::Warning,
                        reason: reason.into(),
                        message,
                    };
                    ctx.events.publish(&reference(&canary), "Act", &note).await;
                }
            }
            return Err(e.into());
        }
    }
    Ok(Action::requeue(prepared.decision.requeue_after))
}

/// Whether the Canary takes only revisions promoted upstream.
fn has_upstream(canary: &Canary) -> bool {
    canary
        .annotations()
        .contains_key(super::policies::PROMOTE_FROM_ANNOTATION)
}

/// Events, notifications and event webhooks for the notes of a persisted decision.
async fn publish(
    ctx: &Context,
    canary: &Canary,
    subject: &ReleaseSubject<'_>,
    deps: &ReleaseDeps,
    status: &CanaryStatus,
    notes: &[Note],
    now: DateTime<Utc>,
) {
    if let Some(h) = &deps.hooks {
        announce(h, subject, status, notes);
    }
    for note in notes {
        info!(reason = note.reason.as_str(), message = %note.message, "transition");
        ctx.events
            .publish(&reference(canary), status.phase.as_str(), note)
            .await;
        if let Some(n) = &ctx.notify {
            // Non-blocking: a receiver that is down never slows a release.
            n.send(NotifyEvent::from_note(
                subject.namespace,
                subject.name,
                &canary.spec,
                status,
                note,
                now,
            ));
        }
    }
}

/// A problem the user must fix and nothing can be done until then: say so on the
/// Canary (condition, message, one Warning Event when it first appears) and look again
/// later, touching nothing else.
async fn config_problem(
    api: &Api<Canary>,
    canary: &Canary,
    ctx: &Context,
    mut status: CanaryStatus,
    (reason, message): (EventReason, String),
    now: DateTime<Utc>,
) -> Result<Action, ReconcileError> {
    let changed = set_config_condition(
        &mut status,
        Some((reason.as_str(), message.clone())),
        canary.metadata.generation,
        now,
    );
    status.message = message.clone();
    if Some(&status) != canary.status.as_ref() {
        may_write(ctx)?;
        let written = write_status(api, canary, &status).await?;
        ctx.written.record(&written);
    }
    ctx.metrics.canaries.observe(
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
    // Looked at again like an idle Canary: at its own place in the period.
    let recheck = Recheck::for_canary(&canary.namespace().unwrap_or_default(), &canary.name_any());
    Ok(Action::requeue(recheck.after(now)))
}

/// Retry soon on conflicts (a fresh read fixes them), back off on anything else.
pub fn error_policy(obj: Arc<Canary>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    warn!(error = %err, category = err.category(), "reconcile failed");
    if let ReconcileError::DeadlineExceeded { .. } = err {
        return Action::requeue(DEADLINE_RETRY);
    }
    if err.retry_soon() {
        // The watch may not have brought the write we conflicted with yet.
        ctx.written
            .read_next(&obj.namespace().unwrap_or_default(), &obj.name_any());
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::requeue(Duration::from_secs(15))
    }
}
