//! The live progress lines and the final summary of `serin demo`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::crd::{CanaryPhase, CanaryStatus, MetricStatus, MetricVerdict};
use crate::local::LoadCounts;

/// One progress line: phase, step, weight, each metric, traffic served.
pub fn progress_line(
    elapsed: Duration,
    version: &str,
    status: &CanaryStatus,
    served: &LoadCounts,
) -> String {
    let secs = elapsed.as_secs();
    let mut line = format!(
        "[{:02}:{:02}] {version:<3} {:<15} step {:<4} weight {:>3}%",
        secs / 60,
        secs % 60,
        status.phase.as_str(),
        status.step_label.as_deref().unwrap_or("-"),
        status.canary_weight
    );
    for m in &status.metrics {
        let _ = write!(line, " | {}", metric_cell(m));
    }
    let _ = write!(line, " | served {}", served.describe());
    line
}

fn metric_cell(m: &MetricStatus) -> String {
    let value = m
        .value
        .map(format_value)
        .unwrap_or_else(|| "n/a".to_string());
    format!("{} {} {}", m.name, value, verdict(m.verdict))
}

fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.001 {
        format!("{v:.1e}")
    } else {
        format!("{v:.4}")
    }
}

fn verdict(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Pass => "PASS",
        MetricVerdict::Fail => "FAIL",
        MetricVerdict::Inconclusive => "NO DATA",
        MetricVerdict::Error => "ERROR",
    }
}

/// One release of the demo, as it ended.
#[derive(Clone, Debug)]
pub struct ReleaseSummary {
    pub version: String,
    pub revision: String,
    /// What the demo meant this version to be.
    pub intended: &'static str,
    pub phase: CanaryPhase,
    pub message: String,
    pub metrics: Vec<MetricStatus>,
    /// Requests served while the release ran.
    pub during: LoadCounts,
    /// Requests served in a window after it ended.
    pub after: LoadCounts,
    pub took: Duration,
}

impl ReleaseSummary {
    /// Promoted if meant good, rolled back if meant bad.
    pub fn as_expected(&self) -> bool {
        match self.intended {
            "good" => self.phase == CanaryPhase::Succeeded,
            _ => self.phase == CanaryPhase::Failed,
        }
    }
}

pub fn render_summary(releases: &[ReleaseSummary], total: Duration) -> String {
    let mut out = String::from("\n=== serin demo: summary ===\n");
    for r in releases {
        let outcome = match r.phase {
            CanaryPhase::Succeeded => "PROMOTED",
            CanaryPhase::Failed => "ROLLED BACK",
            _ => "UNFINISHED",
        };
        let _ = writeln!(
            out,
            "{} ({} version, revision {}): {outcome} after {}s{}",
            r.version,
            r.intended,
            r.revision,
            r.took.as_secs(),
            if r.as_expected() {
                ""
            } else {
                "  <-- unexpected"
            }
        );
        let _ = writeln!(out, "  why: {}", r.message);
        for m in &r.metrics {
            let _ = writeln!(out, "  {}: {}", metric_cell(m), m.reason);
        }
        let _ = writeln!(out, "  served during the release: {}", r.during.describe());
        let _ = writeln!(out, "  served afterwards:         {}", r.after.describe());
    }
    let _ = writeln!(out, "total time: {}s", total.as_secs());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_step_weight_metric_and_traffic() {
        let mut s = CanaryStatus {
            phase: CanaryPhase::Progressing,
            canary_weight: 20,
            step_label: Some("1/2".into()),
            ..Default::default()
        };
        // From JSON, as the status file holds it.
        s.metrics.push(
            serde_json::from_value(serde_json::json!({
                "name": "error-rate", "value": 0.05, "verdict": "Fail",
                "reason": "0.05 > max 0.01", "checkedAt": "2026-01-01T00:00:00Z"
            }))
            .unwrap(),
        );
        let mut served = LoadCounts::default();
        served.by_version.insert(
            "v2".into(),
            crate::local::loadgen::VersionCount { ok: 95, errors: 5 },
        );
        let line = progress_line(Duration::from_secs(75), "v2", &s, &served);
        assert!(line.starts_with("[01:15] v2 "), "{line}");
        assert!(line.contains("step 1/2"), "{line}");
        assert!(line.contains("weight  20%"), "{line}");
        assert!(line.contains("error-rate 0.0500 FAIL"), "{line}");
        assert!(line.contains("v2 100 (5 errors)"), "{line}");
    }
}
