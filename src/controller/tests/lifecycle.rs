//! Hand-back, tracked config and HPA mirroring.

use super::*;

#[tokio::test]
async fn deleting_the_canary_hands_the_deployment_back_without_downtime() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    initialize(&h).await;
    assert!(h.delete(&canary("podinfo")));
    h.manual_rollouts();
    // First the user's Deployment scales back up; traffic stays on the primary meanwhile.
    let c = h.ok().await;
    assert!(c.contains(&apply(&dep("podinfo"))));
    assert!(
        !c.contains(&apply(&svc("podinfo"))),
        "no traffic moves before the target is ready"
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    assert!(!h.get(&dep("podinfo-primary")).is_null());

    h.settle();
    let c = h.ok().await;
    let pos = |x: &str| {
        c.iter()
            .position(|y| y == x)
            .unwrap_or_else(|| panic!("{x} not in {c:#?}"))
    };
    let route = pos(&apply(&svc("podinfo")));
    let delete = pos(&format!("DELETE {}?", dep("podinfo-primary")));
    assert!(route < delete, "traffic moves before the primary goes");
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo"})
    );
    assert!(h.get(&dep("podinfo-primary")).is_null());
    assert!(h.get(&svc("podinfo-primary")).is_null() && h.get(&svc("podinfo-canary")).is_null());
    assert!(
        h.get(&canary("podinfo")).is_null(),
        "finalizer removed, Canary gone"
    );
    assert_eq!(h.reasons(), vec!["HandedBack"]);
}

fn configmap(path_name: &str, level: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": path_name, "namespace": NS, "labels": {"team": "web"}},
           "data": {"LOG_LEVEL": level}})
}

#[tokio::test]
async fn tracked_config_is_copied_for_the_primary_an_hpa_is_mirrored_and_a_config_change_is_a_release(
) {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.edit(&dep("podinfo"), |d| {
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{"configMapRef": {"name": "podinfo-env"}}]);
    });
    h.server.insert(configmap("podinfo-env", "info"));
    h.server.insert(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "podinfo", "namespace": NS},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                    "minReplicas": 2, "maxReplicas": 10}}));
    initialize(&h).await;
    let copy = h.get(&format!(
        "/api/v1/namespaces/{NS}/configmaps/podinfo-env-primary"
    ));
    assert_eq!(copy["data"], json!({"LOG_LEVEL": "info"}));
    assert_eq!(copy["metadata"]["ownerReferences"][0]["kind"], "Canary");
    let primary = h.get(&dep("podinfo-primary"));
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "podinfo-env-primary",
        "the primary keeps its own copy while the canary tries new config"
    );
    let hpa = h.get(&format!(
        "/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/podinfo-primary"
    ));
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].as_i64(),
            hpa["spec"]["maxReplicas"].as_i64()
        ),
        (Some(2), Some(10))
    );

    // Only the ConfigMap changes: that is a new revision, released like an image change.
    let stable = h.status()["stableRevision"].clone();
    h.server.insert(configmap("podinfo-env", "debug"));
    h.ok().await;
    let st = h.status();
    assert_eq!(st["phase"], "Progressing");
    assert_ne!(st["canaryRevision"], stable);
    assert_eq!(h.reasons(), vec!["NewRevision"]);
    // The primary still reads the old config.
    let copy = h.get(&format!(
        "/api/v1/namespaces/{NS}/configmaps/podinfo-env-primary"
    ));
    assert_eq!(copy["data"], json!({"LOG_LEVEL": "info"}));
}

#[tokio::test]
async fn an_idle_canary_looks_again_at_its_own_place_in_the_period() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    initialize(&h).await;
    let (r, _) = h.reconcile().await;
    let first = h.idle_recheck();
    assert_eq!(r.unwrap(), Action::requeue(first));
    assert_ne!(
        first,
        Duration::from_secs(300),
        "shop/podinfo has its own place"
    );
    // Woken before then (an edit, a resync): it still looks again at the same instant.
    let half = first.as_secs() / 2;
    h.advance(i64::try_from(half).unwrap());
    let (r, _) = h.reconcile().await;
    assert_eq!(
        r.unwrap(),
        Action::requeue(first - Duration::from_secs(half))
    );
}

#[tokio::test]
async fn the_canary_is_read_only_after_a_conflict_or_when_versions_do_not_order() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.ok().await;
    h.ok().await;
    // The copy is what serin wrote last: no read.
    let calls = h.ok().await;
    assert!(!calls.contains(&get(&canary("podinfo"))), "{calls:#?}");
    // Someone else wrote the Canary after serin (a label): the cached copy is that
    // later version, so it is used as it is.
    h.edit(&canary("podinfo"), |c| {
        c["metadata"]["labels"] = json!({"team": "shop"})
    });
    let calls = h.ok().await;
    assert!(!calls.contains(&get(&canary("podinfo"))), "{calls:#?}");
    // A cached copy older than serin's own last write (the watch has not brought the
    // write back): serin's written copy stands in, with no read, and the release the
    // write started goes on instead of starting again from the stale status.
    let mut stale: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    h.set_image("podinfo:2");
    h.ok().await;
    let before = h.status();
    assert_eq!(before["phase"], "Progressing");
    stale.metadata.namespace = Some("shop".into());
    crate::controller::reconcile_canary(std::sync::Arc::new(stale.clone()), h.ctx.clone())
        .await
        .unwrap();
    let calls = h.calls();
    assert!(!calls.contains(&get(&canary("podinfo"))), "{calls:#?}");
    assert_eq!(h.status()["phase"], "Progressing");
    assert_eq!(h.status()["canaryRevision"], before["canaryRevision"]);
    // A process that wrote nothing yet (a restart) takes its cache as it is: that was
    // listed after it took the Lease, so it has every write of the previous leader.
    let restarted = Harness {
        ctx: std::sync::Arc::new(crate::controller::Context {
            written: Default::default(),
            ..(*h.ctx).clone()
        }),
        ..h
    };
    let calls = restarted.ok().await;
    assert!(!calls.contains(&get(&canary("podinfo"))), "{calls:#?}");
    // A write refused as a conflict (someone wrote after the cached copy): the retry
    // reads the Canary once, then the cache answers again.
    restarted.ctx.written.read_next("shop", "podinfo");
    crate::controller::reconcile_canary(std::sync::Arc::new(stale.clone()), restarted.ctx.clone())
        .await
        .unwrap();
    assert_eq!(restarted.calls().first(), Some(&get(&canary("podinfo"))));
    assert_eq!(
        restarted.status()["canaryRevision"],
        before["canaryRevision"]
    );
    // The copy read stands in while the cache still lags: no second read, and the
    // release is not restarted from the stale status.
    crate::controller::reconcile_canary(std::sync::Arc::new(stale), restarted.ctx.clone())
        .await
        .unwrap();
    let calls = restarted.calls();
    assert!(!calls.contains(&get(&canary("podinfo"))), "{calls:#?}");
    assert_eq!(restarted.status()["phase"], "Progressing");
    assert_eq!(
        restarted.status()["canaryRevision"],
        before["canaryRevision"]
    );
    let calls = restarted.ok().await;
    assert!(!calls.contains(&get(&canary("podinfo"))), "{calls:#?}");
}
