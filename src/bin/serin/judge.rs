//! `serin judge`: canary against baseline samples or counts, from files.

use anyhow::Context as _;

use crate::Output;

#[derive(clap::Args, Debug)]
pub(crate) struct JudgeArgs {
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

pub(crate) fn run(args: JudgeArgs) -> anyhow::Result<()> {
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
    let out =
        serin::analysis::judge_cli::run_judge(&read(&args.input)?, &read(&args.config)?, format)?;
    super::emit(&out)
}
