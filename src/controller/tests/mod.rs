//! Controller flows against a fake API server: the exact sequence of calls for
//! initialization, a canary release, a rollback, a blue/green switch, a restart
//! mid-release, a 409 conflict, and bad input that must not stop other Canaries.

//! Controller flows against the stateful fake API server: the exact sequence of calls
//! for initialization and a canary release (decide, persist, then act), a rollback, a
//! blue/green switch, a restart mid-release, a 409 conflict, and bad input that must
//! not stop other Canaries. `regressions` has one test per finding of the real-cluster
//! trial; `sim` runs the seeded fault simulation.

mod blackholed;
mod bounded;
mod caches;
mod concurrency;
mod config;
mod credentials;
mod evidence;
mod fake;
mod harness;
mod lifecycle;
mod materialize;
mod metrics;
mod policies;
mod regressions;
mod shard;
mod sim;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};

pub(crate) use self::harness::*;
use super::events::MemoryEvents;
use super::{reconcile_canary, Context};
use crate::crd::Canary;

fn with(mut base: Vec<String>, more: &[String]) -> Vec<String> {
    base.extend_from_slice(more);
    base
}

/// The reads every reconcile of an initialized Canary makes. The Canary itself is not
/// read: the reconcile's copy is the version the controller last wrote.
fn observe(with_template: bool) -> Vec<String> {
    let mut v = Vec::new();
    if with_template {
        v.push(get(TEMPLATE));
    }
    v.extend([
        get(&dep("podinfo")),
        get(&dep("podinfo-primary")),
        get(&svc("podinfo-primary")),
        get(&svc("podinfo-canary")),
        format!("GET {}", hpas()),
        get(&svc("podinfo")),
    ]);
    v
}

/// What writing the primary costs: the target, its record, the primary, the Services
/// and the HPA copy.
fn write_primary() -> Vec<String> {
    vec![
        get(&dep("podinfo")),
        format!("GET {}", records()),
        apply(&format!(
            "/apis/apps/v1/namespaces/{NS}/controllerrevisions/podinfo-primary-{{rev}}"
        )),
        apply(&dep("podinfo-primary")),
        apply(&svc("podinfo-primary")),
        apply(&svc("podinfo-canary")),
        format!("GET {}", hpas()),
    ]
}

/// [`write_primary`] by a process that wrote this primary before: it knows the
/// records and does not list them.
fn write_primary_again() -> Vec<String> {
    let list = format!("GET {}", records());
    write_primary().into_iter().filter(|c| *c != list).collect()
}

/// `calls` with the revision in record names replaced by `{rev}`.
fn norm(calls: Vec<String>) -> Vec<String> {
    calls
        .into_iter()
        .map(|c| match c.find("controllerrevisions/podinfo-primary-") {
            Some(i) => {
                let head = &c[..i + "controllerrevisions/podinfo-primary-".len()];
                let tail = &c[i + "controllerrevisions/podinfo-primary-".len()..];
                let rest = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
                format!("{head}{{rev}}{rest}")
            }
            None => c,
        })
        .collect()
}

#[tokio::test]
async fn initialization_persists_then_creates_primary_and_services_then_moves_traffic_then_scales_down(
) {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.manual_rollouts();
    // Decide, persist, act: the status says Initializing before anything is created.
    assert_eq!(
        norm(h.ok().await),
        with(
            vec![
                get(&dep("podinfo")),
                get(&dep("podinfo-primary")),
                status_write(),
            ],
            &write_primary()
        )
    );
    let primary = h.get(&dep("podinfo-primary"));
    assert_eq!(
        primary["spec"]["selector"]["matchLabels"],
        json!({"app": "podinfo-primary"})
    );
    assert_eq!(
        primary["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "podinfo"
    );
    assert_eq!(primary["spec"]["replicas"], 3);
    assert_eq!(primary["metadata"]["ownerReferences"][0]["kind"], "Canary");
    assert_eq!(primary["metadata"]["labels"]["serin.dev/canary"], "podinfo");
    assert_eq!(
        h.get(&svc("podinfo-canary"))["spec"]["selector"],
        json!({"app": "podinfo"})
    );
    assert_eq!(h.status()["phase"], "Initializing");
    // The user's Deployment still serves: nothing routed or scaled before the primary is ready.
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    assert!(h.get(&svc("podinfo")).is_null());

    // Primary not ready yet: nothing moves; the status learns the primary's scale.
    assert_eq!(h.ok().await, with(observe(false), &[status_write()]));
    assert_eq!(h.status()["primaryReplicas"], 3);
    assert_eq!(
        h.ok().await,
        observe(false),
        "nothing changed: nothing written"
    );

    h.settle();
    assert_eq!(
        h.ok().await,
        with(observe(false), &[status_write(), apply(&svc("podinfo"))])
    );
    let apex = h.get(&svc("podinfo"));
    assert_eq!(apex["spec"]["selector"], json!({"app": "podinfo-primary"}));
    assert_eq!(
        apex["metadata"]["annotations"]["serin.dev/canary-weight"],
        "0"
    );
    assert_eq!(h.status()["phase"], "Initialized");
    assert_eq!(h.reasons(), vec!["Initialized"]);
    // The user's pods served until now: they stay for the scale-down delay.
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    // When they go was persisted with Initialized: the route seen at 0 writes nothing.
    assert_eq!(h.status()["scaleDownAt"], "2026-11-22T12:00:30Z");
    assert_eq!(h.ok().await, observe(false));
    h.advance(29);
    assert_eq!(h.ok().await, observe(false));
    h.advance(1);
    assert_eq!(
        h.ok().await,
        with(
            observe(false),
            &[get(&dep("podinfo")), apply(&dep("podinfo"))]
        )
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);

    // Steady: the status forgets the done scale-down; then reads only, no writes.
    assert_eq!(h.ok().await, with(observe(false), &[status_write()]));
    assert_eq!(h.ok().await, observe(false));
}

#[tokio::test]
async fn scale_down_is_a_forced_apply_of_replicas_only() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    initialize(&h).await;
    h.set_image("podinfo:2");
    h.calls();
    let obj: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    reconcile_canary(Arc::new(obj), h.ctx.clone())
        .await
        .unwrap();
    let sent = h.server.drain_requests();
    let scale = sent
        .iter()
        .find(|r| {
            r.method == "PATCH"
                && r.path.starts_with(&dep("podinfo"))
                && !r.path.contains("primary")
        })
        .expect("a scale request");
    assert_eq!(
        scale.path,
        format!("{}{APPLY}", dep("podinfo")),
        "server-side apply, forced, as serin"
    );
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        scale.body.clone().unwrap(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "podinfo", "namespace": "shop"}, "spec": {"replicas": 1}}),
        "only .spec.replicas: the user's other fields stay theirs"
    );
    let status = sent.iter().find(|r| r.path.contains("/status")).unwrap();
    assert!(
        status.body.clone().unwrap()["metadata"]["resourceVersion"].is_string(),
        "status writes are conditional"
    );
}

fn release_spec() -> Value {
    json!({"targetRef": {"name": "podinfo"},
           "analysis": {"steps": [10, 50], "interval": "1m", "templates": [{"name": "error-rate"}]}})
}

#[tokio::test]
async fn canary_release_exact_calls_from_new_revision_to_promotion() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.001));
    h.set_image("podinfo:2");

    // New revision: persisted first, then the canary up (one pod: replica weighting at
    // 0%), no traffic yet.
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[status_write(), get(&dep("podinfo")), apply(&dep("podinfo"))]
        )
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 1);
    assert_eq!(h.status()["phase"], "Progressing");
    assert_eq!(h.reasons(), vec!["NewRevision"]);

    // Canary ready: step 1, 10%: the apex selects both versions by their shared label.
    assert_eq!(
        h.ok().await,
        with(observe(true), &[status_write(), apply(&svc("podinfo"))])
    );
    let apex = h.get(&svc("podinfo"));
    assert_eq!(
        apex["spec"]["selector"],
        json!({"app.kubernetes.io/name": "podinfo"})
    );
    assert_eq!(
        apex["metadata"]["annotations"]["serin.dev/canary-weight"],
        "10"
    );
    assert_eq!(h.status()["canaryWeight"], 10);
    assert_eq!(h.reasons(), vec!["StepAdvanced"]);

    // Within the interval nothing is queried or written.
    h.advance(30);
    assert_eq!(h.ok().await, observe(true));
    assert!(h.metrics.queries.lock().unwrap().is_empty());

    // Check passes: persisted, then scale up to 3 pods (50% of 6) before routing.
    h.advance(30);
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[
                status_write(),
                get(&dep("podinfo")),
                apply(&dep("podinfo")),
                apply(&svc("podinfo")),
            ]
        )
    );
    let q = h.metrics.queries.lock().unwrap().clone();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].contains("pod=~\"podinfo-.*\"") && q[0].contains("[1m]"),
        "{}",
        q[0]
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    let st = h.status();
    assert_eq!(
        (st["currentStep"].as_i64(), st["canaryWeight"].as_i64()),
        (Some(2), Some(50))
    );
    assert_eq!(st["metrics"][0]["name"], "error-rate");
    assert_eq!(st["metrics"][0]["value"], 0.001);
    assert_eq!(st["metrics"][0]["verdict"], "Pass");
    assert_eq!(st["metrics"][0]["reason"], "0.001 <= max 0.01");
    assert_eq!(h.reasons(), vec!["StepAdvanced"]);

    // Last check passes: Promoting persisted, then the analysed spec copied (and
    // recorded). The primary keeps its scale.
    h.advance(60);
    let mut expected = with(
        observe(true),
        &[status_write(), get(&dep("podinfo-primary"))],
    );
    // The records are known from initialization: no LIST of them.
    expected.extend(write_primary_again());
    assert_eq!(norm(h.ok().await), expected);
    let primary = h.get(&dep("podinfo-primary"));
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:2"
    );
    assert_eq!(h.status()["phase"], "Promoting");
    assert_eq!(h.reasons(), vec!["Promoting"]);

    // Primary rolled out: traffic back to it; the canary keeps its pods a while.
    assert_eq!(
        h.ok().await,
        with(observe(true), &[status_write(), apply(&svc("podinfo"))])
    );
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    assert_eq!(h.status()["phase"], "Finalising");
    assert_eq!(
        h.ok().await,
        observe(true),
        "the scale-down time came with Finalising"
    );
    h.advance(30);
    assert_eq!(
        h.ok().await,
        with(
            observe(true),
            &[get(&dep("podinfo")), apply(&dep("podinfo"))]
        )
    );
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);
    h.ok().await;
    let st = h.status();
    assert_eq!(st["phase"], "Succeeded");
    assert_eq!(st["stableRevision"], st["canaryRevision"]);
    assert_eq!(h.reasons(), vec!["Promoted"]);
}

#[tokio::test]
async fn rollback_routes_everything_to_the_primary_before_scaling_the_canary_down() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.2));
    h.set_image("podinfo:bad");
    h.ok().await;
    h.ok().await;
    assert_eq!(h.status()["canaryWeight"], 10);
    h.reasons();

    h.advance(60);
    assert_eq!(h.ok().await, with(observe(true), &[status_write()]));
    assert_eq!(h.status()["failedChecks"], 1);
    assert_eq!(h.reasons(), vec!["CheckFailed"]);

    h.advance(60);
    assert_eq!(
        h.ok().await,
        with(observe(true), &[status_write(), apply(&svc("podinfo"))])
    );
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    assert_eq!(h.image_of("podinfo-primary"), "podinfo:1");
    let st = h.status();
    assert_eq!(st["phase"], "Failed");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("error-rate: 0.2 > max 0.01"),
        "{}",
        st["message"]
    );
    assert_eq!(h.reasons(), vec!["RolledBack"]);
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 1, "not yet");
    h.ok().await;
    h.advance(30);
    h.ok().await;
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 0);

    // The failed revision is not retried on its own.
    h.ok().await;
    h.advance(600);
    assert_eq!(h.ok().await, observe(true));
}

#[tokio::test]
async fn blue_green_switches_the_apex_selector_after_the_preview_passes() {
    let h = Harness::new(
        json!({"targetRef": {"name": "podinfo"}, "strategy": "blue-green",
                                "analysis": {"iterations": 1, "templates": [{"name": "error-rate"}]}}),
    );
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    // Preview at full size, no live traffic.
    h.ok().await;
    assert_eq!(h.get(&dep("podinfo"))["spec"]["replicas"], 3);
    h.ok().await;
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );

    h.advance(60);
    h.ok().await;
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo"}),
        "switched to the new version"
    );
    assert_eq!(h.status()["canaryWeight"], 100);
    assert_eq!(h.image_of("podinfo-primary"), "podinfo:2");

    h.ok().await; // primary ready: back to the primary
    assert_eq!(
        h.get(&svc("podinfo"))["spec"]["selector"],
        json!({"app": "podinfo-primary"})
    );
    h.ok().await;
    h.advance(30);
    h.ok().await;
    h.ok().await;
    assert_eq!(h.status()["phase"], "Succeeded");
}

#[tokio::test]
async fn restart_between_two_actions_resumes_from_the_persisted_status_with_only_the_missing_action(
) {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.advance(60);
    // Step 2 needs: scale canary to 3, then route 50%. The route write fails (a crash).
    let apex = svc("podinfo");
    h.fail_once(500, move |r| r.method == "PATCH" && r.path == apex);
    let (r, c) = h.reconcile().await;
    assert!(r.is_err());
    assert_eq!(
        c,
        with(
            observe(true),
            &[
                status_write(),
                get(&dep("podinfo")),
                apply(&dep("podinfo")),
                apply(&svc("podinfo"))
            ]
        )
    );
    assert_eq!(
        h.status()["currentStep"],
        2,
        "decided and persisted before acting"
    );

    // A new controller process: fresh context, same cluster.
    let restarted = Arc::new(Context {
        written: Default::default(),
        templates: None,
        policies: None,
        events: Arc::new(MemoryEvents::default()),
        ..(*h.ctx).clone()
    });
    let obj: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    reconcile_canary(Arc::new(obj), restarted).await.unwrap();
    // A fresh process has written nothing yet: its cache, listed after it took the
    // Lease, is the Canary (no read).
    assert_eq!(
        h.calls(),
        with(observe(true), &[apply(&svc("podinfo"))]),
        "the scale already happened; only the route remains, nothing is decided again"
    );
    assert_eq!(h.status()["currentStep"], 2);
    assert_eq!(
        h.get(&svc("podinfo"))["metadata"]["annotations"]["serin.dev/canary-weight"],
        "50"
    );
}

#[tokio::test]
async fn conflict_on_status_write_moves_nothing_and_is_retried_with_a_fresh_read() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    h.fail_once(409, |r| r.subresource.as_deref() == Some("status"));
    let (r, c) = h.reconcile().await;
    let err = r.unwrap_err();
    assert!(err.retry_soon());
    assert_eq!(
        c.last(),
        Some(&status_write()),
        "nothing acted after the refused write"
    );
    assert!(h.get(&dep("podinfo-primary")).is_null());
    let action = super::error_policy(
        Arc::new(serde_json::from_value(h.get(&canary("podinfo"))).unwrap()),
        &err,
        h.ctx.clone(),
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    let c = h.ok().await;
    assert_eq!(c.first(), Some(&get(&canary("podinfo"))));
    assert!(c.contains(&status_write()));
    assert_eq!(h.status()["phase"], "Initializing");
    assert!(!h.get(&dep("podinfo-primary")).is_null());
}
