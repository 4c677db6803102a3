//! `--reconcile-concurrency`, `--max-reconciles-per-namespace` and the lane kept for
//! Canaries a person waits on, as `run` applies them: the whole controller against the
//! fake API server, each Canary reconcile replaced by a hook that holds its slot for a
//! second of (paused) controller time and counts how many run at once.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use super::*;
use crate::controller::run::{run, ReconcileHook, Reconciling, RunOptions};
use crate::limits::Lane;

#[derive(Default)]
struct Counts {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicUsize,
    /// When each reconcile in the people's lane started, from the test's start.
    people_started: std::sync::Mutex<Vec<Duration>>,
}

/// A hook that holds each Canary reconcile (and with it its namespace slot) for a
/// second, then drops it unrun; onboarding reconciles run as they are.
fn holding(counts: Arc<Counts>) -> ReconcileHook {
    let t0 = tokio::time::Instant::now();
    ReconcileHook(Arc::new(move |which, fut| {
        let lane = match which {
            Reconciling::Canary(lane) => lane,
            Reconciling::Deployment => return fut,
        };
        let c = counts.clone();
        if lane == Lane::PersonWaiting {
            c.people_started.lock().unwrap().push(t0.elapsed());
        }
        Box::pin(async move {
            let now = c.in_flight.fetch_add(1, SeqCst) + 1;
            c.peak.fetch_max(now, SeqCst);
            c.started.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(fut);
            c.in_flight.fetch_sub(1, SeqCst);
            Ok(Action::await_change())
        })
    }))
}

fn canary_in(ns: &str, name: &str) -> Value {
    let mut c = canary_object(json!({"targetRef": {"name": name}}));
    c["metadata"]["namespace"] = json!(ns);
    c["metadata"]["name"] = json!(name);
    c
}

/// Run the controller over `canaries` (beside the harness's shop/podinfo) for `secs`
/// of controller time; what the hook counted, and the reconciles put off.
async fn run_over(
    canaries: &[Value],
    concurrency: u16,
    per_namespace: usize,
    secs: u64,
) -> (Arc<Counts>, f64) {
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"}}));
    for c in canaries {
        h.server.insert(c.clone());
    }
    h.server.set_recording(false);
    h.server.set_hold_watches(true);
    let counts = Arc::new(Counts::default());
    let opts = RunOptions {
        namespace: None,
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: false,
        lease_namespace: "serin-system".into(),
        lease_name: "serin-leader".into(),
        identity: "test".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        shard: Default::default(),
        reconcile_hook: Some(holding(counts.clone())),
        reconcile_concurrency: concurrency,
        max_reconciles_per_namespace: per_namespace,
    };
    let ctx = (*h.ctx).clone();
    let metrics = ctx.metrics.clone();
    let controller = tokio::spawn(run(h.server.client(), ctx, opts));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    controller.abort();
    let deferred = metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("serin_reconcile_deferred_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    (counts, deferred)
}

#[tokio::test(start_paused = true)]
async fn reconcile_concurrency_bounds_the_reconciles_in_flight() {
    // Twelve namespaces of one Canary each: only the concurrency binds.
    let canaries: Vec<_> = (0..12)
        .map(|i| canary_in(&format!("team-{i}"), &format!("app-{i}")))
        .collect();
    let (counts, deferred) = run_over(&canaries, 3, 1, 20).await;
    assert_eq!(
        counts.peak.load(SeqCst),
        3,
        "three at once, not the default 16"
    );
    assert_eq!(counts.started.load(SeqCst), 13, "every Canary had its turn");
    assert_eq!(deferred, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_namespace_flooding_the_queue_keeps_to_its_share_and_another_starts_at_once() {
    // Thirty Canaries in one namespace beside shop/podinfo; eight slots, two per
    // namespace. The flood can hold only two, so a third reconcile in flight is shop's,
    // run beside the flood's two within these 5 s, not after the flood's 15 s queue.
    let canaries: Vec<_> = (0..30)
        .map(|i| canary_in("flood", &format!("app-{i}")))
        .collect();
    let (counts, deferred) = run_over(&canaries, 8, 2, 5).await;
    assert_eq!(counts.peak.load(SeqCst), 3, "two of the flood and shop's");
    assert!(deferred > 0.0, "the flood was put off");
    // With a share as large as the concurrency, the flood takes every slot.
    let (counts, _) = run_over(&canaries, 8, 8, 5).await;
    assert_eq!(counts.peak.load(SeqCst), 8);
}

/// A Canary waiting at its promotion gate, with the approval recorded and not yet acted
/// on.
fn approved_at_gate(ns: &str, name: &str) -> Value {
    let mut c = canary_in(ns, name);
    c["status"] = json!({
        "phase": "WaitingApproval",
        "pendingGate": "beforePromotion",
        "canaryRevision": "r2",
        "currentStep": 3,
        "releaseStartedAt": "2026-01-01T00:00:00Z",
        "approvals": [{
            "id": "beforePromotion/r2/3", "gate": "beforePromotion", "revision": "r2",
            "step": 3, "approved": true, "by": "alice", "via": "cli",
            "at": "2026-01-01T00:10:00Z",
        }],
    });
    c
}

#[tokio::test(start_paused = true)]
async fn an_approval_is_acted_on_at_once_behind_a_queue_of_routine_reconciles() {
    // Three routine slots (and so one kept), 24 routine Canaries ahead (eight seconds
    // of queue), and two Canaries whose approvals wait: the people's controller starts
    // the first at once, the second when the first frees its slot, not after the queue.
    // (Either may first wait a second for the routine controller's reconcile of the
    // same Canary, if that one came first: one reconcile of a Canary at a time.)
    let mut canaries: Vec<_> = (0..24)
        .map(|i| canary_in(&format!("team-{i}"), &format!("app-{i}")))
        .collect();
    canaries.push(approved_at_gate("zz-late", "approved-1"));
    canaries.push(approved_at_gate("zz-late", "approved-2"));
    let (counts, _) = run_over(&canaries, 3, 3, 12).await;
    let mut people = counts.people_started.lock().unwrap().clone();
    people.sort();
    assert_eq!(
        people.len(),
        2,
        "each once in the people's lane: {people:?}"
    );
    assert!(
        people[0] <= Duration::from_millis(1100) && people[1] <= Duration::from_millis(2100),
        "approvals started at {people:?}, not behind the queue"
    );
    // The routine controller reconciles every Canary too: the 26, the approved ones
    // included, and the harness's shop/podinfo.
    assert_eq!(counts.started.load(SeqCst), 27 + people.len());
    // Never more than the three routine slots and the kept one at once.
    let peak = counts.peak.load(SeqCst);
    assert!((3..=4).contains(&peak), "peak {peak}");
}
