//! Resolving a Canary's templates into metrics, and running one check.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::render::{prometheus_duration, render_query, RenderError, RenderVars};
use super::threshold::judge_threshold;
use crate::crd::{AnalysisTemplateSpec, MetricStatus, ProviderSpec, TemplateRef, ThresholdSpec};
use crate::providers::MetricSources;
use crate::rollout::AnalysisReport;

/// A metric ready to query: its template's args resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedMetric {
    pub template: String,
    pub name: String,
    pub query: String,
    pub args: BTreeMap<String, String>,
    pub interval: Option<Duration>,
    pub threshold: ThresholdSpec,
    pub dry_run: bool,
    pub critical: bool,
    pub provider: Option<ProviderSpec>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum AnalysisConfigError {
    #[error("{kind} {name:?} not found{}", if *.cluster { String::new() } else { format!(" in namespace {:?}", .namespace) })]
    TemplateNotFound {
        kind: &'static str,
        namespace: String,
        name: String,
        cluster: bool,
    },
    #[error("template {template:?} requires argument {arg:?}; pass it as {template}(\"{arg}=VALUE\") or give it a default")]
    MissingArg { template: String, arg: String },
    #[error("template {template:?} metric {metric:?}: {source}")]
    Query {
        template: String,
        metric: String,
        source: RenderError,
    },
    #[error("template {template:?} metric {metric:?}: interval {value:?} is not a duration such as \"1m\"")]
    Interval {
        template: String,
        metric: String,
        value: String,
    },
    #[error(
        "metric {0:?} is defined by more than one template; metric names must be unique per Canary"
    )]
    DuplicateMetric(String),
}

impl AnalysisConfigError {
    pub fn category(&self) -> &'static str {
        match self {
            AnalysisConfigError::TemplateNotFound { .. } => "template_not_found",
            _ => "template_invalid",
        }
    }
}

/// Merge template args with the Canary's values and check every query renders.
pub fn resolve_metrics(
    templates: &[(TemplateRef, AnalysisTemplateSpec)],
) -> Result<Vec<ResolvedMetric>, AnalysisConfigError> {
    let mut out: Vec<ResolvedMetric> = Vec::new();
    for (r, spec) in templates {
        let mut args = BTreeMap::new();
        for a in &spec.args {
            match r.args.get(&a.name).or(a.default.as_ref()) {
                Some(v) => {
                    args.insert(a.name.clone(), v.clone());
                }
                None => {
                    return Err(AnalysisConfigError::MissingArg {
                        template: r.name.clone(),
                        arg: a.name.clone(),
                    })
                }
            }
        }
        // Values for args the template does not declare are still usable in queries.
        for (k, v) in &r.args {
            args.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let probe = RenderVars {
            args: args.clone(),
            ..RenderVars::default()
        };
        for m in &spec.metrics {
            render_query(&m.query, &probe).map_err(|source| match source {
                RenderError::MissingArg(arg) => AnalysisConfigError::MissingArg {
                    template: r.name.clone(),
                    arg,
                },
                source => AnalysisConfigError::Query {
                    template: r.name.clone(),
                    metric: m.name.clone(),
                    source,
                },
            })?;
            let interval = m
                .interval
                .as_deref()
                .map(|i| {
                    humantime::parse_duration(i).map_err(|_| AnalysisConfigError::Interval {
                        template: r.name.clone(),
                        metric: m.name.clone(),
                        value: i.to_string(),
                    })
                })
                .transpose()?;
            if out.iter().any(|x| x.name == m.name) {
                return Err(AnalysisConfigError::DuplicateMetric(m.name.clone()));
            }
            out.push(ResolvedMetric {
                template: r.name.clone(),
                name: m.name.clone(),
                query: m.query.clone(),
                args: args.clone(),
                interval,
                threshold: m.threshold.clone().unwrap_or_default(),
                dry_run: m.dry_run,
                critical: m.critical,
                provider: spec.provider.clone(),
            });
        }
    }
    Ok(out)
}

/// Query and judge every metric for the canary. Never fails: a metric that cannot be
/// measured gets an `Inconclusive` or `Error` verdict saying why.
pub async fn run_check(
    metrics: &[ResolvedMetric],
    base: &RenderVars,
    canary_interval: Duration,
    sources: &dyn MetricSources,
    now: DateTime<Utc>,
) -> AnalysisReport {
    let checks = metrics.iter().map(|m| async move {
        let vars = RenderVars {
            workload: base.canary.clone(),
            interval: prometheus_duration(m.interval.unwrap_or(canary_interval)),
            args: m.args.clone(),
            ..base.clone()
        };
        let value = match render_query(&m.query, &vars) {
            Err(e) => Err(crate::providers::MetricError::BadQuery(e.to_string())),
            Ok(q) => match sources.source(m.provider.as_ref()) {
                Err(e) => Err(e),
                Ok(src) => src.query_scalar(&q, now).await,
            },
        };
        let (verdict, reason) = judge_threshold(&value, &m.threshold);
        tracing::debug!(metric = %m.name, ?value, ?verdict, "metric judged");
        MetricStatus {
            name: m.name.clone(),
            value: value.as_ref().ok().copied().filter(|v| v.is_finite()),
            baseline: None,
            effect: None,
            p_value: None,
            interval_low: None,
            interval_high: None,
            verdict,
            reason,
            dry_run: m.dry_run,
            checked_at: now,
        }
    });
    let statuses = join_all(checks).await;
    AnalysisReport {
        critical: metrics
            .iter()
            .filter(|m| m.critical)
            .map(|m| m.name.clone())
            .collect(),
        metrics: statuses,
    }
}
