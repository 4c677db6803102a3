//! The controller's metrics after real reconciles against the fake API server.

use super::*;
use crate::metrics::sample;

const CANARY: &str = r#"namespace="shop",name="podinfo""#;

impl Harness {
    fn scrape(&self) -> String {
        self.ctx.metrics.encode()
    }

    fn value(&self, series: &str) -> Option<f64> {
        sample(&self.scrape(), series)
    }
}

fn phase(p: &str) -> String {
    format!(r#"serin_canaries{{phase="{p}"}}"#)
}

fn verdicts(verdict: &str) -> String {
    format!(r#"serin_metric_verdicts_total{{{CANARY},metric="error-rate",verdict="{verdict}"}}"#)
}

#[tokio::test]
async fn a_rolled_back_release_shows_weight_verdicts_phase_and_result_then_deletion_removes_it() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    assert_eq!(h.value(&phase("Initialized")), Some(1.0));
    assert_eq!(
        h.value(&format!("serin_canary_weight{{{CANARY}}}")),
        Some(0.0)
    );
    *h.metrics.value.lock().unwrap() = Some(Ok(0.2));
    h.set_image("podinfo:bad");
    h.ok().await;
    h.ok().await;
    assert_eq!(
        h.value(&format!("serin_canary_weight{{{CANARY}}}")),
        Some(10.0)
    );
    assert_eq!(h.value(&phase("Progressing")), Some(1.0));
    assert_eq!(
        h.value(&phase("Initialized")),
        Some(0.0),
        "moved, not added"
    );
    assert_eq!(h.value(&verdicts("fail")), None, "no check yet");

    h.advance(60);
    h.ok().await;
    assert_eq!(h.value(&verdicts("fail")), Some(1.0));
    assert_eq!(h.value(&verdicts("pass")), None);
    assert_eq!(
        h.value(&format!(
            r#"serin_metric_value{{{CANARY},metric="error-rate",variant="canary"}}"#
        )),
        Some(0.2)
    );
    // Within the interval nothing is judged, so nothing is counted.
    h.advance(30);
    h.ok().await;
    assert_eq!(h.value(&verdicts("fail")), Some(1.0));

    h.advance(30);
    h.ok().await;
    assert_eq!(h.status()["phase"], "Failed");
    assert_eq!(h.value(&verdicts("fail")), Some(2.0));
    let releases = |result: &str| {
        h.value(&format!(
            r#"serin_releases_total{{{CANARY},result="{result}"}}"#
        ))
    };
    assert_eq!(releases("rolled_back"), Some(1.0));
    assert_eq!(releases("promoted"), None);
    assert_eq!(h.value(&phase("Failed")), Some(1.0));
    assert_eq!(h.value(&phase("Progressing")), Some(0.0));
    assert_eq!(
        h.value(&format!("serin_canary_weight{{{CANARY}}}")),
        Some(0.0)
    );
    // Counted once, not at every later reconcile.
    h.advance(600);
    h.ok().await;
    assert_eq!(releases("rolled_back"), Some(1.0));
    // initialize 4 (primary, traffic, scale-down timer, scale-down), canary up and
    // step 1: 2, then 4 checks and looks.
    let reconciles = 4 + 2 + 4;
    assert_eq!(
        h.value(r#"serin_reconcile_duration_seconds_count{controller="canary"}"#),
        Some(f64::from(reconciles))
    );
    // Judged by the threshold judge at both checks.
    assert_eq!(
        h.value(r#"serin_judge_duration_seconds_count{judge="threshold"}"#),
        Some(2.0)
    );

    // Deleted: hand back, then every series of this Canary is gone.
    assert!(h.delete(&canary("podinfo")));
    for _ in 0..3 {
        h.ok().await;
        h.settle();
        if h.get(&canary("podinfo")).is_null() {
            break;
        }
    }
    assert!(
        h.get(&canary("podinfo")).is_null(),
        "finalizer removed, Canary gone"
    );
    let scrape = h.scrape();
    assert!(
        !scrape.contains(r#"name="podinfo""#),
        "series of a deleted Canary remain:\n{scrape}"
    );
    assert_eq!(sample(&scrape, &phase("Failed")), Some(0.0));
    assert_eq!(sample(&scrape, "serin_info{version=\"0.1.0\"}"), Some(1.0));
}

#[tokio::test]
async fn a_promotion_counts_passes_and_one_promoted_release() {
    let h = Harness::new(release_spec());
    initialize(&h).await;
    *h.metrics.value.lock().unwrap() = Some(Ok(0.001));
    h.set_image("podinfo:2");
    h.ok().await;
    h.ok().await;
    h.advance(60);
    h.ok().await;
    assert_eq!(
        h.value(&format!("serin_canary_weight{{{CANARY}}}")),
        Some(50.0)
    );
    h.advance(60);
    h.ok().await; // Promoting
    h.ok().await; // Finalising: traffic back to the primary
    h.ok().await; // the scale-down delay starts
    h.advance(30);
    h.ok().await; // the canary scales down
    h.ok().await; // Succeeded
    assert_eq!(h.status()["phase"], "Succeeded");
    assert_eq!(h.value(&verdicts("pass")), Some(2.0));
    assert_eq!(h.value(&verdicts("fail")), None);
    assert_eq!(
        h.value(&format!(
            r#"serin_releases_total{{{CANARY},result="promoted"}}"#
        )),
        Some(1.0)
    );
    assert_eq!(h.value(&phase("Succeeded")), Some(1.0));
    let total: f64 = [
        "Initializing",
        "Initialized",
        "Progressing",
        "Promoting",
        "Finalising",
        "Succeeded",
    ]
    .iter()
    .filter_map(|p| h.value(&phase(p)))
    .sum();
    assert_eq!(total, 1.0, "one Canary, one phase");
}

#[tokio::test]
async fn a_failed_reconcile_is_counted_by_category() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    initialize(&h).await;
    let errors = r#"serin_reconcile_errors_total{controller="canary",category="conflict"}"#;
    assert_eq!(h.value(errors), None);
    h.fail_once(409, |r| r.subresource.as_deref() == Some("status"));
    h.set_image("podinfo:2");
    let (r, _) = h.reconcile().await;
    assert_eq!(r.unwrap_err().category(), "conflict");
    assert_eq!(h.value(errors), Some(1.0));
    h.fail_once(500, |r| r.method == "GET" && r.path == dep("podinfo"));
    let (r, _) = h.reconcile().await;
    assert_eq!(r.unwrap_err().category(), "kube");
    assert_eq!(
        h.value(r#"serin_reconcile_errors_total{controller="canary",category="kube"}"#),
        Some(1.0)
    );
    assert_eq!(h.value(errors), Some(1.0));
}

#[tokio::test]
async fn a_canary_gone_from_the_api_is_forgotten() {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    initialize(&h).await;
    assert_eq!(h.value(&phase("Initialized")), Some(1.0));
    let mut obj: Canary = serde_json::from_value(h.get(&canary("podinfo"))).unwrap();
    // The watch's last copy, from the edit below: not the version serin wrote, so
    // the reconcile reads the Canary and finds it gone.
    obj.metadata.resource_version = Some("edited".into());
    h.edit(&canary("podinfo"), |c| {
        c["metadata"]["finalizers"] = json!([])
    });
    assert!(h.delete(&canary("podinfo")));
    reconcile_canary(Arc::new(obj), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(h.value(&phase("Initialized")), Some(0.0));
    assert_eq!(h.value(&format!("serin_canary_weight{{{CANARY}}}")), None);
}
