//! `serin demo`: serin's whole decision loop on one machine, no cluster. A real
//! Prometheus and a real nginx start on loopback, the demo app runs as the primary,
//! steady traffic flows through nginx, and three releases run back to back, each a
//! scene where a static error-rate threshold and serin's comparison with the primary
//! disagree: a good release, a good release over a noisy primary, and a +2 pp
//! regression. serin judges each live with its built-in checks; what the common
//! static policy would have decided is computed from the same Prometheus series.

mod display;
pub mod env;
pub mod measure;
pub mod scenes;
pub mod static_policy;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use display::{progress_line, render_summary, SceneSummary};
pub use env::{EnvOptions, LocalEnv};
pub use scenes::{scenes, Expected, Scene};

use crate::crd::{AnalysisTemplateSpec, CanaryPhase, CanarySpec, CanaryStatus, GatesSpec};
use crate::local::state::Group;
use crate::local::{AppTemplate, LoadGen, LoadOptions, LocalError, LocalState, TargetSpec};

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub env: EnvOptions,
    pub interval: Duration,
    /// How often serin's sequential error test looks between checks.
    pub look_interval: Duration,
    pub steps: Vec<i32>,
    pub rate_per_sec: u32,
    pub replicas: i32,
    /// Give up (error) if the demo runs longer.
    pub max_duration: Duration,
    /// Print progress to stdout.
    pub verbose: bool,
    /// Where the controller's own log goes (set up by the caller), said at the start.
    pub controller_log: Option<String>,
    /// Serve the dashboard on this loopback address (port 0: any free port).
    pub dashboard: Option<std::net::SocketAddr>,
    /// Recorded as the decider of the dashboard's actions.
    pub actor: String,
    /// Gates of every release (e.g. an approval before promotion, given in the
    /// dashboard).
    pub gates: GatesSpec,
}

impl DemoOptions {
    /// The defaults: 10 s interval, looks every 2 s, steps 20% and 50%, 300 req/s, 2
    /// replicas.
    ///
    /// 300 requests/s because the evidence needs it at 10 s steps: a +2 pp regression
    /// (2.5% vs 0.5%) is shown after about 40 errors of both versions together, which
    /// at 20% canary weight takes ~20 s at 200 req/s and ~12 s at 300 (seeded
    /// simulation of the sequential test: at 100 req/s 8% of such releases go on to
    /// the 50% step, at 300 none), and a static 1% check of a 2% canary needs a few
    /// hundred canary requests per 10 s window before its verdict means anything.
    pub fn new(work_dir: impl Into<PathBuf>, app_binary: impl Into<PathBuf>) -> Self {
        Self {
            env: EnvOptions::new(work_dir, app_binary),
            interval: Duration::from_secs(10),
            look_interval: Duration::from_secs(2),
            steps: vec![20, 50],
            rate_per_sec: 300,
            replicas: 2,
            max_duration: Duration::from_secs(300),
            verbose: true,
            controller_log: None,
            dashboard: None,
            actor: "demo-user".into(),
            gates: GatesSpec::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DemoSummary {
    pub scenes: Vec<SceneSummary>,
    pub elapsed: Duration,
    /// The static policy compared with, in words.
    pub static_policy: String,
}

impl DemoSummary {
    /// Every scene ended as meant (promoted, promoted, rolled back).
    pub fn as_expected(&self) -> bool {
        !self.scenes.is_empty() && self.scenes.iter().all(|r| r.as_expected())
    }

    pub fn render(&self) -> String {
        render_summary(&self.scenes, &self.static_policy, self.elapsed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("load generator: {0}")]
    Load(String),
    #[error("dashboard: {0}")]
    Dashboard(String),
}

impl DemoError {
    pub fn category(&self) -> &'static str {
        match self {
            DemoError::Local(e) => e.category(),
            DemoError::Load(_) => "load",
            DemoError::Dashboard(_) => "dashboard",
        }
    }
}

/// The demo app's spec for one version.
pub fn app_template(version: &str, error_rate: f64, latency_ms: u64) -> AppTemplate {
    let mut args = vec!["--version".to_string(), version.to_string()];
    if error_rate > 0.0 {
        args.extend(["--error-rate".into(), error_rate.to_string()]);
    }
    if latency_ms > 0 {
        args.extend(["--latency-ms".into(), latency_ms.to_string()]);
    }
    args.extend([
        "--telemetry".into(),
        "istio,linkerd,ingress-nginx,envoy".into(),
    ]);
    AppTemplate {
        args,
        env: BTreeMap::new(),
    }
}

/// How a local Canary releases.
#[derive(Clone, Debug)]
pub struct ReleaseSettings {
    pub interval: Duration,
    /// Looks of sequential metrics between checks.
    pub look_interval: Duration,
    pub steps: Vec<i32>,
    pub failure_limit: i32,
    pub progress_deadline: Duration,
    pub replicas: i32,
    pub gates: GatesSpec,
    pub template_name: String,
    pub template: AnalysisTemplateSpec,
    pub template_args: BTreeMap<String, String>,
}

/// A fresh state file: Canary `demo/podinfo` whose workload runs `first`.
pub fn initial_state(s: &ReleaseSettings, first: AppTemplate) -> Result<LocalState, LocalError> {
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    // Built from its serialized form, as a user's manifest would be: fields other
    // parts of serin add to the spec keep their defaults.
    let spec: CanarySpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"name": "podinfo"},
        "router": "nginx",
        "analysis": {
            "interval": fmt(s.interval),
            "lookInterval": fmt(s.look_interval),
            "steps": s.steps,
            "failureLimit": s.failure_limit,
            "progressDeadline": fmt(s.progress_deadline),
            "templates": [{"name": s.template_name, "args": s.template_args}],
            // nginx applies a new split on reload, at once: no proxies to wait for.
            "scaleDownDelay": "1s",
        },
        "gates": s.gates,
    }))
    .map_err(|e| LocalError::Invalid(format!("demo Canary spec: {e}")))?;
    Ok(LocalState {
        namespace: "demo".into(),
        name: "podinfo".into(),
        spec,
        status: CanaryStatus::default(),
        target: TargetSpec {
            template: first,
            replicas: s.replicas,
        },
        templates: BTreeMap::from([(s.template_name.clone(), s.template.clone())]),
        primary: None,
        canary: Group::default(),
    })
}

/// The local canary has no instances left (its scale-down happened).
fn canary_scaled_down(env: &env::LocalEnv) -> bool {
    env.load()
        .is_ok_and(|s| s.canary.replicas == 0 && s.canary.procs.is_empty())
}

/// Run the demo: start everything, run the scenes, stop everything.
pub async fn run_demo(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let start = Instant::now();
    let settings = ReleaseSettings {
        interval: opts.interval,
        look_interval: opts.look_interval,
        steps: opts.steps.clone(),
        failure_limit: 2,
        progress_deadline: opts.interval * 6,
        replicas: opts.replicas,
        gates: opts.gates.clone(),
        template_name: template::NAME.to_string(),
        template: template::template(),
        template_args: template::demo_args(),
    };
    let say = |s: String| {
        if opts.verbose {
            println!("{s}");
        }
    };
    say(format!(
        "serin demo: starting Prometheus and nginx on loopback (work dir {})",
        opts.env.dir.display()
    ));
    std::fs::create_dir_all(&opts.env.dir).map_err(|e| LocalError::io(&opts.env.dir, e))?;
    let all = scenes();
    let dependency_file = opts.env.dir.join("dependency-errors");
    let first_dependency = all.first().map_or(0.0, |s| s.dependency_errors);
    scenes::set_dependency(&dependency_file, first_dependency)?;
    let state = initial_state(&settings, scenes::scene_app("v1", 0.0, &dependency_file))?;
    let mut env = LocalEnv::start(opts.env.clone(), &state).await?;
    let policy = static_policy::StaticPolicy::common(opts.steps.len() as u32, opts.interval);
    say(format!(
        "  Prometheus {}  (try: sum by (pod, code) (rate(http_request_duration_seconds_count[10s])))\n  \
         nginx      {}  (the traffic split)\n  \
         serin      built-in checks for app-http (errors: sequential test against the primary, \
         latency: Mann-Whitney of p99 in 3 s windows, critical guards), looks every {}s\n  \
         static     the common policy, {}, computed from the same series\n  \
         controller log {}",
        env.prometheus.url(),
        env.nginx.url(),
        opts.look_interval.as_secs(),
        policy.describe(),
        opts.controller_log.as_deref().unwrap_or("(not captured)")
    ));
    let feed = crate::dashboard::DemoFeed::default();
    let server = match opts.dashboard {
        Some(addr) => {
            let source = crate::dashboard::LocalSource::new(
                env.state_file.clone(),
                feed.clone(),
                opts.actor.clone(),
            );
            let source: std::sync::Arc<dyn crate::dashboard::Source> = std::sync::Arc::new(source);
            // A port in use (a second demo) is no reason to fail: any free port will do.
            let bound = match crate::dashboard::bind(addr, source.clone()).await {
                Err(_) if addr.port() != 0 => {
                    let any = std::net::SocketAddr::new(addr.ip(), 0);
                    crate::dashboard::bind(any, source).await
                }
                r => r,
            };
            match bound {
                Ok((url, serve)) => {
                    say(format!(
                        "  dashboard  {url}  (the release live; approve gates there)"
                    ));
                    Some(tokio::spawn(serve))
                }
                Err(e) => {
                    env.shutdown();
                    return Err(DemoError::Dashboard(e.to_string()));
                }
            }
        }
        None => None,
    };
    let result = run_scenes(&env, &opts, &all, &dependency_file, start, &say, &feed).await;
    if let Some(server) = server {
        server.abort();
    }
    env.shutdown();
    let scenes = result?;
    let summary = DemoSummary {
        scenes,
        elapsed: start.elapsed(),
        static_policy: policy.describe(),
    };
    say(summary.render());
    Ok(summary)
}

async fn run_scenes(
    env: &LocalEnv,
    opts: &DemoOptions,
    all: &[Scene],
    dependency_file: &std::path::Path,
    start: Instant,
    say: &impl Fn(String),
    feed: &crate::dashboard::DemoFeed,
) -> Result<Vec<SceneSummary>, DemoError> {
    let remaining = || opts.max_duration.saturating_sub(start.elapsed());
    say("starting v1 as the primary...".into());
    env.controller
        .run_until(
            remaining(),
            |r| {
                for n in &r.notes {
                    say(format!("  >> {}: {}", n.reason, n.message));
                    feed.record_note(n);
                }
            },
            |e| say(format!("  error (retrying): {e}")),
            |r| r.status.phase == CanaryPhase::Initialized,
        )
        .await?;
    let load = LoadGen::start(LoadOptions::new(
        format!("{}/", env.nginx.url()),
        opts.rate_per_sec,
        opts.max_duration,
    ))
    .map_err(|e| DemoError::Load(e.to_string()))?;
    say(format!(
        "sending {} requests/s through nginx",
        opts.rate_per_sec
    ));
    // Let Prometheus see the primary before the first release.
    tokio::time::sleep(opts.env.scrape_interval * 3).await;
    let run = scenes::SceneRun {
        env,
        opts,
        load: &load,
        dependency_file,
        start,
        feed,
    };
    let mut primary = "v1".to_string();
    let mut out = Vec::new();
    for scene in all {
        let summary = run.run(scene, &primary, say).await?;
        if summary.phase == CanaryPhase::Succeeded {
            primary = scene.version.to_string();
        }
        out.push(summary);
    }
    load.stop().await;
    Ok(out)
}
