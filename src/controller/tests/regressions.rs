//! One named regression test per finding of the trial on a real API server (issue 11):
//! each failed on the code it was found in.

use super::*;
use crate::controller::Fence;
use crate::testing::apiserver::Rbac;

/// The controller's ClusterRole as the chart renders it (kept equal to the chart by
/// tests/helm_chart.rs).
fn chart_rbac() -> Rbac {
    let rules: Value = serde_json::from_str(include_str!(
        "../../../charts/serin/tests/rendered-rbac.json"
    ))
    .expect("rendered-rbac.json");
    Rbac::from_rules(&rules)
}

fn ready_condition(h: &Harness) -> Value {
    h.status()["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null)
}

/// Finding 1: nothing onboarded with the chart's RBAC (a server-side apply that creates
/// needs `create`). With exactly the chart's rules, a whole life runs without a 403:
/// onboarding, a release, a rollback, and the hand-back.
#[tokio::test]
async fn finding_1_the_charts_rbac_is_enough_for_a_whole_life() {
    let h = Harness::new(release_spec());
    h.server.set_rbac(Some(chart_rbac()));
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.2));
    h.set_image("podinfo:2");
    for _ in 0..6 {
        h.ok().await;
        h.advance(60);
    }
    assert_eq!(h.status()["phase"], "Failed");
    h.ok().await;
    assert!(h.delete(&canary("podinfo")));
    for _ in 0..3 {
        h.ok().await;
    }
    assert!(h.get(&canary("podinfo")).is_null(), "handed back");
    let denied: Vec<String> = h
        .server
        .requests()
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| r.line())
        .collect();
    assert!(denied.is_empty(), "{denied:#?}");
}

/// Finding 1, the other half: a 403 left no condition and no Event, only a log line.
#[tokio::test]
async fn finding_1_a_403_is_a_ready_false_condition_and_a_warning_naming_verb_and_resource() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    // The chart before the fix: patch without create.
    let old = Rbac::deny_all()
        .allow(
            "serin.dev",
            &["canaries"],
            &["get", "list", "watch", "patch"],
        )
        .allow("serin.dev", &["canaries/status"], &["patch"])
        .allow("apps", &["deployments"], &["get", "list", "watch", "patch"])
        .allow(
            "apps",
            &["controllerrevisions"],
            &["get", "list", "create", "patch"],
        )
        .allow("", &["services"], &["get", "patch"])
        .allow(
            "autoscaling",
            &["horizontalpodautoscalers"],
            &["list", "patch"],
        );
    h.server.set_rbac(Some(old));
    let (r, _) = h.reconcile().await;
    assert!(r.is_err());
    let ready = ready_condition(&h);
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Forbidden");
    let msg = ready["message"].as_str().unwrap();
    assert!(
        msg.contains("serin may not create deployments.apps"),
        "{msg}"
    );
    let ev = h.events.take();
    let warning = ev
        .iter()
        .find(|e| e.reason == "Forbidden")
        .expect("a Warning Event");
    assert!(warning.warning && warning.message.contains("create deployments.apps"));

    // Fixed RBAC: the next pass goes through and the condition clears.
    h.server.set_rbac(Some(chart_rbac()));
    h.ok().await;
    assert_ne!(ready_condition(&h)["reason"], "Forbidden");
}

/// Finding 2: the hand-back after a rollback never completed: the second pass applied
/// only `replicas`, the API server removed the image serin had taken over, and every
/// pass got 422 `containers[0].image: Required value`.
#[tokio::test]
async fn finding_2_the_hand_back_after_a_rollback_completes_on_the_stable_image() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.2));
    h.set_image("podinfo:2");
    for _ in 0..6 {
        h.ok().await;
        h.advance(60);
    }
    assert_eq!(h.status()["phase"], "Failed");
    assert_eq!(
        h.image_of("podinfo"),
        "podinfo:2",
        "the user's Deployment holds the bad image"
    );
    h.manual_rollouts();
    assert!(h.delete(&canary("podinfo")));
    h.ok().await; // the stable spec, at the primary's scale; not ready yet
    assert_eq!(h.image_of("podinfo"), "podinfo:1");
    h.ok().await; // the same body again: nothing stripped
    h.settle();
    h.ok().await;
    let rejected: Vec<String> = h
        .server
        .requests()
        .iter()
        .filter(|r| r.status == 422)
        .map(|r| r.line())
        .collect();
    assert!(rejected.is_empty(), "{rejected:#?}");
    assert!(h.get(&canary("podinfo")).is_null(), "the finalizer is gone");
    let d = h.get(&dep("podinfo"));
    assert_eq!(d["spec"]["replicas"], 3, "at the primary's scale");
    assert_eq!(h.image_of("podinfo"), "podinfo:1");
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        !managers.contains(&"serin"),
        "serin's ownership handed back: {managers:?}"
    );
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo"}),
        "the apex selects the user's pods"
    );
    assert!(h.get(&dep("podinfo-primary")).is_null());
    let evs = h.reasons();
    assert_eq!(evs.last().map(String::as_str), Some("HandedBack"));
}

/// Finding 3: a half-finished initialization was never redone: after the primary was
/// written, a failure (403) left the Services uncreated, yet the Canary said Initialized.
#[tokio::test]
async fn finding_3_a_half_finished_initialization_is_redone() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    let canary_svc = svc("podinfo-canary");
    h.fail_once(403, move |r| r.method == "PATCH" && r.path == canary_svc);
    let (r, _) = h.reconcile().await;
    assert!(r.is_err());
    assert!(!h.get(&dep("podinfo-primary")).is_null());
    assert!(h.get(&svc("podinfo-canary")).is_null());
    h.ok().await;
    h.ok().await;
    assert!(!h.get(&svc("podinfo-canary")).is_null(), "re-applied");
    assert_eq!(h.status()["phase"], "Initialized");
    // Deleted later: back within one pass.
    assert!(h.delete(&svc("podinfo-primary")));
    h.ok().await;
    assert_eq!(
        h.get(&svc("podinfo-primary"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
}

/// Finding 4: a deleted primary meant an outage: it came back with 1 replica, not at all
/// in Failed, and a hand-back then left the user's Deployment at 0.
#[tokio::test]
async fn finding_4_a_deleted_primary_is_recreated_at_its_former_scale_even_after_a_rollback() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    assert!(h.delete(&dep("podinfo-primary")));
    h.ok().await;
    let p = h.get(&dep("podinfo-primary"));
    assert_eq!(p["spec"]["replicas"], 3, "its former scale, not 1");
    assert_eq!(h.image_of("podinfo-primary"), "podinfo:1");

    // Failed, with the rolled-back image on the user's Deployment: the stable spec comes
    // from serin's record.
    *h.metrics.value.lock().unwrap() = Some(Ok(0.2));
    h.set_image("podinfo:2");
    for _ in 0..6 {
        h.ok().await;
        h.advance(60);
    }
    assert_eq!(h.status()["phase"], "Failed");
    assert!(h.delete(&dep("podinfo-primary")));
    h.ok().await;
    assert_eq!(h.image_of("podinfo-primary"), "podinfo:1");
    assert_eq!(h.get(&dep("podinfo-primary"))["spec"]["replicas"], 3);

    // And a hand-back without the primary still leaves a serving Deployment.
    assert!(h.delete(&dep("podinfo-primary")));
    assert!(h.delete(&canary("podinfo")));
    for _ in 0..3 {
        h.ok().await;
    }
    assert!(h.get(&canary("podinfo")).is_null());
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    assert_eq!(h.image_of("podinfo"), "podinfo:1");
}

/// Finding 5: `ConfigValid=False` from a bad annotation was set back to True by the
/// Canary's own reconcile on every pass.
#[tokio::test]
async fn finding_5_config_valid_false_from_a_bad_annotation_sticks() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    initialize(&h).await;
    let mut c: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    let mut st = c.status.clone().unwrap_or_default();
    crate::controller::status::put_config_condition(
        &mut st,
        Some((
            crate::controller::status::INVALID_ANNOTATION,
            "annotation serin.dev/steps=\"10,abc\": expected ...".into(),
        )),
        c.metadata.generation,
        *h.now.lock().unwrap(),
    );
    c.metadata.managed_fields = None;
    let api: kube::Api<Canary> = kube::Api::namespaced(h.ctx.client.clone(), NS);
    crate::controller::status::write_status(&api, &c, &st)
        .await
        .unwrap();
    for _ in 0..3 {
        h.advance(60);
        h.ok().await;
    }
    let cond = h.status()["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ConfigValid")
        .cloned()
        .unwrap();
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("InvalidAnnotation"))
    );
}

/// Finding 6: Events lost their messages: a second promotion's Event was counted into
/// the first, and no Event named its revision. Through serin's recorder on the fake
/// API server, each promotion is its own Event naming its revision.
#[tokio::test]
async fn finding_6_each_promotion_is_its_own_event_naming_its_revision() {
    let h = Harness::new(release_spec());
    let events = super::super::KubeEvents::new(h.ctx.client.clone(), Some("serin-0".into()))
        .with_clock(h.ctx.clock.clone());
    let ctx = Arc::new(Context {
        written: Default::default(),
        templates: None,
        policies: None,
        events: Arc::new(events),
        ..(*h.ctx).clone()
    });
    let h = Harness { ctx, ..h };
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    let mut revisions = Vec::new();
    for image in ["podinfo:2", "podinfo:3"] {
        h.set_image(image);
        for _ in 0..10 {
            h.ok().await;
            h.advance(60);
        }
        assert_eq!(h.status()["phase"], "Succeeded");
        revisions.push(h.status()["stableRevision"].as_str().unwrap().to_string());
    }
    let promoted: Vec<_> = h
        .server
        .events_for(NS, "Canary", "podinfo")
        .into_iter()
        .filter(|e| e.reason == "Promoted")
        .collect();
    assert_eq!(promoted.len(), 2, "{promoted:#?}");
    for (e, rev) in promoted.iter().zip(&revisions) {
        assert!(e.note.contains(rev.as_str()), "{} names {rev}", e.note);
        assert_eq!(e.count, 1);
    }
}

/// Finding 7: `status.message` carried whole URL-encoded queries (2,095 characters) when
/// Prometheus was down.
#[tokio::test]
async fn finding_7_prometheus_down_is_said_briefly_without_the_query() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::new(release_spec());
    let sources = crate::providers::PrometheusSources::new(
        Some(format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
    );
    let ctx = Arc::new(Context {
        written: Default::default(),
        templates: None,
        policies: None,
        sources: Arc::new(sources),
        ..(*h.ctx).clone()
    });
    let h = Harness { ctx, ..h };
    initialize(&h).await;
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.advance(60);
    h.ok().await;
    let st = h.status();
    let msg = st["message"].as_str().unwrap();
    assert!(msg.contains("error-rate"), "names the metric: {msg}");
    for bad in ["%7B", "query=", "/api/v1/"] {
        assert!(!msg.contains(bad), "{bad} in {msg}");
    }
    assert!(msg.chars().count() <= 512, "{} chars", msg.chars().count());
}

/// Code review: an abort landing while a check ran made the status write fail with 409
/// *after* the primary took the aborted revision. Now the refused write moves nothing,
/// and the next pass honours the abort.
#[tokio::test]
async fn an_abort_during_the_last_check_never_reaches_the_primary() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.advance(60);
    h.ok().await; // step 2
    h.advance(60);
    // The last check passes (Promoting), but someone aborts in between: the status
    // write conflicts.
    let rev = h.status()["canaryRevision"].as_str().unwrap().to_string();
    let abort = json!({"id": format!("abort/{rev}"), "kind": "abort", "revision": rev,
                       "by": "alice", "via": "cli", "at": *h.now.lock().unwrap()});
    h.fail_once(409, |r| r.subresource.as_deref() == Some("status"));
    let (r, _) = h.reconcile().await;
    assert!(r.unwrap_err().retry_soon());
    assert_eq!(h.image_of("podinfo-primary"), "podinfo:1", "nothing acted");
    // The CLI's record, under its own field manager.
    let api: kube::Api<Canary> = kube::Api::namespaced(h.ctx.client.clone(), NS);
    api.patch_status(
        "podinfo",
        &kube::api::PatchParams::apply("serin-approval-abort").force(),
        &kube::api::Patch::Apply(json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": NS},
            "status": {"commands": [abort]}})),
    )
    .await
    .unwrap();
    h.ok().await;
    assert_eq!(h.status()["phase"], "Failed");
    for _ in 0..3 {
        h.advance(30);
        h.ok().await;
    }
    assert_eq!(h.image_of("podinfo-primary"), "podinfo:1");
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);
}

/// Code review: a config-only release never reached the primary's pods (its template
/// was copied unchanged) and never restarted the canary's.
#[tokio::test]
async fn a_config_only_release_restarts_the_canary_and_rolls_the_primary() {
    let h = Harness::new(release_spec());
    h.edit(&dep("podinfo"), |d| {
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{"configMapRef": {"name": "podinfo-env"}}]);
    });
    let cm = |level: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "podinfo-env", "namespace": NS},
               "data": {"LOG_LEVEL": level}})
    };
    h.server.insert(cm("info"));
    initialize(&h).await;
    let primary_template = |h: &Harness| h.get(&dep("podinfo-primary"))["spec"]["template"].clone();
    let before = primary_template(&h);
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.server.insert(cm("debug"));
    h.ok().await;
    let stamp = h.get(&dep("podinfo"))["spec"]["template"]["metadata"]["annotations"]
        ["serin.dev/config-hash"]
        .clone();
    assert!(
        stamp.is_string(),
        "the canary's pods restart on the new config"
    );
    for _ in 0..8 {
        h.ok().await;
        h.advance(60);
    }
    assert_eq!(h.status()["phase"], "Succeeded");
    let after = primary_template(&h);
    assert_ne!(
        before["metadata"]["annotations"]["serin.dev/revision"],
        after["metadata"]["annotations"]["serin.dev/revision"],
        "a new pod template: the primary's pods roll"
    );
    assert_eq!(
        h.get(&format!(
            "/api/v1/namespaces/{NS}/configmaps/podinfo-env-primary"
        ))["data"]["LOG_LEVEL"],
        "debug"
    );
}

/// Code review: a config error mid-release froze the split (50% forever, no checks,
/// no deadline).
#[tokio::test]
async fn a_template_deleted_mid_release_fails_checks_and_rolls_back() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    assert_eq!(h.status()["canaryWeight"], 10);
    assert!(h.delete(TEMPLATE));
    for _ in 0..3 {
        h.advance(60);
        h.ok().await;
    }
    let st = h.status();
    assert_eq!(st["phase"], "Failed");
    assert!(
        st["message"].as_str().unwrap().contains("error-rate"),
        "{}",
        st["message"]
    );
    h.ok().await;
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
}

/// Code review: no fencing; a replica that lost the lease kept writing.
#[tokio::test]
async fn a_fenced_replica_reads_but_writes_nothing() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    h.set_image("podinfo:2");
    let fence = Fence::new(Duration::from_secs(10));
    fence.revoke();
    let ctx = Arc::new(Context {
        written: Default::default(),
        templates: None,
        policies: None,
        fence,
        ..(*h.ctx).clone()
    });
    let h = Harness { ctx, ..h };
    let (r, calls) = h.reconcile().await;
    assert!(r.is_err());
    assert!(calls.iter().all(|c| c.starts_with("GET ")), "{calls:#?}");
}

/// Code review: deleting a Canary while its router was unavailable skipped the
/// hand-back and left the user's Deployment at 0.
#[tokio::test]
async fn deleting_a_canary_whose_router_is_gone_still_hands_back() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    h.edit(&canary("podinfo"), |c| c["spec"]["router"] = json!("istio"));
    assert!(h.delete(&canary("podinfo")));
    for _ in 0..3 {
        h.ok().await;
    }
    assert!(h.get(&canary("podinfo")).is_null());
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo"})
    );
}
