//! The controller's own Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! One [`Metrics`] per process, held as `Arc<Metrics>` by the controller's context and
//! handed to the adapters that record into it (release driver, Prometheus source,
//! webhook caller, notification queue). The sans-IO core never sees it. Per-Canary
//! series are removed when the Canary goes ([`Metrics::forget_canary`]); every other
//! label comes from a bounded set.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::crd::{CanaryPhase, MetricVerdict};
use crate::rollout::{AnalysisReport, Note, ReleaseEnd};

/// What `/metrics` answers with. Prometheus asks for OpenMetrics first in its scrape
/// `Accept` header, and OpenMetrics text is what the encoder writes (`# EOF` included).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every phase, so `serin_canaries` shows zeros instead of missing series.
const PHASES: [CanaryPhase; 8] = [
    CanaryPhase::Initializing,
    CanaryPhase::Initialized,
    CanaryPhase::WaitingApproval,
    CanaryPhase::Progressing,
    CanaryPhase::Promoting,
    CanaryPhase::Finalising,
    CanaryPhase::Succeeded,
    CanaryPhase::Failed,
];

const VERDICTS: [&str; 4] = ["pass", "fail", "inconclusive", "error"];
const VARIANTS: [&str; 2] = ["canary", "baseline"];
const RELEASE_RESULTS: [&str; 2] = ["promoted", "rolled_back"];

/// The judge a metric went through (the `judge` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    Threshold,
    Compare,
    Sequential,
}

impl Judge {
    pub fn as_str(self) -> &'static str {
        match self {
            Judge::Threshold => "threshold",
            Judge::Compare => "compare",
            Judge::Sequential => "sequential",
        }
    }
}

/// Which of the two reconcilers (the `controller` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerKind {
    Canary,
    Materialize,
}

impl ControllerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::Canary => "canary",
            ControllerKind::Materialize => "materialize",
        }
    }
}

fn verdict_label(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Pass => "pass",
        MetricVerdict::Fail => "fail",
        MetricVerdict::Inconclusive => "inconclusive",
        MetricVerdict::Error => "error",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    namespace: String,
    name: String,
    metric: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValueLabels {
    namespace: String,
    name: String,
    metric: String,
    variant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JudgeLabels {
    judge: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderErrorLabels {
    provider: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerErrorLabels {
    controller: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    r#type: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    namespace: String,
    name: String,
    result: &'static str,
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

fn judge_histogram() -> Histogram {
    // 50µs .. ~3.3s: a threshold is microseconds, Mann-Whitney on many samples more.
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ])
}

fn query_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// What is known of one Canary, to keep `serin_canaries` right and to remove its
/// series when it goes.
#[derive(Default)]
struct Tracked {
    phase: Option<&'static str>,
    metrics: BTreeSet<String>,
}

/// The controller's metrics. Cheap to create (the demo makes its own); recording is a
/// hash lookup and an atomic add.
pub struct Metrics {
    registry: Registry,
    canaries: Family<PhaseLabels, Gauge>,
    weight: Family<CanaryLabels, Gauge>,
    verdicts: Family<VerdictLabels, Counter>,
    values: Family<ValueLabels, Gauge<f64, AtomicU64>>,
    judge_duration: Histograms<JudgeLabels>,
    query_duration: Histograms<ProviderLabels>,
    query_errors: Family<ProviderErrorLabels, Counter>,
    reconcile_duration: Histograms<ControllerLabels>,
    reconcile_errors: Family<ControllerErrorLabels, Counter>,
    reconcile_deferred: Counter,
    webhook_deliveries: Family<WebhookLabels, Counter>,
    notification_deliveries: Family<NotificationLabels, Counter>,
    releases: Family<ReleaseLabels, Counter>,
    leader: Gauge,
    tracked: Mutex<HashMap<(String, String), Tracked>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        registry.register("serin_info", "serin's version (always 1)", info);
        let m = Self {
            registry: Registry::default(),
            canaries: Family::default(),
            weight: Family::default(),
            verdicts: Family::default(),
            values: Family::default(),
            judge_duration: Family::new_with_constructor(judge_histogram),
            query_duration: Family::new_with_constructor(query_histogram),
            query_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_histogram),
            reconcile_errors: Family::default(),
            reconcile_deferred: Counter::default(),
            webhook_deliveries: Family::default(),
            notification_deliveries: Family::default(),
            releases: Family::default(),
            leader: Gauge::default(),
            tracked: Mutex::default(),
        };
        // Series with bounded labels exist from the start, so dashboards show zeros.
        for judge in [Judge::Threshold, Judge::Compare, Judge::Sequential] {
            m.judge_duration.get_or_create_owned(&JudgeLabels {
                judge: judge.as_str(),
            });
        }
        for controller in [ControllerKind::Canary, ControllerKind::Materialize] {
            m.reconcile_duration.get_or_create_owned(&ControllerLabels {
                controller: controller.as_str(),
            });
        }
        for p in PHASES {
            m.canaries
                .get_or_create(&PhaseLabels { phase: p.as_str() })
                .set(0);
        }
        let r = &mut registry;
        r.register("serin_canaries", "Canaries by phase", m.canaries.clone());
        r.register(
            "serin_canary_weight",
            "Percent of traffic on the canary (0-100)",
            m.weight.clone(),
        );
        r.register(
            "serin_metric_verdicts",
            "Verdicts per judged metric (pass, fail, inconclusive, error)",
            m.verdicts.clone(),
        );
        r.register(
            "serin_metric_value",
            "Last measured value of a metric, for the canary and the baseline (primary)",
            m.values.clone(),
        );
        r.register_with_unit(
            "serin_judge_duration",
            "Time a judge took to decide on one metric (queries excluded)",
            Unit::Seconds,
            m.judge_duration.clone(),
        );
        r.register_with_unit(
            "serin_metric_query_duration",
            "Duration of one query to a metrics provider, errors included",
            Unit::Seconds,
            m.query_duration.clone(),
        );
        r.register(
            "serin_metric_query_errors",
            "Failed metric queries by provider and error category",
            m.query_errors.clone(),
        );
        r.register_with_unit(
            "serin_reconcile_duration",
            "Duration of one reconcile",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        r.register(
            "serin_reconcile_errors",
            "Reconciles that returned an error, by error category",
            m.reconcile_errors.clone(),
        );
        r.register(
            "serin_reconcile_deferred",
            "Canary reconciles put off because their namespace already ran its limit (--max-reconciles-per-namespace)",
            m.reconcile_deferred.clone(),
        );
        r.register(
            "serin_webhook_deliveries",
            "Outgoing webhook calls by hook type and result (ok, rejected, error)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "serin_notification_deliveries",
            "Notifications by notifier kind and result",
            m.notification_deliveries.clone(),
        );
        r.register(
            "serin_releases",
            "Finished releases by result (promoted, rolled_back)",
            m.releases.clone(),
        );
        r.register(
            "serin_leader",
            "1 while this replica leads",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }

    /// The OpenMetrics text exposition (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Canary's phase and weight as of its latest status.
    pub fn observe_canary(&self, namespace: &str, name: &str, phase: CanaryPhase, weight: i32) {
        let phase = phase.as_str();
        {
            let mut tracked = self.tracked();
            let t = tracked
                .entry((namespace.to_string(), name.to_string()))
                .or_default();
            if t.phase != Some(phase) {
                if let Some(old) = t.phase.replace(phase) {
                    self.canaries
                        .get_or_create(&PhaseLabels { phase: old })
                        .dec();
                }
                self.canaries.get_or_create(&PhaseLabels { phase }).inc();
            }
        }
        self.weight
            .get_or_create(&canary_labels(namespace, name))
            .set(i64::from(weight.clamp(0, 100)));
    }

    /// The Canary is gone: drop it from `serin_canaries` and remove all its series.
    pub fn forget_canary(&self, namespace: &str, name: &str) {
        let Some(t) = self
            .tracked()
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        if let Some(p) = t.phase {
            self.canaries.get_or_create(&PhaseLabels { phase: p }).dec();
        }
        let (ns, n) = (namespace.to_string(), name.to_string());
        self.weight.remove(&canary_labels(namespace, name));
        for result in RELEASE_RESULTS {
            self.releases.remove(&ReleaseLabels {
                namespace: ns.clone(),
                name: n.clone(),
                result,
            });
        }
        for metric in t.metrics {
            for verdict in VERDICTS {
                self.verdicts.remove(&VerdictLabels {
                    namespace: ns.clone(),
                    name: n.clone(),
                    metric: metric.clone(),
                    verdict,
                });
            }
            for variant in VARIANTS {
                self.values.remove(&ValueLabels {
                    namespace: ns.clone(),
                    name: n.clone(),
                    metric: metric.clone(),
                    variant,
                });
            }
        }
    }

    fn track_metric(&self, namespace: &str, name: &str, metric: &str) {
        let mut tracked = self.tracked();
        let t = tracked
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        if !t.metrics.contains(metric) {
            t.metrics.insert(metric.to_string());
        }
    }

    /// One check's verdicts and values. Metrics not measured at `now` (their own longer
    /// interval is not due; the report repeats their last status) are not counted again.
    pub fn observe_report(
        &self,
        namespace: &str,
        name: &str,
        report: &AnalysisReport,
        now: DateTime<Utc>,
    ) {
        for m in report.metrics.iter().filter(|m| m.checked_at == now) {
            self.track_metric(namespace, name, &m.name);
            self.verdicts
                .get_or_create(&VerdictLabels {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    metric: m.name.clone(),
                    verdict: verdict_label(m.verdict),
                })
                .inc();
            for (variant, value) in [("canary", m.value), ("baseline", m.baseline)] {
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    self.values
                        .get_or_create(&ValueLabels {
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                            metric: m.name.clone(),
                            variant,
                        })
                        .set(v);
                }
            }
        }
    }

    /// Count finished releases among a decision's notes.
    pub fn observe_notes(&self, namespace: &str, name: &str, notes: &[Note]) {
        for note in notes {
            let result = match note.reason.release_end() {
                Some(ReleaseEnd::Promoted) => "promoted",
                Some(ReleaseEnd::RolledBack) => "rolled_back",
                None => continue,
            };
            // Tracked so that deleting the Canary removes the series.
            self.tracked()
                .entry((namespace.to_string(), name.to_string()))
                .or_default();
            self.releases
                .get_or_create(&ReleaseLabels {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    result,
                })
                .inc();
        }
    }

    pub fn observe_judge(&self, judge: Judge, took: Duration) {
        self.judge_duration
            .get_or_create(&JudgeLabels {
                judge: judge.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// One query to `provider`; `error` is the failure's bounded `category()`.
    pub fn observe_query(
        &self,
        provider: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        self.query_duration
            .get_or_create(&ProviderLabels { provider })
            .observe(took.as_secs_f64());
        if let Some(category) = error {
            self.query_errors
                .get_or_create(&ProviderErrorLabels { provider, category })
                .inc();
        }
    }

    /// One reconcile; `error` is the failure's bounded `category()`.
    pub fn observe_reconcile(
        &self,
        controller: ControllerKind,
        took: Duration,
        error: Option<&'static str>,
    ) {
        let controller = controller.as_str();
        self.reconcile_duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
        if let Some(category) = error {
            self.reconcile_errors
                .get_or_create(&ControllerErrorLabels {
                    controller,
                    category,
                })
                .inc();
        }
    }

    /// A Canary reconcile put off: its namespace already runs its limit.
    pub fn observe_deferred(&self) {
        self.reconcile_deferred.inc();
    }

    /// One outgoing webhook call (retries included): `ok` (2xx), `rejected` (another
    /// answer) or `error` (no answer).
    pub fn observe_webhook(&self, hook_type: &'static str, result: &'static str) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels {
                r#type: hook_type,
                result,
            })
            .inc();
    }

    /// One notification outcome: `delivered`, `retried`, `failed`, `rate_limited` or
    /// `dropped` (a full queue; `kind="none"` when it was dropped before routing).
    pub fn observe_notification(&self, kind: &'static str, result: &'static str) {
        self.notification_deliveries
            .get_or_create(&NotificationLabels { kind, result })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}

fn canary_labels(namespace: &str, name: &str) -> CanaryLabels {
    CanaryLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The value of one series (`name{labels}` exactly as encoded) in a scrape.
#[cfg(test)]
pub(crate) fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
