//! With every watch cache the controller runs (Deployments, serin's Services and the
//! apex, HPAs, templates) caught up, a reconcile that changes nothing sends nothing,
//! and one that acts reads only what a write needs.

use crate::workloads::cached_service::CachedService;
use crate::workloads::service_store::{ServiceStore, ServiceWriter};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;

use super::*;
use crate::controller::templates::TemplateCaches;
use crate::crd::{AnalysisTemplate, ClusterAnalysisTemplate};
use crate::testing::apiserver::FakeApiServer;
use crate::traffic::{RouterKind, ServiceRouter};
use crate::workloads::deployments::{
    CachedDeployment, DeploymentCache, KubeWorkloads, OwnedCaches,
};

/// The caches' writers: [`Watches::catch_up`] re-lists every kind from the fake, as
/// each watch would have delivered everything by the next reconcile.
struct Watches {
    deployments: Writer<CachedDeployment>,
    services: ServiceWriter,
    hpas: Writer<HorizontalPodAutoscaler>,
    templates: Writer<AnalysisTemplate>,
    cluster_templates: Writer<ClusterAnalysisTemplate>,
}

/// What a watch feeds: kube's reflector writers and serin's Service writer.
trait Feed<K> {
    fn feed(&mut self, e: Event<K>);
}

impl<K> Feed<K> for Writer<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    fn feed(&mut self, e: Event<K>) {
        self.apply_watcher_event(&e);
    }
}

impl Feed<CachedService> for ServiceWriter {
    fn feed(&mut self, e: Event<CachedService>) {
        self.apply_watcher_event(e);
    }
}

fn relist<K: DeserializeOwned>(
    server: &FakeApiServer,
    w: &mut impl Feed<K>,
    api_version: &str,
    plural: &str,
    keep: impl Fn(&mut K) -> bool,
) {
    w.feed(Event::Init);
    for name in server.object_names() {
        let mut parts = name.splitn(3, '/');
        let (Some(p), Some(ns), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if p != plural {
            continue;
        }
        let ns = (!ns.is_empty()).then_some(ns);
        let Some(v) = server.get(api_version, plural, ns, n) else {
            continue;
        };
        let mut obj: K = serde_json::from_value(v).unwrap();
        if keep(&mut obj) {
            w.feed(Event::InitApply(obj));
        }
    }
    w.feed(Event::InitDone);
}

impl Watches {
    fn catch_up(&mut self, server: &FakeApiServer) {
        relist(
            server,
            &mut self.deployments,
            "apps/v1",
            "deployments",
            |_: &mut CachedDeployment| true,
        );
        relist(
            server,
            &mut self.services,
            "v1",
            "services",
            |s: &mut CachedService| s.labels().get(crate::crd::CANARY_LABEL).is_some(),
        );
        let all = |_: &mut _| true;
        relist(
            server,
            &mut self.hpas,
            "autoscaling/v2",
            "horizontalpodautoscalers",
            all,
        );
        relist(
            server,
            &mut self.templates,
            "serin.dev/v1alpha1",
            "analysistemplates",
            |_| true,
        );
        relist(
            server,
            &mut self.cluster_templates,
            "serin.dev/v1alpha1",
            "clusteranalysistemplates",
            |_| true,
        );
    }
}

/// `h` with every cache the controller runs, caught up.
fn cached(h: Harness) -> (Harness, Watches) {
    let (deployments, dw) = reflector::store();
    let services = ServiceStore::default();
    let sw = ServiceWriter::new(services.clone());
    let (hpas, hw) = reflector::store();
    let (templates, tw) = reflector::store();
    let (cluster, cw) = reflector::store();
    let caches = OwnedCaches::from_stores(hpas, services)
        .with_deployments(DeploymentCache::from_parts(deployments, None));
    let client = h.server.client();
    let router = ServiceRouter::new(client.clone()).with_cache(Some(caches.services()));
    let h = h.with_ctx(|ctx| {
        ctx.workloads = Arc::new(KubeWorkloads::new(client.clone()).with_caches(caches));
        ctx.routers
            .by_kind
            .insert(RouterKind::Service, Arc::new(router));
        ctx.templates = Some(TemplateCaches::from_stores(templates, cluster));
    });
    let mut w = Watches {
        deployments: dw,
        services: sw,
        hpas: hw,
        templates: tw,
        cluster_templates: cw,
    };
    w.catch_up(&h.server);
    (h, w)
}

fn writes(calls: &[String]) -> usize {
    calls.iter().filter(|c| !c.starts_with("GET ")).count()
}

#[tokio::test]
async fn with_caches_caught_up_a_reconcile_that_changes_nothing_sends_nothing() {
    let (h, mut watches) = cached(Harness::new(release_spec()));
    *h.metrics.value.lock().unwrap() = Some(Ok(0.001));
    let step = async |h: &Harness, watches: &mut Watches| {
        let calls = h.ok().await;
        h.settle();
        watches.catch_up(&h.server);
        calls
    };
    // Initialize, then a release from new revision to promotion and scale-down.
    let mut all: Vec<Vec<String>> = Vec::new();
    for _ in 0..4 {
        all.push(step(&h, &mut watches).await);
        h.advance(30);
    }
    assert_eq!(h.status()["phase"], "Initialized");
    h.set_image("podinfo:2");
    watches.catch_up(&h.server);
    for _ in 0..16 {
        all.push(step(&h, &mut watches).await);
        h.advance(30);
    }
    assert_eq!(h.status()["phase"], "Succeeded", "{:#}", h.status());
    for calls in &all {
        if writes(calls) == 0 {
            assert_eq!(
                calls,
                &Vec::<String>::new(),
                "a reconcile that writes nothing reads nothing"
            );
        }
    }
    let reads: Vec<String> = all
        .iter()
        .flatten()
        .filter(|c| c.starts_with("GET "))
        .cloned()
        .collect();
    // Writing the primary needs the target's whole pod template, and the first time
    // the namespace's records. The Canary is never read: the cache listed it after
    // the Lease was taken, then serin's own writes answer. The apex is never read:
    // until serin routes (and so labels) it, it carries no weight of serin's.
    let expected = vec![
        get(&dep("podinfo")),
        format!("GET {}", records()),
        get(&dep("podinfo")),
    ];
    assert_eq!(reads, expected);
}
