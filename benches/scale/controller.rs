//! The controller under test, as `serin controller` wires it up, in its own thread and
//! tokio runtime (two workers, as on a two-core node): stopping it drops the runtime,
//! so the watches, caches and lease renewals it spawned stop with it. Every reconcile
//! is wrapped to sum its thread CPU time and note when it finished.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nix::time::{clock_gettime, ClockId};
use serin::controller::run::{run, ReconcileFuture, ReconcileHook, RunOptions};
use serin::controller::{Context, Fence, KubeEvents, Routers};
use serin::crd::ProviderSpec;
use serin::providers::{MetricError, MetricSource, MetricSources, ProviderCredentials};
use serin::traffic::{RouterKind, ServiceRouter, TrafficRouter};
use serin::workloads::deployments::{KubeWorkloads, OwnedCaches};
use serin::workloads::WorkloadBackend;

// ---------------------------------------------------------------- metrics source

/// Answers every query at once with a passing value; counts queries by
/// (hash of the query text, interval window). A hash, not the text: this lives in the
/// measured process, and a copy of every query ever asked is megabytes of RSS that is
/// the bench's, not the controller's.
pub struct InstantMetrics {
    pub interval_ms: i64,
    pub seen: Mutex<HashMap<(u64, i64), u32>>,
    pub total: AtomicU64,
}

#[async_trait]
impl MetricSource for InstantMetrics {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        let window = at.timestamp_millis().div_euclid(self.interval_ms);
        *self
            .seen
            .lock()
            .unwrap()
            .entry((query_hash(query), window))
            .or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(0.001)
    }
    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.query_scalar(query, at).await.map(|v| vec![v])
    }
}

/// SipHash with fixed keys: the same text hashes the same throughout the run.
fn query_hash(query: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    query.hash(&mut h);
    h.finish()
}

struct Sources(Arc<InstantMetrics>);
impl MetricSources for Sources {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

// ---------------------------------------------------------------- CPU per reconcile

fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

pub fn process_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// The bench's phases, as reconciles are labelled with them.
pub const WARMUP: u8 = 0;
pub const MEASURE: u8 = 1;
pub const RESTART: u8 = 2;
pub const SOAK: u8 = 3;

/// One finished reconcile, in 12 bytes: the bench keeps one per reconcile inside the
/// process whose RSS it reports (over 100,000 at 10,000 Deployments), so its own
/// bookkeeping must stay small beside the controller's.
#[derive(Clone, Copy)]
pub struct Sample {
    /// Thread CPU in nanoseconds, saturating at 4.29 s.
    cpu_ns: u32,
    /// Milliseconds since [`Samples::epoch`] when it finished.
    done_ms: u32,
    /// Onboarding (`materialize`), else a Canary reconcile.
    onboarding: bool,
    pub phase: u8,
}

impl Sample {
    /// "canary" or "materialize" (onboarding), as `Reconciling::controller` names them.
    pub fn which(&self) -> &'static str {
        if self.onboarding {
            "materialize"
        } else {
            "canary"
        }
    }

    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns.into())
    }
}

pub struct Samples {
    pub all: Mutex<Vec<Sample>>,
    pub phase: AtomicU8,
    /// What `done` counts from.
    pub epoch: Instant,
}

impl Default for Samples {
    fn default() -> Self {
        Self {
            all: Mutex::default(),
            phase: AtomicU8::default(),
            epoch: Instant::now(),
        }
    }
}

impl Samples {
    pub fn of(&self, which: &str, phase: u8) -> Vec<Sample> {
        self.since(0, which, phase)
    }

    /// Those of `which` in `phase` from index `from` of all samples on.
    pub fn since(&self, from: usize, which: &str, phase: u8) -> Vec<Sample> {
        let all = self.all.lock().unwrap();
        all[from.min(all.len())..]
            .iter()
            .filter(|s| s.which() == which && s.phase == phase)
            .copied()
            .collect()
    }

    /// When `s` finished.
    pub fn done(&self, s: &Sample) -> Instant {
        self.epoch + Duration::from_millis(s.done_ms.into())
    }

    fn push(&self, which: &'static str, cpu: Duration) {
        let phase = self.phase.load(Ordering::Relaxed);
        let sample = Sample {
            cpu_ns: u32::try_from(cpu.as_nanos()).unwrap_or(u32::MAX),
            done_ms: u32::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u32::MAX),
            onboarding: which == "materialize",
            phase,
        };
        self.all.lock().unwrap().push(sample);
    }
}

/// Sums the thread CPU time of every poll of a reconcile (reconciles hop threads
/// between polls).
struct CpuTimed {
    fut: ReconcileFuture,
    spent: Duration,
    which: &'static str,
    samples: Arc<Samples>,
}

impl Future for CpuTimed {
    type Output = <ReconcileFuture as Future>::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let t0 = thread_cpu();
        let r = this.fut.as_mut().poll(cx);
        this.spent += thread_cpu().saturating_sub(t0);
        if r.is_ready() {
            this.samples.push(this.which, this.spent);
        }
        r
    }
}

// ---------------------------------------------------------------- one controller

/// A running controller instance.
pub struct Instance {
    pub started: Instant,
    /// Why `run` returned, if it did (e.g. the Lease was lost).
    pub exited: Arc<Mutex<Option<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    /// Start a controller against the API server at `base`, with leader election as
    /// identity "serin-bench" (a restarted instance re-acquires its own Lease at once).
    pub fn start(base: &str, metrics: Arc<InstantMetrics>, samples: Arc<Samples>) -> Instance {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let base = base.to_string();
        let started = Instant::now();
        let exited = Arc::new(Mutex::new(None));
        let exit = exited.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // The client's connection tasks belong to this runtime.
                let config = kube::Config::new(base.parse().unwrap());
                let client = kube::Client::try_from(config).unwrap();
                let (ctx, opts) = wiring(client.clone(), metrics, samples);
                tokio::select! {
                    r = run(client, ctx, opts) => {
                        let why = match r {
                            Ok(()) => "run() returned".to_string(),
                            Err(e) => e.to_string(),
                        };
                        eprintln!("controller stopped after {:.1}s: {why}", started.elapsed().as_secs_f64());
                        *exit.lock().unwrap() = Some(why);
                    }
                    _ = stopped => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        Instance {
            started,
            exited,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn exited(&self) -> Option<String> {
        self.exited.lock().unwrap().clone()
    }

    /// Stop it and everything it spawned (without releasing the Lease, as a killed
    /// process would not).
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wiring(
    client: kube::Client,
    metrics: Arc<InstantMetrics>,
    samples: Arc<Samples>,
) -> (Context, RunOptions) {
    // As `serin controller` wires them: the watch caches, the apex read from serin's
    // Service cache.
    let caches = OwnedCaches::start(&client, None);
    let mut by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> = HashMap::new();
    by_kind.insert(
        RouterKind::Service,
        Arc::new(ServiceRouter::new(client.clone()).with_cache(Some(caches.services()))),
    );
    let ctx = Context {
        written: Default::default(),
        templates: None,
        policies: None,
        client: client.clone(),
        workloads: {
            let workloads = KubeWorkloads::new(client.clone()).with_caches(caches);
            if std::env::var("SCALE_DEPLOYMENT_CACHE").is_ok_and(|v| v == "0") {
                // Taken and dropped: `run` falls back to a metadata-only Deployment
                // watch and the workloads read Deployments from the API (to weigh the
                // cache's memory against its requests).
                drop(workloads.deployment_feed());
            }
            Arc::new(workloads)
        },
        routers: Routers {
            by_kind,
            default: RouterKind::Service,
        },
        sources: Arc::new(Sources(metrics)),
        events: Arc::new(KubeEvents::new(client.clone(), Some("serin-bench".into()))),
        clock: Arc::new(Utc::now),
        check_timeout: Duration::from_secs(5),
        reconcile_deadline: Duration::from_secs(20),
        queries: None,
        controller_namespace: "serin-system".into(),
        webhooks: None,
        notify: None,
        // As in production: the controller's own metrics are part of what is measured.
        metrics: Arc::new(serin::metrics::ControllerMetrics::new()),
        // Closed until run() holds the Lease; opened by each renewal (as `serin
        // controller` with leader election sets it up).
        fence: Fence::new(Duration::from_secs(10)),
    };
    let opts = RunOptions {
        namespace: None,
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: true,
        lease_namespace: "serin-system".into(),
        lease_name: "serin-leader".into(),
        identity: "serin-bench".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        shard: Default::default(),
        reconcile_hook: Some(ReconcileHook(Arc::new(move |which, fut| {
            Box::pin(CpuTimed {
                fut,
                spent: Duration::ZERO,
                which: which.controller(),
                samples: samples.clone(),
            })
        }))),
        reconcile_concurrency: serin::controller::run::DEFAULT_RECONCILE_CONCURRENCY,
        max_reconciles_per_namespace: serin::controller::run::DEFAULT_RECONCILES_PER_NAMESPACE,
    };
    (ctx, opts)
}
