//! Problems the user must fix: reported precisely, nothing else touched.

use super::*;

#[tokio::test]
async fn invalid_spec_gets_a_condition_and_a_warning_and_touches_nothing_else() {
    let h =
        Harness::new(json!({"targetRef": {"name": "podinfo"}, "analysis": {"steps": [50, 10]}}));
    let (r, c) = h.reconcile().await;
    assert_eq!(r.unwrap(), Action::requeue(h.idle_recheck()));
    assert_eq!(c, vec![status_write()]);
    let cond = &h.status()["conditions"][0];
    assert_eq!(cond["type"], "ConfigValid");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "InvalidSpec");
    assert_eq!(
        cond["message"],
        "analysis.steps: \"50,10\" is not valid: strictly increasing weights"
    );
    let ev = h.events.take();
    assert_eq!(
        (ev[0].reason.as_str(), ev[0].warning),
        ("InvalidSpec", true)
    );
    // Same problem again: no second Event.
    h.ok().await;
    assert!(h.events.take().is_empty());
    assert_eq!(
        h.get(&dep("podinfo"))["spec"]["replicas"],
        3,
        "the user's Deployment is untouched"
    );
}

#[tokio::test]
async fn missing_template_and_unknown_router_are_reported_precisely() {
    let h = Harness::new(
        json!({"targetRef": {"name": "podinfo"}, "analysis": {"templates": [{"name": "nope"}]}}),
    );
    h.ok().await;
    let cond = &h.status()["conditions"][0];
    assert_eq!(cond["reason"], "TemplateNotFound");
    assert_eq!(
        cond["message"],
        "AnalysisTemplate \"nope\" not found in namespace \"shop\""
    );

    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}, "router": "istio"}));
    let (_, c) = h.reconcile().await;
    assert_eq!(c, vec![status_write()]);
    let cond = &h.status()["conditions"][0];
    assert_eq!(cond["reason"], "RouterUnavailable");
    let msg = cond["message"].as_str().unwrap();
    assert!(
        msg.contains("router istio requested by Canary shop/podinfo but the cluster has no networking.istio.io/v1 VirtualService API"),
        "{msg}"
    );
}
