//! The Deployment backend on its own, against the stateful fake API server: what it
//! creates for a primary and what it reports as revisions move.

use serde_json::Value;

use super::*;
use crate::crd::ServiceSpec;
use crate::testing::apiserver::{FakeApiServer, Rollouts};
use crate::workloads::{WorkloadBackend, WorkloadRef};

const NS: &str = "shop";

fn target(image: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfo", "image": image}]}
            }
        }
    })
}

fn podinfo() -> WorkloadRef {
    WorkloadRef {
        namespace: NS.into(),
        name: "podinfo".into(),
        service: ServiceSpec::default(),
        owner: None,
    }
}

fn setup() -> (FakeApiServer, KubeWorkloads) {
    let server = FakeApiServer::new();
    server.set_deployment_rollouts(Rollouts::Instant);
    server.insert(target("podinfo:1"));
    let workloads = KubeWorkloads::new(server.client());
    (server, workloads)
}

/// The revision records of `podinfo-primary` in the fake, by name.
fn record_names(server: &FakeApiServer) -> Vec<String> {
    let mut names: Vec<String> = server
        .object_names()
        .into_iter()
        .filter_map(|n| {
            n.strip_prefix("controllerrevisions/shop/")
                .map(String::from)
        })
        .collect();
    names.sort();
    names
}

/// The LISTs of revision records served since the last drain.
fn record_lists(server: &FakeApiServer) -> usize {
    server
        .drain_requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/controllerrevisions?"))
        .count()
}

/// Put a new image on the target and return its revision as serin sees it.
async fn new_target_revision(server: &FakeApiServer, w: &KubeWorkloads, tag: u32) -> String {
    let mut next = server
        .get("apps/v1", "deployments", Some(NS), "podinfo")
        .unwrap();
    next["spec"]["template"]["spec"]["containers"][0]["image"] = format!("podinfo:{tag}").into();
    server.insert(next);
    server.settle();
    w.observe(&podinfo()).await.unwrap().target_revision
}

#[tokio::test]
async fn records_are_listed_once_per_process_pruned_and_written_again_when_deleted() {
    let (server, workloads) = setup();
    let w = initialized(&workloads, &server).await;
    let first = workloads.observe(&w).await.unwrap().target_revision;
    assert_eq!(record_lists(&server), 1, "the first save lists the records");
    let mut revisions = vec![first];
    for tag in 2..=4 {
        let rev = new_target_revision(&server, &workloads, tag).await;
        workloads.promote_primary(&w, &rev).await.unwrap();
        server.settle();
        revisions.push(rev);
    }
    assert_eq!(record_lists(&server), 0, "later saves know the records");
    // Three kept: the stable revision and the two before it; the oldest pruned.
    let mut kept: Vec<String> = revisions[1..]
        .iter()
        .map(|r| format!("podinfo-primary-{r}"))
        .collect();
    kept.sort();
    assert_eq!(record_names(&server), kept);
    // The stable record deleted behind serin's back: writing the primary again (a
    // repair) writes it again, though the book still lists it.
    let stable = revisions.last().unwrap().clone();
    let record = format!("podinfo-primary-{stable}");
    assert!(server.delete_object("apps/v1", "controllerrevisions", Some(NS), &record));
    workloads
        .initialize_primary(&w, &stable, None)
        .await
        .unwrap();
    assert_eq!(record_names(&server), kept);
    assert_eq!(record_lists(&server), 0);
    // Another process (a new leader) lists once and carries on from what is there.
    let other = KubeWorkloads::new(server.client());
    let fifth = new_target_revision(&server, &other, 5).await;
    other.promote_primary(&w, &fifth).await.unwrap();
    assert_eq!(record_lists(&server), 1);
    assert_eq!(record_names(&server).len(), 3);
    assert!(record_names(&server).contains(&format!("podinfo-primary-{fifth}")));
}

#[tokio::test]
async fn a_namespace_s_records_are_listed_once_for_all_its_primaries_and_again_after_a_failed_save()
{
    let (server, workloads) = setup();
    let mut cart = target("cart:1");
    cart["metadata"]["name"] = "cart".into();
    for labels in [
        "/metadata/labels",
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
    ] {
        *cart.pointer_mut(labels).unwrap() = serde_json::json!({"app": "cart"});
    }
    server.insert(cart);
    let cart = WorkloadRef {
        name: "cart".into(),
        ..podinfo()
    };
    let w = initialized(&workloads, &server).await;
    assert_eq!(record_lists(&server), 1, "the namespace is listed once");
    let rev = workloads.observe(&cart).await.unwrap().target_revision;
    workloads
        .initialize_primary(&cart, &rev, None)
        .await
        .unwrap();
    assert_eq!(
        record_lists(&server),
        0,
        "a primary the listing did not show has none"
    );
    assert!(record_names(&server).contains(&format!("cart-primary-{rev}")));
    // A record write fails: the namespace is forgotten, and the next save of any of
    // its primaries lists again (and finds what the others wrote).
    let mut failed = false;
    server.set_hook(Box::new(move |req, _| {
        if !failed && req.method == "PATCH" && req.resource == "controllerrevisions" {
            failed = true;
            return Some((500, serde_json::json!({"kind": "Status", "code": 500})));
        }
        None
    }));
    let next = new_target_revision(&server, &workloads, 2).await;
    assert!(workloads.promote_primary(&w, &next).await.is_err());
    server.drain_requests();
    workloads.promote_primary(&w, &next).await.unwrap();
    assert_eq!(record_lists(&server), 1);
    let names = record_names(&server);
    assert!(
        names.contains(&format!("podinfo-primary-{next}")),
        "{names:?}"
    );
    assert!(names.contains(&format!("cart-primary-{rev}")), "{names:?}");
}

fn image(d: &Value) -> &str {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_primary_is_made_from_the_target_with_its_own_selector_services_and_record() {
    let (server, workloads) = setup();
    let w = podinfo();
    let before = workloads.observe(&w).await.unwrap();
    assert!(!before.primary_exists);
    workloads
        .initialize_primary(&w, &before.target_revision, None)
        .await
        .unwrap();
    server.settle();

    let primary = server
        .get("apps/v1", "deployments", Some(NS), "podinfo-primary")
        .expect("the primary exists");
    assert_eq!(image(&primary), "podinfo:1");
    assert_eq!(primary["spec"]["replicas"], 3);
    let selector = &primary["spec"]["selector"]["matchLabels"];
    assert_ne!(
        selector,
        &serde_json::json!({"app": "podinfo"}),
        "the primary must not select the target's pods"
    );
    // The apex Service is the router's; the backend makes the two it routes between.
    let names = server.object_names();
    for name in [
        "services/shop/podinfo-primary",
        "services/shop/podinfo-canary",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "services/shop/podinfo"),
        "{names:?}"
    );
    // The revision's spec is recorded, so a primary can be rebuilt without the target.
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("controllerrevisions/shop/podinfo-primary-")),
        "{names:?}"
    );
    let after = workloads.observe(&w).await.unwrap();
    assert!(after.primary_exists);
    assert_eq!(
        after.primary_revision.as_deref(),
        Some(before.target_revision.as_str())
    );
    assert!(after.owned_missing.is_empty(), "{:?}", after.owned_missing);
}

#[tokio::test]
async fn a_new_target_revision_is_seen_and_promotion_copies_it_to_the_primary() {
    let (server, workloads) = setup();
    let w = podinfo();
    let first = workloads.observe(&w).await.unwrap().target_revision;
    workloads
        .initialize_primary(&w, &first, None)
        .await
        .unwrap();
    server.settle();

    let mut next = server
        .get("apps/v1", "deployments", Some(NS), "podinfo")
        .unwrap();
    next["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:2".into();
    server.insert(next);
    server.settle();
    let second = workloads.observe(&w).await.unwrap().target_revision;
    assert_ne!(second, first, "a new pod template is a new revision");

    workloads.promote_primary(&w, &second).await.unwrap();
    server.settle();
    let primary = server
        .get("apps/v1", "deployments", Some(NS), "podinfo-primary")
        .unwrap();
    assert_eq!(image(&primary), "podinfo:2");
    assert_eq!(
        workloads.observe(&w).await.unwrap().primary_revision,
        Some(second)
    );
}

/// The user's HPA scaling `podinfo`.
fn user_hpa() -> Value {
    serde_json::json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                 "minReplicas": 2, "maxReplicas": 5},
    })
}

type Writers = (
    kube::runtime::reflector::store::Writer<HorizontalPodAutoscaler>,
    crate::workloads::service_store::ServiceWriter,
);

/// Caches filled from the fake's objects as a watch's first list would fill them (the
/// writers are kept, as the watch tasks keep them).
fn caches_of(server: &FakeApiServer, services: &[&str], hpas: &[Value]) -> (OwnedCaches, Writers) {
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    let (hpa_store, mut hpa_writer) = reflector::store();
    let svc_store = crate::workloads::service_store::ServiceStore::default();
    let mut svc_writer = crate::workloads::service_store::ServiceWriter::new(svc_store.clone());
    hpa_writer.apply_watcher_event(&Event::Init);
    for h in hpas {
        hpa_writer.apply_watcher_event(&Event::InitApply(
            serde_json::from_value(h.clone()).unwrap(),
        ));
    }
    hpa_writer.apply_watcher_event(&Event::InitDone);
    svc_writer.apply_watcher_event(Event::Init);
    for name in services {
        let s = server
            .get("v1", "services", Some(NS), name)
            .expect("service");
        svc_writer.apply_watcher_event(Event::InitApply(serde_json::from_value(s).unwrap()));
    }
    svc_writer.apply_watcher_event(Event::InitDone);
    (
        OwnedCaches::from_stores(hpa_store, svc_store),
        (hpa_writer, svc_writer),
    )
}

/// `podinfo` with its primary, Services (and HPA twin) written by the plain backend.
async fn initialized(plain: &KubeWorkloads, server: &FakeApiServer) -> WorkloadRef {
    let w = podinfo();
    let rev = plain.observe(&w).await.unwrap().target_revision;
    plain.initialize_primary(&w, &rev, None).await.unwrap();
    server.settle();
    w
}

fn reads(server: &FakeApiServer) -> Vec<String> {
    server
        .drain_requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|r| r.contains("services") || r.contains("horizontalpodautoscalers"))
        .collect()
}

#[tokio::test]
async fn with_watch_caches_a_healthy_primary_costs_no_service_or_hpa_read() {
    let (server, plain) = setup();
    let w = initialized(&plain, &server).await;
    let (caches, _writers) = caches_of(&server, &["podinfo-primary", "podinfo-canary"], &[]);
    let cached = KubeWorkloads::new(server.client()).with_caches(caches);
    server.drain_requests();
    let seen = cached.observe(&w).await.unwrap();
    assert!(seen.owned_missing.is_empty(), "{:?}", seen.owned_missing);
    assert_eq!(reads(&server), Vec::<String>::new());
    // Without the caches the same check reads both Services and lists the HPAs.
    plain.observe(&w).await.unwrap();
    assert_eq!(reads(&server).len(), 3);
}

#[tokio::test]
async fn a_cache_that_lags_is_confirmed_by_a_read_before_anything_is_called_missing() {
    let (server, plain) = setup();
    let w = initialized(&plain, &server).await;
    // The cache has not seen the canary Service yet (our own write, just made).
    let (caches, _writers) = caches_of(&server, &["podinfo-primary"], &[]);
    let cached = KubeWorkloads::new(server.client()).with_caches(caches);
    server.drain_requests();
    let seen = cached.observe(&w).await.unwrap();
    assert!(seen.owned_missing.is_empty(), "{:?}", seen.owned_missing);
    assert_eq!(
        reads(&server),
        [format!(
            "GET /api/v1/namespaces/{NS}/services/podinfo-canary"
        )]
    );
    // Really gone: the read confirms it and the check reports it.
    assert!(server.delete_object("v1", "services", Some(NS), "podinfo-canary"));
    let seen = cached.observe(&w).await.unwrap();
    assert_eq!(seen.owned_missing, ["Service podinfo-canary"]);
}

#[tokio::test]
async fn an_hpa_twin_the_cache_lacks_is_listed_before_it_is_called_missing() {
    let (server, plain) = setup();
    let hpa = user_hpa();
    server.insert(hpa.clone());
    let w = initialized(&plain, &server).await;
    assert!(server
        .get(
            "autoscaling/v2",
            "horizontalpodautoscalers",
            Some(NS),
            "podinfo-primary"
        )
        .is_some());
    // The cache knows the user's HPA but not yet the twin serin just wrote.
    let (caches, _writers) = caches_of(&server, &["podinfo-primary", "podinfo-canary"], &[hpa]);
    let cached = KubeWorkloads::new(server.client()).with_caches(caches);
    server.drain_requests();
    let seen = cached.observe(&w).await.unwrap();
    assert!(seen.owned_missing.is_empty(), "{:?}", seen.owned_missing);
    assert_eq!(
        reads(&server),
        [format!(
            "GET /apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers?"
        )]
    );
}

/// A Deployment cache filled, as the controller's watch fills it, with slim copies of
/// the fake's `names`; the writer is returned to deliver later events.
fn deployment_cache_of(
    server: &FakeApiServer,
    names: &[&str],
) -> (
    DeploymentCache,
    kube::runtime::reflector::store::Writer<CachedDeployment>,
) {
    use kube::runtime::watcher::Event;
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for name in names {
        writer.apply_watcher_event(&Event::InitApply(slim_copy(server, name)));
    }
    writer.apply_watcher_event(&Event::InitDone);
    (DeploymentCache::from_parts(store, None), writer)
}

fn slim_copy(server: &FakeApiServer, name: &str) -> CachedDeployment {
    let d = server
        .get("apps/v1", "deployments", Some(NS), name)
        .expect("deployment");
    serde_json::from_value(d).unwrap()
}

fn deployment_reads(server: &FakeApiServer) -> Vec<String> {
    server
        .drain_requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/deployments"))
        .map(|r| r.path)
        .collect()
}

fn with_deployments(server: &FakeApiServer, cache: DeploymentCache) -> KubeWorkloads {
    let (hpas, _) = kube::runtime::reflector::store();
    let services = crate::workloads::service_store::ServiceStore::default();
    KubeWorkloads::new(server.client())
        .with_caches(OwnedCaches::from_stores(hpas, services).with_deployments(cache))
}

#[tokio::test]
async fn observing_from_the_deployment_cache_sees_what_the_api_shows_without_reading_it() {
    let (server, plain) = setup();
    // A second app whose template tracks a ConfigMap: its cached copy keeps the
    // template, and its revision still takes in the config's data.
    let mut tracked = target("api:1");
    tracked["metadata"]["name"] = "api".into();
    tracked["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        serde_json::json!([{"configMapRef": {"name": "api-env"}}]);
    server.insert(tracked);
    server.insert(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "api-env", "namespace": NS}, "data": {"LOG": "debug"}}));
    let api = WorkloadRef {
        name: "api".into(),
        ..podinfo()
    };
    let w = initialized(&plain, &server).await;
    let (cache, _writer) = deployment_cache_of(&server, &["podinfo", "podinfo-primary", "api"]);
    let cached = with_deployments(&server, cache);
    for w in [&w, &api] {
        let want = plain.observe(w).await.unwrap();
        server.drain_requests();
        let seen = cached.observe(w).await.unwrap();
        assert_eq!(seen, want, "{}", w.name);
        assert_eq!(
            deployment_reads(&server),
            Vec::<String>::new(),
            "{}",
            w.name
        );
    }
    // A slim copy keeps no pod spec (its images and revision are annotations of the
    // copy), nor foreign annotations.
    let slim = slim_copy(&server, "podinfo");
    assert!(slim.to_deployment().spec.unwrap().template.spec.is_none());
    // One that tracks configs keeps its whole template, which its revision needs.
    let tracked = slim_copy(&server, "api").to_deployment();
    let template = tracked.spec.unwrap().template;
    assert_eq!(
        template.spec.unwrap().containers[0].image.as_deref(),
        Some("api:1")
    );
    let kept: Vec<String> = slim.annotations().to_map().into_keys().collect();
    assert_eq!(kept, ["cache.serin.dev/images", "cache.serin.dev/revision"]);
    // Kept as pairs, not in the metadata's maps (a `BTreeMap` node each).
    assert!(slim.metadata.annotations.is_none() && slim.metadata.labels.is_none());
    let labels = server
        .get("apps/v1", "deployments", Some(NS), "podinfo")
        .and_then(|d| serde_json::from_value::<Deployment>(d).ok())
        .and_then(|d| d.metadata.labels);
    assert!(labels.as_ref().is_some_and(|l| !l.is_empty()));
    assert_eq!(
        slim.to_deployment().metadata.labels,
        labels,
        "the copy as a Deployment has the labels back"
    );
}

#[tokio::test]
async fn after_its_own_write_serin_observes_the_written_copy_until_the_cache_has_it() {
    let (server, plain) = setup();
    let w = initialized(&plain, &server).await;
    let (cache, mut writer) = deployment_cache_of(&server, &["podinfo", "podinfo-primary"]);
    let cached = with_deployments(&server, cache);
    cached.scale_canary(&w, 0).await.unwrap();
    server.settle();
    server.drain_requests();
    // The cache still shows 3 replicas; the copy the write returned, what serin wrote.
    let seen = cached.observe(&w).await.unwrap();
    assert_eq!(seen.canary_replicas, 0);
    assert_eq!(deployment_reads(&server), Vec::<String>::new());
    // The watch brings the write (and the rollout after it): the cache answers again.
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(slim_copy(
        &server, "podinfo",
    )));
    let seen = cached.observe(&w).await.unwrap();
    assert_eq!(seen.canary_replicas, 0);
    assert_eq!(deployment_reads(&server), Vec::<String>::new());
    // A deleted primary is read from the API until the cache has lost it too.
    cached.remove_primary(&w).await.unwrap();
    server.drain_requests();
    assert!(!cached.observe(&w).await.unwrap().primary_exists);
    assert!(deployment_reads(&server)
        .iter()
        .any(|p| p.ends_with("/podinfo-primary")));
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete(slim_copy_gone()));
    // (The hand-back also released serin's fields on the target: a write too.)
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(slim_copy(
        &server, "podinfo",
    )));
    assert!(!cached.observe(&w).await.unwrap().primary_exists);
    assert_eq!(deployment_reads(&server), Vec::<String>::new());
}

fn slim_copy_gone() -> CachedDeployment {
    let mut d = Deployment::default();
    d.metadata.name = Some("podinfo-primary".into());
    d.metadata.namespace = Some(NS.into());
    d.into()
}

#[tokio::test]
async fn the_hpa_twin_is_written_from_the_cache_without_a_list() {
    let (server, _) = setup();
    let hpa = user_hpa();
    server.insert(hpa.clone());
    let (caches, _writers) = caches_of(&server, &[], &[hpa]);
    let cached = KubeWorkloads::new(server.client()).with_caches(caches);
    let w = podinfo();
    let rev = cached.observe(&w).await.unwrap().target_revision;
    server.drain_requests();
    cached.initialize_primary(&w, &rev, None).await.unwrap();
    let twin = server
        .get(
            "autoscaling/v2",
            "horizontalpodautoscalers",
            Some(NS),
            "podinfo-primary",
        )
        .expect("the twin");
    assert_eq!(twin["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    assert_eq!(twin["spec"]["maxReplicas"], 5);
    let lists: Vec<String> = server
        .drain_requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("horizontalpodautoscalers"))
        .map(|r| r.path)
        .collect();
    assert_eq!(lists, Vec::<String>::new());
}
