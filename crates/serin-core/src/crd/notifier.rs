use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// Where the release events of the Canaries in this namespace are sent.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "Notifier",
    namespaced,
    shortname = "ntf",
    category = "serin",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Severity","type":"string","jsonPath":".spec.severity"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NotifierSpec {
    #[serde(rename = "type")]
    pub type_: NotifierType,
    /// The Secret key holding the URL (Slack/Teams incoming webhook, or any endpoint).
    pub secret_ref: SecretKeyRef,
    /// Slack channel override (`#releases`); ignored by the other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Least severity sent: info (everything), warning, or error (rollbacks only).
    #[serde(default)]
    pub severity: Severity,
    /// Only these Canaries (by name); empty means all in scope.
    #[serde(default)]
    pub canaries: Vec<String>,
}

/// The cluster default: used for Canaries whose namespace has no Notifier. Its Secret
/// lives in the controller's namespace.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "ClusterNotifier",
    shortname = "cntf",
    category = "serin",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Severity","type":"string","jsonPath":".spec.severity"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNotifierSpec {
    #[serde(flatten)]
    pub notifier: NotifierSpec,
    /// Only Canaries in these namespaces; empty means all.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifierType {
    /// Slack incoming webhook, Block Kit message.
    #[default]
    Slack,
    /// Microsoft Teams incoming webhook / workflow, Adaptive Card.
    Teams,
    /// Any endpoint, plain JSON.
    Webhook,
}

impl NotifierType {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifierType::Slack => "slack",
            NotifierType::Teams => "teams",
            NotifierType::Webhook => "webhook",
        }
    }
}

/// How bad a release event is. Normal notes are info, Warning notes warning, rollbacks error.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_core::CustomResourceExt;

    #[test]
    fn scopes_and_flattened_schema() {
        let ns = Notifier::crd();
        let cl = ClusterNotifier::crd();
        assert_eq!(ns.spec.scope, "Namespaced");
        assert_eq!(cl.spec.scope, "Cluster");
        let schema = |c: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
            serde_json::to_value(&c.spec.versions[0].schema).unwrap()["openAPIV3Schema"]["properties"]["spec"].clone()
        };
        // The cluster kind has the same fields, flattened, plus its namespace filter.
        let cs = schema(&cl);
        for field in [
            "type",
            "secretRef",
            "channel",
            "severity",
            "canaries",
            "namespaces",
        ] {
            assert!(
                cs["properties"].get(field).is_some(),
                "{field} missing: {cs}"
            );
        }
        let required = schema(&ns)["required"].clone();
        assert_eq!(required, serde_json::json!(["secretRef", "type"]));
        assert_eq!(
            schema(&ns)["properties"]["severity"]["enum"],
            serde_json::json!(["info", "warning", "error"])
        );
    }

    #[test]
    fn crds_yaml_lists_the_notifier_kinds() {
        let yaml = crate::crd::crds_yaml().unwrap();
        assert!(yaml.contains("kind: Notifier\n"));
        assert!(yaml.contains("kind: ClusterNotifier\n"));
    }

    #[test]
    fn canary_spec_webhooks_default_and_parse() {
        let spec: crate::crd::CanarySpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"name": "p"},
            "webhooks": [{"name": "lt", "type": "confirm-traffic-increase", "url": "http://x/"}]
        }))
        .unwrap();
        let h = &spec.webhooks[0];
        assert_eq!(h.type_, crate::crd::WebhookType::ConfirmTrafficIncrease);
        assert_eq!((h.timeout.as_str(), h.retries), ("10s", 2));
        let none: crate::crd::CanarySpec =
            serde_json::from_value(serde_json::json!({"targetRef": {"name": "p"}})).unwrap();
        assert!(none.webhooks.is_empty());
    }
}
