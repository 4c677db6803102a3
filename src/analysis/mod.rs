//! Analysis: templated queries, judges, and the check that runs them.
//!
//! Judges are pure functions of the data; [`run_check`] is the only part that asks
//! a metric source anything.

pub mod builtin;
mod check;
pub mod history;
pub mod judge_cli;
mod limited;
mod points;
pub mod positions;
pub mod render;
mod resolve;
pub mod secret_file;

// Judges and statistics live in the sans-IO core crate.
pub use serin_core::{judges, stats};

pub use builtin::{builtin_template, Telemetry};
pub use check::{run_check, CheckInput};
pub use judges::judge_threshold;
pub use positions::Position;
pub use render::{check_args, render_query, RenderError, RenderVars};
pub use resolve::{
    effective_limits, resolve_metrics, AnalysisConfigError, AnalysisLimits, MetricJudge,
    ResolvedMetric,
};

use crate::crd::{AnalysisSpec, BuiltinAnalysis, TemplateRef};
use crate::traffic::RouterKind;

/// Where a Canary's checks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksFrom {
    /// The AnalysisTemplates it names.
    Templates,
    /// serin's built-in comparative checks for this telemetry.
    Builtin(builtin::Telemetry),
    /// No checks (`analysis.builtin: none`, no templates).
    Nothing,
}

/// The source of a Canary's checks: its templates; without any, the built-in checks
/// for its telemetry (given, or its router's); none only when asked for explicitly.
pub fn checks_from(
    spec: &AnalysisSpec,
    router: RouterKind,
) -> Result<ChecksFrom, AnalysisConfigError> {
    if !spec.templates.is_empty() {
        return Ok(ChecksFrom::Templates);
    }
    if spec.builtin == BuiltinAnalysis::None {
        return Ok(ChecksFrom::Nothing);
    }
    match &spec.telemetry {
        None => Ok(ChecksFrom::Builtin(builtin::Telemetry::for_router(router))),
        Some(t) => builtin::Telemetry::parse(t)
            .map(ChecksFrom::Builtin)
            .ok_or_else(|| AnalysisConfigError::UnknownTelemetry {
                value: t.clone(),
                accepted: builtin::Telemetry::accepted(),
            }),
    }
}

/// The metrics of the built-in checks for `t`.
pub fn builtin_metrics(t: builtin::Telemetry) -> Result<Vec<ResolvedMetric>, AnalysisConfigError> {
    let r = TemplateRef {
        name: format!("builtin-{}", t.as_str()),
        ..Default::default()
    };
    resolve_metrics(&[(r, builtin::builtin_template(t))])
}
