//! The analysis' own cost: how long judges and metric queries take, and how queries
//! fail, by provider.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::Histograms;

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

/// Time each judge takes (queries excluded). Cloning shares the series.
#[derive(Clone)]
pub struct JudgeMetrics {
    duration: Histograms<JudgeLabels>,
}

impl std::fmt::Debug for JudgeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeMetrics").finish_non_exhaustive()
    }
}

impl JudgeMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            duration: Family::new_with_constructor(judge_histogram),
        };
        // Bounded labels exist from the start, so dashboards show zeros.
        for judge in [Judge::Threshold, Judge::Compare, Judge::Sequential] {
            m.duration.get_or_create_owned(&JudgeLabels {
                judge: judge.as_str(),
            });
        }
        r.register_with_unit(
            "serin_judge_duration",
            "Time a judge took to decide on one metric (queries excluded)",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    pub fn observe(&self, judge: Judge, took: Duration) {
        self.duration
            .get_or_create(&JudgeLabels {
                judge: judge.as_str(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Queries to metrics providers: duration and failures. Cloning shares the series.
#[derive(Clone)]
pub struct QueryMetrics {
    duration: Histograms<ProviderLabels>,
    errors: Family<ProviderErrorLabels, Counter>,
}

impl std::fmt::Debug for QueryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryMetrics").finish_non_exhaustive()
    }
}

impl QueryMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            duration: Family::new_with_constructor(query_histogram),
            errors: Family::default(),
        };
        r.register_with_unit(
            "serin_metric_query_duration",
            "Duration of one query to a metrics provider, errors included",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "serin_metric_query_errors",
            "Failed metric queries by provider and error category",
            m.errors.clone(),
        );
        m
    }

    /// One query to `provider`; `error` is the failure's bounded `category()`.
    pub fn observe(&self, provider: &'static str, took: Duration, error: Option<&'static str>) {
        self.duration
            .get_or_create(&ProviderLabels { provider })
            .observe(took.as_secs_f64());
        if let Some(category) = error {
            self.errors
                .get_or_create(&ProviderErrorLabels { provider, category })
                .inc();
        }
    }
}
