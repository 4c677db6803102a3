//! The `serin` binary: thin; the library does the work. One file per subcommand.
#![forbid(unsafe_code)]

mod analyze;
mod controller;
mod demo;
mod judge;

/// jemalloc, configured at build time (`.cargo/config.toml`) to hand freed pages back at
/// once: RSS stays near the live heap (the scale bench, README "Scale").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use analyze::AnalyzeArgs;
use controller::ControllerArgs;
use demo::DemoArgs;
use judge::JudgeArgs;

#[derive(Parser, Debug)]
#[command(
    name = "serin",
    version,
    about = "Progressive delivery for Kubernetes: annotate a Deployment, get a judged canary release"
)]
pub(crate) struct Cli {
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
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

/// Where log lines go.
pub(crate) enum LogTo {
    Stdout,
    Stderr,
    /// Without colour codes.
    File(std::fs::File),
}

pub(crate) fn init_logging(format: LogFormat, filter: &str, to: LogTo) -> anyhow::Result<()> {
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
        Command::Controller(args) => controller::run(*args).await,
        Command::Demo(args) => demo::run(args, cli.log_format, &cli.log).await,
        Command::Analyze(args) => analyze::run(*args).await,
        Command::Judge(args) => judge::run(args),
        Command::Crdgen => emit(&serin::crd::crds_yaml()?),
    }
}

/// Print a command's output; a reader that went away (`serin crdgen | head`) ends it
/// quietly instead of a panic in `print!`.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    match serin::cli::write_output(&mut std::io::stdout().lock(), text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(all(test, not(target_env = "msvc")))]
mod allocator_tests {
    /// Without this setting (`.cargo/config.toml`) jemalloc keeps freed pages for 10 s
    /// and the scale bench's RSS after warm-up grows by about a tenth.
    #[test]
    fn the_allocator_is_built_to_hand_freed_pages_back_at_once() {
        let conf = tikv_jemalloc_ctl::config::malloc_conf::read().expect("jemalloc answers");
        // jemalloc-ctl hands the C string back with its terminator.
        let conf = conf.trim_end_matches('\0');
        assert!(
            conf.split(',').any(|o| o == "dirty_decay_ms:0")
                && conf.split(',').any(|o| o == "muzzy_decay_ms:0"),
            "built-in malloc_conf: {conf:?}"
        );
    }
}
