//! Scale: the real controller (`serin::controller::run::run`: leader election, both
//! watches, the Canary and onboarding reconcilers) against a mock API server over real
//! HTTP on 127.0.0.1 holding 1,000 annotated Deployments, with an instant in-process
//! metrics source. Issue 17: 10,000 Canaries on one controller, gently.
//!
//! Phases (`scale/phases.rs`), one controller instance per phase group, each in its own
//! thread and tokio runtime (`scale/controller.rs`) so that stopping one stops all it
//! spawned:
//! 1. warm-up: every Deployment onboarded (a Canary) and initialized;
//! 2. measure: SCALE_RELEASES Deployments get a new revision and are released, for at
//!    least SCALE_INTERVALS check intervals and until every release `Succeeded`
//!    (bounded by SCALE_MEASURE_MAX_SECS); the first SCALE_APPROVALS of them wait for
//!    an approval before every traffic increase, which the bench gives as
//!    `kubectl serin approve` does (`serin::gates::apply_decision`);
//! 3. soak: SCALE_SOAK_INTERVALS check intervals in which each released Deployment gets
//!    a new revision as soon as its last release succeeded; one check interval stands
//!    for the default one-minute interval, so 30 intervals are "30 simulated minutes";
//!    then the releases in flight finish;
//! 4. restart: the controller is stopped (without releasing its Lease, as a killed
//!    process) and a fresh one started against the same API server with the same
//!    identity; start-up is timed to the first reconciles, then the idle Canaries'
//!    re-checks are counted per 10 s for SCALE_SPREAD_SECS.
//!
//! The mock API server (`scale/mock.rs`, `mock_list.rs`, `mock_track.rs`) runs in a
//! child process (this binary, `--mock-api-server`), so RSS is the controller's alone.
//! It paginates lists as a kube-apiserver does (kube's watchers ask for pages of 500),
//! counts requests, watch connections and watchers' list pages apart, and attributes
//! each request to the Canary it concerns.
//!
//! Figures (`scale/figures.rs`), each with its issue target: RSS after warm-up, at the
//! end of measuring and of the soak (target 40 MiB up to 1,000 Deployments, 128 MiB at
//! 10,000, linear between); median thread CPU per Canary reconcile, summed over the
//! reconcile's polls (reconciles hop threads; it covers decoding, deciding, encoding,
//! not the shared watch and HTTP tasks, which "process CPU per reconcile" includes;
//! target 0.5 ms); API requests per Canary reconcile while measuring (1.5); start-up to
//! the first Canary and onboarding reconcile (10 s at 10,000) with the list pages
//! served; onboarding cost, warm-up requests per Deployment without watches and list
//! pages (5); whole-release cost, the requests attributed to a released Canary from
//! its release write to `Succeeded` (15); approval write to router write (1 s); the
//! idle re-checks' spread after the restart; RSS slope over the soak (0.1 MiB per
//! simulated minute). Then one JSON line with every figure.
//!
//! Run: `cargo bench --bench scale`. Knobs (env): SCALE_DEPLOYMENTS (1000),
//! SCALE_NAMESPACES (50), SCALE_RELEASES (100), SCALE_APPROVALS (10), SCALE_STEPS
//! ("10,25,50", the Canary default), SCALE_INTERVAL_SECS (2), SCALE_INTERVALS (10),
//! SCALE_MEASURE_MAX_SECS (derived from steps and interval), SCALE_WARMUP_SECS (120;
//! also the bound of the restart's start-up pass), SCALE_SOAK_INTERVALS (30; 0 skips
//! the soak), SCALE_SPREAD_SECS (60, in 10 s buckets; 0 skips), RUST_LOG (the
//! controller's log on stderr), SCALE_DEBUG=1 (a Progressing Canary's status),
//! SCALE_DEPLOYMENT_CACHE=0 (Deployments read from the API instead of the watch cache,
//! to weigh the cache's memory against its requests).

#![recursion_limit = "256"]

/// The shipped binary's allocator and settings, so RSS is what a user's controller has.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "scale/controller.rs"]
mod controller;
#[path = "scale/figures.rs"]
mod figures;
#[path = "scale/mock.rs"]
mod mock;
#[path = "scale/mock_list.rs"]
mod mock_list;
#[path = "scale/mock_track.rs"]
mod mock_track;
#[path = "scale/phases.rs"]
mod phases;
#[path = "scale/seed.rs"]
mod seed;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bench's knobs (see the top comment).
pub struct Knobs {
    pub deployments: usize,
    pub namespaces: usize,
    pub releases: usize,
    pub approvals: usize,
    pub steps: String,
    pub interval_secs: u64,
    pub intervals: u64,
    pub measure_max_secs: u64,
    pub warmup_secs: u64,
    pub soak_intervals: u64,
    pub spread_secs: u64,
}

impl Knobs {
    fn from_env() -> Knobs {
        let steps: String = env_or("SCALE_STEPS", "10,25,50".to_string());
        let interval_secs = env_or("SCALE_INTERVAL_SECS", 2);
        let n_steps = steps.split(',').count() as u64;
        // A release takes a check interval per step plus promotion (a few more
        // intervals) and the 30 s scale-down delay; three times that is the bound.
        let measure_max = 3 * ((n_steps + 4) * interval_secs + 30);
        Knobs {
            deployments: env_or("SCALE_DEPLOYMENTS", 1000),
            namespaces: env_or("SCALE_NAMESPACES", 50),
            releases: env_or("SCALE_RELEASES", 100),
            approvals: env_or("SCALE_APPROVALS", 10),
            steps,
            interval_secs,
            intervals: env_or("SCALE_INTERVALS", 10),
            measure_max_secs: env_or("SCALE_MEASURE_MAX_SECS", measure_max),
            warmup_secs: env_or("SCALE_WARMUP_SECS", 120),
            soak_intervals: env_or("SCALE_SOAK_INTERVALS", 30),
            spread_secs: env_or("SCALE_SPREAD_SECS", 60),
        }
    }
}

fn main() {
    let knobs = Knobs::from_env();
    if std::env::args().any(|a| a == "--mock-api-server") {
        let seed = seed::Seed {
            deployments: knobs.deployments,
            namespaces: knobs.namespaces,
            interval: format!("{}s", knobs.interval_secs),
            steps: knobs.steps.clone(),
            gated: knobs.approvals.min(knobs.releases),
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(mock::serve(seed));
        return;
    }
    // Dev-dependencies enable both rustls providers; pick one (the API is plain HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The controller's own log, at RUST_LOG's level (errors only by default), on stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    // The bench's own runtime (the mock's clients, the approver): one thread; each
    // controller instance has its own two-worker runtime (`controller.rs`).
    let out = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(phases::run_phases(&knobs));
    figures::report(&knobs, &out);
}
