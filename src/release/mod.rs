//! One release step, shared by the Kubernetes controller and the local backend:
//! observe, judge if a check is due, decide (sans-IO core), act.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::analysis::{effective_limits, run_check, CheckInput, RenderVars, ResolvedMetric};
use crate::crd::{CanarySpec, CanaryStatus, WebhookType};
use crate::error_kind::ErrorKind;
use crate::gates::{effective_gates, HookStart};
use crate::limits::KeyedLimiter;
use crate::metrics::ControllerMetrics;
use crate::providers::MetricSources;
use crate::rollout::{
    analysis_due, desired_actions, look_due, transition, Action, Decision, Observation, PlanError,
    PolicyInputs, Recheck, ReleasePlan,
};
use crate::traffic::{RouteTarget, RouterError, TrafficRouter};
use crate::workloads::{HandBack, WorkloadBackend, WorkloadError, WorkloadRef, WorkloadState};

mod webhooks;
pub use webhooks::{announce, Hooks};

/// The adapters one Canary is released through.
#[derive(Clone)]
pub struct ReleaseDeps {
    pub workloads: Arc<dyn WorkloadBackend>,
    pub router: Arc<dyn TrafficRouter>,
    pub sources: Arc<dyn MetricSources>,
    /// Upper bound for a whole check (all metrics queried concurrently).
    pub check_timeout: Duration,
    /// Outgoing webhooks of the Canary (`spec.webhooks`) and their resolved secrets.
    pub hooks: Option<Hooks>,
    /// Verdicts, metric values and judge timings are recorded here.
    pub metrics: Arc<ControllerMetrics>,
    /// Queries in flight, shared by every reconcile (`--max-queries-in-flight`).
    pub queries: Option<Arc<KeyedLimiter>>,
    /// The reconcile's deadline: the check is cut short so that its decision can still
    /// be written in time.
    pub deadline: Option<Deadline>,
    /// Where the reconcile is, for the message when its deadline cuts it.
    pub progress: Option<Arc<Progress>>,
}

/// When the reconcile ends, and the time kept after the check to persist and act.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    pub reserve: Duration,
}

/// What a reconcile is doing now, in words ("running the check").
#[derive(Debug)]
pub struct Progress(Mutex<&'static str>);

impl Default for Progress {
    fn default() -> Self {
        Self(Mutex::new("starting"))
    }
}

impl Progress {
    pub fn set(&self, stage: &'static str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = stage;
    }
    pub fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ReleaseDeps {
    fn stage(&self, stage: &'static str) {
        if let Some(p) = &self.progress {
            p.set(stage);
        }
    }

    /// Time the check may take now: the check timeout, or less when the reconcile's
    /// deadline is nearer (keeping its reserve for the status write and the actions).
    pub fn check_budget(&self) -> Duration {
        match self.deadline {
            None => self.check_timeout,
            Some(d) => {
                d.at.saturating_duration_since(tokio::time::Instant::now())
                    .saturating_sub(d.reserve)
                    .min(self.check_timeout)
            }
        }
    }
}

/// The Canary being released, as plain data.
#[derive(Clone, Debug)]
pub struct ReleaseSubject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a CanarySpec,
    pub status: &'a CanaryStatus,
    pub owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    pub checks: &'a [ResolvedMetric],
    /// A configuration problem found before the release step (a missing template, a
    /// broken Secret); it fails checks of a release in flight.
    pub config_problem: Option<String>,
    /// The release policies selecting the Canary (empty without any).
    pub policy: PolicyInputs,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("invalid spec: {0}")]
    Plan(#[from] PlanError),
    #[error("workload: {0}")]
    Workload(#[from] WorkloadError),
    #[error("traffic router: {0}")]
    Router(#[from] RouterError),
    /// This replica may no longer write (it lost, or cannot renew, the leader lease).
    #[error("not writing: {0}")]
    Fenced(String),
}

impl ReleaseError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReleaseError::Plan(_) => ErrorKind::Config,
            ReleaseError::Workload(e) => e.kind(),
            ReleaseError::Router(e) => e.kind(),
            ReleaseError::Fenced(_) => ErrorKind::Fenced,
        }
    }

    /// Bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        self.kind().as_label()
    }
}

impl<'a> ReleaseSubject<'a> {
    pub fn workload_ref(&self) -> WorkloadRef {
        WorkloadRef {
            namespace: self.namespace.to_string(),
            name: self.spec.target_ref.name.clone(),
            service: self.spec.service.clone(),
            owner: self.owner.clone(),
        }
    }

    pub fn route_target(&self, state: &WorkloadState) -> RouteTarget {
        let w = self.workload_ref();
        RouteTarget {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            service: w.service_name(),
            port: self.spec.service.port,
            port_name: self.spec.service.port_name.clone(),
            target_port: self.spec.service.target_port.clone(),
            primary_selector: state.primary_selector.clone(),
            canary_selector: state.canary_selector.clone(),
            shared_labels: state.shared_labels.clone(),
            strategy: self.spec.strategy,
            routing: self.spec.routing.clone(),
            owner: self.owner.clone(),
        }
    }

    pub fn render_vars(&self) -> RenderVars {
        let w = self.workload_ref();
        RenderVars {
            namespace: self.namespace.to_string(),
            target: w.name.clone(),
            primary: w.primary_name(),
            canary: w.name.clone(),
            workload: w.name.clone(),
            service: w.service_name(),
            interval: String::new(),
            args: Default::default(),
        }
    }
}

/// One pass, observed and decided but not yet acted on: the caller persists
/// `decision.status` first and then calls [`act`] with what was persisted.
pub struct Prepared {
    pub decision: Decision,
    pub plan: ReleasePlan,
    pub observation: Observation,
    /// Webhook calls to start once the decision is persisted.
    pub hook_starts: Vec<HookStart>,
    target: RouteTarget,
    workload: WorkloadRef,
}

/// A release's plan, built once from all it depends on: the spec, the templates'
/// metrics (they may tighten the limits, never loosen them; a sequential metric takes
/// looks between checks), the webhooks (a confirm hook closes its gate like a human
/// gate; pre-rollout hooks run only when `hooks_on`). An invalid spec still gets a plan
/// that keeps traffic safe when one can be made: it comes back with the error, which
/// the caller reports as the configuration problem.
pub fn build_plan(
    spec: &CanarySpec,
    weighting: bool,
    metrics: &[ResolvedMetric],
    hooks_on: bool,
) -> Result<(ReleasePlan, Option<PlanError>), PlanError> {
    let (mut plan, invalid) = match ReleasePlan::from_spec(spec, weighting) {
        Ok(plan) => (plan, None),
        Err(e) => match ReleasePlan::fallback(spec, weighting) {
            Some(plan) => (plan, Some(e)),
            None => return Err(e),
        },
    };
    let limits = effective_limits(&spec.analysis, metrics);
    plan.failure_limit = limits.failure_limit;
    plan.inconclusive_limit = limits.inconclusive_limit;
    plan.gates = effective_gates(spec);
    plan.sequential_looks = metrics.iter().any(|m| m.sequential().is_some());
    plan.pre_rollout = hooks_on
        && spec
            .webhooks
            .iter()
            .any(|h| h.type_ == WebhookType::PreRollout);
    Ok((plan, invalid))
}

/// Observe the world (running a check or hooks when due) and decide on `plan` (from
/// [`build_plan`]). Writes nothing: a conflict on the status write afterwards leaves
/// the world untouched.
pub async fn decide(
    deps: &ReleaseDeps,
    subject: &ReleaseSubject<'_>,
    plan: ReleasePlan,
    now: DateTime<Utc>,
) -> Result<Prepared, ReleaseError> {
    let config_problem = subject.config_problem.clone();
    let wref = subject.workload_ref();
    deps.stage("observing the workloads");
    let state = deps.workloads.observe(&wref).await?;
    let target = subject.route_target(&state);
    deps.stage("reading the router");
    let routed_weight = if state.primary_exists {
        deps.router.observed_weight(&target).await?
    } else {
        None
    };
    // Webhooks run in the background: pick up their answers and plan the calls due now
    // (pure). A check waits for its rollout hooks; nothing here waits for a hook.
    let hooks = match (&deps.hooks, &config_problem) {
        (Some(h), None) => h.plan(subject, &plan, &state, now),
        _ => Hooks::none(subject.status),
    };
    let due = analysis_due(subject.status, &plan, now);
    let look = !due && look_due(subject.status, &plan, now);
    let measure = !plan.skip_analysis && config_problem.is_none();
    let (mut analysis, mut look_report) = (None, None);
    if measure && (due || look) {
        deps.stage("running the check");
        let interval = plan.interval.to_std().unwrap_or(Duration::from_secs(60));
        let vars = subject.render_vars();
        let mut report = run_check(&CheckInput {
            observer: Some(&deps.metrics.judges),
            timeout: Some(deps.check_budget()),
            looks_only: look,
            limiter: deps.queries.as_ref(),
            ..CheckInput::new(
                subject.checks,
                &vars,
                interval,
                &subject.status.metrics,
                deps.sources.as_ref(),
                now,
            )
        })
        .await;
        if due {
            // Rollout hooks judge every check, once they all answered.
            report.metrics.extend(hooks.check_metrics.iter().cloned());
            analysis = Some(report);
        } else {
            look_report = Some(report);
        }
    }
    deps.stage("deciding");
    let obs = Observation {
        target_revision: state.target_revision.clone(),
        primary_exists: state.primary_exists,
        primary_revision: state.primary_revision.clone(),
        primary_ready: state.primary_ready,
        primary_replicas: state.primary_replicas,
        canary_replicas: state.canary_replicas,
        canary_ready: state.canary_ready,
        canary_available: state.canary_available,
        routed_weight,
        analysis,
        look: look_report,
        pre_rollout: hooks.pre_rollout,
        approvals: [subject.status.approvals.clone(), hooks.approvals].concat(),
        commands: [subject.status.commands.clone(), hooks.commands].concat(),
        owned_missing: state.owned_missing.clone(),
        canary_config_stale: state.canary_config_stale,
        config_problem,
        hook_runs: hooks.runs,
        hooks_pending: hooks.waits_for,
        target_images: state.target_images.clone(),
        policy: subject.policy.clone(),
        recheck: Recheck::for_canary(subject.namespace, subject.name),
    };
    let decision = transition(subject.status, &plan, &obs, now);
    if let Some(report) = obs.analysis.as_ref() {
        // Verdicts are counted per judged check (not while it waits for its hooks);
        // looks in between only keep evidence.
        if !decision.held_for_hooks {
            deps.metrics
                .canaries
                .observe_report(subject.namespace, subject.name, report, now);
        }
    }
    Ok(Prepared {
        decision,
        plan,
        observation: obs,
        hook_starts: hooks.start,
        target,
        workload: wref,
    })
}

/// Carry out what the persisted status asks of the observed world, in order. `may_write`
/// is asked before every write (leader fencing): a replica that may no longer lead
/// stops before touching anything.
pub async fn act(
    deps: &ReleaseDeps,
    prepared: &Prepared,
    persisted: &CanaryStatus,
    now: DateTime<Utc>,
    may_write: &(dyn Fn() -> Result<(), ReleaseError> + Send + Sync),
) -> Result<(), ReleaseError> {
    let actions = desired_actions(persisted, &prepared.plan, &prepared.observation, now);
    let (wref, target) = (&prepared.workload, &prepared.target);
    if let Some(h) = &deps.hooks {
        h.start(deps, target, persisted, &prepared.hook_starts, may_write)?;
    }
    deps.stage("acting on the cluster");
    for action in &actions {
        may_write()?;
        tracing::info!(?action, "carrying out");
        match action {
            Action::InitializePrimary { revision, replicas } => {
                deps.workloads
                    .initialize_primary(wref, revision, *replicas)
                    .await?
            }
            Action::PromotePrimary { revision } => {
                deps.workloads.promote_primary(wref, revision).await?
            }
            Action::ScaleCanary { replicas } => {
                deps.workloads.scale_canary(wref, *replicas).await?
            }
            Action::SetWeight { weight } => deps.router.set_weight(target, *weight).await?,
        }
    }
    Ok(())
}

/// Give the Deployment back, in every phase and with or without a working router:
/// the user's Deployment first runs the last promoted spec at the primary's scale and
/// is ready; only then does traffic move to it, serin's field ownership on it is
/// released (nothing stripped) and serin's objects are removed. Returns `Pending`
/// while the Deployment is not ready yet; call again later.
pub async fn hand_back(
    deps: &ReleaseDeps,
    subject: &ReleaseSubject<'_>,
) -> Result<HandBack, ReleaseError> {
    let wref = subject.workload_ref();
    let status = subject.status;
    let state = match deps.workloads.observe(&wref).await {
        Ok(s) => s,
        // The user's Deployment is gone: nothing to hand back, only to clean up.
        Err(WorkloadError::TargetNotFound { .. }) => {
            deps.workloads.remove_primary(&wref).await?;
            return Ok(HandBack::TargetGone);
        }
        Err(e) => return Err(e.into()),
    };
    // The revision the primary runs in this phase: the stable one, or the one being
    // promoted (its analysis passed) during Promoting.
    let restored = deps
        .workloads
        .restore_target(
            &wref,
            crate::rollout::expected_primary_revision(status),
            status.primary_replicas,
        )
        .await?;
    if let HandBack::Pending(why) = restored {
        return Ok(HandBack::Pending(why));
    }
    deps.router.finalize(&subject.route_target(&state)).await?;
    deps.workloads.remove_primary(&wref).await?;
    Ok(restored)
}
