//! The live progress lines and the final summary of `serin demo`.

use std::fmt::Write as _;
use std::time::Duration;

use super::scenes::Scene;
use super::static_policy::{describe, StaticTimeline};
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
    format!("{} {} {}", m.name, value, verdict(m))
}

fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.001 {
        format!("{v:.1e}")
    } else {
        format!("{v:.4}")
    }
}

/// Inconclusive with a value is a hold for more data (too few requests or samples
/// yet, or evidence leaning towards a regression), not missing data.
fn verdict(m: &MetricStatus) -> &'static str {
    match (m.verdict, m.value) {
        (MetricVerdict::Pass, _) => "PASS",
        (MetricVerdict::Fail, _) => "FAIL",
        (MetricVerdict::Inconclusive, Some(_)) => "HOLD",
        (MetricVerdict::Inconclusive, None) => "NO DATA",
        (MetricVerdict::Error, _) => "ERROR",
    }
}

/// One scene of the demo, as it ended.
#[derive(Clone, Debug)]
pub struct SceneSummary {
    pub scene: Scene,
    /// The version serving before the release.
    pub primary: String,
    pub revision: String,
    pub phase: CanaryPhase,
    pub message: String,
    pub metrics: Vec<MetricStatus>,
    /// From the release's start until serin decided (promotion or rollback began).
    pub decided_after: Duration,
    /// What the common static policy would have decided over the same release.
    pub static_policy: Result<StaticTimeline, String>,
    /// Requests served while the release ran.
    pub during: LoadCounts,
    /// Requests served in a window after it ended.
    pub after: LoadCounts,
    /// From the release's start until the canary's instances were gone.
    pub took: Duration,
}

impl SceneSummary {
    pub fn as_expected(&self) -> bool {
        self.phase == self.scene.expected.phase()
    }

    fn outcome(&self) -> &'static str {
        match self.phase {
            CanaryPhase::Succeeded => "PROMOTED",
            CanaryPhase::Failed => "ROLLED BACK",
            _ => "UNFINISHED",
        }
    }

    /// serin's decision and the static policy's, two lines.
    pub fn verdicts(&self) -> String {
        let evidence = self
            .metrics
            .iter()
            .find(|m| m.name == "errors")
            .map(|m| format!(": errors {}", m.reason))
            .unwrap_or_default();
        let expected = if self.as_expected() {
            String::new()
        } else {
            format!("  <-- expected {}", self.scene.expected.as_str())
        };
        let static_line = match &self.static_policy {
            Ok(t) => describe(t, Some(self.decided_after)),
            Err(e) => format!("not computed: {e}"),
        };
        format!(
            "  serin:  {} after {} s{evidence}{expected}\n  static: {static_line}",
            self.outcome(),
            self.decided_after.as_secs()
        )
    }
}

pub fn render_summary(scenes: &[SceneSummary], policy: &str, total: Duration) -> String {
    let mut out = String::from("\n=== serin demo: summary ===\n");
    let _ = writeln!(
        out,
        "serin: built-in checks (app-http: sequential errors vs the primary, Mann-Whitney \
         latency, critical guards)\nstatic: the common policy, {policy}, from the same \
         Prometheus series"
    );
    for s in scenes {
        let _ = writeln!(
            out,
            "\n({}) {}: {} over {}, revision {}",
            s.scene.key, s.scene.title, s.scene.version, s.primary, s.revision
        );
        let _ = writeln!(out, "  {}", s.scene.story(&s.primary));
        let _ = writeln!(out, "{}", s.verdicts());
        if s.phase != CanaryPhase::Succeeded {
            let _ = writeln!(out, "  why:    {}", s.message);
        }
        for m in &s.metrics {
            let _ = writeln!(out, "    {}: {}", metric_cell(m), m.reason);
        }
        let _ = writeln!(out, "  served during the release: {}", s.during.describe());
        let _ = writeln!(out, "  served afterwards (3 s):   {}", s.after.describe());
    }
    let _ = writeln!(out, "\ntotal time: {}s", total.as_secs());
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
        for (name, value) in [
            ("errors", serde_json::json!(0.03)),
            ("latency", serde_json::Value::Null),
        ] {
            s.metrics.push(
                serde_json::from_value(serde_json::json!({
                    "name": name, "value": value, "verdict": "Inconclusive",
                    "reason": "", "checkedAt": "2026-01-01T00:00:00Z"
                }))
                .unwrap(),
            );
        }
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
        assert!(
            line.contains("errors 0.0300 HOLD | latency n/a NO DATA"),
            "{line}"
        );
        assert!(line.contains("v2 100 (5 errors)"), "{line}");
    }

    #[test]
    fn verdicts_put_serin_beside_the_static_policy() {
        use crate::demo::static_policy::{evaluate, StaticPolicy, WindowCounts};
        let errors: MetricStatus = serde_json::from_value(serde_json::json!({
            "name": "errors", "value": 0.0187, "verdict": "Pass",
            "reason": "canary 31/1660 errors (1.87%) vs primary 48/2818 errors (1.70%)",
            "checkedAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let windows = [WindowCounts {
            errors: 15.0,
            requests: 600.0,
        }; 2];
        let policy = StaticPolicy::common(2, Duration::from_secs(10));
        let s = SceneSummary {
            scene: crate::demo::scenes()[1].clone(),
            primary: "v2".into(),
            revision: "80b0cc6550".into(),
            phase: CanaryPhase::Succeeded,
            message: "revision 80b0cc6550 promoted".into(),
            metrics: vec![errors],
            decided_after: Duration::from_secs(21),
            static_policy: Ok(evaluate(&policy, Duration::from_secs(1), &windows)),
            during: LoadCounts::default(),
            after: LoadCounts::default(),
            took: Duration::from_secs(25),
        };
        assert!(s.as_expected());
        assert_eq!(
            s.verdicts(),
            "  serin:  PROMOTED after 21 s: errors canary 31/1660 errors (1.87%) vs primary \
             48/2818 errors (1.70%)\n  static: 2 checks so far, 2 failed (2.50% FAIL, 2.50% FAIL): would \
             roll back at the 5th failed check at the earliest, after 51 s (5 min at 1-minute \
             checks); serin decided at least 30 s earlier"
        );
        let failed = SceneSummary {
            phase: CanaryPhase::Failed,
            static_policy: Err("the canary never got traffic".into()),
            ..s
        };
        assert!(!failed.as_expected());
        let v = failed.verdicts();
        assert!(v.contains("ROLLED BACK after 21 s") && v.contains("<-- expected promoted"));
        assert!(
            v.ends_with("static: not computed: the canary never got traffic"),
            "{v}"
        );
    }
}
