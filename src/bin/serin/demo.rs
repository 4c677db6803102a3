//! `serin demo`: three releases through real nginx and Prometheus, no cluster.

use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;

use crate::{init_logging, LogFormat, LogTo};

#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
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
    /// Serve the dashboard here (loopback only; port 0 picks a free one; the URL is
    /// printed at the start).
    #[arg(
        long,
        default_value = "127.0.0.1:7474",
        env = "SERIN_DEMO_DASHBOARD_ADDR"
    )]
    dashboard_addr: std::net::SocketAddr,
    /// Serve no dashboard.
    #[arg(long, env = "SERIN_DEMO_NO_DASHBOARD")]
    no_dashboard: bool,
    /// Every release waits for your approval before promotion (in the dashboard).
    #[arg(long, env = "SERIN_DEMO_APPROVE_BEFORE_PROMOTION")]
    approve_before_promotion: bool,
    /// The name decisions in the dashboard are recorded under.
    #[arg(long, default_value = "demo-user", env = "SERIN_DEMO_USER")]
    user: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ControllerLog {
    File,
    Stderr,
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

pub(crate) async fn run(
    args: DemoArgs,
    log_format: LogFormat,
    log_filter: &str,
) -> anyhow::Result<()> {
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
    o.dashboard = (!args.no_dashboard).then_some(args.dashboard_addr);
    o.actor = args.user;
    o.gates.before_promotion = args.approve_before_promotion;
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
