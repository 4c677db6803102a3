//! Provider credentials, resolved from a Kubernetes Secret by the controller.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::MetricError;
use crate::crd::{DatadogSecretRef, PrometheusSecretRef};

/// The label a Secret carries (value `"true"`) to let templates and webhooks use it.
/// Without it serin reads no key of the Secret: naming a Secret in a template or a
/// Canary does not make it a credential.
pub const CREDENTIALS_LABEL: &str = "serin.dev/credentials";

/// Whether a Secret with these labels opted in to being used as a credential.
pub fn opted_in(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(CREDENTIALS_LABEL))
        .is_some_and(|v| v == "true")
}

/// Why a Secret that did not opt in is not used: which Secret, who named it, what to do.
pub fn not_opted_in(namespace: &str, name: &str, named_by: &str) -> String {
    format!(
        "Secret {namespace}/{name} named by {named_by} is not labelled {CREDENTIALS_LABEL}: \"true\", so serin does not read it and sends nothing; if it is meant as this credential, label it: kubectl label secret -n {namespace} {name} {CREDENTIALS_LABEL}=true"
    )
}

/// How to authenticate to a provider.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum ProviderAuth {
    #[default]
    None,
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
    /// Header name and value pairs, each value from a Secret key (Datadog's keys).
    Headers(Vec<(String, String)>),
}

/// Credentials and trust anchors read from the provider's Secret.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ProviderCredentials {
    pub auth: ProviderAuth,
    /// PEM bundle of CA certificates trusted in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

// Secrets never reach logs: only the kind of credential is shown.
impl std::fmt::Debug for ProviderAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderAuth::None => f.write_str("None"),
            ProviderAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            ProviderAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            ProviderAuth::Headers(h) => {
                let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
                write!(f, "Headers({names:?}, <redacted>)")
            }
        }
    }
}

impl std::fmt::Debug for ProviderCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCredentials")
            .field("auth", &self.auth)
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .finish()
    }
}

impl ProviderCredentials {
    /// Read the keys `secret_ref` names from a Secret's `data`.
    ///
    /// Errors say which key was asked for and that it is missing, never which keys the
    /// Secret has or any value.
    pub fn from_secret_data(
        secret_ref: &PrometheusSecretRef,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<Self, MetricError> {
        let get = |field: &str, key: &str| -> Result<String, MetricError> {
            let bytes = data.get(key).ok_or_else(|| {
                MetricError::Config(format!(
                    "Secret {:?} has no key {key:?} (named by secretRef.{field})",
                    secret_ref.name
                ))
            })?;
            let text = String::from_utf8(bytes.0.clone()).map_err(|_| {
                MetricError::Config(format!(
                    "Secret {:?} key {key:?} (secretRef.{field}) is not UTF-8 text",
                    secret_ref.name
                ))
            })?;
            // `kubectl create secret --from-file` keeps the file's trailing newline.
            Ok(text.trim_end_matches(['\r', '\n']).to_string())
        };
        let auth = match (
            &secret_ref.bearer_token_key,
            &secret_ref.username_key,
            &secret_ref.password_key,
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(MetricError::Config(format!(
                    "secretRef {:?} sets both bearerTokenKey and usernameKey/passwordKey; accepted: one of them",
                    secret_ref.name
                )))
            }
            (Some(k), None, None) => ProviderAuth::Bearer(get("bearerTokenKey", k)?),
            (None, Some(u), Some(p)) => ProviderAuth::Basic {
                username: get("usernameKey", u)?,
                password: get("passwordKey", p)?,
            },
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(MetricError::Config(format!(
                    "secretRef {:?} sets only one of usernameKey and passwordKey; basic auth needs both",
                    secret_ref.name
                )))
            }
            (None, None, None) => ProviderAuth::None,
        };
        let ca_pem = match &secret_ref.ca_key {
            Some(k) => Some(
                data.get(k)
                    .ok_or_else(|| {
                        MetricError::Config(format!(
                            "Secret {:?} has no key {k:?} (named by secretRef.caKey)",
                            secret_ref.name
                        ))
                    })?
                    .0
                    .clone(),
            ),
            None => None,
        };
        Ok(Self { auth, ca_pem })
    }
}

/// The keys a provider reads from its Secret, as its spec names them: each provider
/// declares its own (see [`crate::providers::registry`]), the controller reads them.
#[derive(Clone, Debug, PartialEq)]
pub enum CredentialKeys {
    /// Bearer token or basic auth, and a CA bundle (Prometheus, InfluxDB, Graphite).
    Http(PrometheusSecretRef),
    /// Each key's value sent as a header: (header, the spec's field, the key).
    Headers {
        name: String,
        headers: Vec<(&'static str, &'static str, String)>,
    },
}

impl CredentialKeys {
    /// Datadog's API and application keys, with their default key names.
    pub fn datadog(r: &DatadogSecretRef) -> Self {
        let key = |k: &Option<String>, default: &str| k.clone().unwrap_or_else(|| default.into());
        CredentialKeys::Headers {
            name: r.name.clone(),
            headers: vec![
                ("DD-API-KEY", "apiKeyKey", key(&r.api_key_key, "api-key")),
                (
                    "DD-APPLICATION-KEY",
                    "applicationKeyKey",
                    key(&r.application_key_key, "application-key"),
                ),
            ],
        }
    }

    /// The Secret's name.
    pub fn name(&self) -> &str {
        match self {
            CredentialKeys::Http(r) => &r.name,
            CredentialKeys::Headers { name, .. } => name,
        }
    }

    /// Read the keys from a Secret's `data`; errors name the key asked for, never a value.
    pub fn read(
        &self,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<ProviderCredentials, MetricError> {
        match self {
            CredentialKeys::Http(r) => ProviderCredentials::from_secret_data(r, data),
            CredentialKeys::Headers { name, headers } => {
                let mut out = Vec::with_capacity(headers.len());
                for (header, field, key) in headers {
                    let value = data
                        .get(key)
                        .ok_or_else(|| {
                            MetricError::Config(format!(
                                "Secret {name:?} has no key {key:?} (named by secretRef.{field})"
                            ))
                        })
                        .and_then(|b| {
                            String::from_utf8(b.0.clone()).map_err(|_| {
                                MetricError::Config(format!(
                                    "Secret {name:?} key {key:?} (secretRef.{field}) is not UTF-8 text"
                                ))
                            })
                        })?;
                    let value = value.trim_end_matches(['\r', '\n']).to_string();
                    out.push((header.to_string(), value));
                }
                Ok(ProviderCredentials {
                    auth: ProviderAuth::Headers(out),
                    ca_pem: None,
                })
            }
        }
    }
}
