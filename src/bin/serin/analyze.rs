//! `serin analyze`: a template judged over a workload's recorded history.

use std::time::Duration;

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
