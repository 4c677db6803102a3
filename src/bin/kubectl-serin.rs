//! `kubectl serin`: approve, reject, abort, retry, pause and resume serin releases
//! through the controller's approval API (with a token for its audience; the
//! controller checks your RBAC on the action and writes the record); `release`
//! registers new images the same way; `status` and `history` read Canaries with your
//! kubeconfig.

#[path = "kubectl-serin/dashboard.rs"]
mod dashboard;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serin::cli::decide::{api_client, decide, service_account_token};
use serin::cli::register::{parse_image_arg, register, release_request};
use serin::cli::{CliError, Output, Target as View, WatchOptions};
use serin::crd::GateKind;
use serin::gates::{DecisionRequest, GateRef, OverrideRequest, Verb, DEFAULT_API_AUDIENCE};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-serin",
    version,
    about = "Watch and decide on serin canary releases"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Namespace of the Canary; defaults to the kubeconfig context's.
    #[arg(short = 'n', long, global = true, env = "SERIN_NAMESPACE")]
    namespace: Option<String>,
    /// kubeconfig context to use.
    #[arg(long, global = true, env = "SERIN_CONTEXT")]
    context: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// How decisions reach the controller's approval API.
#[derive(Debug, Args)]
struct ApiArgs {
    /// Base URL of serin's approval API, e.g. https://serin.serin-system.svc:8081 (in
    /// the cluster), or https://localhost:8081 with `kubectl -n serin-system
    /// port-forward svc/serin 8081:api`.
    #[arg(long, global = true, env = "SERIN_API_URL")]
    api_url: Option<String>,
    /// CA certificate(s) (PEM) to trust for the API, instead of the system's roots.
    #[arg(long, global = true, env = "SERIN_API_CA_FILE")]
    api_ca_file: Option<std::path::PathBuf>,
    /// Bearer token for the API's audience; prefer the environment variable or
    /// --token-file (a flag shows in the process list).
    #[arg(long, global = true, env = "SERIN_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token, e.g. from `kubectl create token SA --audience serin`.
    #[arg(long, global = true, env = "SERIN_API_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Request a short-lived token of this ServiceAccount (`NAME` in the Canary's
    /// namespace, or `NAMESPACE/NAME`) for the API's audience (needs `create` on
    /// `serviceaccounts/token`). The decision is recorded as that ServiceAccount.
    #[arg(long, global = true, env = "SERIN_SERVICE_ACCOUNT")]
    service_account: Option<String>,
    /// The audience the API accepts (its --api-audience).
    #[arg(long, global = true, default_value = DEFAULT_API_AUDIENCE, env = "SERIN_API_AUDIENCE")]
    audience: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Approve the gate the release waits at.
    Approve(GateArgs),
    /// Reject the gate the release waits at: the release rolls back.
    Reject(GateArgs),
    /// Roll back the release in flight now.
    Abort(Target),
    /// Release the rolled-back revision again.
    Retry(Target),
    /// Pause the release (spec.suspend=true).
    Pause(Target),
    /// Resume a paused release.
    Resume(Target),
    /// Register a release: set container images on the Canary's Deployment; its
    /// release policies decide whether it starts now or waits.
    Release(ReleaseArgs),
    /// Emergency override: lift the release windows and blackouts for the revision
    /// that waits or is in flight (approvals, queues and soak still apply).
    Override(OverrideArgs),
    /// Phase, step, weight and the last verdicts of a Canary; without NAME, a table of all.
    Status(StatusArgs),
    /// The last releases of a Canary, newest first.
    History(HistoryArgs),
    /// Serve the dashboard on 127.0.0.1: live releases, metric charts and the
    /// actions, with your kubeconfig's rights (reads) and the approval API (actions).
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
struct DashboardArgs {
    /// Port on 127.0.0.1 (0: any free port). The URL is printed; nothing is opened.
    #[arg(long, default_value_t = 7475, env = "SERIN_DASHBOARD_PORT")]
    port: u16,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Name of the Canary; omit for the list.
    name: Option<String>,
    /// Keep watching and redraw on every change (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    watch: bool,
    /// List Canaries in every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_namespaces: bool,
    /// Output format: text, or the Canary status as json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, env = "SERIN_OUTPUT")]
    output: Output,
    /// With --watch on a terminal: redraw this often even without changes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "SERIN_WATCH_INTERVAL")]
    interval: std::time::Duration,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// Name of the Canary (the Deployment's name).
    name: String,
    /// Output format: text, or the history records (newest first) as json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, env = "SERIN_OUTPUT")]
    output: Output,
}

#[derive(Debug, Args)]
struct Target {
    /// Name of the Canary (the Deployment's name).
    name: String,
}

#[derive(Debug, Args)]
struct ReleaseArgs {
    /// Name of the Canary (the Deployment's name).
    name: String,
    /// CONTAINER=IMAGE, e.g. app=ghcr.io/acme/app:1.2.3; repeat (or separate with
    /// commas) for more containers.
    #[arg(long = "image", required = true, value_delimiter = ',', value_parser = parse_image_arg, env = "SERIN_IMAGES")]
    images: Vec<(String, String)>,
    /// Why (e.g. the CI run); logged by the controller and echoed back.
    #[arg(long, env = "SERIN_RELEASE_REASON")]
    reason: Option<String>,
}

#[derive(Debug, Args)]
struct OverrideArgs {
    /// Name of the Canary (the Deployment's name).
    name: String,
    /// Why (shown in status, Events and notifications); required.
    #[arg(long, env = "SERIN_OVERRIDE_REASON")]
    reason: String,
    /// How long, e.g. 2h (at most 7 days); default: until the release ends.
    #[arg(long = "for", value_parser = humantime::parse_duration, env = "SERIN_OVERRIDE_FOR")]
    duration: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
struct GateArgs {
    /// Name of the Canary (the Deployment's name).
    name: String,
    /// Only if the release waits at this gate (beforeRollout, beforeTrafficIncrease,
    /// beforePromotion); needs --revision and --step too.
    #[arg(long, env = "SERIN_GATE", requires_all = ["revision", "step"], value_parser = parse_gate)]
    gate: Option<GateKind>,
    /// Only if this revision is under release.
    #[arg(long, env = "SERIN_REVISION", requires_all = ["gate", "step"])]
    revision: Option<String>,
    /// Only if the release is at this step.
    #[arg(long, env = "SERIN_STEP", requires_all = ["gate", "revision"])]
    step: Option<i32>,
}

fn parse_gate(s: &str) -> Result<GateKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("unknown gate {s:?}: use beforeRollout, beforeTrafficIncrease or beforePromotion")
    })
}

impl Cli {
    /// The decision to record; `None` for the read-only commands.
    fn decision(&self) -> Option<(DecisionRequest, &str)> {
        let (verb, name, gate) = match &self.command {
            Cmd::Approve(g) => (Verb::Approve, &g.name, Some(g)),
            Cmd::Reject(g) => (Verb::Reject, &g.name, Some(g)),
            Cmd::Abort(t) => (Verb::Abort, &t.name, None),
            Cmd::Override(o) => {
                let decision = DecisionRequest {
                    emergency: Some(OverrideRequest {
                        reason: o.reason.clone(),
                        duration: o.duration,
                    }),
                    ..DecisionRequest::new(Verb::Override)
                };
                return Some((decision, &o.name));
            }
            Cmd::Retry(t) => (Verb::Retry, &t.name, None),
            Cmd::Pause(t) => (Verb::Pause, &t.name, None),
            Cmd::Resume(t) => (Verb::Resume, &t.name, None),
            Cmd::Status(_) | Cmd::History(_) | Cmd::Dashboard(_) | Cmd::Release(_) => return None,
        };
        let expect = gate.and_then(|g| {
            Some(GateRef {
                gate: g.gate?,
                revision: g.revision.clone()?,
                step: g.step?,
            })
        });
        Some((
            DecisionRequest {
                expect,
                ..DecisionRequest::new(verb)
            },
            name,
        ))
    }
}

/// The bearer token for the approval API: given, from a file, or requested for a
/// ServiceAccount.
async fn api_token(api: &ApiArgs, client: &Client, ns: &str) -> anyhow::Result<String> {
    if let Some(t) = api
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok(t.to_string());
    }
    if let Some(path) = &api.token_file {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("--token-file {}", path.display()))?;
        anyhow::ensure!(
            !t.trim().is_empty(),
            "--token-file {} is empty",
            path.display()
        );
        return Ok(t.trim().to_string());
    }
    if let Some(sa) = &api.service_account {
        let (sa_ns, name) = sa.split_once('/').unwrap_or((ns, sa.as_str()));
        let ttl = std::time::Duration::from_secs(600);
        return Ok(service_account_token(client, sa_ns, name, &api.audience, ttl).await?);
    }
    anyhow::bail!(
        "no token for the serin API (audience {:?}): set SERIN_API_TOKEN or --token-file \
         (e.g. `kubectl create token SA --audience {}`), or --service-account NAME",
        api.audience,
        api.audience
    )
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match Kubeconfig::read() {
        Ok(kc) => Config::from_custom_kubeconfig(kc, &options).await?,
        Err(_) => Config::infer().await?,
    };
    let default_ns = config.default_namespace.clone();
    let client = Client::try_from(config)?;
    let ns = cli.namespace.clone().unwrap_or(default_ns);
    let now = chrono::Utc::now();
    match &cli.command {
        Cmd::Status(args) => {
            let target = match (&args.name, args.all_namespaces) {
                (Some(name), _) => View::One {
                    namespace: ns,
                    name: name.clone(),
                },
                (None, true) => View::List { namespace: None },
                (None, false) => View::List {
                    namespace: Some(ns),
                },
            };
            if !args.watch {
                return Ok(serin::cli::status(&client, &target, args.output, now).await?);
            }
            let opts = WatchOptions {
                output: args.output,
                redraw: std::io::stdout().is_terminal(),
                tick: args.interval,
            };
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            serin::cli::watch(
                &client,
                &target,
                &opts,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
                stop,
            )
            .await?;
            return Ok(String::new());
        }
        Cmd::History(args) => {
            return Ok(serin::cli::history(&client, &ns, &args.name, args.output, now).await?);
        }
        Cmd::Dashboard(args) => {
            let context = cli
                .context
                .clone()
                .unwrap_or_else(|| "(current context)".into());
            return dashboard::run(&cli, args, client, context, ns).await;
        }
        _ => {}
    }
    let (http, base, token) = api_access(&cli, &client, &ns).await?;
    if let Cmd::Release(args) = &cli.command {
        let request = release_request(&args.images, args.reason.as_deref())?;
        let out = register(&http, &base, &token, &ns, &args.name, &request).await?;
        return Ok(if out.changed {
            format!("{ns}/{}: {}", args.name, out.message)
        } else {
            format!("{ns}/{}: unchanged ({})", args.name, out.message)
        });
    }
    let Some((decision, name)) = cli.decision() else {
        unreachable!("every other command records a decision")
    };
    let outcome = decide(&http, &base, &token, &ns, name, &decision).await?;
    Ok(if outcome.changed {
        format!("{ns}/{name}: {}", outcome.message)
    } else {
        format!("{ns}/{name}: unchanged ({})", outcome.message)
    })
}

/// The approval API's client, base URL and bearer token.
async fn api_access(
    cli: &Cli,
    client: &Client,
    ns: &str,
) -> anyhow::Result<(reqwest::Client, String, String)> {
    let base = cli.api.api_url.as_deref().context(
        "set --api-url (SERIN_API_URL) to serin's approval API, e.g. https://localhost:8081 \
         with `kubectl -n serin-system port-forward svc/serin 8081:api`",
    )?;
    let ca = match &cli.api.api_ca_file {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("--api-ca-file {}", p.display()))?)
        }
        None => None,
    };
    let http = api_client(ca.as_deref(), std::time::Duration::from_secs(30))?;
    let token = api_token(&cli.api, client, ns).await?;
    Ok((http, base.to_string(), token))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Both ring (kube) and aws-lc-rs (reqwest) are linked in, so rustls cannot pick a
    // crypto provider by itself and every client would panic without this.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    match run(cli).await {
        Ok(msg) => match serin::cli::write_output(&mut std::io::stdout().lock(), &msg) {
            // The reader went away (`| head`): nothing more to say.
            Err(e) if !gone(&e) => {
                eprintln!("error: writing output: {e}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        },
        Err(e)
            if e.downcast_ref::<CliError>()
                .is_some_and(CliError::reader_gone) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-serin").chain(args.iter().copied()))
    }

    #[test]
    fn every_verb_parses_with_namespace() {
        for (word, verb) in [
            ("approve", Verb::Approve),
            ("reject", Verb::Reject),
            ("abort", Verb::Abort),
            ("retry", Verb::Retry),
            ("pause", Verb::Pause),
            ("resume", Verb::Resume),
        ] {
            let cli = parse(&[word, "podinfo", "-n", "shop"]).unwrap();
            assert_eq!(cli.namespace.as_deref(), Some("shop"));
            let (d, name) = cli.decision().unwrap();
            assert_eq!((d.verb, name), (verb, "podinfo"));
            assert_eq!(d.expect, None);
        }
        // The namespace flag may come first, as with kubectl.
        let cli = parse(&["-n", "shop", "abort", "podinfo"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        // Where the API is and which token to use, before or after the verb.
        let cli = parse(&[
            "--api-url",
            "https://localhost:8081",
            "approve",
            "podinfo",
            "--token-file",
            "/t",
        ])
        .unwrap();
        assert_eq!(cli.api.api_url.as_deref(), Some("https://localhost:8081"));
        assert_eq!(cli.api.audience, "serin");
        // The recorded name is the token's user: there is no flag to choose it.
        assert!(parse(&["approve", "podinfo", "--by", "someone-else"]).is_err());
    }

    #[test]
    fn gate_pin_needs_all_three() {
        let cli = parse(&[
            "approve",
            "podinfo",
            "--gate",
            "beforePromotion",
            "--revision",
            "abc",
            "--step",
            "3",
        ])
        .unwrap();
        let (d, _) = cli.decision().unwrap();
        assert_eq!(
            d.expect,
            Some(GateRef {
                gate: GateKind::BeforePromotion,
                revision: "abc".into(),
                step: 3
            })
        );
        assert!(parse(&["approve", "podinfo", "--gate", "beforePromotion"]).is_err());
        assert!(parse(&[
            "approve",
            "podinfo",
            "--gate",
            "later",
            "--revision",
            "a",
            "--step",
            "1"
        ])
        .is_err());
        // Gate pins are for approve and reject only.
        assert!(parse(&["abort", "podinfo", "--gate", "beforePromotion"]).is_err());
    }

    #[test]
    fn name_is_required_and_verbs_are_closed() {
        assert!(parse(&["approve"]).is_err());
        assert!(parse(&["promote", "podinfo"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn status_and_history_take_their_flags_and_record_nothing() {
        let cli = parse(&["status", "-A", "-w", "-o", "json", "--interval", "2s"]).unwrap();
        let Cmd::Status(a) = &cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(
            (a.name.as_deref(), a.all_namespaces, a.watch, a.output),
            (None, true, true, Output::Json)
        );
        assert_eq!(a.interval, std::time::Duration::from_secs(2));
        assert!(cli.decision().is_none());
        let cli = parse(&["status", "podinfo", "-n", "shop"]).unwrap();
        let Cmd::Status(a) = &cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(
            (a.name.as_deref(), a.watch, a.output),
            (Some("podinfo"), false, Output::Text)
        );
        // One Canary is in one namespace.
        assert!(parse(&["status", "podinfo", "-A"]).is_err());
        assert!(parse(&["status", "-o", "wide"]).is_err());
        assert!(parse(&["history"]).is_err());
        let cli = parse(&["history", "podinfo", "-o", "yaml"]).unwrap();
        assert!(matches!(&cli.command, Cmd::History(h) if h.output == Output::Yaml));
        assert!(cli.decision().is_none());
    }

    #[test]
    fn release_takes_images_strictly_and_records_no_decision() {
        let cli = parse(&[
            "release",
            "podinfo",
            "-n",
            "shop",
            "--image",
            "app=ghcr.io/acme/app:1.2.3",
            "--image",
            "proxy=envoyproxy/envoy:v1.31.0",
            "--reason",
            "CI run 7",
        ])
        .unwrap();
        let Cmd::Release(a) = &cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(a.name, "podinfo");
        assert_eq!(
            a.images,
            [
                ("app".to_string(), "ghcr.io/acme/app:1.2.3".to_string()),
                ("proxy".to_string(), "envoyproxy/envoy:v1.31.0".to_string())
            ]
        );
        assert_eq!(a.reason.as_deref(), Some("CI run 7"));
        assert!(cli.decision().is_none());
        let cli = parse(&["release", "podinfo", "--image", "app=a:1,proxy=p:2"]).unwrap();
        assert!(matches!(&cli.command, Cmd::Release(a) if a.images.len() == 2));
        // An image is required, and each must be CONTAINER=IMAGE with a valid reference.
        assert!(parse(&["release", "podinfo"]).is_err());
        for bad in ["app", "app=", "=a:1", "app=acme/App:1", "app=a:1 b"] {
            let e = parse(&["release", "podinfo", "--image", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
