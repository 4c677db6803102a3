//! Per-Canary series: phase counts, weight, verdicts, last values and finished
//! releases. Every series of a Canary is removed when the Canary goes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::{CanaryPhase, MetricVerdict};
use crate::rollout::{AnalysisReport, Note, ReleaseEnd};

/// Every phase, so `serin_canaries` shows zeros instead of missing series.
pub(super) const PHASES: [CanaryPhase; 9] = CanaryPhase::ALL;

const VERDICTS: [&str; 4] = ["pass", "fail", "inconclusive", "error"];
const VARIANTS: [&str; 2] = ["canary", "baseline"];
const RELEASE_RESULTS: [&str; 2] = ["promoted", "rolled_back"];

fn verdict_label(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Pass => "pass",
        MetricVerdict::Fail => "fail",
        MetricVerdict::Inconclusive => "inconclusive",
        MetricVerdict::Error => "error",
    }
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
struct ReleaseLabels {
    namespace: String,
    name: String,
    result: &'static str,
}

/// What is known of one Canary, to keep `serin_canaries` right and to remove its
/// series when it goes.
#[derive(Default)]
struct Tracked {
    phase: Option<&'static str>,
    metrics: BTreeSet<String>,
}

type TrackedCanaries = Arc<Mutex<HashMap<(String, String), Tracked>>>;

/// The reconciler's view of each Canary. Cloning shares the series.
#[derive(Clone)]
pub struct CanaryMetrics {
    canaries: Family<PhaseLabels, Gauge>,
    weight: Family<CanaryLabels, Gauge>,
    verdicts: Family<VerdictLabels, Counter>,
    values: Family<ValueLabels, Gauge<f64, AtomicU64>>,
    releases: Family<ReleaseLabels, Counter>,
    tracked: TrackedCanaries,
}

impl std::fmt::Debug for CanaryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryMetrics").finish_non_exhaustive()
    }
}

impl CanaryMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            canaries: Family::default(),
            weight: Family::default(),
            verdicts: Family::default(),
            values: Family::default(),
            releases: Family::default(),
            tracked: TrackedCanaries::default(),
        };
        for p in PHASES {
            m.canaries
                .get_or_create(&PhaseLabels { phase: p.as_str() })
                .set(0);
        }
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
        r.register(
            "serin_releases",
            "Finished releases by result (promoted, rolled_back)",
            m.releases.clone(),
        );
        m
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Canary's phase and weight as of its latest status.
    pub fn observe(&self, namespace: &str, name: &str, phase: CanaryPhase, weight: i32) {
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
    pub fn forget(&self, namespace: &str, name: &str) {
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
}

fn canary_labels(namespace: &str, name: &str) -> CanaryLabels {
    CanaryLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}
