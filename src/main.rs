//! The `serin` binary: thin; the library does the work.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use serin::controller::lease::check_timings;
use serin::controller::notifiers::run_notifier_watch;
use serin::controller::run::{run, RunOptions};
use serin::controller::shard::{parse_selector, LabelSelector, Shard};
use serin::controller::{Clock, Context, Fence, KubeEvents, Routers};
use serin::gates::{ApiOptions, ApiServer, HookRunner, WebhookCaller, DEFAULT_API_AUDIENCE};
use serin::limits::KeyedLimiter;
use serin::metrics::ControllerMetrics;
use serin::notify::{notifier_queue_with_metrics, NotifierRegistry, QueueConfig};
use serin::providers::{AllowedAddresses, ProviderSources};
use serin::traffic::{build_available, RouterKind, RouterOptions};
use serin::workloads::deployments::KubeWorkloads;

#[derive(Parser, Debug)]
#[command(
    name = "serin",
    version,
    about = "Progressive delivery for Kubernetes: annotate a Deployment, get a judged canary release"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SERIN_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. "info,serin=debug".
    #[arg(long, global = true, default_value = "info", env = "SERIN_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (in-cluster, or with the current kubeconfig context).
    Controller(Box<ControllerArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crdgen,
    /// Without a cluster: three releases through real nginx and Prometheus, judged by
    /// serin and by a static error-rate threshold side by side.
    Demo(DemoArgs),
    /// Evaluate an AnalysisTemplate against Prometheus over one window or its history.
    Analyze(Box<AnalyzeArgs>),
    /// Judge canary against baseline samples or counts (JSON) with a judge config.
    Judge(JudgeArgs),
}

#[derive(clap::Args, Debug)]
struct JudgeArgs {
    /// JSON: {"canary": [..], "baseline": [..]}, {"canary": {"errors", "requests"}, "baseline": {..}},
    /// or {"looks": [..]} for the sequential judge. "-" reads standard input.
    #[arg(long, env = "SERIN_JUDGE_INPUT")]
    input: std::path::PathBuf,
    /// YAML or JSON with `compare:` or `sequential:` (as in an AnalysisTemplate metric).
    #[arg(long, env = "SERIN_JUDGE_CONFIG")]
    config: std::path::PathBuf,
    #[arg(long, value_enum, default_value = "table", env = "SERIN_OUTPUT")]
    output: Output,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Scratch directory (default: a new temporary one).
    #[arg(long, env = "SERIN_DEMO_DIR")]
    dir: Option<std::path::PathBuf>,
    /// Check interval (and time per step).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "SERIN_DEMO_INTERVAL")]
    interval: Duration,
    /// Requests per second through nginx (the +2 pp regression needs ~300 to be
    /// shown within the first step).
    #[arg(long, default_value_t = 300, env = "SERIN_DEMO_RATE")]
    rate: u32,
    /// Where serin's own log lines go: "file" (controller.log in the scratch
    /// directory, without colours) or "stderr" (mixed with the demo's output).
    #[arg(
        long,
        value_enum,
        default_value = "file",
        env = "SERIN_DEMO_CONTROLLER_LOG"
    )]
    controller_log: ControllerLog,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ControllerLog {
    File,
    Stderr,
}

#[derive(clap::Args, Debug)]
struct AnalyzeArgs {
    /// AnalysisTemplate YAML file.
    #[arg(long, env = "SERIN_ANALYZE_TEMPLATE")]
    template: std::path::PathBuf,
    #[arg(long, env = "SERIN_ANALYZE_NAMESPACE")]
    namespace: String,
    /// The Deployment (the Canary's target).
    #[arg(long, env = "SERIN_ANALYZE_TARGET")]
    target: String,
    /// The workload measured; default `<target>-primary` (its history is the baseline).
    #[arg(long, env = "SERIN_ANALYZE_WORKLOAD")]
    workload: Option<String>,
    /// Apex Service name; default the target's name.
    #[arg(long, env = "SERIN_ANALYZE_SERVICE")]
    service: Option<String>,
    #[arg(long, env = "SERIN_PROMETHEUS_URL")]
    prometheus_url: String,
    /// Window length (the check interval).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, env = "SERIN_ANALYZE_INTERVAL")]
    interval: Duration,
    /// Number of windows, most recent last (10080 one-minute windows = a week).
    #[arg(long, default_value_t = 1, env = "SERIN_ANALYZE_WINDOWS")]
    windows: u32,
    /// End of the most recent window (RFC 3339); default now.
    #[arg(long, env = "SERIN_ANALYZE_END")]
    end: Option<chrono::DateTime<chrono::Utc>>,
    /// Template argument, repeatable: --arg maxErrorRate=0.02
    #[arg(long = "arg", value_parser = parse_kv, env = "SERIN_ANALYZE_ARGS", value_delimiter = ',')]
    args: Vec<(String, String)>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "SERIN_QUERY_TIMEOUT")]
    query_timeout: Duration,
    #[arg(long, value_enum, default_value = "table", env = "SERIN_OUTPUT")]
    output: Output,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

/// `serin-demo-app` next to the running executable (cargo puts all of a package's
/// binaries in one directory).
fn demo_app_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("serin-demo-app"), dir.join("../serin-demo-app")]
        .into_iter()
        .find(|p| p.is_file())
}

async fn demo(args: DemoArgs, log_format: LogFormat, log_filter: &str) -> anyhow::Result<()> {
    use serin::demo::{run_demo, DemoOptions};
    let app = demo_app_binary()
        .context("serin-demo-app not found next to serin: run `cargo build --bins`")?;
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("serin-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let controller_log = match args.controller_log {
        ControllerLog::Stderr => {
            init_logging(log_format, log_filter, LogTo::Stderr)?;
            "stderr".to_string()
        }
        ControllerLog::File => {
            let path = dir.join("controller.log");
            let file = std::fs::File::create(&path)
                .with_context(|| format!("controller log {}", path.display()))?;
            init_logging(log_format, log_filter, LogTo::File(file))?;
            path.display().to_string()
        }
    };
    let mut o = DemoOptions::new(dir, app);
    o.interval = args.interval;
    o.rate_per_sec = args.rate;
    o.controller_log = Some(controller_log);
    // Dropping the demo future stops every process it started, so Ctrl-C must land here.
    tokio::select! {
        r = run_demo(o) => {
            // The demo prints its own progress and summary.
            let summary = r?;
            anyhow::ensure!(summary.as_expected(), "the demo did not end as expected");
        }
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted; stopping everything the demo started"),
    }
    Ok(())
}

async fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    use serin::analysis::history::{
        analyze, format_json, format_table, load_template, AnalyzeRequest,
    };
    let (template_name, template) = load_template(&args.template)?;
    let workload = args
        .workload
        .unwrap_or_else(|| format!("{}-primary", args.target));
    let vars = serin::analysis::RenderVars {
        namespace: args.namespace.clone(),
        target: args.target.clone(),
        primary: format!("{}-primary", args.target),
        canary: args.target.clone(),
        workload,
        service: args.service.unwrap_or_else(|| args.target.clone()),
        interval: String::new(),
        args: Default::default(),
    };
    let req = AnalyzeRequest {
        template_name,
        template,
        args: args.args.into_iter().collect(),
        vars,
        interval: args.interval,
        end: args.end.unwrap_or_else(chrono::Utc::now),
        windows: args.windows,
    };
    // A one-off history over many windows: a larger answer than a check's is expected.
    let sources =
        ProviderSources::new(Some(args.prometheus_url), args.query_timeout).with_max_body(16 << 20);
    let report = analyze(&req, &sources).await?;
    match args.output {
        Output::Table => print!("{}", format_table(&report)),
        Output::Json => println!("{}", format_json(&report)?),
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct ControllerArgs {
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "SERIN_NAMESPACE")]
    namespace: Option<String>,
    /// Shard by namespace: only serve namespaces whose labels match this label
    /// selector, e.g. "serin.dev/shard=a" (default: all namespaces).
    #[arg(long, value_parser = parse_selector_flag, env = "SERIN_NAMESPACE_SELECTOR")]
    namespace_selector: Option<LabelSelector>,
    /// Shard by object: only serve Deployments and Canaries whose labels match this
    /// label selector; Canaries serin writes carry the Deployment's labels it reads.
    #[arg(long, value_parser = parse_selector_flag, env = "SERIN_LABEL_SELECTOR")]
    label_selector: Option<LabelSelector>,
    /// Router for Canaries that do not name one.
    #[arg(long, default_value = "service", env = "SERIN_DEFAULT_ROUTER")]
    default_router: String,
    /// Annotation prefix of the ingress-nginx controller.
    #[arg(
        long,
        default_value = "nginx.ingress.kubernetes.io",
        env = "SERIN_INGRESS_ANNOTATION_PREFIX"
    )]
    ingress_annotation_prefix: String,
    /// Address of the approval API (and Slack interactivity endpoint).
    #[arg(long, default_value = "0.0.0.0:8081", env = "SERIN_API_ADDR")]
    api_addr: SocketAddr,
    /// TLS certificate chain (PEM) of the API port, e.g. `tls.crt` of a Secret
    /// cert-manager writes; re-read when it changes. Needs --api-tls-key.
    #[arg(long, env = "SERIN_API_TLS_CERT", requires = "api_tls_key")]
    api_tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM), e.g. `tls.key`.
    #[arg(long, env = "SERIN_API_TLS_KEY", requires = "api_tls_cert")]
    api_tls_key: Option<std::path::PathBuf>,
    /// Serve the API over plain HTTP (bearer tokens cross the network readable): only
    /// behind something that terminates TLS for it, or for local tests.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set,
          env = "SERIN_API_INSECURE_HTTP", conflicts_with_all = ["api_tls_cert", "api_tls_key"])]
    api_insecure_http: bool,
    /// TokenReview audiences a bearer token must be issued for (comma-separated):
    /// `kubectl create token SA --audience serin`. Adding the API server's own audience
    /// accepts every token the user could also use against the API server.
    #[arg(long, default_value = DEFAULT_API_AUDIENCE, value_delimiter = ',', env = "SERIN_API_AUDIENCE")]
    api_audience: Vec<String>,
    /// File holding the Slack app's signing secret (mount it from a Secret); enables
    /// POST /slack/interactions. Needs --slack-identities-file.
    #[arg(
        long,
        env = "SERIN_SLACK_SIGNING_SECRET_FILE",
        requires = "slack_identities_file"
    )]
    slack_signing_secret_file: Option<std::path::PathBuf>,
    /// YAML mapping Slack user ids to Kubernetes users and groups (mount it from a
    /// ConfigMap in the controller's namespace); re-read when it changes.
    #[arg(long, env = "SERIN_SLACK_IDENTITIES_FILE")]
    slack_identities_file: Option<std::path::PathBuf>,
    /// Prometheus for templates that do not name a provider.
    #[arg(long, env = "SERIN_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Provider addresses templates may name: comma-separated URL prefixes
    /// (http://prometheus.monitoring:9090) or host:port pairs. Empty: any; set it in
    /// multi-tenant clusters. --prometheus-url is always allowed.
    #[arg(long, default_value = "", value_parser = AllowedAddresses::parse, env = "SERIN_ALLOWED_PROVIDER_URLS")]
    allowed_provider_urls: AllowedAddresses,
    /// Timeout of one Prometheus query.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "SERIN_QUERY_TIMEOUT")]
    query_timeout: Duration,
    /// Timeout of one whole check (all metrics, queried concurrently); less than
    /// --reconcile-deadline.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, env = "SERIN_CHECK_TIMEOUT")]
    check_timeout: Duration,
    /// No reconcile of a Canary runs longer than this, whatever it waits for (the API
    /// server, Prometheus, a router); one that hits it is stopped, explained in a Warning
    /// Event, and retried in 5s.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration, env = "SERIN_RECONCILE_DEADLINE")]
    reconcile_deadline: Duration,
    /// Canary reconciles one namespace may run at once (of 16); the others are put off
    /// and retried a second or two later.
    #[arg(long, default_value_t = serin::controller::run::DEFAULT_RECONCILES_PER_NAMESPACE, env = "SERIN_MAX_RECONCILES_PER_NAMESPACE")]
    max_reconciles_per_namespace: usize,
    /// Largest Prometheus answer read, in bytes; a larger one is an Error verdict
    /// ("response larger than N bytes") naming the metric.
    #[arg(long, default_value_t = serin::providers::DEFAULT_MAX_BODY, env = "SERIN_PROMETHEUS_MAX_BODY")]
    prometheus_max_body: usize,
    /// Metric queries in flight at once across all Canaries; one namespace may hold half.
    #[arg(long, default_value_t = 8, env = "SERIN_MAX_QUERIES_IN_FLIGHT")]
    max_queries_in_flight: usize,
    /// Address of /live and /ready.
    #[arg(long, default_value = "0.0.0.0:8080", env = "SERIN_HEALTH_ADDR")]
    health_addr: SocketAddr,
    /// Elect a leader among replicas with a Lease (only the leader writes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "SERIN_LEADER_ELECTION")]
    leader_election: bool,
    /// The Lease of leader election. Default "serin-leader", or with a selector
    /// "serin-leader-<hash of the selectors>": one Lease per shard, shared by its
    /// replicas. Set it explicitly only if it is unique per shard.
    #[arg(long, env = "SERIN_LEASE_NAME")]
    lease_name: Option<String>,
    /// Namespace of the Lease (the controller's own).
    #[arg(long, default_value = "serin-system", env = "SERIN_LEASE_NAMESPACE")]
    lease_namespace: String,
    /// A standby takes over once the Lease has not changed for this long (as its own
    /// clock measures).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, env = "SERIN_LEASE_DURATION")]
    lease_duration: Duration,
    /// The leader stops writing and exits once this long has passed since the start of
    /// its last successful renewal; less than --lease-duration.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "SERIN_LEASE_RENEW_DEADLINE")]
    lease_renew_deadline: Duration,
    /// How often the leader renews the Lease and a standby looks at it; less than
    /// --lease-renew-deadline.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, env = "SERIN_LEASE_RETRY_PERIOD")]
    lease_retry_period: Duration,
    /// This replica's identity (the pod name).
    #[arg(long, env = "SERIN_POD_NAME")]
    identity: Option<String>,
}

/// A label selector flag, checked at startup (kube would pass a typo to the API server
/// and the watch would fail later).
fn parse_selector_flag(s: &str) -> Result<LabelSelector, String> {
    parse_selector(s).map_err(|e| e.to_string())
}

/// Where log lines go.
enum LogTo {
    Stdout,
    Stderr,
    /// Without colour codes.
    File(std::fs::File),
}

fn init_logging(format: LogFormat, filter: &str, to: LogTo) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("--log")?;
    let ansi = !matches!(to, LogTo::File(_));
    let writer = match to {
        LogTo::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTo::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogTo::File(f) => BoxMakeWriter::new(std::sync::Mutex::new(f)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// The bounds on a reconcile must fit together: a check runs inside the reconcile.
fn check_bounds(args: &ControllerArgs) -> anyhow::Result<()> {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    anyhow::ensure!(
        !args.reconcile_deadline.is_zero(),
        "--reconcile-deadline must be positive, e.g. 20s"
    );
    anyhow::ensure!(
        args.check_timeout < args.reconcile_deadline,
        "--check-timeout {} must be less than --reconcile-deadline {}: a check runs inside the reconcile",
        d(args.check_timeout),
        d(args.reconcile_deadline)
    );
    let max = usize::from(serin::controller::run::RECONCILE_CONCURRENCY);
    anyhow::ensure!(
        (1..=max).contains(&args.max_reconciles_per_namespace),
        "--max-reconciles-per-namespace {} is out of range; accepted: 1 to {max}",
        args.max_reconciles_per_namespace
    );
    anyhow::ensure!(
        args.max_queries_in_flight >= 1,
        "--max-queries-in-flight must be at least 1"
    );
    anyhow::ensure!(
        args.prometheus_max_body >= 1024,
        "--prometheus-max-body {} is too small; accepted: at least 1024 bytes (default {})",
        args.prometheus_max_body,
        serin::providers::DEFAULT_MAX_BODY
    );
    Ok(())
}

/// The leader-election timings must leave the margin that keeps leadership exclusive.
fn check_lease_timings(args: &ControllerArgs) -> anyhow::Result<()> {
    if args.leader_election {
        check_timings(
            args.lease_duration,
            args.lease_renew_deadline,
            args.lease_retry_period,
        )?;
    }
    Ok(())
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    check_lease_timings(&args)?;
    check_bounds(&args)?;
    let config = kube::Config::infer()
        .await
        .context("connecting to Kubernetes")?;
    // The lease, the watches and the approval API use `plain`; everything that acts on
    // the cluster for the leader uses `client`, whose writes stop once the leader's
    // fence closes (the Lease not renewed within the renew deadline).
    let plain = kube::Client::try_from(config.clone()).context("connecting to Kubernetes")?;
    let fence = if args.leader_election {
        Fence::new(args.lease_renew_deadline)
    } else {
        Fence::unfenced()
    };
    let client = serin::controller::fence::fenced_client(config, &fence)
        .context("connecting to Kubernetes")?;
    // The API's certificate, audience and Slack mapping are checked before anything runs.
    let api = ApiServer::build(
        &ApiOptions {
            addr: Some(args.api_addr),
            tls_cert: args.api_tls_cert.clone(),
            tls_key: args.api_tls_key.clone(),
            insecure_http: args.api_insecure_http,
            audiences: args.api_audience.clone(),
            slack_signing_secret_file: args.slack_signing_secret_file.clone(),
            slack_identities_file: args.slack_identities_file.clone(),
        },
        plain.clone(),
    )
    .await?;
    let default = RouterKind::parse(&args.default_router).with_context(|| {
        format!(
            "--default-router {:?}: expected {}",
            args.default_router,
            RouterKind::accepted()
        )
    })?;
    let router_options = RouterOptions {
        ingress_annotation_prefix: args.ingress_annotation_prefix.clone(),
    };
    let by_kind = build_available(&client, &router_options)
        .await
        .context("discovering router APIs")?;
    tracing::info!(routers = ?by_kind.keys().map(|k| k.as_str()).collect::<Vec<_>>(), "routers available");
    let identity = args
        .identity
        .unwrap_or_else(|| format!("serin-{}", std::process::id()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let metrics = Arc::new(ControllerMetrics::new());
    let registry = Arc::new(NotifierRegistry::new());
    let (notify, _dispatcher) = notifier_queue_with_metrics(
        registry.clone(),
        QueueConfig::default(),
        metrics.notifications.clone(),
    );
    let clock: Clock = Arc::new(chrono::Utc::now);
    let ctx = Context {
        client: client.clone(),
        workloads: Arc::new(KubeWorkloads::new(client.clone())),
        routers: Routers { by_kind, default },
        sources: Arc::new(
            ProviderSources::new(args.prometheus_url, args.query_timeout)
                .with_allowed(args.allowed_provider_urls)
                .with_metrics(metrics.queries.clone())
                .with_max_body(args.prometheus_max_body),
        ),
        events: Arc::new(
            KubeEvents::new(client.clone(), Some(identity.clone())).with_clock(clock.clone()),
        ),
        clock: clock.clone(),
        check_timeout: args.check_timeout,
        reconcile_deadline: args.reconcile_deadline,
        queries: Some(Arc::new(KeyedLimiter::half_per_key(
            args.max_queries_in_flight,
        ))),
        controller_namespace: args.lease_namespace.clone(),
        webhooks: Some(Arc::new(HookRunner::new(
            WebhookCaller::new()
                .context("HTTP client")?
                .with_metrics(metrics.webhooks.clone()),
            clock,
        ))),
        notify: Some(notify),
        metrics,
        fence,
    };
    tokio::spawn(run_notifier_watch(
        plain.clone(),
        args.lease_namespace.clone(),
        registry,
        http,
    ));
    tokio::spawn(async move {
        if let Err(e) = api.serve().await {
            tracing::error!(error = %e, "approval API stopped");
        }
    });
    let shard = Shard {
        // An empty selector selects everything: not sharded.
        namespaces: args.namespace_selector.filter(|s| !s.is_empty()),
        labels: args.label_selector.filter(|s| !s.is_empty()),
    };
    let lease_name = args
        .lease_name
        .unwrap_or_else(|| shard.lease_name("serin-leader"));
    if shard.is_sharded() {
        tracing::info!(
            namespace_selector = %shard.namespaces.as_ref().map(ToString::to_string).unwrap_or_default(),
            label_selector = %shard.labels.as_ref().map(ToString::to_string).unwrap_or_default(),
            lease = %lease_name,
            "serving one shard"
        );
    }
    let opts = RunOptions {
        namespace: args.namespace,
        health_addr: args.health_addr,
        leader_election: args.leader_election,
        lease_namespace: args.lease_namespace,
        lease_name,
        identity,
        lease_duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        retry_period: args.lease_retry_period,
        shard,
        reconcile_hook: None,
        max_reconciles_per_namespace: args.max_reconciles_per_namespace,
    };
    run(plain, ctx, opts).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // kube enables rustls' ring provider and reqwest its aws-lc-rs one; with both
    // linked rustls cannot choose and the first TLS client would panic. Pick ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // The demo sets up its own logging: by default into a file in its scratch directory.
    if !matches!(cli.command, Command::Demo(_)) {
        init_logging(cli.log_format, &cli.log, LogTo::Stdout)?;
    }
    match cli.command {
        Command::Controller(args) => controller(*args).await,
        Command::Demo(args) => demo(args, cli.log_format, &cli.log).await,
        Command::Analyze(args) => analyze(*args).await,
        Command::Judge(args) => {
            let read = |p: &std::path::Path| -> anyhow::Result<String> {
                if p.as_os_str() == "-" {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                    Ok(s)
                } else {
                    std::fs::read_to_string(p).with_context(|| p.display().to_string())
                }
            };
            let format = match args.output {
                Output::Table => serin::analysis::judge_cli::OutputFormat::Table,
                Output::Json => serin::analysis::judge_cli::OutputFormat::Json,
            };
            let out = serin::analysis::judge_cli::run_judge(
                &read(&args.input)?,
                &read(&args.config)?,
                format,
            )?;
            print!("{out}");
            Ok(())
        }
        Command::Crdgen => {
            print!("{}", serin::crd::crds_yaml()?);
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
