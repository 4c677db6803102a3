//! The built-in checks: what a Canary is judged by when it names no analysis.
//!
//! One template per telemetry family, compiled in from the files shipped in
//! `analysis-templates/`, so the checks serin runs by default are exactly the ones a
//! user can read, apply and copy.

use std::sync::OnceLock;

use crate::crd::AnalysisTemplateSpec;
use crate::traffic::RouterKind;

/// Where the request telemetry of a Canary's router comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Telemetry {
    /// Istio's `istio_requests_total` / `istio_request_duration_milliseconds`.
    Istio,
    /// linkerd-proxy's `response_total` / `response_latency_ms`.
    Linkerd,
    /// The ingress controller's `nginx_ingress_controller_*`.
    IngressNginx,
    /// Envoy's cluster statistics, clusters named as Contour names them.
    GatewayApiEnvoy,
    /// The application's own `http_request_duration_seconds` histogram.
    AppHttp,
}

impl Telemetry {
    pub const ALL: [Telemetry; 5] = [
        Telemetry::Istio,
        Telemetry::Linkerd,
        Telemetry::IngressNginx,
        Telemetry::GatewayApiEnvoy,
        Telemetry::AppHttp,
    ];

    /// The name, which is also the shipped template's `metadata.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Telemetry::Istio => "istio",
            Telemetry::Linkerd => "linkerd",
            Telemetry::IngressNginx => "ingress-nginx",
            Telemetry::GatewayApiEnvoy => "gateway-api-envoy",
            Telemetry::AppHttp => "app-http",
        }
    }

    /// Case-insensitive; also accepts the router-style and older names people write.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "istio" => Some(Telemetry::Istio),
            "linkerd" => Some(Telemetry::Linkerd),
            "ingress-nginx" | "nginx" => Some(Telemetry::IngressNginx),
            "gateway-api-envoy" | "gateway-api" | "envoy" | "contour" => {
                Some(Telemetry::GatewayApiEnvoy)
            }
            "app-http" | "app" | "http" | "app-http-histogram" => Some(Telemetry::AppHttp),
            _ => None,
        }
    }

    /// For error messages.
    pub fn accepted() -> &'static str {
        "one of istio, linkerd, ingress-nginx, gateway-api-envoy, app-http"
    }

    /// The telemetry a router's traffic shows up in. `smi` is Linkerd's extension;
    /// `gateway-api` assumes Envoy with Contour's cluster names (Linkerd behind
    /// Gateway API is better served by `linkerd`, chosen by an override); plain
    /// Services have no proxy, so only the app's own metrics can tell.
    pub fn for_router(r: RouterKind) -> Self {
        match r {
            RouterKind::Service => Telemetry::AppHttp,
            RouterKind::Istio => Telemetry::Istio,
            RouterKind::GatewayApi => Telemetry::GatewayApiEnvoy,
            RouterKind::IngressNginx => Telemetry::IngressNginx,
            RouterKind::Smi => Telemetry::Linkerd,
        }
    }

    fn index(self) -> usize {
        match self {
            Telemetry::Istio => 0,
            Telemetry::Linkerd => 1,
            Telemetry::IngressNginx => 2,
            Telemetry::GatewayApiEnvoy => 3,
            Telemetry::AppHttp => 4,
        }
    }

    /// The shipped file's text.
    pub fn template_yaml(self) -> &'static str {
        match self {
            Telemetry::Istio => include_str!("../../analysis-templates/istio.yaml"),
            Telemetry::Linkerd => include_str!("../../analysis-templates/linkerd.yaml"),
            Telemetry::IngressNginx => {
                include_str!("../../analysis-templates/ingress-nginx.yaml")
            }
            Telemetry::GatewayApiEnvoy => {
                include_str!("../../analysis-templates/gateway-api-envoy.yaml")
            }
            Telemetry::AppHttp => include_str!("../../analysis-templates/app-http.yaml"),
        }
    }
}

impl std::fmt::Display for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in checks for a telemetry family (the same as the shipped template):
/// `errors` (sequential, canary against primary), `latency` (Mann-Whitney on p99
/// samples against the primary), and the critical `error-rate-guard` and
/// `latency-guard`.
///
/// The text is compiled in, so whether it parses is a property of the build, not of
/// the cluster: `every_builtin_template_parses` proves it for every family, which is
/// why this panics instead of handing every caller an error that cannot occur in a
/// tested binary. Parsed once per family.
pub fn builtin_template(t: Telemetry) -> AnalysisTemplateSpec {
    static PARSED: [OnceLock<AnalysisTemplateSpec>; 5] = [const { OnceLock::new() }; 5];
    PARSED[t.index()]
        .get_or_init(|| {
            let shown = format!("analysis-templates/{}.yaml", t.as_str());
            super::history::parse_template(t.template_yaml(), &shown)
                .map(|(_, spec)| spec)
                .unwrap_or_else(|e| panic!("built-in template {t}: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{resolve_metrics, RenderVars};
    use crate::crd::TemplateRef;
    use std::collections::BTreeMap;

    #[test]
    fn every_builtin_template_parses() {
        for t in Telemetry::ALL {
            let (name, _) =
                crate::analysis::history::parse_template(t.template_yaml(), t.as_str()).unwrap();
            assert_eq!(name, t.as_str(), "metadata.name of {t}");
            let spec = builtin_template(t);
            let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(
                names,
                ["errors", "latency", "error-rate-guard", "latency-guard"],
                "{t}"
            );
        }
    }

    #[test]
    fn names_parse_back_with_aliases_and_routers_map_to_their_telemetry() {
        for t in Telemetry::ALL {
            assert_eq!(Telemetry::parse(t.as_str()), Some(t));
            assert_eq!(Telemetry::parse(&t.as_str().to_uppercase()), Some(t));
            assert!(Telemetry::accepted().contains(t.as_str()));
        }
        assert_eq!(Telemetry::parse(" nginx "), Some(Telemetry::IngressNginx));
        assert_eq!(Telemetry::parse("envoy"), Some(Telemetry::GatewayApiEnvoy));
        assert_eq!(
            Telemetry::parse("app-http-histogram"),
            Some(Telemetry::AppHttp)
        );
        assert_eq!(Telemetry::parse("prometheus"), None);
        let mapped: Vec<Telemetry> = RouterKind::ALL
            .iter()
            .map(|r| Telemetry::for_router(*r))
            .collect();
        assert_eq!(
            mapped,
            [
                Telemetry::AppHttp,
                Telemetry::Istio,
                Telemetry::GatewayApiEnvoy,
                Telemetry::IngressNginx,
                Telemetry::Linkerd
            ]
        );
    }

    /// Each family's checks: the judge and the critical flag each check is meant to
    /// have, args rendered into the judges' ratios, sequential counts as totals.
    #[test]
    fn builtin_checks_are_comparative_with_critical_guards() {
        for t in Telemetry::ALL {
            let tref = TemplateRef {
                name: t.as_str().into(),
                cluster_scope: false,
                args: BTreeMap::from([("maxLatencyRatio".to_string(), "1.3".to_string())]),
            };
            let m = resolve_metrics(&[(tref, builtin_template(t))]).unwrap();
            let seq = m[0].sequential().expect("errors is sequential");
            assert_eq!(
                (seq.alpha, seq.allowed_increase.number()),
                (0.01, 1.5),
                "{t}"
            );
            assert!(seq.requests_query.is_some(), "{t}");
            assert!(!m[0].critical, "{t}: sequential is decisive by itself");
            let cmp = m[1].compare().expect("latency is compare");
            assert_eq!(cmp.kind, crate::crd::CompareKind::Samples, "{t}");
            assert_eq!(cmp.allowed_increase.as_ref().map(|v| v.number()), Some(1.3));
            assert!(!m[1].critical, "{t}");
            for g in &m[2..] {
                assert!(g.critical && g.threshold().is_some(), "{t}");
            }
            assert_eq!(m[2].threshold().and_then(|b| b.max), Some(0.2), "{t}");
            assert_eq!(m[3].threshold().and_then(|b| b.max), Some(5.0), "{t}");
            let vars = RenderVars {
                namespace: "shop".into(),
                canary: "podinfo".into(),
                primary: "podinfo-primary".into(),
                workload: "podinfo".into(),
                service: "podinfo".into(),
                interval: "1m".into(),
                args: m[0].args.clone(),
                ..RenderVars::default()
            };
            for q in [&m[0].query, seq.requests_query.as_ref().unwrap()] {
                let q = crate::analysis::render_query(q, &vars).unwrap();
                for banned in ["rate(", "increase(", "[1m]"] {
                    assert!(!q.contains(banned), "{t}: a total, not {banned}: {q}");
                }
            }
        }
    }
}
