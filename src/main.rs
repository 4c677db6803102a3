//! The `serin` binary: thin; the library does the work.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use serin::controller::run::{run, RunOptions};
use serin::controller::{Context, KubeEvents, Routers};
use serin::providers::PrometheusSources;
use serin::traffic::{
    detect_routers, GatewayApiRouter, IngressNginxRouter, IstioRouter, RouterKind, ServiceRouter,
    SmiRouter, TrafficRouter, WithApexService,
};
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
}

#[derive(clap::Args, Debug)]
struct ControllerArgs {
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "SERIN_NAMESPACE")]
    namespace: Option<String>,
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
    /// Prometheus for templates that do not name a provider.
    #[arg(long, env = "SERIN_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Timeout of one Prometheus query.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "SERIN_QUERY_TIMEOUT")]
    query_timeout: Duration,
    /// Timeout of one whole check (all metrics, queried concurrently).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "SERIN_CHECK_TIMEOUT")]
    check_timeout: Duration,
    /// Address of /live and /ready.
    #[arg(long, default_value = "0.0.0.0:8080", env = "SERIN_HEALTH_ADDR")]
    health_addr: SocketAddr,
    /// Elect a leader among replicas with a Lease (only the leader writes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "SERIN_LEADER_ELECTION")]
    leader_election: bool,
    #[arg(long, default_value = "serin-leader", env = "SERIN_LEASE_NAME")]
    lease_name: String,
    /// Namespace of the Lease (the controller's own).
    #[arg(long, default_value = "serin-system", env = "SERIN_LEASE_NAMESPACE")]
    lease_namespace: String,
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, env = "SERIN_LEASE_DURATION")]
    lease_duration: Duration,
    /// This replica's identity (the pod name).
    #[arg(long, env = "SERIN_POD_NAME")]
    identity: Option<String>,
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("--log")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let default = RouterKind::parse(&args.default_router).with_context(|| {
        format!(
            "--default-router {:?}: expected {}",
            args.default_router,
            RouterKind::accepted()
        )
    })?;
    // Only routers whose APIs the cluster serves; a Canary asking for another gets a
    // RouterUnavailable condition instead of retry noise.
    let available = detect_routers(&client)
        .await
        .context("discovering router APIs")?;
    let mut by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> = HashMap::new();
    for kind in available {
        let router: Arc<dyn TrafficRouter> = match kind {
            RouterKind::Service => Arc::new(ServiceRouter::new(client.clone())),
            RouterKind::Istio => Arc::new(IstioRouter::new(client.clone())),
            RouterKind::GatewayApi => Arc::new(GatewayApiRouter::new(client.clone())),
            RouterKind::IngressNginx => Arc::new(IngressNginxRouter::new(
                client.clone(),
                args.ingress_annotation_prefix.clone(),
            )),
            RouterKind::Smi => Arc::new(SmiRouter::new(client.clone())),
        };
        let router: Arc<dyn TrafficRouter> = match kind {
            RouterKind::Service => router,
            _ => Arc::new(WithApexService::new(client.clone(), router)),
        };
        by_kind.insert(kind, router);
    }
    tracing::info!(routers = ?by_kind.keys().map(|k| k.as_str()).collect::<Vec<_>>(), "routers available");
    let identity = args
        .identity
        .unwrap_or_else(|| format!("serin-{}", std::process::id()));
    let ctx = Context {
        client: client.clone(),
        workloads: Arc::new(KubeWorkloads::new(client.clone())),
        routers: Routers { by_kind, default },
        sources: Arc::new(PrometheusSources::new(
            args.prometheus_url,
            args.query_timeout,
        )),
        events: Arc::new(KubeEvents::new(client.clone(), Some(identity.clone()))),
        clock: Arc::new(chrono::Utc::now),
        check_timeout: args.check_timeout,
        controller_namespace: args.lease_namespace.clone(),
    };
    let opts = RunOptions {
        namespace: args.namespace,
        health_addr: args.health_addr,
        leader_election: args.leader_election,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity,
        lease_duration: args.lease_duration,
    };
    run(client, ctx, opts).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log)?;
    match cli.command {
        Command::Controller(args) => controller(*args).await,
        Command::Crdgen => {
            print!("{}", serin::crd::crds_yaml()?);
            Ok(())
        }
    }
}
