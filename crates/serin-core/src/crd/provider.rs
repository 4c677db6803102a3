//! Where a template's metrics come from: exactly one provider per template.
//!
//! One optional field per provider (not a tagged enum) keeps the YAML shape
//! `provider: {prometheus: {...}}` and a structural schema; [`ProviderSpec::kind`]
//! enforces that exactly one is set.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The metric providers serin can ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    Prometheus,
    Datadog,
    InfluxDb,
    Graphite,
}

impl ProviderKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Prometheus,
        ProviderKind::Datadog,
        ProviderKind::InfluxDb,
        ProviderKind::Graphite,
    ];

    /// The field under `provider` that selects it, and its metrics' `provider` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Prometheus => "prometheus",
            ProviderKind::Datadog => "datadog",
            ProviderKind::InfluxDb => "influxdb",
            ProviderKind::Graphite => "graphite",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Set exactly one field; unset `provider` means the controller's default Prometheus.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProviderSpec>,
    /// Datadog's metrics query API (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogProviderSpec>,
    /// InfluxDB 1.x, InfluxQL over `/query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<InfluxDbProviderSpec>,
    /// Graphite's render API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphite: Option<GraphiteProviderSpec>,
}

impl ProviderSpec {
    /// A spec selecting Prometheus.
    pub fn prometheus(spec: PrometheusProviderSpec) -> Self {
        Self {
            prometheus: Some(spec),
            ..Self::default()
        }
    }

    /// The provider set, or why the spec does not name exactly one.
    pub fn kind(&self) -> Result<ProviderKind, String> {
        let set: Vec<ProviderKind> = ProviderKind::ALL
            .into_iter()
            .filter(|k| match k {
                ProviderKind::Prometheus => self.prometheus.is_some(),
                ProviderKind::Datadog => self.datadog.is_some(),
                ProviderKind::InfluxDb => self.influxdb.is_some(),
                ProviderKind::Graphite => self.graphite.is_some(),
            })
            .collect();
        let accepted = ProviderKind::ALL.map(ProviderKind::as_str).join(", ");
        match set.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "the template's provider sets no provider; accepted: exactly one of {accepted} (or no provider field for the controller's default Prometheus)"
            )),
            many => Err(format!(
                "the template's provider sets {}; accepted: exactly one of {accepted}",
                many.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    /// The name of the Secret the provider set names (the first, if several are).
    pub fn secret_name(&self) -> Option<&str> {
        None.or(self.prometheus.as_ref().and_then(|p| p.secret_ref.as_ref()))
            .map(|r| r.name.as_str())
            .or(self.datadog.as_ref().map(|p| p.secret_ref.name.as_str()))
            .or(self
                .influxdb
                .as_ref()
                .and_then(|p| p.secret_ref.as_ref())
                .map(|r| r.name.as_str()))
            .or(self
                .graphite
                .as_ref()
                .and_then(|p| p.secret_ref.as_ref())
                .map(|r| r.name.as_str()))
    }

    /// The address of the provider set (the first, if several are).
    pub fn address(&self) -> Option<&str> {
        None.or(self.prometheus.as_ref().map(|p| p.address.as_str()))
            .or(self.datadog.as_ref().map(|p| p.address.as_str()))
            .or(self.influxdb.as_ref().map(|p| p.address.as_str()))
            .or(self.graphite.as_ref().map(|p| p.address.as_str()))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusProviderSpec {
    /// Base URL, e.g. http://prometheus.monitoring:9090 (a path prefix is kept). One
    /// the controller allows (--allowed-provider-urls); redirects are not followed.
    pub address: String,
    /// Per-query timeout (humantime); default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Secret with credentials and a CA bundle: in the AnalysisTemplate's namespace,
    /// or the controller's namespace for a ClusterAnalysisTemplate. It must carry the
    /// label `serin.dev/credentials: "true"`; serin reads no other Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<PrometheusSecretRef>,
    /// Extra HTTP headers on every query, e.g. `X-Scope-OrgID` for a Mimir tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Accept any TLS certificate. For tests only: anyone on the path can answer.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Keys of a Secret holding Prometheus credentials. Set `bearerTokenKey`, or
/// `usernameKey` with `passwordKey`, or neither (a CA bundle only).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSecretRef {
    pub name: String,
    /// Key whose value is sent as `Authorization: Bearer <value>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_key: Option<String>,
    /// Key of the basic-auth user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Key of the basic-auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    /// Key of a PEM bundle of CA certificates trusted in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    /// Stored in the template in clear: put secrets in `secretRef` instead.
    pub value: String,
}

/// Datadog: each query is a Datadog metrics query over the last `lookback`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatadogProviderSpec {
    /// The API base URL of the Datadog site, e.g. https://api.datadoghq.com or
    /// https://api.datadoghq.eu. One the controller allows (--allowed-provider-urls).
    pub address: String,
    /// Secret with the API and application keys (label `serin.dev/credentials: "true"`).
    pub secret_ref: DatadogSecretRef,
    /// How far back from the check each query looks (humantime); default 5m. The
    /// value is the last point with data in that window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
    /// Per-query timeout (humantime); default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Keys of a Secret holding Datadog's keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatadogSecretRef {
    pub name: String,
    /// Key of the API key, sent as `DD-API-KEY`; default `api-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_key: Option<String>,
    /// Key of the application key, sent as `DD-APPLICATION-KEY`; default `application-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_key_key: Option<String>,
}

/// InfluxDB 1.x: each query is one InfluxQL statement returning one field.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InfluxDbProviderSpec {
    /// Base URL, e.g. http://influxdb.monitoring:8086. One the controller allows.
    pub address: String,
    /// The database queried (`db`).
    pub database: String,
    /// Per-query timeout (humantime); default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Secret with credentials (label `serin.dev/credentials: "true"`): `usernameKey`
    /// with `passwordKey` for basic auth, or `bearerTokenKey` sent as
    /// `Authorization: Token <value>`; `caKey` as for Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<PrometheusSecretRef>,
    /// Accept any TLS certificate. For tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Graphite: each query is a render target over the last `lookback`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphiteProviderSpec {
    /// Base URL of graphite-web, e.g. http://graphite.monitoring:8080.
    pub address: String,
    /// How far back from the check each query looks (humantime); default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
    /// Per-query timeout (humantime); default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Secret with credentials, as for Prometheus (bearer or basic, CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<PrometheusSecretRef>,
    /// Accept any TLS certificate. For tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}
