//! `serin controller`: flags, their checks at startup, and the wiring of the library's
//! adapters into one controller context.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serin::controller::lease::check_timings;
use serin::controller::notifiers::run_notifier_watch;
use serin::controller::run::RunOptions;
use serin::controller::shard::{parse_selector, LabelSelector, Shard};
use serin::controller::{Clock, Context, Fence, KubeEvents, Routers};
use serin::gates::{ApiOptions, ApiServer, HookRunner, WebhookCaller, DEFAULT_API_AUDIENCE};
use serin::limits::KeyedLimiter;
use serin::metrics::ControllerMetrics;
use serin::notify::{notifier_queue_with_metrics, NotifierRegistry, QueueConfig};
use serin::providers::{AllowedAddresses, ProviderSources};
use serin::traffic::{build_available, RouterKind, RouterOptions};
use serin::workloads::deployments::{KubeWorkloads, OwnedCaches};

#[derive(clap::Args, Debug)]
pub(crate) struct ControllerArgs {
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
    /// Reconciles in flight at once, for Canaries and, apart, for onboarding
    /// Deployments; more wait their turn. One eighth as many more (at least one) are
    /// kept for Canaries holding a person's approval, abort or retry. Raise it for many
    /// Canaries, lower it to spare the API server. Default 16.
    #[arg(long, default_value_t = serin::controller::run::DEFAULT_RECONCILE_CONCURRENCY, env = "SERIN_RECONCILE_CONCURRENCY")]
    reconcile_concurrency: u16,
    /// Canary reconciles one namespace may run at once (of --reconcile-concurrency), so
    /// a namespace with thousands of Canaries cannot stall the others; the others are
    /// put off and retried a second or two later. Default 4.
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
    anyhow::ensure!(
        args.reconcile_concurrency >= 1,
        "--reconcile-concurrency must be at least 1"
    );
    let max = usize::from(args.reconcile_concurrency);
    anyhow::ensure!(
        (1..=max).contains(&args.max_reconciles_per_namespace),
        "--max-reconciles-per-namespace {} is out of range; accepted: 1 to {max} (--reconcile-concurrency)",
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

pub(crate) async fn run(args: ControllerArgs) -> anyhow::Result<()> {
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
    // HPAs, serin's Services and (filled by the controller's Deployment watch) the
    // Deployments from watches, not read at every reconcile.
    let caches = OwnedCaches::start(&client, args.namespace.as_deref());
    let router_options = RouterOptions {
        ingress_annotation_prefix: args.ingress_annotation_prefix.clone(),
        services: Some(caches.services()),
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
        written: Default::default(),
        templates: None,
        policies: None,
        client: client.clone(),
        workloads: Arc::new(KubeWorkloads::new(client.clone()).with_caches(caches)),
        routers: Routers { by_kind, default },
        sources: Arc::new(
            ProviderSources::new(args.prometheus_url, args.query_timeout)
                .with_allowed(args.allowed_provider_urls)
                .with_metrics(metrics.queries.clone())
                .with_max_body(args.prometheus_max_body),
        ),
        events: {
            let events = Arc::new(
                KubeEvents::new(client.clone(), Some(identity.clone())).with_clock(clock.clone()),
            );
            // Series of repeated Events go out on a heartbeat, not at every repeat.
            events.flush_every();
            events
        },
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
        reconcile_concurrency: args.reconcile_concurrency,
        max_reconciles_per_namespace: args.max_reconciles_per_namespace,
    };
    serin::controller::run::run(plain, ctx, opts).await?;
    Ok(())
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
