//! Analysis: templated queries, judges, and the check that runs them.
//!
//! Judges are pure functions of the data; [`run_check`] is the only part that asks
//! a metric source anything.

mod check;
pub mod judge_cli;
pub mod judges;
pub mod render;
pub mod stats;
pub mod threshold;

pub use check::{resolve_metrics, run_check, AnalysisConfigError, ResolvedMetric};
pub use render::{render_query, RenderError, RenderVars};
pub use threshold::judge_threshold;
