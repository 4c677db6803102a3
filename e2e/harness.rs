//! Shared e2e plumbing: scratch dirs, the real binaries (missing ones fail the run),
//! a serial lock (the cases would fight over 2 CPUs), and release helpers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serin::crd::{CanaryPhase, GatesSpec};
use serin::demo::{initial_state, template, EnvOptions, LocalEnv, ReleaseSettings};
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

pub fn settings(replicas: i32, gates: GatesSpec, deadline: Duration) -> ReleaseSettings {
    ReleaseSettings {
        interval: INTERVAL,
        steps: vec![20, 50],
        failure_limit: 2,
        progress_deadline: deadline,
        replicas,
        gates,
        template_name: template::BUILTIN_NAME.into(),
        template: template::builtin(),
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
