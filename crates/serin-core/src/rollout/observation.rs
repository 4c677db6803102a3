use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::crd::{Approval, Command, HookRun, MetricStatus, MetricVerdict, PromotedImages};
use crate::policy::{CanaryKey, SelectedPolicy};

/// What the adapters saw, gathered by the controller before calling [`super::transition`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Revision of the user's Deployment: pod template plus tracked ConfigMaps/Secrets.
    pub target_revision: String,
    pub primary_exists: bool,
    /// Revision the primary was last written with.
    pub primary_revision: Option<String>,
    pub primary_ready: bool,
    /// Desired replicas of the primary (the user's replica count).
    pub primary_replicas: i32,
    /// `spec.replicas` of the user's Deployment, the canary.
    pub canary_replicas: i32,
    /// All canary replicas updated and ready (and at least one).
    pub canary_ready: bool,
    /// At least one canary replica of the target revision is ready. Enough when the
    /// router weights by replica count: the weight then follows the ready pods.
    pub canary_available: bool,
    /// Canary weight the router reports; `None` when unknown.
    pub routed_weight: Option<i32>,
    /// Result of the check the controller ran because [`super::analysis_due`] said so.
    pub analysis: Option<AnalysisReport>,
    /// Result of a look of the sequential metrics between checks, run because
    /// [`super::look_due`] said so.
    pub look: Option<AnalysisReport>,
    /// Result of the pre-rollout checks, when [`super::pre_rollout_due`] said so.
    pub pre_rollout: Option<AnalysisReport>,
    pub approvals: Vec<Approval>,
    pub commands: Vec<Command>,
    /// Objects serin owns beside the primary (its Services, the HPA copy) that are
    /// missing or drifted; re-applying the primary repairs them.
    pub owned_missing: Vec<String>,
    /// The canary's pods were started with other data of the tracked ConfigMaps and
    /// Secrets than the target references now: they must restart to pick it up.
    pub canary_config_stale: bool,
    /// A problem with the Canary's configuration (a missing template, a broken Secret,
    /// an invalid spec): it counts as a failed check while a release is in flight.
    pub config_problem: Option<String>,
    /// The judging and gating webhooks' latest calls (running or answered), as the
    /// status should record them.
    pub hook_runs: Vec<HookRun>,
    /// Webhooks the check (or pre-rollout round) due now still waits for, one line
    /// each: while any runs, the check is not judged unless its metrics already fail.
    pub hooks_pending: Vec<String>,
    /// Container name to image of the target revision.
    pub target_images: BTreeMap<String, String>,
    /// The release policies that select the Canary, and its upstream environment.
    pub policy: PolicyInputs,
    /// Where this Canary's idle re-checks land in their period
    /// ([`super::Recheck::for_canary`]); the default is unspread.
    pub recheck: super::Recheck,
}

/// What the release policies of one Canary are, as the controller gathered them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyInputs {
    /// The Canary itself (its place in queues).
    pub canary: CanaryKey,
    /// Every policy selecting it (an invalid one with `PolicyRules::invalid`), with
    /// its queue.
    pub selected: Vec<SelectedPolicy>,
    /// Set when the Canary takes only revisions promoted upstream
    /// (`serin.dev/promote-from`).
    pub upstream: Option<Upstream>,
}

/// The upstream Canary of `serin.dev/promote-from`, as found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Upstream {
    /// `namespace/name`.
    pub canary: String,
    /// What it last promoted; `None` when it does not exist or never promoted.
    pub promoted: Option<PromotedImages>,
}

/// Every metric's verdict at one check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisReport {
    pub metrics: Vec<MetricStatus>,
    /// Metric names whose failure rolls back at once.
    pub critical: Vec<String>,
}

/// The outcome of one check, from the deciding (non dry-run) metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Pass,
    Fail,
    CriticalFail,
    Inconclusive,
    Error,
    /// Every metric measured now passed, but one not due yet still has a non-passing
    /// verdict: wait for it, without counting anything again.
    Hold,
}

impl AnalysisReport {
    /// Judge the check made at `now`. Metrics with a longer interval keep their last
    /// status (an older `checked_at`): it still blocks advancing, but is not counted again.
    pub fn outcome(&self, now: DateTime<Utc>) -> CheckOutcome {
        let deciding = || self.metrics.iter().filter(|m| !m.dry_run);
        let fresh = || deciding().filter(|m| m.checked_at == now);
        let any = |v: MetricVerdict| fresh().any(|m| m.verdict == v);
        if fresh().any(|m| m.verdict == MetricVerdict::Fail && self.critical.contains(&m.name)) {
            CheckOutcome::CriticalFail
        } else if any(MetricVerdict::Fail) {
            CheckOutcome::Fail
        } else if any(MetricVerdict::Error) {
            CheckOutcome::Error
        } else if any(MetricVerdict::Inconclusive) {
            CheckOutcome::Inconclusive
        } else if deciding().any(|m| m.checked_at != now && m.verdict != MetricVerdict::Pass) {
            CheckOutcome::Hold
        } else {
            CheckOutcome::Pass
        }
    }

    /// Whether the check at `now` may end its step early: it passes, and every deciding
    /// sequential metric (at least one) has evidence that the canary is not worse than
    /// its `advanceEarly` margin.
    pub fn advance_early(&self, now: DateTime<Utc>) -> bool {
        let mut sequential = self
            .metrics
            .iter()
            .filter(|m| !m.dry_run)
            .filter_map(|m| m.sequential.as_ref())
            .peekable();
        self.outcome(now) == CheckOutcome::Pass
            && sequential.peek().is_some()
            && sequential.all(|s| s.not_worse)
    }

    /// One line naming the metrics that decided the outcome.
    pub fn summary(&self, now: DateTime<Utc>) -> String {
        let outcome = self.outcome(now);
        let decided = |m: &&MetricStatus| match outcome {
            CheckOutcome::Pass => m.verdict == MetricVerdict::Pass,
            CheckOutcome::Fail | CheckOutcome::CriticalFail => {
                m.verdict == MetricVerdict::Fail && m.checked_at == now
            }
            CheckOutcome::Inconclusive => {
                m.verdict == MetricVerdict::Inconclusive && m.checked_at == now
            }
            CheckOutcome::Error => m.verdict == MetricVerdict::Error && m.checked_at == now,
            CheckOutcome::Hold => m.verdict != MetricVerdict::Pass && m.checked_at != now,
        };
        let parts: Vec<String> = self
            .metrics
            .iter()
            .filter(|m| !m.dry_run)
            .filter(decided)
            .map(|m| format!("{}: {}", m.name, m.reason))
            .collect();
        if parts.is_empty() && self.metrics.is_empty() {
            "no checks (analysis: none)".into()
        } else if parts.is_empty() {
            "no metrics configured".into()
        } else {
            parts.join("; ")
        }
    }
}
