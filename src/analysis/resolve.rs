//! Resolving a Canary's template references into metrics ready to query.
//!
//! Everything that can be wrong with a template and its arguments is found here, when
//! the Canary is created, so a release never discovers a bad template at query time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::render::{check_args, substitute, RenderError, RenderVars};
use crate::crd::{
    AnalysisSpec, AnalysisTemplateSpec, CompareSpec, ProviderSpec, SequentialSpec, TemplateRef,
    ThresholdSpec, ThresholdTemplate, ThresholdValue,
};
use crate::providers::{CredentialKeys, ProviderCredentials};
use crate::rollout::EventReason;

/// A metric ready to query: its template's args resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedMetric {
    pub template: String,
    pub name: String,
    pub query: String,
    pub args: BTreeMap<String, String>,
    /// Per-metric interval; `None` means the Canary's interval.
    pub interval: Option<Duration>,
    /// How the metric is judged: exactly one judge.
    pub judge: MetricJudge,
    pub dry_run: bool,
    pub critical: bool,
    pub provider: Option<ProviderSpec>,
    /// The provider's Secret, read by the controller (see [`ResolvedMetric::secret_name`]).
    pub credentials: Option<Arc<ProviderCredentials>>,
    /// The template's `failureLimit`; see [`effective_limits`].
    pub failure_limit: Option<i32>,
    /// The template's `inconclusiveLimit`; see [`effective_limits`].
    pub inconclusive_limit: Option<i32>,
    /// The template's `consecutiveErrorLimit`, applied by `run_check` per metric.
    pub consecutive_error_limit: Option<i32>,
}

/// The one judge of a metric.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricJudge {
    /// The canary's value against fixed bounds.
    Threshold(ThresholdSpec),
    /// Canary against the primary (baseline): samples or counts.
    Compare(CompareSpec),
    /// Error counts of both versions with the anytime-valid sequential test, at every
    /// look.
    Sequential(SequentialSpec),
}

impl MetricJudge {
    /// The judge a template's metric names. A template that sets several keeps the
    /// precedence serin has always applied: sequential, then compare, then threshold.
    fn chosen(
        threshold: ThresholdSpec,
        compare: Option<CompareSpec>,
        sequential: Option<SequentialSpec>,
    ) -> Self {
        match (sequential, compare) {
            (Some(s), _) => MetricJudge::Sequential(s),
            (None, Some(c)) => MetricJudge::Compare(c),
            (None, None) => MetricJudge::Threshold(threshold),
        }
    }
}

impl ResolvedMetric {
    /// The sequential test's settings, when that is the judge.
    pub fn sequential(&self) -> Option<&SequentialSpec> {
        match &self.judge {
            MetricJudge::Sequential(s) => Some(s),
            _ => None,
        }
    }

    /// The comparison's settings, when that is the judge.
    pub fn compare(&self) -> Option<&CompareSpec> {
        match &self.judge {
            MetricJudge::Compare(c) => Some(c),
            _ => None,
        }
    }

    /// The bounds, when a threshold is the judge.
    pub fn threshold(&self) -> Option<&ThresholdSpec> {
        match &self.judge {
            MetricJudge::Threshold(t) => Some(t),
            _ => None,
        }
    }

    /// The Secret keys the controller must read into `credentials` (with
    /// [`crate::providers::CredentialKeys::read`]): those its provider declares.
    pub fn credential_keys(&self) -> Option<CredentialKeys> {
        crate::providers::registry::credential_keys(self.provider.as_ref())
    }

    /// The name of the Secret behind [`ResolvedMetric::credential_keys`].
    pub fn secret_name(&self) -> Option<&str> {
        self.provider.as_ref().and_then(ProviderSpec::secret_name)
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum AnalysisConfigError {
    #[error("analysis.telemetry {value:?} is not known; accepted: {accepted}")]
    UnknownTelemetry {
        value: String,
        accepted: &'static str,
    },
    #[error("{kind} {name:?} not found{}", if *.cluster { String::new() } else { format!(" in namespace {:?}", .namespace) })]
    TemplateNotFound {
        kind: &'static str,
        namespace: String,
        name: String,
        cluster: bool,
    },
    #[error("template {template:?} requires argument {arg:?}; set it in the Canary's analysis.templates[].args.{arg} (annotation: {template}({arg}=VALUE)), or give it a default in the template (declared: {declared})")]
    MissingArg {
        template: String,
        arg: String,
        declared: String,
    },
    #[error("template {template:?} has no argument {arg:?} and no query uses it; declared arguments: {declared}")]
    UnknownArg {
        template: String,
        arg: String,
        declared: String,
    },
    #[error("template {template:?} metric {metric:?}: {source}")]
    Query {
        template: String,
        metric: String,
        source: RenderError,
    },
    #[error("template {template:?} metric {metric:?}: interval {value:?} is not a positive duration; accepted: a duration such as \"30s\", \"1m\" or \"5m\"")]
    Interval {
        template: String,
        metric: String,
        value: String,
    },
    #[error("template {template:?} metric {metric:?}: threshold min {min} is greater than max {max}; no value could pass")]
    Threshold {
        template: String,
        metric: String,
        min: f64,
        max: f64,
    },
    #[error("template {template:?} metric {metric:?}: threshold.{bound} {written:?} reads {rendered:?}, not a number; accepted: a number, or \"{{{{args.NAME}}}}\" naming an argument whose value is a number")]
    ThresholdValue {
        template: String,
        metric: String,
        bound: &'static str,
        written: String,
        rendered: String,
    },
    #[error("template {template:?}: {field} is {value}; accepted: an integer >= {least}")]
    Limit {
        template: String,
        field: &'static str,
        value: i32,
        least: i32,
    },
    #[error(
        "template {template:?} defines no metrics; accepted: at least one entry in spec.metrics"
    )]
    NoMetrics { template: String },
    #[error("metric {metric:?} is defined by templates {first:?} and {second:?}; metric names must be unique per Canary")]
    DuplicateMetric {
        metric: String,
        first: String,
        second: String,
    },
    #[error("template {template:?}: provider credentials: {message}")]
    Credentials { template: String, message: String },
    /// A provider the controller does not let templates use (its address).
    #[error("template {template:?}: {message}")]
    Provider { template: String, message: String },
    #[error("template {template:?} metric {metric:?}: {field} {written:?} reads {rendered:?}, not a number; accepted: a number, or \"{{{{args.NAME}}}}\" naming an argument whose value is a number")]
    JudgeValue {
        template: String,
        metric: String,
        field: &'static str,
        written: String,
        rendered: String,
    },
    #[error("template {template:?} metric {metric:?}: {message}")]
    Judge {
        template: String,
        metric: String,
        message: String,
    },
}

impl AnalysisConfigError {
    pub fn category(&self) -> &'static str {
        match self {
            AnalysisConfigError::TemplateNotFound { .. } => "template_not_found",
            _ => "template_invalid",
        }
    }

    /// The condition and Event reason.
    pub fn reason(&self) -> EventReason {
        match self {
            AnalysisConfigError::TemplateNotFound { .. } => EventReason::TemplateNotFound,
            AnalysisConfigError::UnknownTelemetry { .. } => EventReason::InvalidSpec,
            _ => EventReason::InvalidTemplate,
        }
    }
}

/// Merge template args with the Canary's values and check every query renders.
pub fn resolve_metrics(
    templates: &[(TemplateRef, AnalysisTemplateSpec)],
) -> Result<Vec<ResolvedMetric>, AnalysisConfigError> {
    let mut out: Vec<ResolvedMetric> = Vec::new();
    for (r, spec) in templates {
        let template = r.name.clone();
        check_limits(&template, spec)?;
        if spec.metrics.is_empty() {
            return Err(AnalysisConfigError::NoMetrics { template });
        }
        let declared = declared_list(spec);
        let mut args = BTreeMap::new();
        for a in &spec.args {
            match r.args.get(&a.name).or(a.default.as_ref()) {
                Some(v) => {
                    args.insert(a.name.clone(), v.clone());
                }
                None => {
                    return Err(AnalysisConfigError::MissingArg {
                        template,
                        arg: a.name.clone(),
                        declared,
                    })
                }
            }
        }
        // Undeclared values are usable when a query names them; otherwise they are
        // most likely a misspelt argument whose default would silently apply.
        for (k, v) in &r.args {
            if spec.args.iter().any(|a| &a.name == k) {
                continue;
            }
            let needle = format!("args.{k}");
            let used = spec.metrics.iter().any(|m| {
                let bounds = m.threshold.iter().flat_map(|t| [&t.min, &t.max]);
                let ratios = m
                    .sequential
                    .iter()
                    .map(|q| &q.allowed_increase)
                    .chain(m.compare.iter().flat_map(|c| &c.allowed_increase));
                uses_variable(&m.query, &needle)
                    || judge_queries(m).any(|q| uses_variable(q, &needle))
                    || bounds.flatten().chain(ratios).any(
                        |b| matches!(b, ThresholdValue::Template(s) if uses_variable(s, &needle)),
                    )
            });
            if !used {
                return Err(AnalysisConfigError::UnknownArg {
                    template,
                    arg: k.clone(),
                    declared,
                });
            }
            args.insert(k.clone(), v.clone());
        }
        let probe = RenderVars {
            args: args.clone(),
            ..RenderVars::default()
        };
        for m in &spec.metrics {
            // Every query (the metric's and its judge's) parses, and each argument's
            // value fits the place it stands in, before a release ever runs it.
            let query_error = |source| match source {
                RenderError::MissingArg(arg) => AnalysisConfigError::MissingArg {
                    template: template.clone(),
                    arg,
                    declared: declared.clone(),
                },
                source => AnalysisConfigError::Query {
                    template: template.clone(),
                    metric: m.name.clone(),
                    source,
                },
            };
            for q in std::iter::once(&m.query).chain(judge_queries(m)) {
                check_args(q, &args).map_err(query_error)?;
            }
            if m.query.trim().is_empty() {
                return Err(AnalysisConfigError::Query {
                    template,
                    metric: m.name.clone(),
                    source: RenderError::Empty,
                });
            }
            let interval = m
                .interval
                .as_deref()
                .map(|i| match humantime::parse_duration(i) {
                    Ok(d) if d >= Duration::from_secs(1) => Ok(d),
                    _ => Err(AnalysisConfigError::Interval {
                        template: template.clone(),
                        metric: m.name.clone(),
                        value: i.to_string(),
                    }),
                })
                .transpose()?;
            let threshold = resolve_threshold(&template, &m.name, m.threshold.as_ref(), &probe)
                .map_err(|e| match e {
                    AnalysisConfigError::MissingArg { template, arg, .. } => {
                        AnalysisConfigError::MissingArg {
                            template,
                            arg,
                            declared: declared.clone(),
                        }
                    }
                    e => e,
                })?;
            if let (Some(min), Some(max)) = (threshold.min, threshold.max) {
                if min > max {
                    return Err(AnalysisConfigError::Threshold {
                        template,
                        metric: m.name.clone(),
                        min,
                        max,
                    });
                }
            }
            if let Some(first) = out.iter().find(|x| x.name == m.name) {
                return Err(AnalysisConfigError::DuplicateMetric {
                    metric: m.name.clone(),
                    first: first.template.clone(),
                    second: template,
                });
            }
            // A judge's ratios read as numbers.
            let mut sequential = m.sequential.clone();
            if let Some(q) = &mut sequential {
                q.allowed_increase = resolve_ratio(
                    &template,
                    &m.name,
                    "sequential.allowedIncrease",
                    &q.allowed_increase,
                    &probe,
                )?;
                if q.requests_query.is_none() {
                    return Err(AnalysisConfigError::Judge {
                        template: template.clone(),
                        metric: m.name.clone(),
                        message: "sequential needs sequential.requestsQuery (the measured workload's request total); every look judges measured requests of both versions".into(),
                    });
                }
            }
            let mut compare = m.compare.clone();
            if let Some(c) = &mut compare {
                if let Some(r) = &c.allowed_increase {
                    c.allowed_increase = Some(resolve_ratio(
                        &template,
                        &m.name,
                        "compare.allowedIncrease",
                        r,
                        &probe,
                    )?);
                }
            }
            if let Some(q) = &sequential {
                crate::analysis::judges::validate_sequential(q).map_err(|e| {
                    AnalysisConfigError::Judge {
                        template: template.clone(),
                        metric: m.name.clone(),
                        message: e.to_string(),
                    }
                })?;
            }
            if let Some(c) = &compare {
                crate::analysis::judges::validate_compare(c).map_err(|e| {
                    AnalysisConfigError::Judge {
                        template: template.clone(),
                        metric: m.name.clone(),
                        message: e.to_string(),
                    }
                })?;
                if c.kind == crate::crd::CompareKind::Counts && c.requests_query.is_none() {
                    return Err(AnalysisConfigError::Judge {
                        template: template.clone(),
                        metric: m.name.clone(),
                        message: "compare.kind counts needs compare.requestsQuery (the metric's query gives the errors)".into(),
                    });
                }
            }
            out.push(ResolvedMetric {
                template: template.clone(),
                name: m.name.clone(),
                query: m.query.clone(),
                args: args.clone(),
                interval,
                judge: MetricJudge::chosen(threshold, compare, sequential),
                dry_run: m.dry_run,
                critical: m.critical,
                provider: spec.provider.clone(),
                credentials: None,
                failure_limit: spec.failure_limit,
                inconclusive_limit: spec.inconclusive_limit,
                consecutive_error_limit: spec.consecutive_error_limit,
            });
        }
    }
    Ok(out)
}

/// The queries of a metric's judge besides its own `query`.
fn judge_queries(m: &crate::crd::MetricTemplate) -> impl Iterator<Item = &String> {
    let s = m.sequential.iter().flat_map(|q| {
        [
            &q.errors_query,
            &q.requests_query,
            &q.baseline_errors_query,
            &q.baseline_requests_query,
        ]
    });
    let c = m
        .compare
        .iter()
        .flat_map(|c| [&c.baseline_query, &c.requests_query]);
    s.chain(c).flatten()
}

/// A judge's ratio: a number, or a string rendered with the args that must read as one.
fn resolve_ratio(
    template: &str,
    metric: &str,
    field: &'static str,
    v: &ThresholdValue,
    vars: &RenderVars,
) -> Result<ThresholdValue, AnalysisConfigError> {
    let ThresholdValue::Template(written) = v else {
        return Ok(v.clone());
    };
    match render_number(template, metric, written, vars)? {
        Ok(n) => Ok(ThresholdValue::Number(n)),
        Err(rendered) => Err(AnalysisConfigError::JudgeValue {
            template: template.to_string(),
            metric: metric.to_string(),
            field,
            written: written.clone(),
            rendered,
        }),
    }
}

/// A number written as text with `{{args.X}}`: rendered with the args; `Ok(Err(text))`
/// when the rendered text does not read as a finite number.
fn render_number(
    template: &str,
    metric: &str,
    written: &str,
    vars: &RenderVars,
) -> Result<Result<f64, String>, AnalysisConfigError> {
    let rendered = substitute(written, vars).map_err(|source| match source {
        RenderError::MissingArg(arg) => AnalysisConfigError::MissingArg {
            template: template.to_string(),
            arg,
            declared: String::new(),
        },
        source => AnalysisConfigError::Query {
            template: template.to_string(),
            metric: metric.to_string(),
            source,
        },
    })?;
    Ok(match rendered.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(rendered),
    })
}

/// Numbers stay; strings are rendered (args only) and must read as finite numbers.
fn resolve_threshold(
    template: &str,
    metric: &str,
    t: Option<&ThresholdTemplate>,
    vars: &RenderVars,
) -> Result<ThresholdSpec, AnalysisConfigError> {
    let Some(t) = t else {
        return Ok(ThresholdSpec::default());
    };
    let bound = |name: &'static str,
                 v: Option<&ThresholdValue>|
     -> Result<Option<f64>, AnalysisConfigError> {
        match v {
            None => Ok(None),
            Some(ThresholdValue::Number(n)) if n.is_finite() => Ok(Some(*n)),
            Some(ThresholdValue::Number(n)) => Err(AnalysisConfigError::ThresholdValue {
                template: template.to_string(),
                metric: metric.to_string(),
                bound: name,
                written: n.to_string(),
                rendered: n.to_string(),
            }),
            Some(ThresholdValue::Template(s)) => match render_number(template, metric, s, vars)? {
                Ok(n) => Ok(Some(n)),
                Err(rendered) => Err(AnalysisConfigError::ThresholdValue {
                    template: template.to_string(),
                    metric: metric.to_string(),
                    bound: name,
                    written: s.clone(),
                    rendered,
                }),
            },
        }
    };
    Ok(ThresholdSpec {
        min: bound("min", t.min.as_ref())?,
        max: bound("max", t.max.as_ref())?,
    })
}

fn check_limits(template: &str, spec: &AnalysisTemplateSpec) -> Result<(), AnalysisConfigError> {
    let limits = [
        ("failureLimit", spec.failure_limit, 1),
        ("inconclusiveLimit", spec.inconclusive_limit, 1),
        ("consecutiveErrorLimit", spec.consecutive_error_limit, 0),
    ];
    for (field, value, least) in limits {
        if let Some(value) = value.filter(|v| *v < least) {
            return Err(AnalysisConfigError::Limit {
                template: template.to_string(),
                field,
                value,
                least,
            });
        }
    }
    Ok(())
}

fn declared_list(spec: &AnalysisTemplateSpec) -> String {
    if spec.args.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = spec.args.iter().map(|a| a.name.as_str()).collect();
    names.join(", ")
}

/// Whether `query` contains `{{ name }}` (spaces inside the braces allowed).
fn uses_variable(query: &str, name: &str) -> bool {
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return false;
        };
        if after[..end].trim() == name {
            return true;
        }
        rest = &after[end + 2..];
    }
    false
}

/// The limits a release runs under: the Canary's, tightened by any template's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalysisLimits {
    pub failure_limit: i32,
    pub inconclusive_limit: Option<i32>,
}

/// The smallest of the Canary's and the templates' limits: a template author who
/// asks for stricter limits gets them; a Canary cannot be loosened by a template.
pub fn effective_limits(canary: &AnalysisSpec, metrics: &[ResolvedMetric]) -> AnalysisLimits {
    let failure_limit = metrics
        .iter()
        .filter_map(|m| m.failure_limit)
        .fold(canary.failure_limit, i32::min);
    let inconclusive_limit = metrics
        .iter()
        .filter_map(|m| m.inconclusive_limit)
        .chain(canary.inconclusive_limit)
        .min();
    AnalysisLimits {
        failure_limit,
        inconclusive_limit,
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
