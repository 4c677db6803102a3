//! Annotation onboarding against the fake API server.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{json, Value};

use super::fake::*;
use crate::controller::events::MemoryEvents;
use crate::controller::materialize::{reconcile_deployment, MaterializeContext};
use crate::controller::FINALIZER;
use crate::crd::Canary;
use crate::testing::MockApi;
use crate::workloads::deployments::CachedDeployment;

struct M {
    fake: Fake,
    mock: MockApi,
    ctx: Arc<MaterializeContext>,
    writer: Mutex<reflector::store::Writer<Canary>>,
    events: MemoryEvents,
}

impl M {
    fn new() -> Self {
        let fake = Fake::default();
        let f = fake.clone();
        let (client, mock) = MockApi::serve(move |r| f.0.lock().unwrap().handle(r));
        let (store, writer) = reflector::store::<Canary>();
        let events = MemoryEvents::default();
        let ctx = Arc::new(MaterializeContext {
            fence: crate::controller::Fence::unfenced(),
            client,
            canaries: store,
            events: Arc::new(events.clone()),
            clock: Arc::new(|| Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()),
            metrics: Arc::new(crate::metrics::ControllerMetrics::new()),
            shard: Default::default(),
            written: Default::default(),
        });
        M {
            fake,
            mock,
            ctx,
            writer: Mutex::new(writer),
            events,
        }
    }

    /// Put a Canary in the fake cluster and in the watch cache.
    fn canary(&self, name: &str, managed: bool, spec: Value) {
        let mut c = json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                           "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid"), "generation": 1},
                           "spec": spec});
        if managed {
            c["metadata"]["labels"] = json!({"serin.dev/managed-by": "annotations"});
        }
        self.fake.0.lock().unwrap().put(&canary(name), c);
        let obj: Canary =
            serde_json::from_value(self.fake.0.lock().unwrap().get(&canary(name))).unwrap();
        self.writer
            .lock()
            .unwrap()
            .apply_watcher_event(&watcher::Event::Apply(obj));
    }

    async fn reconcile(&self, name: &str, annotations: Value) -> Vec<String> {
        let mut d = target_deployment("podinfo:1", 3);
        d["metadata"]["name"] = json!(name);
        d["metadata"]["annotations"] = annotations;
        let d: CachedDeployment = serde_json::from_value(d).unwrap();
        reconcile_deployment(Arc::new(d), self.ctx.clone())
            .await
            .unwrap();
        self.mock.drain_calls()
    }
}

const APPLY_CANARY: &str = "?&force=true&fieldManager=serin";

#[tokio::test]
async fn annotated_deployment_gets_an_owned_canary_and_unannotated_ones_cost_nothing() {
    let m = M::new();
    assert!(
        m.reconcile("plain", json!({})).await.is_empty(),
        "no API call for other Deployments"
    );
    let c = m
        .reconcile(
            "web",
            json!({"serin.dev/enabled": "true", "serin.dev/steps": "20,60"}),
        )
        .await;
    assert_eq!(c, vec![format!("PATCH {}{APPLY_CANARY}", canary("web"))]);
    let obj = m.fake.0.lock().unwrap().get(&canary("web"));
    assert_eq!(obj["spec"]["targetRef"]["name"], "web");
    assert_eq!(obj["spec"]["analysis"]["steps"], json!([20, 60]));
    assert_eq!(
        obj["metadata"]["labels"]["serin.dev/managed-by"],
        "annotations"
    );
    assert_eq!(obj["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "dep-uid");
    // Created with its finalizer (no second write for it), and the Canary controller
    // knows this write: its first reconcile takes the cached copy instead of a read.
    assert_eq!(obj["metadata"]["finalizers"], json!([FINALIZER]));
    let created: Canary = serde_json::from_value(obj).unwrap();
    assert!(m.ctx.written.current(&created).is_some());
}

#[tokio::test]
async fn bad_annotation_warns_and_marks_the_canary_while_other_deployments_keep_working() {
    let m = M::new();
    m.canary("web", true, json!({"targetRef": {"name": "web"}}));
    let c = m
        .reconcile("web", json!({"serin.dev/enabled": "true", "serin.dev/steps": "10,abc", "serin.dev/interval": "soon"}))
        .await;
    // The spec is left as it was; only the status says why.
    assert_eq!(
        c,
        vec![format!("PATCH {}/status{APPLY_CANARY}", canary("web"))]
    );
    let obj = m.fake.0.lock().unwrap().get(&canary("web"));
    assert_eq!(obj["spec"], json!({"targetRef": {"name": "web"}}));
    let cond = &obj["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["status"].as_str()),
        (Some("ConfigValid"), Some("False"))
    );
    assert_eq!(cond["reason"], "InvalidAnnotation");
    let msg = cond["message"].as_str().unwrap();
    assert!(
        msg.contains("annotation serin.dev/steps=\"10,abc\": expected comma-separated weights"),
        "{msg}"
    );
    assert!(
        msg.contains("annotation serin.dev/interval=\"soon\""),
        "{msg}"
    );
    let ev = m.events.take();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].warning);
    assert_eq!(
        (ev[0].name.as_str(), ev[0].reason.as_str()),
        ("web", "InvalidAnnotation")
    );

    // Another Deployment onboards normally meanwhile.
    let c = m
        .reconcile("shop-api", json!({"serin.dev/enabled": "true"}))
        .await;
    assert_eq!(
        c,
        vec![format!("PATCH {}{APPLY_CANARY}", canary("shop-api"))]
    );
}

#[tokio::test]
async fn removing_the_annotation_deletes_only_a_managed_canary() {
    let m = M::new();
    m.canary("web", true, json!({"targetRef": {"name": "web"}}));
    m.canary("hand", false, json!({"targetRef": {"name": "hand"}}));
    let c = m.reconcile("web", json!({})).await;
    assert_eq!(c, vec![format!("DELETE {}?", canary("web"))]);
    assert_eq!(m.events.take()[0].reason, "Disabled");
    assert!(
        m.reconcile("hand", json!({})).await.is_empty(),
        "hand-written Canaries are the user's"
    );
    // Annotations on a Deployment whose Canary was written by hand are ignored, loudly.
    assert!(m
        .reconcile("hand", json!({"serin.dev/enabled": "true"}))
        .await
        .is_empty());
    assert_eq!(m.events.take()[0].reason, "CanaryExists");
}

#[tokio::test]
async fn onboarding_reconciles_are_timed_and_failures_counted() {
    let m = M::new();
    m.reconcile("plain", json!({})).await;
    m.fake.0.lock().unwrap().fail_next = Some(format!("PATCH {}", canary("web")));
    let mut d = target_deployment("podinfo:1", 3);
    d["metadata"]["name"] = json!("web");
    d["metadata"]["annotations"] = json!({"serin.dev/enabled": "true"});
    let d: CachedDeployment = serde_json::from_value(d).unwrap();
    let err = reconcile_deployment(Arc::new(d), m.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.category(), "kube");
    let text = m.ctx.metrics.encode();
    use crate::metrics::sample;
    assert_eq!(
        sample(
            &text,
            r#"serin_reconcile_duration_seconds_count{controller="materialize"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"serin_reconcile_errors_total{controller="materialize",category="kube"}"#
        ),
        Some(1.0)
    );
}
