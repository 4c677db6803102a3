//! The Service router against the stateful fake API server: the apex Service it routes
//! carries the Canary label (so serin's Service watch has it), its weight is read from
//! that cache (or serin's last write, while the cache lags it), and hand-back drops
//! both marks.

use std::collections::BTreeMap;

use kube::runtime::watcher::Event;
use serde_json::json;

use super::{target, NS};
use crate::crd::CANARY_LABEL;
use crate::testing::apiserver::FakeApiServer;
use crate::traffic::{RouteTarget, ServiceRouter, TrafficRouter, WEIGHT_ANNOTATION};
use crate::workloads::fresh_store::FreshStore;
use crate::workloads::service_store::{ServiceCache, ServiceStore, ServiceWriter};

fn routed() -> RouteTarget {
    RouteTarget {
        primary_selector: BTreeMap::from([("app".into(), "podinfo-primary".into())]),
        canary_selector: BTreeMap::from([("app".into(), "podinfo".into())]),
        shared_labels: BTreeMap::from([("app.kubernetes.io/name".into(), "podinfo".into())]),
        ..target()
    }
}

fn apex_reads(server: &FakeApiServer) -> usize {
    server
        .drain_requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/services/podinfo"))
        .count()
}

fn apex(server: &FakeApiServer) -> serde_json::Value {
    server
        .get("v1", "services", Some(NS), "podinfo")
        .expect("apex")
}

/// An empty, listed cache of serin's Services and its writer.
fn empty_cache() -> (ServiceCache, ServiceWriter) {
    let store = ServiceStore::default();
    let mut writer = ServiceWriter::new(store.clone());
    writer.apply_watcher_event(Event::Init);
    writer.apply_watcher_event(Event::InitDone);
    (FreshStore::new(store, |_| {}), writer)
}

#[tokio::test]
async fn the_apex_weight_comes_from_the_cache_once_it_holds_serins_write() {
    let server = FakeApiServer::new();
    server.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"team": "shop"}},
        "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898}]}}));
    let (cache, mut writer) = empty_cache();
    let router = ServiceRouter::new(server.client()).with_cache(Some(cache));
    let t = routed();
    // Not routed yet: no label, so not in the cache; no weight of serin's, no read.
    assert_eq!(router.observed_weight(&t).await.unwrap(), None);
    assert_eq!(apex_reads(&server), 0);

    router.set_weight(&t, 25).await.unwrap();
    let written = apex(&server);
    assert_eq!(written["metadata"]["labels"][CANARY_LABEL], "podinfo");
    assert_eq!(written["metadata"]["labels"]["team"], "shop");
    assert_eq!(written["metadata"]["annotations"][WEIGHT_ANNOTATION], "25");
    server.drain_requests();
    // The watch has not brought the first write back: the cache lacks the apex (it
    // could as well have been deleted since), so it is read.
    assert_eq!(router.observed_weight(&t).await.unwrap(), Some(25));
    assert_eq!(apex_reads(&server), 1);
    // Once it has, no read.
    writer.apply_watcher_event(Event::Apply(serde_json::from_value(written).unwrap()));
    assert_eq!(router.observed_weight(&t).await.unwrap(), Some(25));
    assert_eq!(apex_reads(&server), 0);
    // The next write, not yet back from the watch (the cache has 25): the copy the
    // write returned answers.
    router.set_weight(&t, 50).await.unwrap();
    server.drain_requests();
    assert_eq!(router.observed_weight(&t).await.unwrap(), Some(50));
    assert_eq!(apex_reads(&server), 0);
    let written = apex(&server);
    writer.apply_watcher_event(Event::Apply(serde_json::from_value(written).unwrap()));
    // Someone else's later change, delivered by the watch, is seen without a read: a
    // selector that no longer realizes the weight reads as unknown (serin re-applies).
    let mut edited = apex(&server);
    edited["spec"]["selector"] = json!({"app": "other"});
    edited["metadata"]["resourceVersion"] = "999999".into();
    writer.apply_watcher_event(Event::Apply(serde_json::from_value(edited).unwrap()));
    assert_eq!(router.observed_weight(&t).await.unwrap(), None);
    assert_eq!(apex_reads(&server), 0);

    // Hand-back: serin's label and weight go; the user's label stays.
    router.finalize(&t).await.unwrap();
    let handed = apex(&server);
    assert_eq!(handed["metadata"]["labels"].get(CANARY_LABEL), None);
    assert_eq!(handed["metadata"]["labels"]["team"], "shop");
    assert!(handed["metadata"]
        .get("annotations")
        .and_then(|a| a.get(WEIGHT_ANNOTATION))
        .is_none());
    assert_eq!(handed["spec"]["selector"], json!({"app": "podinfo"}));
}
