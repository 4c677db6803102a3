//! Sharding, with the whole controller (`run`) against a fake API server that answers
//! lists as a real one does (filtered by `labelSelector`) and holds watches open: the
//! watches carry the selectors, objects outside the shard cost no request at all, and
//! a namespace that starts matching is picked up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::fake::*;
use crate::controller::events::MemoryEvents;
use crate::controller::run::{run, RunOptions};
use crate::controller::shard::{parse_selector, Shard};
use crate::controller::{Context, Routers};
use crate::testing::Recorded;
use crate::traffic::{RouterKind, ServiceRouter, TrafficRouter};
use crate::workloads::deployments::KubeWorkloads;

fn query(path: &str, key: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn labels_of(o: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default()
}

struct Cluster {
    fake: Fake,
    namespaces: Vec<Value>,
    /// List path ("/apis/apps/v1/deployments") -> items.
    lists: HashMap<&'static str, Vec<Value>>,
    /// Answer the first watch of Namespaces from the initial list with these events.
    namespace_events: Vec<Value>,
}

fn namespace(name: &str, shard: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": name, "resourceVersion": "7",
                        "labels": {"kubernetes.io/metadata.name": name, "serin.dev/shard": shard}}})
}

fn deployment(ns: &str, name: &str, shard: &str, annotated: bool) -> Value {
    let mut d = target_deployment("podinfo:1", 3);
    d["metadata"]["name"] = json!(name);
    d["metadata"]["namespace"] = json!(ns);
    d["metadata"]["uid"] = json!(format!("{ns}-{name}-uid"));
    d["metadata"]["resourceVersion"] = json!("1");
    d["metadata"]["labels"]["serin.dev/shard"] = json!(shard);
    if annotated {
        d["metadata"]["annotations"] = json!({"serin.dev/enabled": "true"});
    }
    d
}

fn hand_written_canary(ns: &str, name: &str, shard: &str) -> Value {
    let mut c = canary_object(json!({"targetRef": {"name": name}}));
    c["metadata"]["name"] = json!(name);
    c["metadata"]["namespace"] = json!(ns);
    c["metadata"]["resourceVersion"] = json!("1");
    c["metadata"]["labels"] = json!({"serin.dev/shard": shard});
    c
}

fn item_path(o: &Value) -> String {
    let (ns, name) = (
        o["metadata"]["namespace"].as_str().unwrap(),
        o["metadata"]["name"].as_str().unwrap(),
    );
    match o["kind"].as_str().unwrap() {
        "Deployment" => format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        _ => format!("/apis/serin.dev/v1alpha1/namespaces/{ns}/canaries/{name}"),
    }
}

impl Cluster {
    /// Namespaces "shop" (shard a) and "blog" (shard b), each with an annotated
    /// Deployment "web" (no Canary yet) and a hand-written Canary "podinfo".
    fn two_namespaces() -> Cluster {
        let mut deployments = vec![];
        let mut canaries = vec![];
        for (ns, shard) in [("shop", "a"), ("blog", "b")] {
            deployments.push(deployment(ns, "web", shard, true));
            deployments.push(deployment(ns, "podinfo", shard, false));
            canaries.push(hand_written_canary(ns, "podinfo", shard));
        }
        let fake = Fake::default();
        {
            let mut s = fake.0.lock().unwrap();
            for o in deployments.iter().chain(&canaries) {
                s.put(&item_path(o), o.clone());
            }
        }
        Cluster {
            fake,
            namespaces: vec![namespace("shop", "a"), namespace("blog", "b")],
            lists: HashMap::from([
                ("/apis/apps/v1/deployments", deployments),
                ("/apis/serin.dev/v1alpha1/canaries", canaries),
                // Objects serin created are watched (by their Canary label): none yet.
                ("/api/v1/services", vec![]),
                ("/apis/autoscaling/v2/horizontalpodautoscalers", vec![]),
                // The caches a Canary reconcile waits for: empty, but served.
                ("/apis/serin.dev/v1alpha1/analysistemplates", vec![]),
                ("/apis/serin.dev/v1alpha1/clusteranalysistemplates", vec![]),
                ("/apis/serin.dev/v1alpha1/releasepolicies", vec![]),
                ("/apis/serin.dev/v1alpha1/clusterreleasepolicies", vec![]),
            ]),
            namespace_events: vec![],
        }
    }

    fn answer(&self, r: &Recorded) -> Option<(u16, Value)> {
        let path = r.path.split('?').next().unwrap_or("");
        let selector = query(&r.path, "labelSelector")
            .map(|s| parse_selector(&s).expect("the controller sends valid selectors"));
        let keep = |o: &&Value| selector.as_ref().is_none_or(|s| s.matches(&labels_of(o)));
        let items: Vec<Value> = if path == "/api/v1/namespaces" {
            self.namespaces.iter().filter(keep).cloned().collect()
        } else {
            self.lists.get(path)?.iter().filter(keep).cloned().collect()
        };
        Some((
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        ))
    }
}

/// A kube client on `cluster`; watches from the initial list are held open (or, for
/// Namespaces, answered with `namespace_events`), later ones held open.
fn serve(cluster: Cluster) -> (Client, Arc<Mutex<Vec<Recorded>>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = recorded.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let r = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path_and_query().unwrap().to_string(),
                content_type: None,
                body: serde_json::from_slice(&bytes).ok(),
            };
            rec.lock().unwrap().push(r.clone());
            let watch = query(&r.path, "watch").is_some();
            let events = if r.path.starts_with("/api/v1/namespaces?")
                && query(&r.path, "resourceVersion").as_deref() == Some("1")
            {
                cluster.namespace_events.clone()
            } else {
                vec![]
            };
            let respond = |status: u16, bytes: Vec<u8>| {
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(bytes))
                    .unwrap()
            };
            if watch && events.is_empty() {
                held.push(send);
            } else if watch {
                let mut lines = Vec::new();
                for e in events {
                    lines.extend(serde_json::to_vec(&e).unwrap());
                    lines.push(b'\n');
                }
                // The namespace is relabelled a little after the controller started.
                let resp = respond(200, lines);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    send.send_response(resp);
                });
            } else {
                let (status, v) = match cluster.answer(&r) {
                    Some(a) if r.method == "GET" => a,
                    _ => cluster.fake.0.lock().unwrap().handle(&r),
                };
                send.send_response(respond(status, serde_json::to_vec(&v).unwrap()));
            }
        }
    });
    (Client::new(svc, "default"), recorded)
}

/// Run the controller for a moment; return every request it made.
async fn run_for_a_moment(cluster: Cluster, shard: Shard) -> Vec<Recorded> {
    let (client, recorded) = serve(cluster);
    let mut by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> = HashMap::new();
    by_kind.insert(
        RouterKind::Service,
        Arc::new(ServiceRouter::new(client.clone())),
    );
    let ctx = Context {
        written: Default::default(),
        templates: None,
        policies: None,
        client: client.clone(),
        workloads: Arc::new(KubeWorkloads::new(client.clone())),
        routers: Routers {
            by_kind,
            default: RouterKind::Service,
        },
        sources: Arc::new(crate::providers::PrometheusSources::new(
            None,
            Duration::from_secs(1),
        )),
        events: Arc::new(MemoryEvents::default()),
        clock: Arc::new(chrono::Utc::now),
        check_timeout: Duration::from_secs(1),
        reconcile_deadline: Duration::from_secs(20),
        queries: None,
        controller_namespace: "serin-system".into(),
        webhooks: None,
        notify: None,
        metrics: Arc::new(crate::metrics::ControllerMetrics::new()),
        fence: crate::controller::Fence::unfenced(),
    };
    let opts = RunOptions {
        namespace: None,
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: false,
        lease_namespace: "serin-system".into(),
        lease_name: shard.lease_name("serin-leader"),
        identity: "test".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        shard,
        reconcile_hook: None,
        reconcile_concurrency: crate::controller::run::DEFAULT_RECONCILE_CONCURRENCY,
        max_reconciles_per_namespace: 4,
    };
    let task = tokio::spawn(run(client, ctx, opts));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    task.abort();
    let calls = recorded.lock().unwrap().clone();
    calls
}

fn lines(calls: &[Recorded]) -> Vec<String> {
    calls
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn writes_in(calls: &[Recorded], ns: &str) -> Vec<String> {
    let marker = format!("/namespaces/{ns}/");
    lines(calls)
        .into_iter()
        .filter(|l| !l.starts_with("GET ") && l.contains(&marker))
        .collect()
}

#[tokio::test]
async fn namespace_selector_watches_selected_namespaces_and_leaves_the_others_untouched() {
    let shard = Shard::from_flags(Some("serin.dev/shard=a"), None).unwrap();
    let calls = run_for_a_moment(Cluster::two_namespaces(), shard).await;
    let all = lines(&calls);
    // Both controllers watch the Namespaces, metadata only, with the selector. The
    // release policies' cache watches every Namespace's labels besides (for
    // ClusterReleasePolicy namespaceSelectors), with no selector.
    let ns_requests: Vec<&Recorded> = calls
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/namespaces?"))
        .filter(|r| query(&r.path, "labelSelector").is_some())
        .collect();
    assert!(
        ns_requests.len() >= 4,
        "a list and a watch per controller: {all:#?}"
    );
    for r in &ns_requests {
        assert!(
            r.path.contains("labelSelector=serin.dev%2Fshard%3Da"),
            "{}",
            r.path
        );
    }
    // The shop namespace is served: the annotated Deployment got its Canary, the
    // hand-written Canary was initialized (its status written).
    let shop = writes_in(&calls, "shop");
    assert!(
        shop.iter()
            .any(|l| l.starts_with("PATCH /apis/serin.dev/v1alpha1/namespaces/shop/canaries/web?")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|l| l
            .starts_with("PATCH /apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo/status")),
        "{all:#?}"
    );
    // Blog is another shard's: not a single request names it.
    assert!(
        !all.iter().any(|l| l.contains("/namespaces/blog/")),
        "{all:#?}"
    );
}

#[tokio::test]
async fn a_namespace_that_starts_matching_is_picked_up() {
    let shard = Shard::from_flags(Some("serin.dev/shard=a"), None).unwrap();
    let mut cluster = Cluster::two_namespaces();
    // Blog is relabelled into shard a after the controller started.
    cluster.namespace_events = vec![json!({"type": "ADDED", "object": namespace("blog", "a")})];
    let calls = run_for_a_moment(cluster, shard).await;
    let all = lines(&calls);
    let blog = writes_in(&calls, "blog");
    assert!(
        blog.iter()
            .any(|l| l.starts_with("PATCH /apis/serin.dev/v1alpha1/namespaces/blog/canaries/web?")),
        "the annotated Deployment in blog is onboarded: {all:#?}"
    );
    assert!(
        all.iter().any(|l| l
            .starts_with("PATCH /apis/serin.dev/v1alpha1/namespaces/blog/canaries/podinfo/status")),
        "the Canary in blog is reconciled: {all:#?}"
    );
}

#[tokio::test]
async fn label_selector_filters_the_watches_and_the_canary_carries_the_shard_label() {
    let shard = Shard::from_flags(None, Some("serin.dev/shard=a")).unwrap();
    let calls = run_for_a_moment(Cluster::two_namespaces(), shard).await;
    let all = lines(&calls);
    let collections: Vec<&Recorded> = calls
        .iter()
        .filter(|r| {
            r.path.starts_with("/apis/apps/v1/deployments?")
                || r.path.starts_with("/apis/serin.dev/v1alpha1/canaries?")
        })
        .collect();
    // Canaries (list, watch), Deployments twice (list, watch): the Canary controller's
    // trigger and the onboarding controller.
    assert!(collections.len() >= 6, "{all:#?}");
    for r in &collections {
        assert_eq!(
            query(&r.path, "labelSelector").as_deref(),
            Some("serin.dev/shard=a"),
            "{}",
            r.path
        );
    }
    // No shard Namespace watch without --namespace-selector: only the release
    // policies' watch of every Namespace, unfiltered.
    assert!(
        calls
            .iter()
            .filter(|r| r.path.starts_with("/api/v1/namespaces?"))
            .all(|r| query(&r.path, "labelSelector").is_none()),
        "no Namespace watch by shard without --namespace-selector: {all:#?}"
    );
    // Only shard a's objects (all in shop) are touched.
    assert!(
        !all.iter().any(|l| l.contains("/namespaces/blog/")),
        "{all:#?}"
    );
    // The Canary is looked up first (the store only has shard a's Canaries), then
    // applied with the Deployment's shard label.
    let apply = calls
        .iter()
        .find(|r| {
            r.method == "PATCH"
                && r.path
                    .starts_with("/apis/serin.dev/v1alpha1/namespaces/shop/canaries/web?")
        })
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!(
        apply.body.as_ref().unwrap()["metadata"]["labels"],
        json!({"serin.dev/managed-by": "annotations", "serin.dev/shard": "a"})
    );
    // The Deployment came from a metadata-only watch: enough for the owner reference.
    let owner = &apply.body.as_ref().unwrap()["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["uid"].as_str()
        ),
        (Some("Deployment"), Some("web"), Some("shop-web-uid"))
    );
    let get = all
        .iter()
        .position(|l| l == "GET /apis/serin.dev/v1alpha1/namespaces/shop/canaries/web")
        .expect("looked up before applying");
    let patch = all
        .iter()
        .position(|l| l.starts_with("PATCH /apis/serin.dev/v1alpha1/namespaces/shop/canaries/web?"))
        .unwrap();
    assert!(get < patch);
}
