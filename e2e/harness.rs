//! Shared e2e plumbing: scratch dirs, the real binaries (missing ones fail the run),
//! a serial lock (the cases would fight over 2 CPUs), and release helpers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serin::crd::AnalysisTemplateSpec;
use serin::crd::{CanaryPhase, GatesSpec};
use serin::demo::{initial_state, EnvOptions, LocalEnv, ReleaseSettings};
use serin::local::{AppTemplate, LoadCounts, LoadGen, LoadOptions, StepReport};

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const INTERVAL: Duration = Duration::from_secs(3);
pub const RATE: u32 = 50;

/// A scratch directory for one case, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serin-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The options for a case; a missing prometheus or nginx fails the test (CI installs
/// them: `apt-get install -y --no-install-recommends prometheus nginx`).
pub fn env_options(name: &str) -> EnvOptions {
    let opts = EnvOptions::new(scratch(name), env!("CARGO_BIN_EXE_serin-demo-app"));
    for (what, bin) in [
        ("prometheus", &opts.prometheus_binary),
        ("nginx", &opts.nginx_binary),
    ] {
        let ok = Command::new(bin)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success());
        let ok = ok
            || Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "\n\n*** e2e: `{what}` ({}) is not installed or does not run. ***\n\
             *** Install it: apt-get install -y --no-install-recommends prometheus nginx ***\n\n",
            bin.display()
        );
    }
    opts
}

/// The cases' template: static thresholds on the app's own histogram (error rate at
/// most 1%, p99 at most 100 ms), on the same selectors as the shipped
/// `analysis-templates/app-http.yaml`. Thresholds keep the cases' decisions quick and
/// certain at short intervals; the comparative checks run in the demo case.
const STATIC_TEMPLATE: &str = r#"
apiVersion: serin.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: e2e-static-http
spec:
  metrics:
    - name: error-rate
      query: |
        (
          sum(rate(http_request_duration_seconds_count{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+-[a-z0-9]+", code=~"5.."}[{{interval}}]))
          or vector(0)
        )
        /
        sum(rate(http_request_duration_seconds_count{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+-[a-z0-9]+"}[{{interval}}]))
      threshold:
        max: 0.01
    - name: latency-p99
      query: |
        histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+-[a-z0-9]+"}[{{interval}}])))
      threshold:
        max: 0.1
"#;

pub fn static_template() -> (String, AnalysisTemplateSpec) {
    serin::analysis::history::parse_template(STATIC_TEMPLATE, "e2e-static-http").unwrap()
}

pub fn settings(replicas: i32, gates: GatesSpec, deadline: Duration) -> ReleaseSettings {
    let (template_name, template) = static_template();
    ReleaseSettings {
        interval: INTERVAL,
        look_interval: INTERVAL,
        steps: vec![20, 50],
        failure_limit: 2,
        progress_deadline: deadline,
        replicas,
        gates,
        template_name,
        template,
        template_args: Default::default(),
    }
}

pub fn app(version: &str, error_rate: f64, latency_ms: u64) -> AppTemplate {
    serin::demo::app_template(version, error_rate, latency_ms)
}

/// Start the environment with `v1` as the stable version and wait until the primary
/// serves, then start traffic through nginx.
pub async fn start(name: &str, s: &ReleaseSettings) -> (LocalEnv, LoadGen) {
    let env = LocalEnv::start(
        env_options(name),
        &initial_state(s, app("v1", 0.0, 0)).unwrap(),
    )
    .await
    .unwrap();
    run(&env, Duration::from_secs(60), |r| {
        r.status.phase == CanaryPhase::Initialized
    })
    .await;
    let load = LoadGen::start(LoadOptions::new(
        format!("{}/", env.nginx.url()),
        RATE,
        Duration::from_secs(240),
    ))
    .unwrap();
    (env, load)
}

/// Reconcile until `done`, printing notes; panics after `limit`.
pub async fn run(
    env: &LocalEnv,
    limit: Duration,
    done: impl FnMut(&StepReport) -> bool,
) -> StepReport {
    run_watching(env, limit, |_| {}, done).await
}

pub async fn run_watching(
    env: &LocalEnv,
    limit: Duration,
    mut watch: impl FnMut(&StepReport),
    done: impl FnMut(&StepReport) -> bool,
) -> StepReport {
    env.controller
        .run_until(
            limit,
            |r| {
                for n in &r.notes {
                    eprintln!("  [{}] {}", n.reason, n.message);
                }
                watch(r);
            },
            |e| eprintln!("  reconcile error (retried): {e}"),
            done,
        )
        .await
        .unwrap()
}

/// Run until the release of `rev` ended (promoted or rolled back).
/// Run until `rev`'s release ended and the canary's instances are gone (after the
/// scale-down delay).
pub async fn finish(env: &LocalEnv, rev: &str, limit: Duration) -> StepReport {
    let rev = rev.to_string();
    run(env, limit, move |r| {
        r.status.canary_revision.as_deref() == Some(rev.as_str())
            && r.status.phase.is_idle()
            && env
                .load()
                .is_ok_and(|s| s.canary.replicas == 0 && s.canary.procs.is_empty())
    })
    .await
}

/// Requests served per version in a window starting once nginx settled.
pub async fn window(load: &LoadGen, secs: u64) -> LoadCounts {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = load.snapshot();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    load.snapshot().since(&before)
}

/// Stop everything and remove the scratch directory. Not reached when a case fails,
/// so a failed case keeps its logs (instances, nginx, Prometheus) for inspection.
pub fn cleanup(mut env: LocalEnv) {
    let dir = env.opts.dir.clone();
    env.shutdown();
    drop(env);
    let _ = std::fs::remove_dir_all(dir);
}
