//! Every router serin knows, as data, and the one place that builds them.
//!
//! Names and aliases (annotations, `spec.router`, `--default-router`), the API a router
//! needs the cluster to serve, the kinds it writes (which the controller watches and
//! the chart's RBAC grants; `tests/helm_chart.rs` holds the chart to this table) and
//! the hint shown when it is missing all live in [`RouterFacts`]. Adding a router: its
//! module, a variant here with its facts and its arm in [`build`], and its telemetry
//! in `analysis/builtin.rs`; then its RBAC rule and values key in the chart.

use std::collections::HashMap;
use std::sync::Arc;

use kube::api::ApiResource;
use kube::Client;

use super::{
    GatewayApiRouter, IngressNginxRouter, IstioRouter, RouterError, ServiceRouter, SmiRouter,
    TrafficRouter, WithApexService, DEFAULT_ANNOTATION_PREFIX,
};

/// The routers serin drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouterKind {
    Service,
    Istio,
    GatewayApi,
    IngressNginx,
    Smi,
}

/// One Kubernetes kind, as a dynamic API needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectKind {
    /// Empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl ObjectKind {
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.group_version(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

pub const VIRTUAL_SERVICE: ObjectKind = ObjectKind {
    group: "networking.istio.io",
    version: "v1",
    kind: "VirtualService",
    plural: "virtualservices",
};
pub const DESTINATION_RULE: ObjectKind = ObjectKind {
    group: "networking.istio.io",
    version: "v1",
    kind: "DestinationRule",
    plural: "destinationrules",
};
pub const HTTP_ROUTE: ObjectKind = ObjectKind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "HTTPRoute",
    plural: "httproutes",
};
pub const INGRESS: ObjectKind = ObjectKind {
    group: "networking.k8s.io",
    version: "v1",
    kind: "Ingress",
    plural: "ingresses",
};
pub const TRAFFIC_SPLIT: ObjectKind = ObjectKind {
    group: "split.smi-spec.io",
    version: "v1alpha2",
    kind: "TrafficSplit",
    plural: "trafficsplits",
};

/// What serin does with the kinds a router writes: reads them, watches them (metadata
/// only, so a change wakes the Canary), applies them server-side (which creates them
/// the first time, so create as well as patch) and deletes them on hand-back. The
/// chart grants exactly these verbs on exactly [`RouterFacts::writes`].
pub const OBJECT_VERBS: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];

/// Everything about one router that is not its code.
#[derive(Debug)]
pub struct RouterFacts {
    pub kind: RouterKind,
    /// The canonical name (annotations, `spec.router`, `--default-router`, messages).
    pub name: &'static str,
    /// Other names accepted and listed in the error for an unknown router.
    pub aliases: &'static [&'static str],
    /// Further spellings accepted but not advertised.
    pub spellings: &'static [&'static str],
    /// The API the cluster must serve (its group/version is looked for at start-up);
    /// `None`: built into Kubernetes, always available.
    pub requires: Option<ObjectKind>,
    /// The kinds the router writes, beyond the Services every Canary has: watched by
    /// the controller and granted by the chart (with [`OBJECT_VERBS`]).
    pub writes: &'static [ObjectKind],
    /// What to install when `requires` is missing.
    pub install_hint: &'static str,
    /// The key under the chart's `routers:` values that grants `writes`; `None`: needs
    /// no RBAC of its own and is always on.
    pub chart_key: Option<&'static str>,
    /// A mesh or ingress router: the apex Service is kept selecting the primary beside
    /// it, for clients outside the mesh.
    pub with_apex_service: bool,
}

const SERVICE: RouterFacts = RouterFacts {
    kind: RouterKind::Service,
    name: "service",
    aliases: &[],
    spellings: &["kubernetes"],
    requires: None,
    writes: &[],
    install_hint: "install it",
    chart_key: None,
    with_apex_service: false,
};
const ISTIO: RouterFacts = RouterFacts {
    kind: RouterKind::Istio,
    name: "istio",
    aliases: &[],
    spellings: &[],
    requires: Some(VIRTUAL_SERVICE),
    writes: &[VIRTUAL_SERVICE, DESTINATION_RULE],
    install_hint: "install Istio",
    chart_key: Some("istio"),
    with_apex_service: true,
};
const GATEWAY_API: RouterFacts = RouterFacts {
    kind: RouterKind::GatewayApi,
    name: "gateway-api",
    // Linkerd 2.14+ reads HTTPRoutes.
    aliases: &["linkerd"],
    spellings: &["gatewayapi"],
    requires: Some(HTTP_ROUTE),
    writes: &[HTTP_ROUTE],
    install_hint: "install the Gateway API CRDs (v1.0 or later) and an implementation",
    chart_key: Some("gatewayApi"),
    with_apex_service: true,
};
const INGRESS_NGINX: RouterFacts = RouterFacts {
    kind: RouterKind::IngressNginx,
    name: "ingress-nginx",
    aliases: &["nginx"],
    spellings: &[],
    requires: None,
    writes: &[INGRESS],
    install_hint: "install it",
    chart_key: Some("ingressNginx"),
    with_apex_service: true,
};
const SMI: RouterFacts = RouterFacts {
    kind: RouterKind::Smi,
    name: "smi",
    aliases: &[],
    spellings: &[],
    requires: Some(TRAFFIC_SPLIT),
    writes: &[TRAFFIC_SPLIT],
    install_hint: "install Linkerd's SMI extension",
    chart_key: Some("smi"),
    with_apex_service: true,
};

impl RouterKind {
    pub const ALL: [RouterKind; 5] = [
        RouterKind::Service,
        RouterKind::Istio,
        RouterKind::GatewayApi,
        RouterKind::IngressNginx,
        RouterKind::Smi,
    ];

    pub fn facts(self) -> &'static RouterFacts {
        match self {
            RouterKind::Service => &SERVICE,
            RouterKind::Istio => &ISTIO,
            RouterKind::GatewayApi => &GATEWAY_API,
            RouterKind::IngressNginx => &INGRESS_NGINX,
            RouterKind::Smi => &SMI,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.facts().name
    }

    /// Parse a router name or alias, ignoring case and surrounding space.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| {
            let f = k.facts();
            f.name == s || f.aliases.contains(&s.as_str()) || f.spellings.contains(&s.as_str())
        })
    }

    /// The accepted names, for error messages.
    pub fn accepted() -> String {
        let names: Vec<String> = Self::ALL
            .into_iter()
            .map(|k| {
                let f = k.facts();
                match f.aliases {
                    [] => f.name.to_string(),
                    aliases => format!("{} (alias {})", f.name, aliases.join(", ")),
                }
            })
            .collect();
        format!("one of {}", names.join(", "))
    }
}

/// What building the routers needs besides the client.
#[derive(Clone)]
pub struct RouterOptions {
    /// ingress-nginx's `--annotations-prefix`.
    pub ingress_annotation_prefix: String,
    /// serin's Services from a watch, for the apex Service's reads.
    pub services: Option<crate::workloads::service_store::ServiceCache>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            ingress_annotation_prefix: DEFAULT_ANNOTATION_PREFIX.to_string(),
            services: None,
        }
    }
}

/// The router of `kind`, with the apex Service beside it where its facts say so.
pub fn build(kind: RouterKind, client: &Client, opts: &RouterOptions) -> Arc<dyn TrafficRouter> {
    let apex = || ServiceRouter::new(client.clone()).with_cache(opts.services.clone());
    let router: Arc<dyn TrafficRouter> = match kind {
        RouterKind::Service => Arc::new(apex()),
        RouterKind::Istio => Arc::new(IstioRouter::new(client.clone())),
        RouterKind::GatewayApi => Arc::new(GatewayApiRouter::new(client.clone())),
        RouterKind::IngressNginx => Arc::new(IngressNginxRouter::new(
            client.clone(),
            opts.ingress_annotation_prefix.clone(),
        )),
        RouterKind::Smi => Arc::new(SmiRouter::new(client.clone())),
    };
    if kind.facts().with_apex_service {
        Arc::new(WithApexService::new(apex(), router))
    } else {
        router
    }
}

/// Every router whose API the cluster serves (asked once, at start-up): a Canary
/// asking for another gets a RouterUnavailable condition instead of retry noise.
pub async fn build_available(
    client: &Client,
    opts: &RouterOptions,
) -> Result<HashMap<RouterKind, Arc<dyn TrafficRouter>>, RouterError> {
    let available = super::detect_routers(client).await?;
    Ok(available
        .into_iter()
        .map(|kind| (kind, build(kind, client, opts)))
        .collect())
}

/// The kinds the controller watches for these routers, each once.
pub fn watched_kinds(routers: impl IntoIterator<Item = RouterKind>) -> Vec<ApiResource> {
    let mut kinds: Vec<ObjectKind> = Vec::new();
    for kind in routers {
        for k in kind.facts().writes {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
    }
    kinds.iter().map(ObjectKind::api_resource).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_belong_to_their_kind_and_names_are_unique() {
        let mut names = Vec::new();
        for kind in RouterKind::ALL {
            let f = kind.facts();
            assert_eq!(f.kind, kind);
            for n in [f.name].iter().chain(f.aliases).chain(f.spellings) {
                assert_eq!(*n, n.to_ascii_lowercase(), "names are lower case");
                assert!(!names.contains(n), "{n} names two routers");
                names.push(n);
                assert_eq!(RouterKind::parse(&n.to_ascii_uppercase()), Some(kind));
            }
            // A router that needs a CRD writes it (that is how serin uses the API).
            if let Some(req) = f.requires {
                assert!(f.writes.contains(&req), "{}", f.name);
            }
            // Whatever a router writes beyond Services needs its own RBAC.
            assert_eq!(f.writes.is_empty(), f.chart_key.is_none(), "{}", f.name);
        }
    }

    #[test]
    fn names_aliases_and_spellings() {
        assert_eq!(RouterKind::parse(" Service "), Some(RouterKind::Service));
        assert_eq!(RouterKind::parse("kubernetes"), Some(RouterKind::Service));
        assert_eq!(RouterKind::parse("linkerd"), Some(RouterKind::GatewayApi));
        assert_eq!(
            RouterKind::parse("gatewayapi"),
            Some(RouterKind::GatewayApi)
        );
        assert_eq!(RouterKind::parse("nginx"), Some(RouterKind::IngressNginx));
        assert_eq!(RouterKind::parse("traefik"), None);
        assert_eq!(
            RouterKind::accepted(),
            "one of service, istio, gateway-api (alias linkerd), ingress-nginx (alias nginx), smi"
        );
    }

    #[test]
    fn watched_kinds_are_each_routers_writes_once() {
        let plurals = |ks: Vec<ApiResource>| -> Vec<String> {
            ks.into_iter()
                .map(|k| format!("{}/{}", k.api_version, k.plural))
                .collect()
        };
        assert!(watched_kinds([RouterKind::Service]).is_empty());
        assert_eq!(
            plurals(watched_kinds([
                RouterKind::Istio,
                RouterKind::Service,
                RouterKind::Istio,
                RouterKind::IngressNginx,
            ])),
            [
                "networking.istio.io/v1/virtualservices",
                "networking.istio.io/v1/destinationrules",
                "networking.k8s.io/v1/ingresses",
            ]
        );
    }

    #[tokio::test]
    async fn builds_each_kind() {
        let (client, mock) = crate::testing::MockApi::start(vec![]);
        for kind in RouterKind::ALL {
            let r = build(kind, &client, &RouterOptions::default());
            assert_eq!(r.kind(), kind);
        }
        // Building calls nothing.
        assert!(mock.finish().is_empty());
    }
}
