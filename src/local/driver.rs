//! The local reconcile loop: read the state file, run the shared release driver,
//! persist the status it returns. What a Kubernetes controller does per Canary,
//! with the file as the API server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{LocalCluster, LocalError};
use crate::analysis::{
    builtin_metrics, checks_from, resolve_metrics, AnalysisConfigError, ChecksFrom,
};
use crate::crd::CanaryStatus;
use crate::metrics::ControllerMetrics;
use crate::providers::{MetricSources, ProviderSources};
use crate::release::{act, build_plan, decide, ReleaseDeps, ReleaseError, ReleaseSubject};
use crate::rollout::Note;

/// What one reconcile did.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub status: CanaryStatus,
    pub notes: Vec<Note>,
    pub requeue_after: Duration,
}

pub struct LocalController {
    cluster: Arc<LocalCluster>,
    deps: ReleaseDeps,
    /// Longest sleep between reconciles: the file has no watch, so changes to the
    /// workload spec or approvals are noticed by polling.
    pub poll: Duration,
}

impl LocalController {
    /// Templates without a provider ask `prometheus_url`; others may name any built-in
    /// provider at any address (no allow-list: the local stores are the user's own, on
    /// loopback).
    pub fn new(cluster: Arc<LocalCluster>, prometheus_url: &str) -> Self {
        let sources = Arc::new(ProviderSources::new(
            Some(prometheus_url.to_string()),
            Duration::from_secs(3),
        ));
        Self::with_sources(cluster, sources)
    }

    pub fn with_sources(cluster: Arc<LocalCluster>, sources: Arc<dyn MetricSources>) -> Self {
        let deps = ReleaseDeps {
            workloads: cluster.clone(),
            router: cluster.clone(),
            sources,
            check_timeout: Duration::from_secs(8),
            hooks: None,
            // Nobody scrapes the demo; recording costs a few hash lookups per check.
            metrics: Arc::new(ControllerMetrics::new()),
            queries: None,
            deadline: None,
            progress: None,
        };
        Self {
            cluster,
            deps,
            poll: Duration::from_millis(500),
        }
    }

    pub fn cluster(&self) -> &Arc<LocalCluster> {
        &self.cluster
    }

    /// Observe, decide, act, persist: once.
    pub async fn step(&self) -> Result<StepReport, LocalError> {
        let store = self.cluster.store();
        let state = store.load()?;
        let metrics = match checks_from(&state.spec.analysis, self.deps.router.kind())? {
            ChecksFrom::Templates => {
                let mut templates = Vec::new();
                for r in &state.spec.analysis.templates {
                    let t = state.templates.get(&r.name).ok_or_else(|| {
                        AnalysisConfigError::TemplateNotFound {
                            kind: "AnalysisTemplate",
                            namespace: state.namespace.clone(),
                            name: r.name.clone(),
                            cluster: r.cluster_scope,
                        }
                    })?;
                    templates.push((r.clone(), t.clone()));
                }
                resolve_metrics(&templates)?
            }
            ChecksFrom::Builtin(t) => builtin_metrics(t)?,
            ChecksFrom::Nothing => Vec::new(),
        };
        let weighting = self.deps.router.replica_weighting(state.spec.strategy);
        let (plan, invalid) =
            build_plan(&state.spec, weighting, &metrics, self.deps.hooks.is_some())
                .map_err(ReleaseError::from)?;
        let subject = ReleaseSubject {
            namespace: &state.namespace,
            name: &state.name,
            spec: &state.spec,
            status: &state.status,
            owner: None,
            checks: &metrics,
            config_problem: invalid.map(|e| format!("invalid spec: {e}")),
            policy: Default::default(),
        };
        let now = Utc::now();
        let prepared = decide(&self.deps, &subject, plan, now).await?;
        // Decide, persist, then act: the file holds the decision before the world moves.
        let status = prepared.decision.status.clone();
        let persisted = store.update(|s| {
            // Records written while we decided (an approval, an abort from the
            // dashboard) must survive our write; ones the decision dropped stay gone.
            let mut next = status.clone();
            let seen = &state.status;
            for a in &s.status.approvals {
                if !seen.approvals.iter().any(|x| x.id == a.id)
                    && !next.approvals.iter().any(|x| x.id == a.id)
                {
                    next.approvals.push(a.clone());
                }
            }
            for c in &s.status.commands {
                if !seen.commands.iter().any(|x| x.id == c.id)
                    && !next.commands.iter().any(|x| x.id == c.id)
                {
                    next.commands.push(c.clone());
                }
            }
            s.status = next;
            Ok(s.status.clone())
        })?;
        act(&self.deps, &prepared, &persisted, now, &|| Ok(())).await?;
        let decision = prepared.decision;
        Ok(StepReport {
            status: store.load()?.status,
            notes: decision.notes,
            requeue_after: decision.requeue_after,
        })
    }

    /// Reconcile until `done` says so or `limit` passes. Errors of one reconcile are
    /// passed to `on_error` and retried, as a controller would requeue them.
    pub async fn run_until(
        &self,
        limit: Duration,
        mut on_step: impl FnMut(&StepReport),
        mut on_error: impl FnMut(&LocalError),
        mut done: impl FnMut(&StepReport) -> bool,
    ) -> Result<StepReport, LocalError> {
        let start = Instant::now();
        loop {
            let wait = match self.step().await {
                Ok(report) => {
                    on_step(&report);
                    if done(&report) {
                        return Ok(report);
                    }
                    report.requeue_after.min(self.poll)
                }
                Err(e) => {
                    on_error(&e);
                    self.poll
                }
            };
            if start.elapsed() >= limit {
                return Err(LocalError::Timeout(format!(
                    "release did not finish within {}",
                    humantime::format_duration(limit)
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }
}
