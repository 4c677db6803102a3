//! What release policies cost a reconcile: compiling a policy, the core's decision, and
//! gathering the policies (with their `maxInFlight` queues) of one Canary from the
//! watch caches, which walks every Canary the queue's policy selects.
//! Run: `cargo bench --bench policies`; a table, then one JSON line.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::json;
use serin::controller::policies::PolicyCaches;
use serin::crd::{Canary, ClusterReleasePolicy, ReleasePolicy, ReleasePolicySpec};
use serin::policy::{
    compile, evaluate, Arrival, CanaryKey, PolicyRef, QueueSnapshot, ReleaseFacts, SelectedPolicy,
    Stage,
};

fn time<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    for _ in 0..iters / 10 {
        f();
    }
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    t0.elapsed() / iters
}

const SPEC: &str = r#"
windows:
  - {days: [Mon-Thu], start: "09:00", end: "16:00", timeZone: Europe/Berlin}
  - {days: [Fri], start: "09:00", end: "12:00", timeZone: Europe/Berlin}
blackouts:
  - {start: "2026-12-20T00:00:00+01:00", end: "2027-01-04T00:00:00+01:00", reason: year-end}
approvals: {beforePromotion: {count: 2, groups: [release-managers]}}
maxInFlight: 3
minSoak: 30m
"#;

fn spec() -> ReleasePolicySpec {
    serde_yaml::from_str(SPEC).unwrap()
}

fn fill<K>(mut w: Writer<K>, objs: Vec<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    w.apply_watcher_event(&watcher::Event::Init);
    for o in objs {
        w.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    w.apply_watcher_event(&watcher::Event::InitDone);
}

fn canary(i: usize, namespaces: usize, waiting: bool) -> Canary {
    let mut status = json!({"phase": "Initialized"});
    if waiting {
        status = json!({"phase": "Waiting", "policyWait": {
            "reason": "Queued", "policy": "ClusterReleasePolicy prod", "revision": "r2",
            "stage": "Start", "message": "queued", "since": format!("2026-11-30T10:{:02}:00Z", i % 60)}});
    } else if i.is_multiple_of(50) {
        status = json!({"phase": "Progressing"});
    }
    serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": format!("app-{i}"), "namespace": format!("team-{}", i % namespaces),
                     "labels": {"tier": "web"}},
        "spec": {"targetRef": {"name": format!("app-{i}")}},
        "status": status,
    }))
    .unwrap()
}

/// Caches with `n` Canaries in `n / 50` namespaces, one ClusterReleasePolicy with a
/// queue selecting all of them and one ReleasePolicy per namespace.
fn caches(n: usize) -> PolicyCaches {
    let namespaces = (n / 50).max(1);
    let (cstore, cw) = reflector::store::<Canary>();
    fill(
        cw,
        (0..n).map(|i| canary(i, namespaces, i % 10 == 3)).collect(),
    );
    let (nstore, nw) = reflector::store::<PartialObjectMeta<Namespace>>();
    fill(
        nw,
        (0..namespaces)
            .map(|i| {
                serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": format!("team-{i}"), "labels": {"env": "production"}}}))
                .unwrap()
            })
            .collect(),
    );
    let (pstore, pw) = reflector::store::<ReleasePolicy>();
    fill(
        pw,
        (0..namespaces)
            .map(|i| {
                let mut p = ReleasePolicy::new("hours", spec());
                p.metadata.namespace = Some(format!("team-{i}"));
                p
            })
            .collect(),
    );
    let (cpstore, cpw) = reflector::store::<ClusterReleasePolicy>();
    let cluster: ClusterReleasePolicy = serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "ClusterReleasePolicy",
        "metadata": {"name": "prod"},
        "spec": {"namespaceSelector": {"matchLabels": {"env": "production"}},
                 "maxInFlight": 5, "windows": [{"days": ["Mon-Fri"], "start": "08:00", "end": "18:00"}]}
    }))
    .unwrap();
    fill(cpw, vec![cluster]);
    PolicyCaches::new(pstore, cpstore, nstore, cstore)
}

fn main() {
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
    let compile_t = time(20_000, || {
        black_box(compile(black_box(&spec())).unwrap());
    });
    let rules = compile(&spec()).unwrap();
    let selected = |queue: usize| -> Vec<SelectedPolicy> {
        (0..5)
            .map(|i| SelectedPolicy {
                policy: PolicyRef::namespaced("shop", format!("p{i}")),
                rules: rules.clone(),
                queue: QueueSnapshot {
                    in_flight: (0..3)
                        .map(|j| CanaryKey::new("shop", format!("f{j}")))
                        .collect(),
                    waiting: (0..queue)
                        .map(|j| Arrival {
                            canary: CanaryKey::new("shop", format!("w{j}")),
                            since: now - chrono::Duration::seconds(j as i64),
                        })
                        .collect(),
                },
            })
            .collect()
    };
    let facts = ReleaseFacts {
        canary: CanaryKey::new("shop", "cart"),
        stage: Stage::Start { since: now },
        emergency_override: None,
        approvals: vec![],
    };
    let mut evals = Vec::new();
    for queue in [0usize, 1_000] {
        let policies = selected(queue);
        let one = &policies[..1];
        evals.push((
            queue,
            time(2_000, || {
                black_box(evaluate(black_box(one), &facts, now));
            }),
            time(500, || {
                black_box(evaluate(black_box(&policies), &facts, now));
            }),
        ));
    }
    let mut gathers = Vec::new();
    for n in [1_000usize, 10_000] {
        let c = caches(n);
        let subject = canary(7, (n / 50).max(1), false);
        let iters = if n > 5_000 { 20 } else { 200 };
        gathers.push((
            n,
            time(iters, || {
                black_box(c.gather(black_box(&subject)));
            }),
        ));
    }

    println!("| operation | time per op |");
    println!("|---|---|");
    println!("| compile a policy (2 windows, a blackout, approvals, soak) | {compile_t:?} |");
    for (q, one, five) in &evals {
        println!("| evaluate, 1 policy, queue of {q} waiting | {one:?} |");
        println!("| evaluate, 5 policies, queue of {q} waiting each | {five:?} |");
    }
    for (n, t) in &gathers {
        println!(
            "| gather one Canary's policies and queue, {n} Canaries, {} namespaces | {t:?} |",
            n / 50
        );
    }
    let us = |d: &Duration| d.as_secs_f64() * 1e6;
    println!(
        "{}",
        json!({
            "bench": "policies",
            "compile_us": us(&compile_t),
            "evaluate_us": evals.iter().map(|(q, one, five)| json!({"queue": q, "one_policy": us(one), "five_policies": us(five)})).collect::<Vec<_>>(),
            "gather_us": gathers.iter().map(|(n, t)| json!({"canaries": n, "us": us(t)})).collect::<Vec<_>>(),
        })
    );
}
