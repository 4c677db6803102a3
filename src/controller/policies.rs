//! Release policies for the Canary reconcile: the `ReleasePolicy`, `ClusterReleasePolicy`,
//! Namespace and Canary watch caches, gathered into what the core decides from
//! ([`PolicyInputs`]): the policies selecting one Canary, each with its queue, and the
//! Canary's upstream environment (`serin.dev/promote-from`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::crd::{Canary, CanaryPhase, ClusterReleasePolicy, PolicyStage, ReleasePolicy};
use crate::policy::{
    compile_cluster, compile_namespaced, select, Arrival, CanaryKey, CompiledPolicy, PolicyError,
    PolicyRef, PolicyRules, QueueSnapshot, SelectedPolicy,
};
use crate::rollout::{PolicyInputs, Upstream};

/// On a Canary: take only revisions whose images this Canary promoted
/// (`namespace/name`, or `name` in the same namespace), soaked there for the longest
/// `minSoak` of the policies selecting this one.
pub const PROMOTE_FROM_ANNOTATION: &str = "serin.dev/promote-from";

/// A release this controller just let start counts as in flight until the watch cache
/// shows it so (the cache lags behind our own status write).
const STARTED_GRACE: Duration = Duration::from_secs(60);

/// The watch caches release policies are decided from.
pub struct PolicyCaches {
    pub namespaced: Store<ReleasePolicy>,
    pub cluster: Store<ClusterReleasePolicy>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub canaries: Store<Canary>,
    /// Admissions to a `maxInFlight` queue are decided one at a time, so that two
    /// Canaries never take the last slot together.
    pub admission: tokio::sync::Mutex<()>,
    started: Mutex<HashMap<CanaryKey, Instant>>,
}

/// A policy as compiled; a broken one keeps its selectors when they are sound (it
/// holds what it meant to select) and selects everything in its scope when they are
/// not: fail closed, so a typo in a freeze still freezes.
fn broken(
    reference: PolicyRef,
    e: &PolicyError,
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    namespace_selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> CompiledPolicy {
    let sound = |field: &str| !e.field.starts_with(field);
    CompiledPolicy {
        reference,
        selector: selector.filter(|_| sound("spec.selector")).cloned(),
        namespace_selector: namespace_selector
            .filter(|_| sound("spec.namespaceSelector"))
            .cloned(),
        rules: PolicyRules::invalid(e),
    }
}

/// Every policy in the caches, compiled.
pub fn compile_all(
    namespaced: &[std::sync::Arc<ReleasePolicy>],
    cluster: &[std::sync::Arc<ClusterReleasePolicy>],
) -> Vec<CompiledPolicy> {
    let mut out = Vec::with_capacity(namespaced.len() + cluster.len());
    for p in namespaced {
        out.push(compile_namespaced(p).unwrap_or_else(|e| {
            let r = PolicyRef::namespaced(p.namespace().unwrap_or_default(), p.name_any());
            broken(r, &e, p.spec.selector.as_ref(), None)
        }));
    }
    for p in cluster {
        out.push(compile_cluster(p).unwrap_or_else(|e| {
            broken(
                PolicyRef::cluster(p.name_any()),
                &e,
                p.spec.policy.selector.as_ref(),
                p.spec.namespace_selector.as_ref(),
            )
        }));
    }
    out
}

/// Where a Canary stands for the queues of the policies selecting it.
enum Standing {
    InFlight,
    Waiting(chrono::DateTime<chrono::Utc>),
    Idle,
}

fn standing(c: &Canary) -> Standing {
    let Some(s) = &c.status else {
        return Standing::Idle;
    };
    match s.phase {
        CanaryPhase::Progressing
        | CanaryPhase::WaitingApproval
        | CanaryPhase::Promoting
        | CanaryPhase::Finalising => Standing::InFlight,
        CanaryPhase::Waiting => match &s.policy_wait {
            Some(w) if w.stage == PolicyStage::Start => Standing::Waiting(w.since),
            _ => Standing::Idle,
        },
        CanaryPhase::Initializing
        | CanaryPhase::Initialized
        | CanaryPhase::Succeeded
        | CanaryPhase::Failed => Standing::Idle,
    }
}

fn key_of(c: &Canary) -> CanaryKey {
    CanaryKey::new(c.namespace().unwrap_or_default(), c.name_any())
}

impl PolicyCaches {
    pub fn new(
        namespaced: Store<ReleasePolicy>,
        cluster: Store<ClusterReleasePolicy>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        canaries: Store<Canary>,
    ) -> Self {
        PolicyCaches {
            namespaced,
            cluster,
            namespaces,
            canaries,
            admission: tokio::sync::Mutex::new(()),
            started: Mutex::new(HashMap::new()),
        }
    }

    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }

    /// Whether any policy could select a Canary in `ns` (cheap: no compiling).
    pub fn any_in_scope(&self, ns: &str) -> bool {
        !self.cluster.is_empty()
            || self
                .namespaced
                .state()
                .iter()
                .any(|p| p.namespace().as_deref() == Some(ns))
    }

    /// Record that this controller let `canary` start: it holds a slot from now on.
    pub fn note_started(&self, canary: CanaryKey) {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        started.retain(|_, at| at.elapsed() < STARTED_GRACE);
        started.insert(canary, Instant::now());
    }

    fn recently_started(&self) -> Vec<CanaryKey> {
        let started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        started
            .iter()
            .filter(|(_, at)| at.elapsed() < STARTED_GRACE)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The policies selecting `canary`, their queues, and its upstream.
    pub fn gather(&self, canary: &Canary) -> PolicyInputs {
        let ns = canary.namespace().unwrap_or_default();
        let me = key_of(canary);
        // Only this namespace's ReleasePolicies can select it: compile those alone.
        let own: Vec<_> = self
            .namespaced
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .collect();
        let all = compile_all(&own, &self.cluster.state());
        let chosen = select(&all, &ns, canary.labels(), &self.namespace_labels(&ns));
        let needs_queue = chosen.iter().any(|p| p.rules.max_in_flight.is_some());
        let (canaries, started) = if needs_queue {
            (self.canaries.state(), self.recently_started())
        } else {
            (Vec::new(), Vec::new())
        };
        let mut labels_of_ns: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let selected = chosen
            .into_iter()
            .map(|p| {
                let mut queue = QueueSnapshot::default();
                if p.rules.max_in_flight.is_some() {
                    for c in &canaries {
                        let cns = c.namespace().unwrap_or_default();
                        let nl = labels_of_ns
                            .entry(cns.clone())
                            .or_insert_with(|| self.namespace_labels(&cns));
                        if select(std::slice::from_ref(p), &cns, c.labels(), nl).is_empty() {
                            continue;
                        }
                        let k = key_of(c);
                        // Let start by us a moment ago, not yet so in the cache.
                        let claimed = k != me && started.contains(&k);
                        match standing(c) {
                            Standing::InFlight => queue.in_flight.push(k),
                            _ if claimed => queue.in_flight.push(k),
                            Standing::Waiting(since) => {
                                queue.waiting.push(Arrival { canary: k, since })
                            }
                            Standing::Idle => {}
                        }
                    }
                }
                SelectedPolicy {
                    policy: p.reference.clone(),
                    rules: p.rules.clone(),
                    queue,
                }
            })
            .collect();
        PolicyInputs {
            canary: me,
            selected,
            upstream: self.upstream_of(canary),
        }
    }

    /// The Canary named by `serin.dev/promote-from`, as the cache has it.
    fn upstream_of(&self, canary: &Canary) -> Option<Upstream> {
        let raw = canary.annotations().get(PROMOTE_FROM_ANNOTATION)?.trim();
        let ns = canary.namespace().unwrap_or_default();
        let (uns, uname) = match raw.split_once('/') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (ns, raw.to_string()),
        };
        let promoted = self
            .canaries
            .get(&ObjectRef::new(&uname).within(&uns))
            .and_then(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.promoted.as_deref().cloned())
            });
        Some(Upstream {
            canary: format!("{uns}/{uname}"),
            promoted,
        })
    }
}

/// The ReleasePolicies of `namespace` (all when `None`).
pub fn release_policies(client: &Client, namespace: Option<&str>) -> Api<ReleasePolicy> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// How long a reconcile waits for the policy caches' first list; until then nothing
/// is decided (a freeze not yet read must not let a release through).
const CACHE_WAIT: Duration = Duration::from_secs(5);

impl PolicyCaches {
    /// Whether every cache holds its first full list (waiting up to [`CACHE_WAIT`]).
    pub async fn ready(&self) -> bool {
        let all = async {
            self.namespaced.wait_until_ready().await.is_ok()
                && self.cluster.wait_until_ready().await.is_ok()
                && self.namespaces.wait_until_ready().await.is_ok()
                && self.canaries.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(CACHE_WAIT, all).await.unwrap_or(false)
    }
}

/// Watch both policy kinds and Namespace labels into [`PolicyCaches`] (with the
/// controller's Canary store). The returned stream names the Canaries to look at again
/// when one changes (its spec, or a namespace's labels): feed it to the Canary
/// controller, which polls it and so keeps the caches current. ReleasePolicies are
/// watched in the controller's namespace (`namespace`, all when `None`); Namespaces
/// and ClusterReleasePolicies cluster-wide.
pub fn watch_policies(
    client: &Client,
    namespace: Option<&str>,
    canaries: Store<Canary>,
) -> (
    std::sync::Arc<PolicyCaches>,
    impl Stream<Item = ObjectRef<Canary>> + Send + 'static,
) {
    let (namespaced, w1) = reflector::store::<ReleasePolicy>();
    let (cluster, w2) = reflector::store::<ClusterReleasePolicy>();
    let (namespaces, w3) = reflector::store::<PartialObjectMeta<Namespace>>();
    let cfg = watcher::Config::default;
    let in_ns = |store: Store<Canary>| {
        move |ns: Option<String>| -> Vec<ObjectRef<Canary>> {
            store
                .state()
                .iter()
                .filter(|c| ns.is_none() || c.namespace() == ns)
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect()
        }
    };
    // A changed spec (generation) wakes what it may select; status writes do not.
    let wake = in_ns(canaries.clone());
    let by_policy = reflector::reflector(
        w1,
        watcher(release_policies(client, namespace), cfg()).default_backoff(),
    )
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default())
    .filter_map(|r| async move { r.ok() })
    .flat_map(move |p| futures::stream::iter(wake(p.namespace())));
    let wake = in_ns(canaries.clone());
    let by_cluster_policy = reflector::reflector(
        w2,
        watcher(Api::<ClusterReleasePolicy>::all(client.clone()), cfg()).default_backoff(),
    )
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default())
    .filter_map(|r| async move { r.ok() })
    .flat_map(move |_| futures::stream::iter(wake(None)));
    let wake = in_ns(canaries.clone());
    let by_namespace = reflector::reflector(
        w3,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            cfg(),
        )
        .default_backoff(),
    )
    .touched_objects()
    .predicate_filter(predicates::labels, Default::default())
    .filter_map(|r| async move { r.ok() })
    .flat_map(move |n| futures::stream::iter(wake(Some(n.name_any()))));
    let caches = std::sync::Arc::new(PolicyCaches::new(namespaced, cluster, namespaces, canaries));
    let wakes = futures::stream::select(
        by_policy,
        futures::stream::select(by_cluster_policy, by_namespace),
    );
    (caches, wakes)
}

#[cfg(test)]
#[path = "policies_tests.rs"]
mod tests;
