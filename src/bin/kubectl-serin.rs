//! `kubectl serin`: approve, reject, abort, retry, pause and resume serin releases with
//! your own kubeconfig, so the cluster's RBAC decides who may; `status` and `history`
//! show them.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serin::cli::{Output, Target as View, WatchOptions};
use serin::crd::GateKind;
use serin::gates::{apply_decision, Decision, GateRef, Verb, Via};

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
    /// Name recorded as `by`; defaults to your Kubernetes username (SelfSubjectReview).
    #[arg(long, global = true, env = "SERIN_ACTOR")]
    by: Option<String>,
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
    /// Phase, step, weight and the last verdicts of a Canary; without NAME, a table of all.
    Status(StatusArgs),
    /// The last releases of a Canary, newest first.
    History(HistoryArgs),
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
    fn decision(&self) -> Option<(Decision, &str)> {
        let (verb, name, gate) = match &self.command {
            Cmd::Approve(g) => (Verb::Approve, &g.name, Some(g)),
            Cmd::Reject(g) => (Verb::Reject, &g.name, Some(g)),
            Cmd::Abort(t) => (Verb::Abort, &t.name, None),
            Cmd::Retry(t) => (Verb::Retry, &t.name, None),
            Cmd::Pause(t) => (Verb::Pause, &t.name, None),
            Cmd::Resume(t) => (Verb::Resume, &t.name, None),
            Cmd::Status(_) | Cmd::History(_) => return None,
        };
        let expect = gate.and_then(|g| {
            Some(GateRef {
                gate: g.gate?,
                revision: g.revision.clone()?,
                step: g.step?,
            })
        });
        Some((Decision { verb, expect }, name))
    }
}

async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
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
        _ => {}
    }
    let Some((decision, name)) = cli.decision() else {
        unreachable!("every other command records a decision")
    };
    let actor = match &cli.by {
        Some(by) => by.clone(),
        None => whoami(&client)
            .await
            .unwrap_or_else(|| "unknown-cli-user".into()),
    };
    let outcome = apply_decision(&client, &ns, name, &decision, &actor, Via::Cli).await?;
    Ok(if outcome.changed {
        format!("{ns}/{name}: {}", outcome.message)
    } else {
        format!("{ns}/{name}: unchanged ({})", outcome.message)
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Both ring (kube) and aws-lc-rs (reqwest) are linked in, so rustls cannot pick a
    // crypto provider by itself and every client would panic without this.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli).await {
        Ok(msg) => {
            // Rendered views end with their own newline; decisions are one line.
            if msg.ends_with('\n') {
                print!("{msg}");
            } else if !msg.is_empty() {
                println!("{msg}");
            }
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
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
