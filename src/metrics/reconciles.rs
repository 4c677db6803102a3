//! The reconcilers: duration, errors by category, deferrals, and leadership.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::Histograms;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerErrorLabels {
    controller: &'static str,
    category: &'static str,
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Cloning shares the series.
#[derive(Clone)]
pub struct ReconcileMetrics {
    duration: Histograms<ControllerLabels>,
    errors: Family<ControllerErrorLabels, Counter>,
    deferred: Counter,
    leader: Gauge,
}

impl std::fmt::Debug for ReconcileMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconcileMetrics").finish_non_exhaustive()
    }
}

impl ReconcileMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            duration: Family::new_with_constructor(reconcile_histogram),
            errors: Family::default(),
            deferred: Counter::default(),
            leader: Gauge::default(),
        };
        for controller in [ControllerKind::Canary, ControllerKind::Materialize] {
            m.duration.get_or_create_owned(&ControllerLabels {
                controller: controller.as_str(),
            });
        }
        r.register_with_unit(
            "serin_reconcile_duration",
            "Duration of one reconcile",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "serin_reconcile_errors",
            "Reconciles that returned an error, by error category",
            m.errors.clone(),
        );
        r.register(
            "serin_reconcile_deferred",
            "Canary reconciles put off because their namespace already ran its limit (--max-reconciles-per-namespace)",
            m.deferred.clone(),
        );
        r.register(
            "serin_leader",
            "1 while this replica leads",
            m.leader.clone(),
        );
        m
    }

    /// One reconcile; `error` is the failure's bounded `category()`.
    pub fn observe(&self, controller: ControllerKind, took: Duration, error: Option<&'static str>) {
        let controller = controller.as_str();
        self.duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
        if let Some(category) = error {
            self.errors
                .get_or_create(&ControllerErrorLabels {
                    controller,
                    category,
                })
                .inc();
        }
    }

    /// A Canary reconcile put off: its namespace already runs its limit.
    pub fn observe_deferred(&self) {
        self.deferred.inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}
