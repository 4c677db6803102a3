//! `serin demo` end to end, as a user runs it.

use std::time::Duration;

use serin::crd::{CanaryPhase, MetricVerdict};

use crate::harness::{env_options, scratch, SERIAL};

/// The demo exactly as `serin demo` runs it (10 s interval, 2 replicas, 300 req/s):
/// each scene ends as meant, judged by the built-in comparative checks, and the static
/// policy is computed from Prometheus beside it. About two minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_demo_with_default_settings() {
    use serin::demo::static_policy::{StaticDecision, StaticVerdict};
    let _serial = SERIAL.lock().await;
    let mut opts =
        serin::demo::DemoOptions::new(scratch("full-demo"), env!("CARGO_BIN_EXE_serin-demo-app"));
    opts.env = env_options("full-demo");
    let summary = serin::demo::run_demo(opts).await.unwrap();
    // run_demo printed the progress and this summary.
    let shown = summary.render();
    let [good, noisy, regression] = &summary.scenes[..] else {
        panic!("three scenes expected: {shown}")
    };
    assert_eq!(good.phase, CanaryPhase::Succeeded, "{shown}");
    assert_eq!(noisy.phase, CanaryPhase::Succeeded, "{shown}");
    assert_eq!(regression.phase, CanaryPhase::Failed, "{shown}");
    assert!(summary.as_expected(), "{shown}");
    // Judged by the built-in checks, and the regression by the comparison itself.
    for s in &summary.scenes {
        let names: Vec<&str> = s.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["errors", "latency", "error-rate-guard", "latency-guard"],
            "{shown}"
        );
    }
    let errors = |s: &serin::demo::SceneSummary| {
        s.metrics
            .iter()
            .find(|m| m.name == "errors")
            .map(|m| m.verdict)
    };
    assert_eq!(errors(regression), Some(MetricVerdict::Fail), "{shown}");
    assert!(
        regression.message.contains("errors"),
        "rolled back by the sequential test, not a guard or the deadline: {shown}"
    );
    // Traffic: the promoted versions serve everything afterwards; the regression
    // served during its release and nothing after it.
    assert_eq!(good.after.served("v1"), 0, "{shown}");
    assert!(good.after.served("v2") > 0, "{shown}");
    assert!(noisy.after.served("v3") > 0, "{shown}");
    assert!(regression.during.served("v4") > 0, "{shown}");
    assert_eq!(regression.after.served("v4"), 0, "{shown}");
    assert!(regression.after.served("v3") > 0, "{shown}");
    // The static policy, from Prometheus: the good releases were measured, and the
    // noisy one (2% errors on both versions) fails the 1% threshold where serin
    // promoted it.
    let static_of = |s: &serin::demo::SceneSummary| {
        s.static_policy
            .clone()
            .unwrap_or_else(|e| panic!("static policy not computed ({e}): {shown}"))
    };
    let (good_static, noisy_static) = (static_of(good), static_of(noisy));
    assert!(!good_static.checks.is_empty(), "{shown}");
    assert!(good_static.checks.iter().all(|c| c.counts.requests > 100.0));
    assert!(!noisy_static.checks.is_empty(), "{shown}");
    assert!(noisy_static.failed() >= 1, "{shown}");
    assert!(
        !matches!(noisy_static.decision, StaticDecision::Promote { .. }),
        "{shown}"
    );
    for c in &noisy_static.checks {
        let rate = c.counts.rate().unwrap();
        assert!((0.005..0.05).contains(&rate), "{rate}: {shown}");
        assert_ne!(c.verdict, StaticVerdict::NoData, "{shown}");
    }
    assert!(shown.contains("static: "), "{shown}");
    assert!(summary.elapsed < Duration::from_secs(180), "{shown}");
    let _ = std::fs::remove_dir_all(scratch("full-demo"));
}
