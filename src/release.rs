//! One release step, shared by the Kubernetes controller and the local backend:
//! observe, judge if a check is due, decide (sans-IO core), act.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::analysis::{effective_limits, run_check, timed_out_report, RenderVars, ResolvedMetric};
use crate::crd::{CanarySpec, CanaryStatus};
use crate::providers::MetricSources;
use crate::rollout::{
    analysis_due, transition, Action, Decision, Observation, PlanError, ReleasePlan,
};
use crate::traffic::{RouteTarget, RouterError, TrafficRouter};
use crate::workloads::{HandBack, WorkloadBackend, WorkloadError, WorkloadRef, WorkloadState};

/// The adapters one Canary is released through.
#[derive(Clone)]
pub struct ReleaseDeps {
    pub workloads: Arc<dyn WorkloadBackend>,
    pub router: Arc<dyn TrafficRouter>,
    pub sources: Arc<dyn MetricSources>,
    /// Upper bound for a whole check (all metrics queried concurrently).
    pub check_timeout: Duration,
}

/// The Canary being released, as plain data.
#[derive(Clone, Debug)]
pub struct ReleaseSubject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a CanarySpec,
    pub status: &'a CanaryStatus,
    pub owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    pub metrics: &'a [ResolvedMetric],
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("invalid spec: {0}")]
    Plan(#[from] PlanError),
    #[error("workload: {0}")]
    Workload(#[from] WorkloadError),
    #[error("traffic router: {0}")]
    Router(#[from] RouterError),
}

impl ReleaseError {
    pub fn category(&self) -> &'static str {
        match self {
            ReleaseError::Plan(_) => "config",
            ReleaseError::Workload(e) => e.category(),
            ReleaseError::Router(e) => e.category(),
        }
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

/// Observe, decide and act once. The caller persists `Decision::status` afterwards
/// (only after every action succeeded, so a failure simply repeats the step).
pub async fn reconcile_release(
    deps: &ReleaseDeps,
    subject: &ReleaseSubject<'_>,
    now: DateTime<Utc>,
) -> Result<Decision, ReleaseError> {
    let mut plan = ReleasePlan::from_spec(
        subject.spec,
        deps.router.replica_weighting(subject.spec.strategy),
    )?;
    // Templates may tighten the Canary's limits, never loosen them.
    let limits = effective_limits(&subject.spec.analysis, subject.metrics);
    plan.failure_limit = limits.failure_limit;
    plan.inconclusive_limit = limits.inconclusive_limit;
    let wref = subject.workload_ref();
    let state = deps.workloads.observe(&wref).await?;
    let target = subject.route_target(&state);
    let routed_weight = if state.primary_exists {
        deps.router.observed_weight(&target).await?
    } else {
        None
    };
    let analysis = if analysis_due(subject.status, &plan, now) && !plan.skip_analysis {
        let interval = plan.interval.to_std().unwrap_or(Duration::from_secs(60));
        let vars = subject.render_vars();
        let check = run_check(
            subject.metrics,
            &vars,
            interval,
            &subject.status.metrics,
            deps.sources.as_ref(),
            now,
        );
        match tokio::time::timeout(deps.check_timeout, check).await {
            Ok(report) => Some(report),
            Err(_) => Some(timed_out_report(
                subject.metrics,
                &subject.status.metrics,
                deps.check_timeout,
                now,
            )),
        }
    } else {
        None
    };
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
        approvals: subject.status.approvals.clone(),
        commands: subject.status.commands.clone(),
    };
    let decision = transition(subject.status, &plan, &obs, now);
    for action in &decision.actions {
        tracing::info!(?action, "carrying out");
        match action {
            Action::InitializePrimary { revision } => {
                deps.workloads.initialize_primary(&wref, revision).await?
            }
            Action::PromotePrimary { revision } => {
                deps.workloads.promote_primary(&wref, revision).await?
            }
            Action::ScaleCanary { replicas } => {
                deps.workloads.scale_canary(&wref, *replicas).await?
            }
            Action::SetWeight { weight } => deps.router.set_weight(&target, *weight).await?,
        }
    }
    Ok(decision)
}

/// Give the Deployment back: stable spec on the target, traffic on it, serin's objects
/// gone. Returns `Pending` while the target is not ready yet; call again later.
pub async fn hand_back(
    deps: &ReleaseDeps,
    subject: &ReleaseSubject<'_>,
) -> Result<HandBack, ReleaseError> {
    let wref = subject.workload_ref();
    let state = match deps.workloads.observe(&wref).await {
        Ok(s) => s,
        // The user's Deployment is gone: nothing to hand back, only to clean up.
        Err(WorkloadError::TargetNotFound { .. }) => {
            deps.workloads.remove_primary(&wref).await?;
            return Ok(HandBack::Done);
        }
        Err(e) => return Err(e.into()),
    };
    if state.primary_exists {
        if let HandBack::Pending(why) = deps.workloads.restore_target(&wref).await? {
            return Ok(HandBack::Pending(why));
        }
    }
    deps.router.finalize(&subject.route_target(&state)).await?;
    deps.workloads.remove_primary(&wref).await?;
    Ok(HandBack::Done)
}
