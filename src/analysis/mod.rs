//! Analysis: templated queries, judges, and the check that runs them.
//!
//! Judges are pure functions of the data; [`run_check`] is the only part that asks
//! a metric source anything.

pub mod builtin;
mod check;
pub mod history;
pub mod judge_cli;
pub mod judges;
pub mod render;
mod resolve;
pub mod stats;
pub mod threshold;

pub use builtin::{builtin_template, Telemetry};
pub use check::{run_check, CheckInput};
pub use render::{render_query, RenderError, RenderVars};
pub use resolve::{
    effective_limits, resolve_metrics, AnalysisConfigError, AnalysisLimits, ResolvedMetric,
};
pub use threshold::judge_threshold;
