//! The analysis template the demo judges with: the shipped `analysis-templates/app-*`
//! file when one is found, else an equivalent built in (error ratio and p99 latency
//! from the app's own `http_requests_total` / `http_request_duration_seconds`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::crd::AnalysisTemplateSpec;

pub const BUILTIN_NAME: &str = "demo-builtin-http";

/// Thresholds on the same selectors as the shipped `analysis-templates/app-http.yaml`
/// (error rate and p99 latency from the app's `http_request_duration_seconds`
/// histogram, pods matched by name), with the demo's thresholds. Kept as YAML so it
/// reads like the shipped files.
const BUILTIN_YAML: &str = r#"
apiVersion: serin.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: demo-builtin-http
spec:
  metrics:
    - name: error-rate
      query: |
        (
          sum(rate(http_request_duration_seconds_count{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+-[a-z0-9]+", code=~"5.."}[{{interval}}]))
          or vector(0)
        )
        /
        sum(rate(http_request_duration_seconds_count{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+-[a-z0-9]+"}[{{interval}}]))
      threshold:
        max: 0.01
    - name: latency-p99
      query: |
        histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+-[a-z0-9]+"}[{{interval}}])))
      threshold:
        max: 0.1
"#;

/// The built-in template.
pub fn builtin() -> AnalysisTemplateSpec {
    // A constant that parses (tested below); the empty spec is unreachable.
    parse_manifest(BUILTIN_YAML)
        .map(|(_, spec)| spec)
        .unwrap_or_default()
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

/// Arguments for the shipped template (`app-http.yaml`, canary against primary): its
/// latency samples are one p99 per 30 s window over 5 minutes, sized for production
/// scrape intervals; the demo scrapes every second and holds a step for 10 s, so it
/// takes one per 3 s window over the last 30 s. The built-in one takes none.
pub fn demo_args(name: &str) -> BTreeMap<String, String> {
    if name == BUILTIN_NAME {
        BTreeMap::new()
    } else {
        BTreeMap::from([
            ("latencyWindow".to_string(), "3s".to_string()),
            ("latencyLookback".to_string(), "30s".to_string()),
        ])
    }
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
        let t = builtin();
        assert_eq!(t.metrics.len(), 2);
        assert_eq!(t.metrics[0].name, "error-rate");
        let q = render_query(&t.metrics[0].query, &vars).unwrap();
        let sel = r#"namespace="demo", pod=~"podinfo-[a-z0-9]+-[a-z0-9]+""#;
        assert!(
            q.contains(&format!(r#"{{{sel}, code=~"5.."}}[10s]"#)),
            "{q}"
        );
        assert!(q.contains("or vector(0)"), "{q}");
        let q = render_query(&t.metrics[1].query, &vars).unwrap();
        assert!(
            q.contains(&format!(
                "http_request_duration_seconds_bucket{{{sel}}}[10s]"
            )),
            "{q}"
        );
        // Thresholds are plain numbers (serialized, so this holds across spec versions).
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json["metrics"][0]["threshold"]["max"],
            serde_json::json!(0.01)
        );
        assert_eq!(
            json["metrics"][1]["threshold"]["max"],
            serde_json::json!(0.1)
        );
    }

    #[test]
    fn manifests_parse_with_name_and_spec() {
        let text = "apiVersion: serin.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: app-slo\nspec:\n  metrics:\n  - name: m\n    query: up\n    threshold: {max: 1}\n";
        let (name, spec) = parse_manifest(text).unwrap();
        assert_eq!(name, "app-slo");
        assert_eq!(spec.metrics[0].query, "up");
        assert!(parse_manifest("kind: Other").is_none());
    }
}

#[cfg(test)]
mod shipped_tests {
    use super::*;

    /// `serin demo` finds the shipped app template and its args resolve against it.
    #[test]
    fn demo_args_fit_the_shipped_app_template() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("analysis-templates");
        let (name, spec) = load_app_template(&dir).unwrap();
        assert_eq!(name, "app-http");
        let tref = crate::crd::TemplateRef {
            name: name.clone(),
            cluster_scope: false,
            args: demo_args(&name),
        };
        let m = crate::analysis::resolve_metrics(&[(tref, spec)]).unwrap();
        assert_eq!(m[1].args["latencyLookback"], "30s");
    }
}
