//! Evidence by default, through the controller: a Canary that names no templates is
//! judged by the built-in checks; only `builtin: none` releases without evidence.

use super::*;

/// Regression (issue 12): a Deployment annotated without `serin.dev/analysis` got a
/// Canary with no metrics, which passed every check and was promoted on time alone.
#[tokio::test]
async fn a_canary_without_templates_is_judged_by_the_builtin_checks() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"},
                                "analysis": {"steps": [50], "interval": "1m", "progressDeadline": "5m"}}));
    initialize(&h).await;
    // Prometheus answers nothing: no evidence, so never a promotion.
    h.set_image("podinfo:2");
    for _ in 0..8 {
        h.ok().await;
        h.advance(60);
    }
    let st = h.status();
    assert_eq!(st["phase"], "Failed", "{}", st["message"]);
    let queries = h.metrics.queries.lock().unwrap().clone();
    assert!(
        queries.iter().any(|q| q.contains("http_request")),
        "the app-http telemetry was queried: {queries:?}"
    );
    assert_ne!(h.image_of("podinfo-primary"), "podinfo:2");
}

#[tokio::test]
async fn only_builtin_none_promotes_without_checks_and_says_so() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"},
                                "analysis": {"steps": [50], "interval": "1m", "builtin": "none"}}));
    initialize(&h).await;
    h.set_image("podinfo:2");
    for _ in 0..8 {
        h.ok().await;
        h.advance(30);
    }
    let st = h.status();
    assert_eq!(st["phase"], "Succeeded", "{}", st["message"]);
    assert!(h.metrics.queries.lock().unwrap().is_empty());
    let promoted = h
        .events
        .take()
        .into_iter()
        .find(|e| e.reason == "Promoted")
        .expect("a Promoted Event");
    assert!(
        promoted
            .message
            .contains("without any checks (analysis: none)"),
        "{}",
        promoted.message
    );
}

#[tokio::test]
async fn an_unknown_telemetry_is_a_config_problem_naming_what_is_accepted() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"},
                                "analysis": {"telemetry": "zipkin"}}));
    h.ok().await;
    let cond = &h.status()["conditions"][0];
    assert_eq!(cond["reason"], "InvalidSpec");
    assert!(
        cond["message"].as_str().unwrap().contains("istio, linkerd"),
        "{}",
        cond["message"]
    );
}
