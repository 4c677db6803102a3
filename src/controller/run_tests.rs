//! Leader lease keeping, against the mock API server; what the Canary store keeps.

use super::*;
use crate::controller::fence::Fence;
use crate::testing::{expect, status_body, Exchange, MockApi};
use serde_json::json;
use tokio::time::Instant;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases/serin-leader";

fn held_by(holder: &str, rv: &str) -> serde_json::Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "serin-leader", "namespace": "shop", "resourceVersion": rv},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "renewTime": "2026-11-22T14:30:00.000000Z", "leaseTransitions": 1}})
}

fn get(body: serde_json::Value) -> Exchange {
    expect("GET", LEASE, 200, body)
}

fn get_fails() -> Exchange {
    expect(
        "GET",
        LEASE,
        500,
        status_body(500, "InternalError", "etcdserver: request timed out"),
    )
}

fn put(rv: &str) -> Exchange {
    expect("PUT", format!("{LEASE}?"), 200, held_by("me", rv))
}

/// The leader, having acquired the lease at the returned instant, renews with
/// `script` in the background (deadline 10 s, retry every 2 s).
fn lead(script: Vec<Exchange>) -> (Instant, Fence, MockApi, tokio::task::JoinHandle<RunError>) {
    let (client, mock) = MockApi::start(script);
    let mut lock = LeaseLock::new(Api::namespaced(client, "shop"), "serin-leader", "me", 15);
    let fence = Fence::new(Duration::from_secs(10));
    let t0 = Instant::now();
    fence.renewed(t0);
    let keeper = fence.clone();
    let task =
        tokio::spawn(async move { keep_lease(&mut lock, &keeper, Duration::from_secs(2)).await });
    (t0, fence, mock, task)
}

#[tokio::test(start_paused = true)]
async fn the_fence_closes_at_the_deadline_after_the_start_of_the_last_renewal_however_long_it_took()
{
    // t0+2: a renewal whose PUT takes 7 s (done at t0+9); t0+11: a failed one.
    let (t0, fence, mock, task) = lead(vec![
        get(held_by("me", "9")),
        put("10").delayed(Duration::from_secs(7)),
        get_fails(),
    ]);
    tokio::time::sleep_until(t0 + Duration::from_millis(11_500)).await;
    assert_eq!(
        fence.check(),
        Ok(()),
        "the slow renewal succeeded: open until t0+2+10"
    );
    let err = task.await.unwrap();
    assert!(
        matches!(err, RunError::LeaseLost(ref id) if id == "me"),
        "{err}"
    );
    assert_eq!(
        Instant::now() - t0,
        Duration::from_secs(12),
        "closed 10 s after the renewal began (t0+2), not after it ended (t0+9)"
    );
    assert_eq!(fence.check(), Err(crate::controller::Fenced::Revoked));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn renewal_failures_keep_the_fence_open_only_until_the_deadline() {
    let (t0, fence, mock, task) = lead(vec![
        get_fails(), // t0+2
        get_fails(), // t0+4
        get_fails(), // t0+6
        get_fails(), // t0+8
    ]);
    tokio::time::sleep_until(t0 + Duration::from_millis(9_999)).await;
    assert_eq!(
        fence.check(),
        Ok(()),
        "failures alone do not close it early"
    );
    tokio::time::sleep_until(t0 + Duration::from_secs(10)).await;
    assert!(
        matches!(
            fence.check(),
            Err(crate::controller::Fenced::DeadlinePassed { .. }
                | crate::controller::Fenced::Revoked)
        ),
        "closed at the deadline, whether or not the keeper has run yet"
    );
    task.await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_secs(10));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_hung_renewal_is_abandoned_at_the_deadline() {
    let (t0, fence, mock, task) = lead(vec![
        get(held_by("me", "9")).delayed(Duration::from_secs(60))
    ]);
    task.await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_secs(10));
    assert_eq!(fence.check(), Err(crate::controller::Fenced::Revoked));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_by_another_replica_closes_the_fence_at_once() {
    let (t0, fence, mock, task) = lead(vec![get(held_by("serin-other", "11"))]);
    task.await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_secs(2));
    assert_eq!(fence.check(), Err(crate::controller::Fenced::Revoked));
    mock.finish();
}

#[tokio::test(start_paused = true)]
async fn a_healthy_leader_keeps_its_fence_open() {
    let mut script = Vec::new();
    for rv in 10..15 {
        script.push(get(held_by("me", &rv.to_string())));
        script.push(put(&(rv + 100).to_string()));
    }
    // Then the API server stops answering well: t0+12, +14, +16, +18.
    script.extend((0..4).map(|_| get_fails()));
    let (t0, fence, mock, task) = lead(script);
    // Five renewals at t0+2, +4, ... +10; the last opens the fence until t0+20.
    tokio::time::sleep_until(t0 + Duration::from_millis(19_999)).await;
    assert_eq!(fence.check(), Ok(()));
    task.await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_secs(20));
    mock.finish();
}

#[test]
fn the_canary_store_drops_managed_fields_kubectls_copy_and_owners_but_keeps_the_rest() {
    let mut c: Canary = serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "shop", "uid": "c-1",
            "labels": {"app.kubernetes.io/managed-by": "serin-annotations"},
            "finalizers": ["serin.dev/handback"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                "name": "podinfo", "uid": "d-1", "controller": false}],
            "annotations": {LAST_APPLIED: "{\"spec\":{}}", "team": "shop"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": {"targetRef": {"name": "podinfo"}},
    }))
    .unwrap();
    let spec = c.spec.clone();
    slim_canary(&mut c);
    assert!(c.metadata.managed_fields.is_none());
    assert!(c.metadata.owner_references.is_none());
    // What reconciles read stays: labels (policies select by them), finalizers, uid.
    assert_eq!(c.labels().len(), 1);
    assert_eq!(c.finalizers(), ["serin.dev/handback"]);
    assert_eq!(c.metadata.uid.as_deref(), Some("c-1"));
    assert_eq!(
        c.metadata.annotations,
        Some([("team".to_string(), "shop".to_string())].into())
    );
    assert_eq!(c.spec, spec);
    // With only kubectl's copy, no map is left.
    c.metadata.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
    slim_canary(&mut c);
    assert_eq!(c.metadata.annotations, None);
}
