//! `kubectl serin dashboard`.

use anyhow::Context as _;
use kube::Client;
use serin::cli::decide::api_client;

use super::{api_token, Cli, DashboardArgs};

/// `kubectl serin dashboard`: serve until Ctrl-C. Without --api-url the pages are
/// read-only and say so on each action.
pub(crate) async fn run(
    cli: &Cli,
    args: &DashboardArgs,
    client: Client,
    context: String,
    default_ns: String,
) -> anyhow::Result<String> {
    use serin::dashboard::{ApiToken, ApprovalApi, ClusterSource, ClusterSourceOptions};
    let api = match cli.api.api_url.as_deref() {
        None => None,
        Some(base) => {
            let ca = match &cli.api.api_ca_file {
                Some(p) => Some(
                    std::fs::read(p).with_context(|| format!("--api-ca-file {}", p.display()))?,
                ),
                None => None,
            };
            let http = api_client(ca.as_deref(), std::time::Duration::from_secs(30))?;
            let token = match &cli.api.service_account {
                Some(sa) if cli.api.token.is_none() && cli.api.token_file.is_none() => {
                    ApiToken::ServiceAccount {
                        account: sa.clone(),
                        audience: cli.api.audience.clone(),
                    }
                }
                _ => ApiToken::Static(api_token(&cli.api, &client, &default_ns).await?),
            };
            Some(ApprovalApi {
                base: base.to_string(),
                http,
                token,
            })
        }
    };
    let read_only = api.is_none();
    let source = ClusterSource::new(
        client,
        ClusterSourceOptions {
            context,
            namespaces: cli.namespace.clone().into_iter().collect(),
            default_namespace: default_ns,
            api,
        },
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let (url, serve) = serin::dashboard::bind(addr, std::sync::Arc::new(source)).await?;
    println!("serin dashboard: {url}  (Ctrl-C to stop)");
    if read_only {
        println!("actions are off: pass --api-url and a token as for `kubectl serin approve`");
    }
    tokio::select! {
        r = serve => r.context("dashboard server")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(String::new())
}
