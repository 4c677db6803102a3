//! `serin analyze`: a template judged over a workload's recorded history.

use std::time::Duration;

use anyhow::Context as _;

use serin::providers::ProviderSources;

use crate::Output;

#[derive(clap::Args, Debug)]
pub(crate) struct AnalyzeArgs {
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
    /// Prometheus for metrics whose template names no provider.
    #[arg(long, env = "SERIN_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// A Secret a provider's `secretRef` names, as `kubectl get secret NAME -o yaml`
    /// prints it; repeatable. Secrets not given are read from the cluster (current
    /// kubeconfig, --namespace) when labelled serin.dev/credentials: "true".
    #[arg(
        long = "secret-file",
        env = "SERIN_ANALYZE_SECRET_FILES",
        value_delimiter = ','
    )]
    secret_files: Vec<std::path::PathBuf>,
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

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

pub(crate) async fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
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
        secrets: Default::default(),
    };
    let mut req = req;
    for path in &args.secret_files {
        let (name, data) = serin::analysis::secret_file::load_secret(path)?;
        req.secrets.insert(name, data);
    }
    let missing: Vec<String> = serin::analysis::history::secrets_named(&req)?
        .into_iter()
        .filter(|n| !req.secrets.contains_key(n))
        .collect();
    if !missing.is_empty() {
        read_from_cluster(&args.namespace, &missing, &mut req.secrets).await?;
    }
    // A one-off history over many windows: a larger answer than a check's is expected.
    let sources =
        ProviderSources::new(args.prometheus_url, args.query_timeout).with_max_body(16 << 20);
    let report = analyze(&req, &sources).await?;
    match args.output {
        Output::Table => super::emit(&format_table(&report)),
        Output::Json => super::emit(&format_json(&report)?),
    }
}

/// The Secrets not given as files, read as the controller would: only those that
/// opted in with the credentials label.
async fn read_from_cluster(
    namespace: &str,
    names: &[String],
    into: &mut std::collections::BTreeMap<String, serin::analysis::history::SecretData>,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    use serin::providers::{credentials::not_opted_in, opted_in};
    let client = kube::Client::try_default().await.with_context(|| {
        format!(
            "the template's providers need the Secrets {names:?}: give them with --secret-file, or a kubeconfig that can read them"
        )
    })?;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    for name in names {
        let secret = tokio::time::timeout(Duration::from_secs(10), secrets.get_opt(name))
            .await
            .with_context(|| format!("reading Secret {namespace}/{name}: no answer in 10s"))?
            .with_context(|| format!("reading Secret {namespace}/{name}"))?
            .with_context(|| format!("Secret {namespace}/{name} does not exist"))?;
        anyhow::ensure!(
            opted_in(secret.metadata.labels.as_ref()),
            "{}",
            not_opted_in(namespace, name, "the template's provider (secretRef)")
        );
        into.insert(name.clone(), secret.data.unwrap_or_default());
    }
    Ok(())
}
