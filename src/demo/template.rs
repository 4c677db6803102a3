//! The analysis the demo judges with: serin's built-in comparative checks for the
//! app's own HTTP metrics (`analysis-templates/app-http.yaml`, compiled in: the
//! checks a Canary on a plain Service gets when it names no templates).
//!
//! The Canary names that template instead of relying on the built-in path only to
//! pass two arguments: the built-in checks sample the p99 latency in 30 s windows over
//! 5 minutes and need 6 windows with canary traffic, so at the demo's 10 s steps the
//! latency check would stay inconclusive (and hold every step) for 3 minutes. The
//! demo's Prometheus scrapes every second, so 3 s windows over the last 30 s measure
//! the same thing at the demo's pace. Everything else is the built-in checks.

use std::collections::BTreeMap;

use crate::analysis::{builtin_template, Telemetry};
use crate::crd::AnalysisTemplateSpec;

/// The shipped template's `metadata.name`.
pub const NAME: &str = "app-http";

/// The built-in checks for the app's HTTP metrics.
pub fn template() -> AnalysisTemplateSpec {
    builtin_template(Telemetry::AppHttp)
}

/// Latency samples sized for 1 s scrapes: one p99 per 3 s window (two scrapes and
/// more) over the last 30 s.
pub fn demo_args() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("latencyWindow".to_string(), "3s".to_string()),
        ("latencyLookback".to_string(), "30s".to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{render_query, resolve_metrics, RenderVars};
    use crate::crd::TemplateRef;

    /// The demo's checks are the built-in ones (same names, judges, critical flags),
    /// and only the latency samples differ.
    #[test]
    fn demo_checks_are_the_builtin_ones_with_short_latency_windows() {
        let tref = TemplateRef {
            name: NAME.into(),
            cluster_scope: false,
            args: demo_args(),
        };
        let demo = resolve_metrics(&[(tref, template())]).unwrap();
        let builtin = crate::analysis::builtin_metrics(Telemetry::AppHttp).unwrap();
        assert_eq!(demo.len(), builtin.len());
        for (d, b) in demo.iter().zip(&builtin) {
            assert_eq!(d.name, b.name);
            assert_eq!(d.critical, b.critical, "{}", d.name);
            assert_eq!(d.sequential(), b.sequential(), "{}", d.name);
            assert_eq!(d.compare(), b.compare(), "{}", d.name);
            assert_eq!(d.threshold(), b.threshold(), "{}", d.name);
        }
        let vars = RenderVars {
            namespace: "demo".into(),
            workload: "podinfo".into(),
            interval: "10s".into(),
            args: demo[1].args.clone(),
            ..Default::default()
        };
        let q = render_query(&demo[1].query, &vars).unwrap();
        assert!(
            q.contains("[3s]") && q.trim_end().ends_with("[30s:3s]"),
            "{q}"
        );
        let q = render_query(&demo[0].query, &vars).unwrap();
        assert!(q.contains(r#"pod=~"podinfo-[a-z0-9]+-[a-z0-9]+""#), "{q}");
    }
}
