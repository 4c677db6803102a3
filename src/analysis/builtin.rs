//! The built-in checks: the shipped template for the telemetry of a Canary's router,
//! used when the Canary names no templates (and `analysis.builtin` is not `none`).

use crate::crd::AnalysisTemplateSpec;
use crate::traffic::RouterKind;

/// A family of telemetry the built-in checks can query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Telemetry {
    Istio,
    Linkerd,
    IngressNginx,
    GatewayApiEnvoy,
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

    pub fn as_str(self) -> &'static str {
        match self {
            Telemetry::Istio => "istio",
            Telemetry::Linkerd => "linkerd",
            Telemetry::IngressNginx => "ingress-nginx",
            Telemetry::GatewayApiEnvoy => "gateway-api-envoy",
            Telemetry::AppHttp => "app-http",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn accepted() -> &'static str {
        "one of istio, linkerd, ingress-nginx, gateway-api-envoy, app-http"
    }

    /// The telemetry a router's traffic shows up in.
    pub fn for_router(r: RouterKind) -> Self {
        match r {
            RouterKind::Service => Telemetry::AppHttp,
            RouterKind::Istio => Telemetry::Istio,
            RouterKind::GatewayApi => Telemetry::GatewayApiEnvoy,
            RouterKind::IngressNginx => Telemetry::IngressNginx,
            RouterKind::Smi => Telemetry::Linkerd,
        }
    }

    fn source(self) -> &'static str {
        match self {
            Telemetry::Istio => include_str!("../../analysis-templates/istio.yaml"),
            Telemetry::Linkerd => include_str!("../../analysis-templates/linkerd.yaml"),
            Telemetry::IngressNginx => include_str!("../../analysis-templates/ingress-nginx.yaml"),
            Telemetry::GatewayApiEnvoy => {
                include_str!("../../analysis-templates/gateway-api-envoy.yaml")
            }
            Telemetry::AppHttp => include_str!("../../analysis-templates/app-http-histogram.yaml"),
        }
    }
}

/// The built-in checks for a telemetry family: the shipped template, parsed. The files
/// are part of the binary and a test parses every one, so this cannot fail at runtime.
pub fn builtin_template(t: Telemetry) -> AnalysisTemplateSpec {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(t.source()).expect("shipped templates parse (tested)");
    serde_yaml::from_value(doc["spec"].clone()).expect("shipped templates parse (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_parses_and_round_trips_its_name() {
        for t in Telemetry::ALL {
            assert!(!builtin_template(t).metrics.is_empty(), "{t:?}");
            assert_eq!(Telemetry::parse(t.as_str()), Some(t));
        }
        assert_eq!(Telemetry::parse("nope"), None);
    }
}
