//! `serin demo`: serin's whole decision loop on one machine, no cluster. A real
//! Prometheus and a real nginx start on loopback, the demo app runs as the primary,
//! steady traffic flows through nginx, and two releases run back to back: a good
//! version that is promoted and a bad one that is rolled back.

mod display;
pub mod env;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use display::{progress_line, render_summary, ReleaseSummary};
pub use env::{EnvOptions, LocalEnv};

use crate::crd::{AnalysisTemplateSpec, CanaryPhase, CanarySpec, CanaryStatus, GatesSpec};
use crate::local::state::Group;
use crate::local::{
    set_target, AppTemplate, LoadCounts, LoadGen, LoadOptions, LocalError, LocalState, StepReport,
    TargetSpec,
};

/// What makes the demo's second version bad.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BadVersion {
    /// This fraction of requests fails with a 500.
    Errors(f64),
    /// This many milliseconds are added to every request.
    Latency(u64),
}

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub env: EnvOptions,
    /// `analysis-templates/`; its `app-*.yaml` template is used when present.
    pub templates_dir: Option<PathBuf>,
    pub interval: Duration,
    pub steps: Vec<i32>,
    pub rate_per_sec: u32,
    pub replicas: i32,
    pub bad: BadVersion,
    /// Give up (error) if the demo runs longer.
    pub max_duration: Duration,
    /// Print progress to stdout.
    pub verbose: bool,
}

impl DemoOptions {
    /// The defaults: 10 s interval, steps 20% and 50%, 50 req/s, 2 replicas, a bad
    /// version with 5% errors; under a minute in all (54 s measured).
    pub fn new(work_dir: impl Into<PathBuf>, app_binary: impl Into<PathBuf>) -> Self {
        Self {
            env: EnvOptions::new(work_dir, app_binary),
            templates_dir: None,
            interval: Duration::from_secs(10),
            steps: vec![20, 50],
            rate_per_sec: 50,
            replicas: 2,
            bad: BadVersion::Errors(0.05),
            max_duration: Duration::from_secs(300),
            verbose: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DemoSummary {
    pub releases: Vec<ReleaseSummary>,
    pub elapsed: Duration,
    pub template: String,
}

impl DemoSummary {
    /// The good version was promoted and the bad one rolled back.
    pub fn as_expected(&self) -> bool {
        !self.releases.is_empty() && self.releases.iter().all(|r| r.as_expected())
    }

    pub fn render(&self) -> String {
        render_summary(&self.releases, self.elapsed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("load generator: {0}")]
    Load(String),
}

impl DemoError {
    pub fn category(&self) -> &'static str {
        match self {
            DemoError::Local(e) => e.category(),
            DemoError::Load(_) => "load",
        }
    }
}

/// `serin-demo-app` next to the running executable (cargo puts all of a package's
/// binaries in one directory); `None` when it is not there.
pub fn default_app_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    // Test binaries live one level down, in deps/.
    [dir.join("serin-demo-app"), dir.join("../serin-demo-app")]
        .into_iter()
        .find(|p| p.is_file())
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

/// Run the demo: start everything, release a good and a bad version, stop everything.
pub async fn run_demo(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let start = Instant::now();
    let (template_name, template) = opts
        .templates_dir
        .as_deref()
        .and_then(template::load_app_template)
        .unwrap_or_else(|| (template::BUILTIN_NAME.to_string(), template::builtin()));
    let settings = ReleaseSettings {
        interval: opts.interval,
        steps: opts.steps.clone(),
        failure_limit: 2,
        progress_deadline: opts.interval * 6,
        replicas: opts.replicas,
        gates: GatesSpec::default(),
        template_name: template_name.clone(),
        template,
        template_args: template::demo_args(&template_name),
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
    let state = initial_state(&settings, app_template("v1", 0.0, 0))?;
    let mut env = LocalEnv::start(opts.env.clone(), &state).await?;
    say(format!(
        "  Prometheus {}  (try: sum by (app, code) (rate(http_requests_total[30s])))\n  nginx      {}  (the traffic split)\n  analysis   template {template_name}",
        env.prometheus.url(),
        env.nginx.url()
    ));
    let result = demo_releases(&env, &opts, start, &say).await;
    env.shutdown();
    let releases = result?;
    let summary = DemoSummary {
        releases,
        elapsed: start.elapsed(),
        template: template_name,
    };
    say(summary.render());
    Ok(summary)
}

async fn demo_releases(
    env: &LocalEnv,
    opts: &DemoOptions,
    start: Instant,
    say: &impl Fn(String),
) -> Result<Vec<ReleaseSummary>, DemoError> {
    let remaining = || opts.max_duration.saturating_sub(start.elapsed());
    say("starting v1 as the primary...".into());
    env.controller
        .run_until(
            remaining(),
            |r| print_notes(say, r),
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
    let bad = match opts.bad {
        BadVersion::Errors(r) => ("bad: errors", app_template("v3", r, 0)),
        BadVersion::Latency(ms) => ("bad: latency", app_template("v3", 0.0, ms)),
    };
    let plan = [
        ("v2", "good", "good", app_template("v2", 0.0, 0)),
        ("v3", "bad", bad.0, bad.1),
    ];
    let mut out = Vec::new();
    for (version, intended, what, tpl) in plan {
        let rev = set_target(&env.state_file, tpl)?;
        say(format!(
            "\n== release {version} ({what}), revision {rev}: steps {:?}, interval {}s ==",
            opts.steps,
            opts.interval.as_secs()
        ));
        let before = load.snapshot();
        let t0 = Instant::now();
        let mut last_line = String::new();
        let mut last_print = Instant::now();
        let report = env
            .controller
            .run_until(
                remaining(),
                |r| {
                    print_notes(say, r);
                    let served = load.snapshot().since(&before);
                    let line = progress_line(start.elapsed(), version, &r.status, &served);
                    let key =
                        progress_line(Duration::ZERO, version, &r.status, &LoadCounts::default());
                    if key != last_line || last_print.elapsed() >= Duration::from_secs(3) {
                        say(line);
                        last_line = key;
                        last_print = Instant::now();
                    }
                },
                |e| say(format!("  error (retrying): {e}")),
                |r| {
                    // Decided, and the canary's pods gone after the scale-down delay.
                    r.status.canary_revision.as_deref() == Some(rev.as_str())
                        && r.status.phase.is_idle()
                        && canary_scaled_down(env)
                },
            )
            .await?;
        let during = load.snapshot().since(&before);
        let took = t0.elapsed();
        // Traffic after the decision: nginx has reloaded, so this is the new split.
        let mid = load.snapshot();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = load.snapshot().since(&mid);
        out.push(ReleaseSummary {
            version: version.to_string(),
            revision: rev,
            intended,
            phase: report.status.phase,
            message: report.status.message.clone(),
            metrics: report.status.metrics.clone(),
            during,
            after,
            took,
        });
    }
    load.stop().await;
    Ok(out)
}

fn print_notes(say: &impl Fn(String), r: &StepReport) {
    for n in &r.notes {
        say(format!("  >> {}: {}", n.reason, n.message));
    }
}
