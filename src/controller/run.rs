//! Running the controller: leader election, the two watches, health endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use super::health::health;
pub use super::health::health_router;
use super::lease::{
    acquire_lease, check_timings, keep_lease, lease_duration_secs, LeaseLock, LeaseTimingError,
};
use super::materialize::{materialize_error_policy, reconcile_deployment, MaterializeContext};
use super::people;
use super::shard::{NamespaceFilter, Shard};
use super::{error_policy, reconcile_canary, Context, ReconcileError};
use crate::crd::{Canary, CANARY_LABEL};
use crate::limits::Lane;
use crate::workloads::deployments::CachedDeployment;

/// How the controller runs, as `serin controller` flags set it.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Watch one namespace; `None` watches all.
    pub namespace: Option<String>,
    pub health_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// A standby takes over once the Lease has not changed for this long, as its own
    /// monotonic clock measures.
    pub lease_duration: Duration,
    /// The leader stops writing (and exits) once this long has passed since the start
    /// of its last successful renewal; less than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks at the Lease; less than
    /// `renew_deadline`.
    pub retry_period: Duration,
    /// The namespaces and objects this controller serves (`--namespace-selector`,
    /// `--label-selector`); the default serves everything.
    pub shard: Shard,
    /// Wraps every reconcile future; `None` in production. The scale benchmark measures
    /// CPU time per reconcile with it.
    pub reconcile_hook: Option<ReconcileHook>,
    /// Reconciles in flight per controller (`--reconcile-concurrency`); at least 1.
    /// Canaries a person waits on have one eighth as many slots more, in a controller
    /// of their own ([`Lane`]).
    pub reconcile_concurrency: u16,
    /// Canary reconciles one namespace may run at once (of `reconcile_concurrency`);
    /// more are put off and retried shortly (`--max-reconciles-per-namespace`).
    pub max_reconciles_per_namespace: usize,
}

/// A reconcile in flight, as the hook sees it.
pub type ReconcileFuture = BoxFuture<'static, Result<Action, ReconcileError>>;

/// What a reconcile the hook wraps is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciling {
    /// A Canary, in the lane it got its slot from.
    Canary(Lane),
    /// An annotated Deployment (onboarding).
    Deployment,
}

impl Reconciling {
    /// The controller's name, for labels.
    pub fn controller(self) -> &'static str {
        match self {
            Self::Canary(_) => "canary",
            Self::Deployment => "materialize",
        }
    }
}

/// Wraps each reconcile future, once it has its slot.
#[derive(Clone)]
pub struct ReconcileHook(
    pub Arc<dyn Fn(Reconciling, ReconcileFuture) -> ReconcileFuture + Send + Sync>,
);

impl std::fmt::Debug for ReconcileHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReconcileHook")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("health endpoint {addr}: {source}")]
    Health {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the leader lease {0}; exiting so a new leader can take over")]
    LeaseLost(String),
    #[error(transparent)]
    Timing(#[from] LeaseTimingError),
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Default of `--reconcile-concurrency`, the reconciles in flight per controller.
/// Unbounded, a burst (start-up with a thousand Canaries) ran a thousand reconciles at
/// once, each with its own HTTP connection and buffers, and the heap never shrank back;
/// a few dozen keep the API server as busy as a single controller should make it.
pub const DEFAULT_RECONCILE_CONCURRENCY: u16 = 16;

/// Default of `--max-reconciles-per-namespace`: a namespace full of slow Canaries keeps
/// at most a quarter of the reconcile slots.
pub const DEFAULT_RECONCILES_PER_NAMESPACE: usize = 4;

/// A Canary whose namespace runs its limit is woken when a slot there frees; should that
/// wake-up be lost, it is tried again after this long, plus up to a second derived from
/// its name, so the put-off ones do not all come back at once.
const NAMESPACE_BUSY_RETRY: Duration = Duration::from_secs(1);

fn namespace_busy_retry(name: &str) -> Duration {
    let spread = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1000;
    NAMESPACE_BUSY_RETRY + Duration::from_millis(spread)
}

/// The onboarding controller's Deployments come from a metadata-only watch: the API
/// server never sends (and serin never decodes) their pod templates.
fn from_metadata(
    e: watcher::Event<PartialObjectMeta<Deployment>>,
) -> watcher::Event<CachedDeployment> {
    let slim = |m: PartialObjectMeta<Deployment>| CachedDeployment::from_metadata(m.metadata);
    match e {
        watcher::Event::Apply(m) => watcher::Event::Apply(slim(m)),
        watcher::Event::Delete(m) => watcher::Event::Delete(slim(m)),
        watcher::Event::InitApply(m) => watcher::Event::InitApply(slim(m)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// The Canary an object serin created belongs to, from its label.
fn owning_canary<K: Resource>(o: &K) -> Option<String> {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(CANARY_LABEL))
        .cloned()
}

/// Wake a Canary when an object serin created for it changes or goes away: a
/// metadata-only watch of the kind, limited by the API server to objects carrying the
/// Canary label.
fn watch_owned<K>(
    ctl: Controller<Canary>,
    api: Api<PartialObjectMeta<K>>,
    dyntype: K::DynamicType,
) -> Controller<Canary>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let config = watcher::Config::default().labels(CANARY_LABEL);
    ctl.watches_stream_with(
        watcher(api, config).default_backoff().touched_objects(),
        |o: PartialObjectMeta<K>| {
            let ns = o.namespace()?;
            Some(ObjectRef::new(&owning_canary(&o)?).within(&ns))
        },
        dyntype,
    )
}

/// `kubectl apply` keeps the whole object it applied in this annotation: a second copy
/// of the spec that no reconcile reads.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The Canary store keeps everything but managedFields, kubectl's last-applied copy
/// and the Canary's own owner references: those name the annotated Deployment for the
/// garbage collector, and no reconcile reads them (each is four strings and 100 bytes
/// inline, in a copy kept per Canary). Every write to a Canary is a patch of the fields
/// it names, so the store's copy never sends them back.
fn slim_canary(c: &mut Canary) {
    c.metadata.managed_fields = None;
    c.metadata.owner_references = None;
    if let Some(a) = c.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            c.metadata.annotations = None;
        }
    }
}

/// The Canaries named (namespace, name) on `wakeups`, for `reconcile_on`.
fn canary_wakeups(
    wakeups: tokio::sync::mpsc::Receiver<(String, String)>,
) -> impl Stream<Item = ObjectRef<Canary>> + Send + 'static {
    futures::stream::unfold(wakeups, |mut rx| async move {
        let (ns, name) = rx.recv().await?;
        Some((ObjectRef::<Canary>::new(&name).within(&ns), rx))
    })
}

fn watch_config(shard: &Shard) -> watcher::Config {
    match &shard.labels {
        Some(sel) => watcher::Config::default().labels_from(&sel.selector()),
        None => watcher::Config::default(),
    }
}

/// With `--namespace-selector`: a metadata watch of the selected Namespaces, reflected
/// into the store the returned filter reads. The reflector updates the store before the
/// stream yields, so a controller triggered by this stream sees a namespace that starts
/// matching as admitted (and one that stops matching, reported deleted, as not).
/// Each controller gets its own watch so that its filter and its triggers never race.
#[allow(clippy::type_complexity)]
fn namespace_watch(
    client: &Client,
    shard: &Shard,
) -> (
    NamespaceFilter,
    Option<
        impl Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>> + Send + 'static,
    >,
) {
    let Some(sel) = shard.namespaces.clone() else {
        return (NamespaceFilter::all(), None);
    };
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().labels_from(&sel.selector());
    // Api<PartialObjectMeta<_>> makes metadata-only requests.
    let api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
    // Backoff: a failing watch (RBAC, a removed CRD) must not retry in a tight loop.
    let stream =
        reflector::reflector(writer, watcher(api, cfg).default_backoff()).touched_objects();
    (NamespaceFilter::selected(sel, store), Some(stream))
}

/// The objects of `store` in namespace `ns` (a namespace that starts matching wakes
/// them all).
fn in_namespace<K>(store: &Store<K>, ns: &str) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Run until a signal, or until the lease is lost (an error: the process should exit).
/// With leader election the reconcilers get the leader's [`Fence`](super::fence::Fence) in their context.
///
/// `client` serves the lease and the watches; `ctx.fence` is the leader's fence, which
/// the lease keeper opens and closes. With leader election, build it with
/// [`Fence::new`](super::fence::Fence::new) and give the Context's adapters a client made by
/// [`super::fence::fenced_client`], so that every write stops when it closes.
pub async fn run(client: Client, ctx: Context, opts: RunOptions) -> Result<(), RunError> {
    if opts.leader_election {
        check_timings(opts.lease_duration, opts.renew_deadline, opts.retry_period)?;
    }
    let fence = ctx.fence.clone();
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = ctx.metrics.clone();
    let health_task = tokio::spawn(health(opts.health_addr, ready.clone(), metrics.clone()));

    let mut lock = LeaseLock::new(
        Api::<Lease>::namespaced(client.clone(), &opts.lease_namespace),
        opts.lease_name.clone(),
        opts.identity.clone(),
        lease_duration_secs(opts.lease_duration),
    );
    if opts.leader_election {
        // A standby is ready: it serves the approval API (which only writes status
        // records) and is a hot spare. Were it not, a rolling update would wait forever
        // for the new pod while the old one holds the Lease, and a PodDisruptionBudget
        // would count the leader as the only ready pod. `serin_leader` tells them apart.
        ready.store(true, Ordering::Relaxed);
        tracing::info!(identity = %opts.identity, lease = %opts.lease_name, "waiting for leadership");
        acquire_lease(&mut lock, &fence, opts.retry_period).await;
        tracing::info!("leading");
    }
    // Without leader election every replica acts as the leader.
    metrics.reconciles.set_leader(true);

    let ns = opts.namespace.as_deref();
    // Never 0: kube-runtime reads that as unbounded.
    let concurrency = controller::Config::default().concurrency(opts.reconcile_concurrency.max(1));
    let hook = opts.reconcile_hook.clone();
    let wrap = move |which: Reconciling, fut: ReconcileFuture| match &hook {
        Some(h) => (h.0)(which, fut),
        None => fut,
    };

    let (canary_ns, canary_ns_watch) = namespace_watch(&client, &opts.shard);
    let (canaries, writer) = reflector::store_shared::<Canary>(people::SUBSCRIBER_BUFFER);
    let people_stream = writer.subscribe().map(people::holding_input);
    let canary_stream = reflector::reflector(
        writer,
        watcher(api::<Canary>(&client, ns), watch_config(&opts.shard))
            .default_backoff()
            .modify(slim_canary),
    )
    .applied_objects();
    let canaries_for_people = canaries.clone();
    let mut canary_ctl =
        Controller::for_stream(canary_stream, canaries.clone()).with_config(concurrency.clone());
    let (policy_caches, policy_wakes) =
        super::policies::watch_policies(&client, ns, canaries.clone());
    canary_ctl = canary_ctl.reconcile_on(policy_wakes);
    let mut ctx = ctx;
    ctx.policies = Some(policy_caches.clone());
    ctx.templates = Some(super::templates::TemplateCaches::start(&client, ns));
    let policy_status = super::policy_status::run_policy_status(Arc::new(
        super::policy_status::PolicyStatusContext {
            client: ctx.client.clone(),
            namespace: opts.namespace.clone(),
            events: ctx.events.clone(),
            clock: ctx.clock.clone(),
            fence: ctx.fence.clone(),
        },
    ));
    let mapper_ns = canary_ns.clone();
    // The user's Deployment wakes the Canary of its name; the primary (which carries
    // the Canary label) wakes its own Canary, so a deleted or edited primary is
    // repaired at once.
    let wakes = move |d: &CachedDeployment| {
        let ns = d.namespace().filter(|ns| mapper_ns.admits(Some(ns)))?;
        let name = d
            .labels()
            .get(CANARY_LABEL)
            .map_or_else(|| d.name_any(), str::to_string);
        Some(ObjectRef::<Canary>::new(&name).within(&ns))
    };
    let deployment_meta = || -> Api<PartialObjectMeta<Deployment>> {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    };
    let feed = ctx.workloads.deployment_feed();
    // The onboarding controller shares that watch when there is one.
    let shared = feed
        .as_ref()
        .and_then(|f| Some((f.writer.subscribe()?, f.store.clone())));
    canary_ctl = match feed {
        // The workloads read Deployments from a cache this watch fills: the reflector
        // stores each change before it wakes the Canary, so the reconcile sees it.
        Some(feed) => canary_ctl.watches_stream(
            reflector::reflector(
                feed.writer,
                watcher(
                    api::<CachedDeployment>(&client, ns),
                    watch_config(&opts.shard),
                )
                .default_backoff()
                .inspect_ok(move |e| feed.progress.observe(e)),
            )
            .touched_objects(),
            move |d| wakes(&d),
        ),
        // Only the name is needed: a metadata-only watch.
        None => canary_ctl.watches_stream(
            watcher(deployment_meta(), watch_config(&opts.shard))
                .default_backoff()
                .touched_objects(),
            move |d| wakes(&CachedDeployment::from_metadata(d.metadata)),
        ),
    };
    canary_ctl = watch_owned(
        canary_ctl,
        api::<PartialObjectMeta<Service>>(&client, ns),
        (),
    );
    canary_ctl = watch_owned(
        canary_ctl,
        api::<PartialObjectMeta<HorizontalPodAutoscaler>>(&client, ns),
        (),
    );
    // The kinds the available routers write, as their facts list them.
    let router_kinds = crate::traffic::registry::watched_kinds(ctx.routers.by_kind.keys().copied());
    for ar in router_kinds {
        let routes: Api<PartialObjectMeta<DynamicObject>> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        canary_ctl = watch_owned(canary_ctl, routes, ar);
    }
    if let Some(stream) = canary_ns_watch {
        let store = canaries.clone();
        canary_ctl =
            canary_ctl.watches_stream(stream, move |n| in_namespace(&store, &n.name_any()));
    }
    let slots = Arc::new(crate::limits::NamespaceSlots::new(
        opts.max_reconciles_per_namespace,
    ));
    // A Canary put off because its namespace was busy runs when a slot there frees; a
    // webhook call that finished wakes its Canary at once.
    let webhook_wakeups = ctx.webhooks.as_ref().and_then(|r| r.take_wakeups());
    for wakeups in [slots.take_wakeups(), webhook_wakeups]
        .into_iter()
        .flatten()
    {
        canary_ctl = canary_ctl.reconcile_on(canary_wakeups(wakeups));
    }
    let mctx = Arc::new(MaterializeContext {
        // The Context's client: its writes stop with the fence.
        client: ctx.client.clone(),
        canaries: canaries.clone(),
        events: ctx.events.clone(),
        clock: ctx.clock.clone(),
        metrics: ctx.metrics.clone(),
        shard: opts.shard.clone(),
        fence: ctx.fence.clone(),
        written: ctx.written.clone(),
    });
    let one_at_a_time = Arc::new(crate::limits::KeyedLocks::default());
    let canary_reconcile = {
        let (wrap_c, filter) = (wrap.clone(), canary_ns.clone());
        move |c: Arc<Canary>, ctx: Arc<Context>, lane: Lane| -> ReconcileFuture {
            if !filter.admits(c.namespace().as_deref()) {
                // Another shard's namespace (or one that stopped matching).
                return Box::pin(async { Ok(Action::await_change()) });
            }
            let (slots, locks, wrap_c) = (slots.clone(), one_at_a_time.clone(), wrap_c.clone());
            Box::pin(async move {
                let ns = c.namespace().unwrap_or_default();
                let name = c.name_any();
                // The other controller may be reconciling this Canary: wait for it.
                let _one = locks.lock(&format!("{ns}/{name}")).await;
                // A routine reconcile in a namespace that runs its share of the slots
                // is put off at once (its slot freed) and comes back when a slot there
                // frees (the retry is the fallback). A person's is not: its own slots
                // are few and brief.
                let slot = match lane {
                    Lane::Routine => match slots.try_enter(&ns, &name) {
                        Some(slot) => Some(slot),
                        None => {
                            ctx.metrics.reconciles.observe_deferred();
                            return Ok(Action::requeue(namespace_busy_retry(&name)));
                        }
                    },
                    Lane::PersonWaiting => None,
                };
                wrap_c(
                    Reconciling::Canary(lane),
                    Box::pin(async move {
                        let _slot = slot;
                        reconcile_canary(c, ctx).await
                    }),
                )
                .await
            })
        }
    };
    let ctx = Arc::new(ctx);
    let routine = canary_reconcile.clone();
    let canary_run = canary_ctl
        .shutdown_on_signal()
        .run(
            move |c, ctx| routine(c, ctx, Lane::Routine),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let people_run = people::run(
        people_stream,
        canaries_for_people,
        Lane::people_slots(opts.reconcile_concurrency.max(1)),
        move |c, ctx| canary_reconcile(c, ctx, Lane::PersonWaiting),
        ctx,
    );

    let (materialize_ns, materialize_ns_watch) = namespace_watch(&client, &opts.shard);
    let (mut materialize_ctl, deployments) = match shared {
        Some((changes, store)) => (
            Controller::for_shared_stream(changes, store.clone()).with_config(concurrency.clone()),
            store,
        ),
        None => {
            let (store, writer) = reflector::store();
            let stream = reflector::reflector(
                writer,
                watcher(deployment_meta(), watch_config(&opts.shard))
                    .default_backoff()
                    .map_ok(from_metadata),
            )
            .applied_objects();
            (
                Controller::for_stream(stream, store.clone()).with_config(concurrency.clone()),
                store,
            )
        }
    };
    if let Some(stream) = materialize_ns_watch {
        let store = deployments;
        materialize_ctl =
            materialize_ctl.watches_stream(stream, move |n| in_namespace(&store, &n.name_any()));
    }
    let filter = materialize_ns.clone();
    let materialize_run = materialize_ctl
        .shutdown_on_signal()
        .run(
            move |d: Arc<CachedDeployment>, mctx: Arc<MaterializeContext>| -> ReconcileFuture {
                if !filter.admits(d.namespace().as_deref()) {
                    return Box::pin(async { Ok(Action::await_change()) });
                }
                wrap(
                    Reconciling::Deployment,
                    Box::pin(reconcile_deployment(d, mctx)),
                )
            },
            materialize_error_policy,
            mctx,
        )
        .for_each(|_| async {});
    let readiness = {
        let ready = ready.clone();
        async move {
            let synced = canaries.wait_until_ready().await.is_ok()
                && policy_caches.ready().await
                && canary_ns.wait_until_ready().await
                && materialize_ns.wait_until_ready().await;
            if synced {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("watches synced; ready");
            }
        }
    };
    let lease_watch = async {
        if opts.leader_election {
            keep_lease(&mut lock, &fence, opts.retry_period).await
        } else {
            std::future::pending().await
        }
    };
    let result = tokio::select! {
        _ = async { tokio::join!(canary_run, people_run, materialize_run, policy_status, readiness) } => Ok(()),
        e = lease_watch => Err(e),
        r = health_task => match r {
            Ok(Err(e)) => Err(e),
            _ => Ok(()),
        },
    };
    fence.revoke();
    ready.store(false, Ordering::Relaxed);
    metrics.reconciles.set_leader(false);
    result
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
