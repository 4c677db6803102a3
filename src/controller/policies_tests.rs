//! `PolicyCaches::gather` against filled reflector stores: which policies select a
//! Canary, what their queues hold, and the upstream of `serin.dev/promote-from`.

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{store, Store};
use kube::runtime::watcher::Event;
use serde_json::{json, Value};

use super::*;
use crate::crd::{PolicyWait, PolicyWaitReason, PromotedImages};

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
}

/// A Canary fixture: namespace, name, labels, phase and wait, upstream annotation.
#[derive(Clone)]
struct CanaryB(Value);

fn canary(ns: &str, name: &str) -> CanaryB {
    CanaryB(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": name, "namespace": ns, "labels": {}, "annotations": {}},
        "spec": {"targetRef": {"name": name}},
    }))
}

impl CanaryB {
    fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    fn promote_from(mut self, from: &str) -> Self {
        self.0["metadata"]["annotations"][PROMOTE_FROM_ANNOTATION] = json!(from);
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.0["status"]["phase"] = json!(phase);
        self
    }
    fn waiting(mut self, stage: PolicyStage, since: DateTime<Utc>) -> Self {
        let w = PolicyWait {
            reason: PolicyWaitReason::Queued,
            policy: "ReleasePolicy shop/one-at-a-time".into(),
            revision: "r2".into(),
            stage,
            message: String::new(),
            until: None,
            queue_position: Some(1),
            approvals: None,
            since,
        };
        self.0["status"]["phase"] = json!("Waiting");
        self.0["status"]["policyWait"] = serde_json::to_value(w).unwrap();
        self
    }
    fn promoted(mut self, image: &str) -> Self {
        let p = PromotedImages {
            revision: "up-1".into(),
            images: [("app".to_string(), image.to_string())].into(),
            at: at(9, 0),
        };
        self.0["status"]["promoted"] = serde_json::to_value(p).unwrap();
        self
    }
    fn build(self) -> Canary {
        serde_json::from_value(self.0).unwrap()
    }
}

fn policy(ns: &str, name: &str, spec: Value) -> ReleasePolicy {
    serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "ReleasePolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap()
}

fn cluster_policy(name: &str, spec: Value) -> ClusterReleasePolicy {
    serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "ClusterReleasePolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn namespace(name: &str, labels: Value) -> PartialObjectMeta<Namespace> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }))
    .unwrap()
}

/// A store holding `objs` after a full first list (ready).
fn filled<K>(objs: Vec<K>) -> Store<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = store::<K>();
    writer.apply_watcher_event(&Event::Init);
    for o in objs {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
    reader
}

/// The caches as a scenario describes the cluster.
#[derive(Default)]
struct World {
    policies: Vec<ReleasePolicy>,
    cluster: Vec<ClusterReleasePolicy>,
    namespaces: Vec<PartialObjectMeta<Namespace>>,
    canaries: Vec<Canary>,
}

impl World {
    fn policy(mut self, p: ReleasePolicy) -> Self {
        self.policies.push(p);
        self
    }
    fn cluster(mut self, p: ClusterReleasePolicy) -> Self {
        self.cluster.push(p);
        self
    }
    fn namespace(mut self, n: PartialObjectMeta<Namespace>) -> Self {
        self.namespaces.push(n);
        self
    }
    fn canary(mut self, c: CanaryB) -> Self {
        self.canaries.push(c.build());
        self
    }
    fn caches(self) -> PolicyCaches {
        PolicyCaches::new(
            filled(self.policies),
            filled(self.cluster),
            filled(self.namespaces),
            filled(self.canaries),
        )
    }
}

fn names(inputs: &PolicyInputs) -> Vec<String> {
    inputs
        .selected
        .iter()
        .map(|s| s.policy.to_string())
        .collect()
}

fn key(ns: &str, name: &str) -> CanaryKey {
    CanaryKey::new(ns, name)
}

#[tokio::test]
async fn filled_caches_are_ready() {
    assert!(World::default().caches().ready().await);
}

#[test]
fn a_label_selector_and_a_namespace_selector_pick_their_canaries_only() {
    let caches = World::default()
        .policy(policy(
            "shop",
            "web",
            json!({"selector": {"matchLabels": {"tier": "web"}}}),
        ))
        .policy(policy(
            "shop",
            "db",
            json!({"selector": {"matchLabels": {"tier": "db"}}}),
        ))
        .policy(policy("other", "all-of-other", json!({})))
        .cluster(cluster_policy(
            "prod-freeze",
            json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
        ))
        .cluster(cluster_policy(
            "dev-only",
            json!({"namespaceSelector": {"matchLabels": {"env": "dev"}}}),
        ))
        .namespace(namespace("shop", json!({"env": "prod"})))
        .namespace(namespace("other", json!({"env": "dev"})))
        .caches();
    let web = canary("shop", "podinfo").label("tier", "web").build();
    assert_eq!(
        names(&caches.gather(&web)),
        vec!["ReleasePolicy shop/web", "ClusterReleasePolicy prod-freeze"]
    );
    let unlabelled = canary("other", "api").build();
    assert_eq!(
        names(&caches.gather(&unlabelled)),
        vec![
            "ReleasePolicy other/all-of-other",
            "ClusterReleasePolicy dev-only"
        ]
    );
    let g = caches.gather(&web);
    assert_eq!(g.canary, key("shop", "podinfo"));
    assert!(g.upstream.is_none());
    assert!(
        g.selected
            .iter()
            .all(|s| s.queue == QueueSnapshot::default()),
        "no maxInFlight: no queue is gathered"
    );
}

#[test]
fn an_invalid_policy_still_selects_and_a_broken_selector_selects_everything() {
    let bad_zone = json!({
        "selector": {"matchLabels": {"tier": "web"}},
        "windows": [{"days": ["Mon"], "start": "09:00", "end": "17:00", "timeZone": "Mars/Olympus"}],
    });
    let bad_selector = json!({"selector": {"matchExpressions": [
        {"key": "tier", "operator": "Bogus", "values": ["db"]}]}});
    let caches = World::default()
        .policy(policy("shop", "hours", bad_zone))
        .policy(policy("shop", "typo", bad_selector))
        .policy(policy("elsewhere", "typo", json!({"maxInFlight": 0})))
        .caches();

    let web = caches.gather(&canary("shop", "a").label("tier", "web").build());
    assert_eq!(
        names(&web),
        vec!["ReleasePolicy shop/hours", "ReleasePolicy shop/typo"]
    );
    let hours = &web.selected[0].rules;
    let why = hours.invalid.as_deref().expect("held as invalid");
    assert!(why.contains("spec.windows[0].timeZone"), "{why}");
    assert!(hours.windows.is_empty(), "{hours:?}");
    let typo = web.selected[1].rules.invalid.as_deref().unwrap();
    assert!(
        typo.contains("spec.selector.matchExpressions[0].operator"),
        "{typo}"
    );

    // The sound selector of the bad-zone policy still keeps to its Canaries; the
    // broken one fails closed over the whole namespace, and only that namespace.
    let other = caches.gather(&canary("shop", "b").label("tier", "batch").build());
    assert_eq!(names(&other), vec!["ReleasePolicy shop/typo"]);
    let away = caches.gather(&canary("third", "c").build());
    assert!(away.selected.is_empty(), "{:?}", names(&away));
}

#[test]
fn a_queue_lists_in_flight_and_waiting_canaries_among_those_it_selects() {
    let since = at(10, 0);
    let mut w = World::default()
        .policy(policy(
            "shop",
            "one-at-a-time",
            json!({"selector": {"matchLabels": {"team": "a"}}, "maxInFlight": 1}),
        ))
        .canary(canary("shop", "me").label("team", "a").phase("Succeeded"));
    for (name, phase) in [
        ("progressing", "Progressing"),
        ("approval", "WaitingApproval"),
        ("promoting", "Promoting"),
        ("finalising", "Finalising"),
        ("idle", "Succeeded"),
        ("failed", "Failed"),
        ("fresh", "Initialized"),
    ] {
        w = w.canary(canary("shop", name).label("team", "a").phase(phase));
    }
    let caches = w
        .canary(
            canary("shop", "queued")
                .label("team", "a")
                .waiting(PolicyStage::Start, since),
        )
        .canary(
            canary("shop", "holding")
                .label("team", "a")
                .waiting(PolicyStage::NextStep, since),
        )
        .canary(
            canary("shop", "not-mine")
                .label("team", "b")
                .phase("Progressing"),
        )
        .canary(
            canary("elsewhere", "also-not")
                .label("team", "a")
                .phase("Progressing"),
        )
        .canary(
            canary("shop", "not-mine-waiting")
                .label("team", "b")
                .waiting(PolicyStage::Start, since),
        )
        .caches();
    let me = canary("shop", "me").label("team", "a").build();
    let g = caches.gather(&me);
    assert_eq!(names(&g), vec!["ReleasePolicy shop/one-at-a-time"]);
    let mut in_flight = g.selected[0].queue.in_flight.clone();
    in_flight.sort();
    assert_eq!(
        in_flight,
        ["approval", "finalising", "progressing", "promoting"]
            .map(|n| key("shop", n))
            .to_vec()
    );
    assert_eq!(
        g.selected[0].queue.waiting,
        vec![Arrival {
            canary: key("shop", "queued"),
            since
        }],
        "waiting to start, with its arrival kept; a wait at another stage is no arrival"
    );
}

#[test]
fn a_canary_just_started_counts_as_in_flight_while_the_cache_shows_it_idle() {
    let caches = World::default()
        .policy(policy("shop", "one", json!({"maxInFlight": 1})))
        .canary(canary("shop", "first").phase("Succeeded"))
        .canary(canary("shop", "second").waiting(PolicyStage::Start, at(10, 0)))
        .caches();
    let second = canary("shop", "second").build();
    assert!(caches.gather(&second).selected[0]
        .queue
        .in_flight
        .is_empty());

    caches.note_started(key("shop", "first"));
    let q = caches.gather(&second).selected[0].queue.clone();
    assert_eq!(q.in_flight, vec![key("shop", "first")]);

    // Its own start is no slot taken from itself.
    let first = canary("shop", "first").build();
    assert!(!caches.gather(&first).selected[0]
        .queue
        .in_flight
        .contains(&key("shop", "first")));
}

#[test]
fn promote_from_finds_the_upstream_by_namespace_and_name_or_by_bare_name() {
    let caches = World::default()
        .canary(canary("staging", "podinfo").promoted("ghcr.io/acme/podinfo:2"))
        .canary(canary("prod", "podinfo-eu").promoted("ghcr.io/acme/podinfo:3"))
        .caches();
    let up = |c: CanaryB| caches.gather(&c.build()).upstream.expect("an upstream");

    let cross = up(canary("prod", "podinfo").promote_from("staging/podinfo"));
    assert_eq!(cross.canary, "staging/podinfo");
    let p = cross.promoted.expect("staging promoted");
    assert_eq!(p.images["app"], "ghcr.io/acme/podinfo:2");

    let same = up(canary("prod", "podinfo-us").promote_from(" podinfo-eu "));
    assert_eq!(same.canary, "prod/podinfo-eu");
    assert_eq!(
        same.promoted.unwrap().images["app"],
        "ghcr.io/acme/podinfo:3"
    );

    let missing = up(canary("prod", "podinfo").promote_from("staging/gone"));
    assert_eq!(missing.canary, "staging/gone");
    assert_eq!(missing.promoted, None);
    let never = up(canary("staging", "x").promote_from("prod/podinfo-us"));
    assert_eq!(never.promoted, None, "not in the cache: nothing promoted");
}

#[test]
fn any_in_scope_sees_namespaced_policies_of_that_namespace_and_every_cluster_policy() {
    let ns_only = World::default()
        .policy(policy("shop", "p", json!({})))
        .caches();
    assert!(ns_only.any_in_scope("shop"));
    assert!(!ns_only.any_in_scope("other"));
    let cluster = World::default()
        .cluster(cluster_policy("c", json!({})))
        .caches();
    assert!(cluster.any_in_scope("other"));
}
