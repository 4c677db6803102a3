//! The analysis template the demo judges with: the shipped `analysis-templates/app-*`
//! file when one is found, else an equivalent built in (error ratio and p99 latency
//! from the app's own `http_requests_total` / `http_request_duration_seconds`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::crd::{AnalysisTemplateSpec, MetricTemplate, ThresholdSpec};

pub const BUILTIN_NAME: &str = "app-http-slo";

/// The built-in template. `errorRatioMax` and `latencyP99MaxSeconds` are arguments.
pub fn builtin() -> AnalysisTemplateSpec {
    let sel = r#"namespace="{{namespace}}",app="{{workload}}""#;
    AnalysisTemplateSpec {
        args: vec![],
        metrics: vec![
            MetricTemplate {
                name: "error-ratio".into(),
                // No 5xx series yet means no errors, not no data: `or vector(0)`.
                query: format!(
                    r#"(sum(rate(http_requests_total{{{sel},code=~"5.."}}[{{{{interval}}}}])) or vector(0)) / sum(rate(http_requests_total{{{sel}}}[{{{{interval}}}}]))"#
                ),
                interval: None,
                threshold: Some(ThresholdSpec {
                    min: None,
                    max: Some(0.01),
                }),
                dry_run: false,
                critical: false,
            },
            MetricTemplate {
                name: "latency-p99".into(),
                query: format!(
                    r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{{{{interval}}}}])))"#
                ),
                interval: None,
                threshold: Some(ThresholdSpec {
                    min: None,
                    max: Some(0.1),
                }),
                dry_run: false,
                critical: false,
            },
        ],
        provider: None,
    }
}

/// A template file: an `AnalysisTemplate`/`ClusterAnalysisTemplate` manifest.
pub fn parse_manifest(text: &str) -> Option<(String, AnalysisTemplateSpec)> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let name = v.get("metadata")?.get("name")?.as_str()?.to_string();
    let spec: AnalysisTemplateSpec = serde_yaml::from_value(v.get("spec")?.clone()).ok()?;
    Some((name, spec))
}

/// The first `app-*.yaml` template in `dir` that parses, by file name.
pub fn load_app_template(dir: &Path) -> Option<(String, AnalysisTemplateSpec)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("app-") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .find_map(|f| parse_manifest(&std::fs::read_to_string(f).ok()?))
}

/// Arguments the demo passes: none needed by the built-in one.
pub fn demo_args() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{render_query, RenderVars};

    #[test]
    fn builtin_renders_to_canary_scoped_promql() {
        let vars = RenderVars {
            namespace: "demo".into(),
            workload: "podinfo".into(),
            interval: "10s".into(),
            ..Default::default()
        };
        let q = render_query(&builtin().metrics[0].query, &vars).unwrap();
        assert_eq!(
            q,
            r#"(sum(rate(http_requests_total{namespace="demo",app="podinfo",code=~"5.."}[10s])) or vector(0)) / sum(rate(http_requests_total{namespace="demo",app="podinfo"}[10s]))"#
        );
        let q = render_query(&builtin().metrics[1].query, &vars).unwrap();
        assert!(q.contains(
            r#"http_request_duration_seconds_bucket{namespace="demo",app="podinfo"}[10s]"#
        ));
    }

    #[test]
    fn manifests_parse_with_name_and_spec() {
        let text = "apiVersion: serin.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: app-slo\nspec:\n  metrics:\n  - name: m\n    query: up\n    threshold: {max: 1}\n";
        let (name, spec) = parse_manifest(text).unwrap();
        assert_eq!(name, "app-slo");
        assert_eq!(spec.metrics[0].threshold.as_ref().unwrap().max, Some(1.0));
        assert!(parse_manifest("kind: Other").is_none());
    }
}
