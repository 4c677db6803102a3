//! End to end: a real Prometheus, a real nginx splitting real HTTP traffic between
//! real demo-app processes, and serin's release driver deciding. Cases run one at a
//! time (they would fight over the CPUs); each stops everything it started on drop.

mod dashboard;
mod demo;
mod harness;
mod stored_series;
mod stores;

use std::time::Duration;

use serin::crd::{CanaryPhase, GatesSpec, MetricVerdict};
use serin::local::{approve_local, set_target};
use serin::providers::MetricSource as _;

use harness::*;

const LIMIT: Duration = Duration::from_secs(90);

fn verdict_of(r: &serin::local::StepReport, metric: &str) -> Option<MetricVerdict> {
    r.status
        .metrics
        .iter()
        .find(|m| m.name == metric)
        .map(|m| m.verdict)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_release_is_promoted_and_then_serves_everything() {
    let _serial = SERIAL.lock().await;
    let s = settings(2, GatesSpec::default(), Duration::from_secs(30));
    let (env, load) = start("good", &s).await;
    let before = load.snapshot();
    let rev = set_target(&env.state_file, app("v2", 0.0, 0)).unwrap();
    let mut weights_seen = Vec::new();
    let rev2 = rev.clone();
    let report = run_watching(
        &env,
        LIMIT,
        |r| {
            if r.status.phase == CanaryPhase::Progressing {
                weights_seen.push(r.status.canary_weight);
            }
        },
        move |r| {
            r.status.canary_revision.as_deref() == Some(rev2.as_str()) && r.status.phase.is_idle()
        },
    )
    .await;
    let during = load.snapshot().since(&before);
    assert_eq!(
        report.status.phase,
        CanaryPhase::Succeeded,
        "{}",
        report.status.message
    );
    assert_eq!(report.status.stable_revision.as_deref(), Some(rev.as_str()));
    assert!(
        weights_seen.contains(&20) && weights_seen.contains(&50),
        "{weights_seen:?}"
    );
    assert_eq!(verdict_of(&report, "error-rate"), Some(MetricVerdict::Pass));
    assert_eq!(
        verdict_of(&report, "latency-p99"),
        Some(MetricVerdict::Pass)
    );
    // Both versions really served during the release...
    assert!(
        during.served("v2") > 0 && during.served("v1") > 0,
        "{}",
        during.describe()
    );
    // ...and afterwards the promoted primary serves everything.
    let after = window(&load, 3).await;
    assert_eq!(after.served("v1"), 0, "{}", after.describe());
    assert!(
        after.served("v2") >= u64::from(RATE),
        "{}",
        after.describe()
    );
    let state = env.load().unwrap();
    let primary = state.primary.unwrap();
    assert_eq!(primary.procs.len(), 2);
    assert!(primary.procs.iter().all(|p| p.revision == rev));
    assert!(state.canary.procs.is_empty());
    cleanup(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_regression_is_rolled_back_and_gets_no_more_traffic() {
    let _serial = SERIAL.lock().await;
    let s = settings(1, GatesSpec::default(), Duration::from_secs(30));
    let (env, load) = start("errors", &s).await;
    let before = load.snapshot();
    let rev = set_target(&env.state_file, app("v2", 0.2, 0)).unwrap();
    let report = finish(&env, &rev, LIMIT).await;
    let during = load.snapshot().since(&before);
    assert_eq!(
        report.status.phase,
        CanaryPhase::Failed,
        "{}",
        report.status.message
    );
    assert_eq!(report.status.failed_revision.as_deref(), Some(rev.as_str()));
    assert!(
        report.status.message.contains("error-rate"),
        "{}",
        report.status.message
    );
    assert_eq!(verdict_of(&report, "error-rate"), Some(MetricVerdict::Fail));
    // The bad version really got traffic and really failed some of it.
    let v2 = during.by_version.get("v2").copied().unwrap_or_default();
    assert!(v2.errors > 0 && v2.ok > 0, "{}", during.describe());
    let after = window(&load, 3).await;
    assert_eq!(after.served("v2"), 0, "{}", after.describe());
    assert!(
        after.served("v1") >= u64::from(RATE),
        "{}",
        after.describe()
    );
    let state = env.load().unwrap();
    assert!(state.canary.procs.is_empty());
    assert_ne!(
        state.primary.unwrap().revision.as_deref(),
        Some(rev.as_str())
    );
    cleanup(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_regression_is_rolled_back_and_gets_no_more_traffic() {
    let _serial = SERIAL.lock().await;
    let s = settings(1, GatesSpec::default(), Duration::from_secs(30));
    let (env, load) = start("latency", &s).await;
    let rev = set_target(&env.state_file, app("v2", 0.0, 250)).unwrap();
    let report = finish(&env, &rev, LIMIT).await;
    assert_eq!(
        report.status.phase,
        CanaryPhase::Failed,
        "{}",
        report.status.message
    );
    assert!(
        report.status.message.contains("latency-p99"),
        "{}",
        report.status.message
    );
    let p99 = report
        .status
        .metrics
        .iter()
        .find(|m| m.name == "latency-p99")
        .and_then(|m| m.value)
        .unwrap();
    // 250 ms ± 10% lands in the 0.25/0.3 s buckets.
    assert!((0.2..=0.3).contains(&p99), "p99 {p99}");
    assert_eq!(verdict_of(&report, "error-rate"), Some(MetricVerdict::Pass));
    let after = window(&load, 3).await;
    assert_eq!(after.served("v2"), 0, "{}", after.describe());
    assert!(
        after.served("v1") >= u64::from(RATE),
        "{}",
        after.describe()
    );
    cleanup(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_outage_holds_and_rolls_back_at_the_deadline() {
    let _serial = SERIAL.lock().await;
    let deadline = Duration::from_secs(12);
    let s = settings(1, GatesSpec::default(), deadline);
    let (mut env, load) = start("outage", &s).await;
    let rev = set_target(&env.state_file, app("v2", 0.0, 0)).unwrap();
    run(&env, LIMIT, |r| r.status.current_step >= 1).await;
    env.prometheus.stop();
    let stopped = std::time::Instant::now();
    let mut phases = Vec::new();
    let mut max_weight = 0;
    let rev2 = rev.clone();
    let report = run_watching(
        &env,
        LIMIT,
        |r| {
            phases.push(r.status.phase);
            if r.status.phase == CanaryPhase::Progressing {
                max_weight = max_weight.max(r.status.canary_weight);
            }
        },
        move |r| {
            r.status.canary_revision.as_deref() == Some(rev2.as_str()) && r.status.phase.is_idle()
        },
    )
    .await;
    assert_eq!(
        report.status.phase,
        CanaryPhase::Failed,
        "{}",
        report.status.message
    );
    assert!(!phases.contains(&CanaryPhase::Promoting), "{phases:?}");
    assert!(!phases.contains(&CanaryPhase::Succeeded), "{phases:?}");
    // Held at the first step: no further traffic shift without evidence.
    assert_eq!(max_weight, 20);
    assert!(
        report.status.message.contains("progress deadline"),
        "{}",
        report.status.message
    );
    assert_eq!(
        verdict_of(&report, "error-rate"),
        Some(MetricVerdict::Error)
    );
    // It held until the deadline, not less (the step began before the outage).
    assert!(
        stopped.elapsed() + INTERVAL >= deadline,
        "{:?}",
        stopped.elapsed()
    );
    let after = window(&load, 3).await;
    assert_eq!(after.served("v2"), 0, "{}", after.describe());
    assert!(after.served("v1") > 0, "{}", after.describe());
    cleanup(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_release_adopts_the_instances_and_finishes() {
    let _serial = SERIAL.lock().await;
    let s = settings(1, GatesSpec::default(), Duration::from_secs(30));
    let (mut env, load) = start("restart", &s).await;
    let rev = set_target(&env.state_file, app("v2", 0.0, 0)).unwrap();
    run(&env, LIMIT, |r| r.status.current_step >= 1).await;
    // Kill the controller in the middle of whatever it is doing: the future is dropped
    // at an arbitrary await point, in-memory state is lost.
    let _ = tokio::time::timeout(
        Duration::from_millis(1700),
        env.controller.run_until(LIMIT, |_| {}, |_| {}, |_| false),
    )
    .await;
    let before = env.load().unwrap();
    let canary_pids: Vec<u32> = before.canary.procs.iter().map(|p| p.pid).collect();
    assert!(!canary_pids.is_empty());
    env.restart_controller().unwrap();
    let first = env.controller.step().await.unwrap();
    // The running canary was adopted, not restarted.
    let adopted: Vec<u32> = env
        .load()
        .unwrap()
        .canary
        .procs
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(adopted, canary_pids);
    assert_eq!(first.status.canary_revision.as_deref(), Some(rev.as_str()));
    assert!(
        first.status.current_step >= 1,
        "restarted from scratch: {:?}",
        first.status
    );
    let report = finish(&env, &rev, LIMIT).await;
    assert_eq!(
        report.status.phase,
        CanaryPhase::Succeeded,
        "{}",
        report.status.message
    );
    let after = window(&load, 3).await;
    assert_eq!(after.served("v1"), 0, "{}", after.describe());
    assert!(
        after.served("v2") >= u64::from(RATE),
        "{}",
        after.describe()
    );
    cleanup(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_gate_waits_until_approved() {
    let _serial = SERIAL.lock().await;
    let gates = GatesSpec {
        before_promotion: true,
        ..Default::default()
    };
    let s = settings(1, gates, Duration::from_secs(30));
    let (env, load) = start("gate", &s).await;
    let rev = set_target(&env.state_file, app("v2", 0.0, 0)).unwrap();
    run(&env, LIMIT, |r| {
        r.status.phase == CanaryPhase::WaitingApproval
    })
    .await;
    // Several intervals later it still waits, the primary still runs v1, and the
    // canary keeps its last step's share of the traffic.
    let mut phases = Vec::new();
    let _ = tokio::time::timeout(
        INTERVAL * 3,
        env.controller
            .run_until(LIMIT, |r| phases.push(r.status.phase), |_| {}, |_| false),
    )
    .await;
    assert!(!phases.is_empty());
    assert!(
        phases.iter().all(|p| *p == CanaryPhase::WaitingApproval),
        "{phases:?}"
    );
    let waiting = window(&load, 3).await;
    let share = waiting.served("v2") as f64 / waiting.total_served() as f64;
    eprintln!(
        "  at weight 50%: canary share {share:.3} ({})",
        waiting.describe()
    );
    assert!((0.35..=0.65).contains(&share), "{}", waiting.describe());
    let state = env.load().unwrap();
    assert_ne!(
        state.primary.unwrap().revision.as_deref(),
        Some(rev.as_str())
    );
    let a = approve_local(&env.state_file, true, "e2e", chrono::Utc::now()).unwrap();
    assert_eq!(a.revision, rev);
    let report = finish(&env, &rev, LIMIT).await;
    assert_eq!(
        report.status.phase,
        CanaryPhase::Succeeded,
        "{}",
        report.status.message
    );
    assert!(report.status.approvals.iter().any(|x| x.id == a.id));
    let after = window(&load, 3).await;
    assert_eq!(after.served("v1"), 0, "{}", after.describe());
    cleanup(env);
}

/// The shipped analysis-templates/ (the built-in checks), run against the series the
/// demo app exports in each mesh's and ingress's shape, measure what was injected: the
/// canary's error counts and latency, the primary's apart from them, and the guards
/// the canary alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_templates_measure_the_canary_from_real_series() {
    use serin::analysis::{builtin_template, render_query, resolve_metrics, RenderVars, Telemetry};
    let _serial = SERIAL.lock().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("analysis-templates");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    // No check runs during the test (60 s interval); one step at 50%.
    let mut s = settings(1, GatesSpec::default(), Duration::from_secs(600));
    s.interval = Duration::from_secs(60);
    s.steps = vec![50];
    let (env, load) = start("templates", &s).await;
    set_target(&env.state_file, app("v2", 0.2, 100)).unwrap();
    run(&env, LIMIT, |r| r.status.canary_weight == 50).await;
    // Discovery (5 s throttle) + a full 15 s window of canary traffic.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let served = load.snapshot();
    assert!(served.served("v2") > 100, "{}", served.describe());
    let prom = serin::providers::PrometheusSource::new(
        &serin::providers::prometheus::PrometheusConfig::new(
            env.prometheus.url(),
            Duration::from_secs(5),
        ),
    )
    .unwrap();
    let now = chrono::Utc::now();
    for t in Telemetry::ALL {
        let tref = serin::crd::TemplateRef {
            name: t.as_str().into(),
            cluster_scope: false,
            // Samples of 3 s windows over the last 15 s (scrapes every second).
            args: [("latencyWindow", "3s"), ("latencyLookback", "15s")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let metrics = resolve_metrics(&[(tref, builtin_template(t))]).unwrap();
        let vars = |workload: &str, m: &serin::analysis::ResolvedMetric| RenderVars {
            namespace: "demo".into(),
            target: "podinfo".into(),
            canary: "podinfo".into(),
            primary: "podinfo-primary".into(),
            workload: workload.into(),
            service: "podinfo".into(),
            interval: "15s".into(),
            args: m.args.clone(),
        };
        let scalar = |q: &str, workload: &str, m: &serin::analysis::ResolvedMetric| {
            let q = render_query(q, &vars(workload, m)).unwrap();
            let prom = &prom;
            let name = m.name.clone();
            async move {
                prom.query_scalar(&q, now)
                    .await
                    .unwrap_or_else(|e| panic!("{t} {name}: {e}\n{q}"))
            }
        };
        for m in &metrics {
            match m.name.as_str() {
                "errors" => {
                    let seq = m.sequential().unwrap();
                    let requests = seq.requests_query.as_deref().unwrap();
                    let ce = scalar(&m.query, "podinfo", m).await;
                    let cn = scalar(requests, "podinfo", m).await;
                    let be = seq.baseline_errors_query.as_deref().unwrap_or(&m.query);
                    let bn = seq.baseline_requests_query.as_deref().unwrap_or(requests);
                    let pe = scalar(be, "podinfo-primary", m).await;
                    let pn = scalar(bn, "podinfo-primary", m).await;
                    eprintln!("  {t:<18} errors   canary {ce}/{cn}  primary {pe}/{pn}");
                    // Injected: 20% errors on the canary (v2), none on the primary (v1).
                    assert!(
                        cn > 100.0 && (0.13..=0.3).contains(&(ce / cn)),
                        "{t}: {ce}/{cn}"
                    );
                    assert!(pn > 100.0 && pe / pn < 0.05, "{t}: {pe}/{pn}");
                }
                "latency" => {
                    let c = m.compare().unwrap();
                    let canary = render_query(&m.query, &vars("podinfo", m)).unwrap();
                    let baseline = c.baseline_query.as_deref().unwrap_or(&m.query);
                    let primary = render_query(baseline, &vars("podinfo-primary", m)).unwrap();
                    let cs = prom.query_vector(&canary, now).await.unwrap();
                    let ps = prom.query_vector(&primary, now).await.unwrap();
                    eprintln!("  {t:<18} latency  canary {cs:.3?}  primary {ps:.3?}");
                    // Injected: 100 ms ± 10% on every canary request.
                    assert!(cs.len() >= 3, "{t}: {cs:?}\n{canary}");
                    assert!(cs.iter().all(|v| (0.09..=0.16).contains(v)), "{t}: {cs:?}");
                    assert!(ps.iter().all(|v| *v < 0.09), "{t}: {ps:?}\n{primary}");
                }
                name => {
                    let value = scalar(&m.query, "podinfo", m).await;
                    eprintln!("  {t:<18} {name:<16} {value:.4}");
                    let expected = match name {
                        // Diluted by the primary's requests, it would be near 0.1.
                        "error-rate-guard" => 0.13..=0.3,
                        "latency-guard" => 0.09..=0.16,
                        other => panic!("{t}: unexpected metric {other}"),
                    };
                    assert!(expected.contains(&value), "{t} {name}: {value}");
                }
            }
        }
    }
    cleanup(env);
}

/// Where the child controller of the kill -9 case finds its world (JSON in an env var).
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildWorld {
    state_file: std::path::PathBuf,
    prometheus_url: String,
    targets_file: std::path::PathBuf,
    nginx_binary: std::path::PathBuf,
    nginx_dir: std::path::PathBuf,
    app_binary: std::path::PathBuf,
    log_dir: std::path::PathBuf,
}

const CHILD_ENV: &str = "SERIN_E2E_CHILD_CONTROLLER";

/// Not a test: the body of the separate serin process the kill -9 case starts (this
/// test binary re-executed with `--ignored --exact`). Does nothing when run by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn child_controller_process() {
    let Ok(world) = std::env::var(CHILD_ENV) else {
        return;
    };
    let w: ChildWorld = serde_json::from_str(&world).unwrap();
    let cluster = serin::local::LocalCluster::new(serin::local::LocalConfig {
        app_binary: w.app_binary,
        state_file: w.state_file,
        log_dir: w.log_dir,
        nginx: serin::local::NginxControl {
            binary: w.nginx_binary,
            dir: w.nginx_dir,
        },
        targets_file: Some(w.targets_file),
        ready_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let controller = serin::local::LocalController::new(cluster, &w.prometheus_url);
    // Runs until killed; bounded so a lost child cannot outlive the suite for long.
    let _ = controller
        .run_until(Duration::from_secs(120), |_| {}, |_| {}, |_| false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serin_process_killed_mid_release_is_resumed_by_a_new_one() {
    let _serial = SERIAL.lock().await;
    // Instances the killed serin started become orphans; inherit them to reap them.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let s = settings(1, GatesSpec::default(), Duration::from_secs(30));
    let (mut env, load) = start("kill9", &s).await;
    let rev = set_target(&env.state_file, app("v2", 0.0, 0)).unwrap();
    let world = ChildWorld {
        state_file: env.state_file.clone(),
        prometheus_url: env.prometheus.url(),
        targets_file: env.prometheus.targets_file.clone(),
        nginx_binary: env.nginx.control.binary.clone(),
        nginx_dir: env.nginx.control.dir.clone(),
        app_binary: env.opts.app_binary.clone(),
        log_dir: env.opts.dir.join("logs"),
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_controller_process",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, serde_json::to_string(&world).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let the other serin take the release to its first step, then SIGKILL it.
    let reached = serin::local::procs::wait_until(LIMIT, || async {
        env.load().unwrap().status.current_step >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(reached, "the child serin never reached step 1");
    assert!(!status.success());
    let before = env.load().unwrap();
    assert_eq!(before.status.canary_revision.as_deref(), Some(rev.as_str()));
    let canary_pids: Vec<u32> = before.canary.procs.iter().map(|p| p.pid).collect();
    assert!(!canary_pids.is_empty());
    assert!(canary_pids
        .iter()
        .all(|p| serin::local::procs::pid_alive(*p)));
    // A new serin, knowing only the state file, adopts the instances and finishes.
    env.restart_controller().unwrap();
    let first = env.controller.step().await.unwrap();
    let adopted: Vec<u32> = env
        .load()
        .unwrap()
        .canary
        .procs
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(adopted, canary_pids);
    assert!(first.status.current_step >= 1, "{:?}", first.status);
    let report = finish(&env, &rev, LIMIT).await;
    assert_eq!(
        report.status.phase,
        CanaryPhase::Succeeded,
        "{}",
        report.status.message
    );
    let after = window(&load, 3).await;
    assert_eq!(after.served("v1"), 0, "{}", after.describe());
    assert!(
        after.served("v2") >= u64::from(RATE),
        "{}",
        after.describe()
    );
    cleanup(env);
}
