//! The demo's scenes: releases where a static error-rate threshold and serin's
//! comparison with the primary disagree, run back to back. Each release is judged by
//! serin live; what the common static policy would have decided is computed
//! afterwards from the same Prometheus series over the same release.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::display::{progress_line, SceneSummary};
use super::measure::{canary_windows, CanarySeries};
use super::static_policy::{evaluate, StaticPolicy};
use super::{canary_scaled_down, DemoError, DemoOptions, LocalEnv};
use crate::crd::CanaryPhase;
use crate::local::state::atomic_write;
use crate::local::{set_target, AppTemplate, LoadCounts, LoadGen, StepReport};

/// What a scene's release should end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Promoted,
    RolledBack,
}

impl Expected {
    pub fn phase(self) -> CanaryPhase {
        match self {
            Expected::Promoted => CanaryPhase::Succeeded,
            Expected::RolledBack => CanaryPhase::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Promoted => "promoted",
            Expected::RolledBack => "rolled back",
        }
    }
}

/// One release of the demo.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// "a", "b", "c".
    pub key: &'static str,
    pub title: &'static str,
    /// The new version.
    pub version: &'static str,
    /// Requests the new version itself fails, on top of the dependency's failures.
    pub own_error_rate: f64,
    /// Calls to the dependency every version uses that fail during this scene: both
    /// the primary and the new version see them.
    pub dependency_errors: f64,
    pub expected: Expected,
}

/// A configured rate as people say it: 0.02 -> "2%", 0.0249 -> "2.5%".
fn nominal(v: f64) -> String {
    format!("{}%", (v * 1000.0).round() / 10.0)
}

impl Scene {
    /// One sentence: what differs between the primary and the new version.
    pub fn story(&self, primary: &str) -> String {
        let dep = nominal(self.dependency_errors);
        let v = self.version;
        if self.own_error_rate > 0.0 {
            format!(
                "{v} fails {} of requests itself; the dependency fails {dep} for both, so \
                 {v} ~{} vs {primary} {dep}",
                nominal(self.own_error_rate),
                nominal(1.0 - (1.0 - self.own_error_rate) * (1.0 - self.dependency_errors))
            )
        } else {
            format!("{v} is as good as {primary}; the dependency fails {dep} of calls for both")
        }
    }
}

/// The demo's releases: v1 is the first primary, each promotion makes the next one.
pub fn scenes() -> Vec<Scene> {
    vec![
        Scene {
            key: "a",
            title: "a good release",
            version: "v2",
            own_error_rate: 0.0,
            dependency_errors: 0.005,
            expected: Expected::Promoted,
        },
        Scene {
            key: "b",
            title: "noisy primary: the dependency turns flaky",
            version: "v3",
            own_error_rate: 0.0,
            dependency_errors: 0.02,
            expected: Expected::Promoted,
        },
        Scene {
            key: "c",
            title: "a +2 pp regression",
            version: "v4",
            own_error_rate: 0.02,
            dependency_errors: 0.005,
            expected: Expected::RolledBack,
        },
    ]
}

/// The demo app at `version`, calling the dependency whose failures `dependency_file`
/// holds.
pub fn scene_app(version: &str, own_error_rate: f64, dependency_file: &Path) -> AppTemplate {
    let mut t = super::app_template(version, own_error_rate, 0);
    t.args.extend([
        "--dependency-file".into(),
        dependency_file.display().to_string(),
    ]);
    t
}

/// Set the dependency's failure fraction; every running instance picks it up within
/// 250 ms.
pub fn set_dependency(file: &Path, fraction: f64) -> Result<(), DemoError> {
    atomic_write(file, fraction.to_string().as_bytes()).map_err(DemoError::Local)
}

/// Where the release stands, seen by the progress callback.
#[derive(Default)]
struct Marks {
    /// Step 1 began: the canary's first traffic.
    traffic_at: Option<DateTime<Utc>>,
    /// serin decided (promotion or rollback began).
    decided_at: Option<(Instant, DateTime<Utc>)>,
}

impl Marks {
    fn observe(&mut self, r: &StepReport, rev: &str) {
        let ours = r.status.canary_revision.as_deref() == Some(rev);
        if !ours {
            return;
        }
        if self.traffic_at.is_none() && r.status.current_step >= 1 && r.status.canary_weight > 0 {
            self.traffic_at = Some(r.status.step_started_at.unwrap_or_else(Utc::now));
        }
        let decided = matches!(
            r.status.phase,
            CanaryPhase::Promoting
                | CanaryPhase::Finalising
                | CanaryPhase::Succeeded
                | CanaryPhase::Failed
        );
        if decided && self.decided_at.is_none() {
            self.decided_at = Some((Instant::now(), Utc::now()));
        }
    }
}

pub(super) struct SceneRun<'a> {
    pub env: &'a LocalEnv,
    pub opts: &'a DemoOptions,
    pub load: &'a LoadGen,
    pub dependency_file: &'a Path,
    /// The demo's start, for the progress lines' clock.
    pub start: Instant,
    /// The controller's notes, for the dashboard's timeline.
    pub feed: &'a crate::dashboard::DemoFeed,
}

impl SceneRun<'_> {
    /// Release `scene` over `primary` and judge it; `say` prints.
    pub async fn run(
        &self,
        scene: &Scene,
        primary: &str,
        say: &impl Fn(String),
    ) -> Result<SceneSummary, DemoError> {
        let opts = self.opts;
        let remaining = || opts.max_duration.saturating_sub(self.start.elapsed());
        let current = std::fs::read_to_string(self.dependency_file)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok());
        if current != Some(scene.dependency_errors) {
            set_dependency(self.dependency_file, scene.dependency_errors)?;
            // Let both versions' new error rate show in a few scrapes first.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let template = scene_app(scene.version, scene.own_error_rate, self.dependency_file);
        let rev = set_target(&self.env.state_file, template)?;
        let (t0, t0_utc) = (Instant::now(), Utc::now());
        say(format!(
            "\n== ({}) {}: {}\n   release {} over {primary}, revision {rev}: steps {:?}, interval {}s; expected: {} ==",
            scene.key,
            scene.title,
            scene.story(primary),
            scene.version,
            opts.steps,
            opts.interval.as_secs(),
            scene.expected.as_str()
        ));
        let before = self.load.snapshot();
        let mut marks = Marks::default();
        let mut last_line = String::new();
        let mut last_print = Instant::now();
        let report = self
            .env
            .controller
            .run_until(
                remaining(),
                |r| {
                    marks.observe(r, &rev);
                    for n in &r.notes {
                        say(format!("  >> {}: {}", n.reason, n.message));
                        self.feed.record_note(n);
                    }
                    let served = self.load.snapshot().since(&before);
                    let line =
                        progress_line(self.start.elapsed(), scene.version, &r.status, &served);
                    let key = progress_line(
                        Duration::ZERO,
                        scene.version,
                        &r.status,
                        &LoadCounts::default(),
                    );
                    if key != last_line || last_print.elapsed() >= Duration::from_secs(3) {
                        say(line);
                        last_line = key;
                        last_print = Instant::now();
                    }
                },
                |e| say(format!("  error (retrying): {e}")),
                |r| {
                    // Decided, and the canary's instances gone after the scale-down delay.
                    r.status.canary_revision.as_deref() == Some(rev.as_str())
                        && r.status.phase.is_idle()
                        && canary_scaled_down(self.env)
                },
            )
            .await?;
        let during = self.load.snapshot().since(&before);
        let took = t0.elapsed();
        // Traffic after the decision: nginx has reloaded, so this is the new split. It
        // also gives Prometheus time to scrape the release's last counts.
        let mid = self.load.snapshot();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = self.load.snapshot().since(&mid);
        let (decided_instant, decided_utc) =
            marks.decided_at.unwrap_or((Instant::now(), Utc::now()));
        let policy = StaticPolicy::common(opts.steps.len() as u32, opts.interval);
        let static_policy = match marks.traffic_at {
            None => Err("the canary never got traffic".to_string()),
            Some(t1) => {
                let series = CanarySeries {
                    namespace: "demo".into(),
                    workload: "podinfo".into(),
                    revision: rev.clone(),
                };
                let url = self.env.prometheus.url();
                canary_windows(&url, &series, t1, opts.interval, decided_utc)
                    .await
                    .map(|w| {
                        let offset = (t1 - t0_utc).to_std().unwrap_or_default();
                        evaluate(&policy, offset, &w)
                    })
            }
        };
        let summary = SceneSummary {
            scene: scene.clone(),
            primary: primary.to_string(),
            revision: rev,
            phase: report.status.phase,
            message: report.status.message.clone(),
            metrics: report.status.metrics.clone(),
            decided_after: decided_instant.saturating_duration_since(t0),
            static_policy,
            during,
            after,
            took,
        };
        say(summary.verdicts());
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_put_static_threshold_and_comparison_at_odds() {
        let all = scenes();
        let keys: Vec<(&str, Expected)> = all.iter().map(|s| (s.key, s.expected)).collect();
        assert_eq!(
            keys,
            [
                ("a", Expected::Promoted),
                ("b", Expected::Promoted),
                ("c", Expected::RolledBack)
            ]
        );
        let max = StaticPolicy::common(2, Duration::from_secs(10)).max_error_rate;
        // (b): both versions above the static maximum, neither worse than the other.
        assert!(all[1].dependency_errors >= 2.0 * max && all[1].own_error_rate == 0.0);
        // (c): +2 pp over a primary well under the maximum.
        let c = &all[2];
        let canary = 1.0 - (1.0 - c.own_error_rate) * (1.0 - c.dependency_errors);
        assert!(c.dependency_errors < max && canary - c.dependency_errors > 0.0195);
        assert_eq!(
            c.story("v3"),
            "v4 fails 2% of requests itself; the dependency fails 0.5% for both, so v4 ~2.5% \
             vs v3 0.5%"
        );
        assert_eq!(
            all[1].story("v2"),
            "v3 is as good as v2; the dependency fails 2% of calls for both"
        );
    }

    #[test]
    fn scene_apps_call_the_shared_dependency() {
        let t = scene_app("v3", 0.02, Path::new("/tmp/demo/dependency-errors"));
        let args = t.args.join(" ");
        assert!(
            args.starts_with("--version v3 --error-rate 0.02 "),
            "{args}"
        );
        assert!(
            args.ends_with("--dependency-file /tmp/demo/dependency-errors"),
            "{args}"
        );
    }
}
