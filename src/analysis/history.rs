//! `serin analyze`: judge a template against a workload's recorded history.
//!
//! Each window ends at `end - k * interval` (k = 0..windows) and is judged exactly
//! as a check would judge it, so running the primary's last week through a template
//! shows how often its thresholds would have failed a healthy release. Many windows
//! are fetched with one range query per metric (evaluated at exactly the window
//! ends), so a week of 1m windows costs a handful of requests, not ten thousand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::check::measured;
use super::judges::{fmt, judge_threshold};
use super::render::{prometheus_duration, render_query, RenderVars};
use super::resolve::{resolve_metrics, AnalysisConfigError, ResolvedMetric};
use crate::crd::{AnalysisTemplateSpec, MetricVerdict, TemplateRef};
use crate::providers::{MetricError, MetricSources};

/// Most windows one run may ask for: each is one query per metric.
pub const MAX_WINDOWS: u32 = 20_000;
/// Queries in flight at once, to spare the Prometheus being asked.
const CONCURRENCY: usize = 4;
/// Windows per range query, under Prometheus's 11,000 points per series.
const RANGE_POINTS: usize = 10_000;

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct AnalyzeRequest {
    /// Name shown in the report (the template's metadata.name).
    pub template_name: String,
    pub template: AnalysisTemplateSpec,
    /// Values for the template's args, as a Canary would give them.
    pub args: BTreeMap<String, String>,
    /// `workload` is the Deployment measured (e.g. `<name>-primary` for history);
    /// `interval` is ignored (set from `interval` below).
    pub vars: RenderVars,
    /// Window length (whole seconds); `{{interval}}` unless a metric sets its own.
    pub interval: Duration,
    /// End of the most recent window.
    pub end: DateTime<Utc>,
    /// Number of consecutive windows, most recent ending at `end`; 1 for one window.
    pub windows: u32,
    /// The data of the Secrets the template's providers name (see [`secrets_named`]),
    /// by Secret name.
    pub secrets: BTreeMap<String, SecretData>,
}

/// A Secret's `data`, as the API server returns it.
pub type SecretData = BTreeMap<String, k8s_openapi::ByteString>;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an AnalysisTemplate: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Config(#[from] AnalysisConfigError),
    #[error("{0}")]
    Request(String),
}

impl AnalyzeError {
    pub fn category(&self) -> &'static str {
        match self {
            AnalyzeError::Read { .. } => "read",
            AnalyzeError::Parse { .. } => "parse",
            AnalyzeError::Config(e) => e.category(),
            AnalyzeError::Request(_) => "request",
        }
    }
}

/// One metric in one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowMetric {
    pub name: String,
    pub value: Option<f64>,
    pub verdict: MetricVerdict,
    pub reason: String,
    pub dry_run: bool,
}

/// Every metric of one window, and the check outcome they give.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowResult {
    pub end: DateTime<Utc>,
    pub metrics: Vec<WindowMetric>,
    /// Pass, Fail, Inconclusive or Error, from the deciding (non dry-run) metrics.
    pub outcome: MetricVerdict,
}

/// One metric over all windows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    pub name: String,
    pub query: String,
    pub failed: u32,
    pub inconclusive: u32,
    pub errors: u32,
    /// Longest run of consecutive failing windows: compare with the failure limit.
    pub longest_failing_run: u32,
    pub failed_fraction: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzeReport {
    pub template: String,
    pub namespace: String,
    pub workload: String,
    pub interval: String,
    /// Oldest first.
    pub windows: Vec<WindowResult>,
    pub metrics: Vec<MetricSummary>,
    /// Compare and sequential metrics of the template, not evaluated: they need a
    /// canary beside the primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparative: Vec<String>,
    /// Windows whose outcome is Fail, over all windows.
    pub failed_fraction: f64,
    pub inconclusive_fraction: f64,
}

/// Read an AnalysisTemplate or ClusterAnalysisTemplate from a YAML file; returns its
/// name and spec.
pub fn load_template(path: &Path) -> Result<(String, AnalysisTemplateSpec), AnalyzeError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AnalyzeError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_template(&text, &shown)
}

/// Parse an AnalysisTemplate or ClusterAnalysisTemplate from YAML text.
pub fn parse_template(
    text: &str,
    shown: &str,
) -> Result<(String, AnalysisTemplateSpec), AnalyzeError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        api_version: String,
        kind: String,
        #[serde(default)]
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        spec: AnalysisTemplateSpec,
    }
    let parse_err = |message: String| AnalyzeError::Parse {
        path: shown.to_string(),
        message,
    };
    let doc: Doc = serde_yaml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    if doc.api_version != "serin.dev/v1alpha1" {
        return Err(parse_err(format!(
            "apiVersion is {:?}; accepted: serin.dev/v1alpha1",
            doc.api_version
        )));
    }
    if doc.kind != "AnalysisTemplate" && doc.kind != "ClusterAnalysisTemplate" {
        return Err(parse_err(format!(
            "kind is {:?}; accepted: AnalysisTemplate, ClusterAnalysisTemplate",
            doc.kind
        )));
    }
    let name = doc.metadata.name.unwrap_or_else(|| "template".into());
    Ok((name, doc.spec))
}

/// Evaluate every metric of the template in every window. Windows are judged
/// independently (no failure counting across windows).
pub async fn analyze(
    req: &AnalyzeRequest,
    sources: &dyn MetricSources,
) -> Result<AnalyzeReport, AnalyzeError> {
    if req.windows == 0 || req.windows > MAX_WINDOWS {
        return Err(AnalyzeError::Request(format!(
            "windows is {}; accepted: 1 to {MAX_WINDOWS}",
            req.windows
        )));
    }
    if req.interval < Duration::from_secs(1) {
        return Err(AnalyzeError::Request("interval must be at least 1s".into()));
    }
    let mut metrics = resolved(req)?;
    // A compare or sequential metric judges the canary against the primary as they
    // run side by side; one workload's history has no such pair, so only thresholds
    // (e.g. the built-in guards) are evaluated. The report names what it left out.
    let comparative: Vec<String> = metrics
        .iter()
        .filter(|m| m.threshold().is_none())
        .map(|m| m.name.clone())
        .collect();
    metrics.retain(|m| m.threshold().is_some());
    if metrics.is_empty() {
        return Err(AnalyzeError::Request(format!(
            "template {:?} has no threshold metrics to evaluate over history; its compare/sequential metrics ({}) judge a canary against the primary during a release",
            req.template_name,
            comparative.join(", ")
        )));
    }
    for m in &mut metrics {
        let Some(keys) = m.credential_keys() else {
            continue;
        };
        let data = req.secrets.get(keys.name()).ok_or_else(|| {
            AnalyzeError::Request(format!(
                "metric {:?} needs the Secret {:?} that its provider names (secretRef); give it with --secret-file (kubectl get secret {} -o yaml), or let serin read it from the cluster",
                m.name,
                keys.name(),
                keys.name()
            ))
        })?;
        let creds = keys.read(data).map_err(|e| {
            AnalyzeError::Request(format!("metric {:?}: {}", m.name, config_text(e)))
        })?;
        m.credentials = Some(std::sync::Arc::new(creds));
    }
    // Whole seconds, so window ends are exactly the range query's evaluation times.
    let interval = Duration::from_secs(req.interval.as_secs());
    let step = chrono::Duration::from_std(interval)
        .map_err(|_| AnalyzeError::Request("interval is too long".into()))?;
    let end = DateTime::<Utc>::from_timestamp(req.end.timestamp(), 0).unwrap_or(req.end);
    // Oldest first.
    let ends: Vec<DateTime<Utc>> = (0..req.windows)
        .rev()
        .map(|k| end - step * k as i32)
        .collect();
    // One range query per metric and chunk of windows (Prometheus caps a range
    // query at 11,000 points per series); a single window is an instant query.
    let chunks: Vec<std::ops::Range<usize>> = (0..ends.len())
        .step_by(RANGE_POINTS)
        .map(|start| start..(start + RANGE_POINTS).min(ends.len()))
        .collect();
    let jobs: Vec<(usize, std::ops::Range<usize>)> = (0..metrics.len())
        .flat_map(|m| chunks.iter().map(move |c| (m, c.clone())))
        .collect();
    let results: Vec<Vec<(usize, WindowMetric)>> = stream::iter(jobs)
        .map(|(m, chunk)| {
            let metric = &metrics[m];
            let ends = &ends;
            async move { evaluate(metric, req, interval, sources, ends, chunk).await }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut windows: Vec<WindowResult> = ends
        .iter()
        .map(|end| WindowResult {
            end: *end,
            metrics: Vec::with_capacity(metrics.len()),
            outcome: MetricVerdict::Pass,
        })
        .collect();
    for (w, wm) in results.into_iter().flatten() {
        windows[w].metrics.push(wm);
    }
    for w in &mut windows {
        w.outcome = outcome(&w.metrics);
    }
    let total = windows.len() as f64;
    let count = |v: MetricVerdict| windows.iter().filter(|w| w.outcome == v).count() as f64;
    Ok(AnalyzeReport {
        template: req.template_name.clone(),
        namespace: req.vars.namespace.clone(),
        workload: req.vars.workload.clone(),
        interval: prometheus_duration(req.interval),
        metrics: summarize(&metrics, &windows),
        comparative,
        failed_fraction: count(MetricVerdict::Fail) / total,
        inconclusive_fraction: count(MetricVerdict::Inconclusive) / total,
        windows,
    })
}

fn resolved(req: &AnalyzeRequest) -> Result<Vec<ResolvedMetric>, AnalyzeError> {
    let tref = TemplateRef {
        name: req.template_name.clone(),
        cluster_scope: false,
        args: req.args.clone(),
    };
    Ok(resolve_metrics(&[(tref, req.template.clone())])?)
}

/// The Secrets the template's metrics name for their providers' credentials, to be
/// given in [`AnalyzeRequest::secrets`].
pub fn secrets_named(req: &AnalyzeRequest) -> Result<BTreeSet<String>, AnalyzeError> {
    Ok(resolved(req)?
        .iter()
        .filter_map(|m| m.credential_keys().map(|k| k.name().to_string()))
        .collect())
}

fn config_text(e: MetricError) -> String {
    match e {
        MetricError::Config(text) => text,
        e => e.to_string(),
    }
}

/// Judge one metric in the windows `chunk` of `ends` (consecutive, oldest first).
async fn evaluate(
    m: &ResolvedMetric,
    req: &AnalyzeRequest,
    interval: Duration,
    sources: &dyn MetricSources,
    ends: &[DateTime<Utc>],
    chunk: std::ops::Range<usize>,
) -> Vec<(usize, WindowMetric)> {
    // Only threshold metrics are evaluated over history (see `analyze`).
    let Some(bounds) = m.threshold() else {
        return Vec::new();
    };
    let vars = RenderVars {
        interval: prometheus_duration(m.interval.unwrap_or(interval)),
        args: m.args.clone(),
        ..req.vars.clone()
    };
    let source = render_query(&m.query, &vars)
        .map_err(|e| MetricError::BadQuery(e.to_string()))
        .and_then(|q| {
            sources
                .source(m.provider.as_ref(), m.credentials.as_deref())
                .map(|s| (q, s))
        });
    let (first, last) = (ends[chunk.start], ends[chunk.end - 1]);
    let values: Vec<Result<f64, MetricError>> = match source {
        Err(e) => vec![Err(e); chunk.len()],
        Ok((q, src)) if chunk.len() == 1 => vec![src.query_scalar(&q, first).await],
        // Providers without range queries at exact steps (Datadog, InfluxDB, Graphite) are
        // asked window by window, a few at a time.
        Ok((q, src)) if !src.answers_range_at_steps() => {
            let (q, src) = (&q, &src);
            stream::iter(ends[chunk.clone()].iter())
                .map(|t| async move { src.query_scalar(q, *t).await })
                .buffered(CONCURRENCY)
                .collect()
                .await
        }
        Ok((q, src)) => match src.query_range(&q, first, last, interval).await {
            Err(e) => vec![Err(e); chunk.len()],
            Ok(points) => {
                let by_time: BTreeMap<i64, f64> = points
                    .into_iter()
                    .map(|(t, v)| (t.timestamp(), v))
                    .collect();
                ends[chunk.clone()]
                    .iter()
                    .map(|t| {
                        // A step without a sample is a window without data.
                        by_time
                            .get(&t.timestamp())
                            .copied()
                            .ok_or(MetricError::NoData)
                    })
                    .collect()
            }
        },
    };
    chunk
        .zip(values)
        .map(|(w, value)| {
            let (verdict, reason) = match measured(&value) {
                Ok(v) => judge_threshold(v, bounds),
                Err(instead) => instead,
            };
            let wm = WindowMetric {
                name: m.name.clone(),
                value: value.ok().filter(|v| v.is_finite()),
                verdict,
                reason,
                dry_run: m.dry_run,
            };
            (w, wm)
        })
        .collect()
}

/// The check outcome, as the rollout core ranks verdicts: Fail, Error, Inconclusive, Pass.
fn outcome(metrics: &[WindowMetric]) -> MetricVerdict {
    let any = |v| metrics.iter().any(|m| !m.dry_run && m.verdict == v);
    [
        MetricVerdict::Fail,
        MetricVerdict::Error,
        MetricVerdict::Inconclusive,
    ]
    .into_iter()
    .find(|v| any(*v))
    .unwrap_or(MetricVerdict::Pass)
}

fn summarize(metrics: &[ResolvedMetric], windows: &[WindowResult]) -> Vec<MetricSummary> {
    metrics
        .iter()
        .map(|m| {
            let verdicts: Vec<MetricVerdict> = windows
                .iter()
                .filter_map(|w| w.metrics.iter().find(|x| x.name == m.name))
                .map(|x| x.verdict)
                .collect();
            let n = |v: MetricVerdict| verdicts.iter().filter(|x| **x == v).count() as u32;
            let (mut run, mut longest) = (0u32, 0u32);
            for v in &verdicts {
                run = if *v == MetricVerdict::Fail {
                    run + 1
                } else {
                    0
                };
                longest = longest.max(run);
            }
            MetricSummary {
                name: m.name.clone(),
                query: m.query.trim().to_string(),
                failed: n(MetricVerdict::Fail),
                inconclusive: n(MetricVerdict::Inconclusive),
                errors: n(MetricVerdict::Error),
                longest_failing_run: longest,
                failed_fraction: f64::from(n(MetricVerdict::Fail)) / (verdicts.len().max(1) as f64),
            }
        })
        .collect()
}

/// A plain-text table: one row per window, then one line per metric.
pub fn format_table(r: &AnalyzeReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "template {} on {}/{}: {} window(s) of {}",
        r.template,
        r.namespace,
        r.workload,
        r.windows.len(),
        r.interval
    );
    let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
    let cell = |m: &WindowMetric| {
        let v = m.value.map_or_else(|| "-".to_string(), fmt);
        format!("{v} {}", m.verdict.as_str())
    };
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("WINDOW END".to_string())
        .chain(names.iter().map(|n| n.to_string()))
        .chain(std::iter::once("OUTCOME".to_string()))
        .collect()];
    for w in &r.windows {
        let mut row = vec![w.end.format("%Y-%m-%dT%H:%M:%SZ").to_string()];
        row.extend(w.metrics.iter().map(cell));
        row.push(w.outcome.as_str().to_string());
        rows.push(row);
    }
    write_columns(&mut out, &rows);
    out.push('\n');
    let mut summary = vec![vec![
        "METRIC".to_string(),
        "FAILED".into(),
        "INCONCLUSIVE".into(),
        "ERRORS".into(),
        "LONGEST FAILING RUN".into(),
    ]];
    let total = r.windows.len();
    for m in &r.metrics {
        summary.push(vec![
            m.name.clone(),
            format!("{}/{total} ({:.1}%)", m.failed, 100.0 * m.failed_fraction),
            m.inconclusive.to_string(),
            m.errors.to_string(),
            m.longest_failing_run.to_string(),
        ]);
    }
    write_columns(&mut out, &summary);
    let failed = r
        .windows
        .iter()
        .filter(|w| w.outcome == MetricVerdict::Fail)
        .count();
    let _ = writeln!(
        out,
        "\nwould have failed: {failed} of {total} windows ({:.1}%); inconclusive: {:.1}%",
        100.0 * r.failed_fraction,
        100.0 * r.inconclusive_fraction
    );
    if !r.comparative.is_empty() {
        let _ = writeln!(
            out,
            "not evaluated (canary against primary, during a release only): {}",
            r.comparative.join(", ")
        );
    }
    out
}

fn write_columns(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
}

/// The report as pretty JSON, for `--output json`.
pub fn format_json(r: &AnalyzeReport) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(r)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
