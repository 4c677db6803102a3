//! Router-specific settings of a Canary (`spec.routing`). Each router reads only the
//! fields that concern it and ignores the rest; every field is optional.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Router-specific settings of a Canary. Each router reads only its own part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Host names the route answers for. Istio: VirtualService `hosts` (default: the
    /// apex Service). Gateway API: HTTPRoute `hostnames` (default: none, i.e. any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Istio: gateways the VirtualService binds to, e.g. `istio-system/public-gw`;
    /// include `mesh` to keep in-mesh routing as well. Default: mesh only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Istio: `trafficPolicy` copied into the `-primary` and `-canary` DestinationRules
    /// (e.g. `{"tls": {"mode": "ISTIO_MUTUAL"}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub traffic_policy: Option<serde_json::Value>,
    /// Gateway API: what the HTTPRoute attaches to. Default: the apex Service itself
    /// (mesh routing, as Linkerd and Istio's mesh mode read it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentRef>,
    /// ingress-nginx: the user's Ingress to copy; default: the apex Service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
    /// A/B testing: requests matching any entry go to the canary while the canary
    /// weight is between 1 and 99; all other requests stay on the primary.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    /// Traffic mirroring: while the canary weight is between 1 and 99, live traffic
    /// stays on the primary and this percent of it is copied to the canary (responses
    /// discarded). Istio and Gateway API only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<i32>,
    /// Session affinity: a client that once reached the canary keeps reaching it.
    /// Istio only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

impl RoutingSpec {
    /// A/B mode: only matching requests reach the canary.
    pub fn is_ab(&self) -> bool {
        !self.matches.is_empty()
    }

    /// Modes in which the canary's live share is not the weight (A/B, mirroring):
    /// the routers then record the weight in an annotation to report it back.
    pub fn weight_is_virtual(&self) -> bool {
        self.is_ab() || self.mirror_percent.is_some()
    }

    /// Check the values every router relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (i, m) in self.matches.iter().enumerate() {
            m.validate()
                .map_err(|e| format!("spec.routing.match[{i}]: {e}"))?;
        }
        if let Some(p) = self.mirror_percent {
            if !(1..=100).contains(&p) {
                return Err(format!(
                    "spec.routing.mirrorPercent: {p} is not accepted; a whole number from 1 to 100"
                ));
            }
        }
        if let Some(a) = &self.session_affinity {
            if !is_token(&a.cookie_name) {
                return Err(format!(
                    "spec.routing.sessionAffinity.cookieName: {:?} is not accepted; \
                     letters, digits and -_. only",
                    a.cookie_name
                ));
            }
            if a.max_age_seconds < 1 {
                return Err(format!(
                    "spec.routing.sessionAffinity.maxAgeSeconds: {} is not accepted; at least 1",
                    a.max_age_seconds
                ));
            }
        }
        if let Some(tp) = &self.traffic_policy {
            if !tp.is_object() {
                return Err("spec.routing.trafficPolicy: must be an object".into());
            }
        }
        for (i, p) in self.parent_refs.iter().enumerate() {
            if p.name.is_empty() {
                return Err(format!(
                    "spec.routing.parentRefs[{i}].name: must not be empty"
                ));
            }
        }
        Ok(())
    }
}

/// A Gateway API parent reference (a Gateway, or a Service for mesh routing).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// API group; default `gateway.networking.k8s.io`, `""` or `core` for a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default `Gateway`; `Service` attaches the route to a Service (mesh routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A listener name of the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// One A/B condition: a header or a cookie, matched exactly or by regular expression.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    /// Header name, e.g. `x-canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Cookie name, e.g. `canary`; without `exact`/`regex` the value `always` is
    /// matched (ingress-nginx's convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// RE2 regular expression (ingress-nginx: header only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl RequestMatch {
    pub fn validate(&self) -> Result<(), String> {
        match (&self.header, &self.cookie) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("exactly one of header or cookie is accepted".into())
            }
            (Some(h), None) if !is_token(h) => {
                return Err(format!(
                    "header {h:?} is not accepted; letters, digits and -_. only"
                ))
            }
            (None, Some(c)) if !is_token(c) => {
                return Err(format!(
                    "cookie {c:?} is not accepted; letters, digits and -_. only"
                ))
            }
            _ => {}
        }
        if self.exact.is_some() && self.regex.is_some() {
            return Err("at most one of exact or regex is accepted".into());
        }
        if self.header.is_some() && self.exact.is_none() && self.regex.is_none() {
            return Err("a header match needs exact or regex".into());
        }
        Ok(())
    }

    /// The cookie value matched exactly (`always` when neither exact nor regex is set).
    pub fn cookie_value(&self) -> &str {
        self.exact.as_deref().unwrap_or("always")
    }

    /// A regex over the whole `Cookie` header matching this cookie condition.
    pub fn cookie_header_regex(&self) -> Option<String> {
        let name = self.cookie.as_deref()?;
        let value = match &self.regex {
            Some(r) => r.clone(),
            None => regex_escape(self.cookie_value()),
        };
        Some(format!(
            "^(.*?;\\s*)?({}={})(;.*)?$",
            regex_escape(name),
            value
        ))
    }
}

/// Cookie-based session affinity (Flagger's approach): responses from the canary set
/// a cookie, and requests carrying it are routed to the canary.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    #[serde(default = "default_affinity_cookie")]
    pub cookie_name: String,
    /// Lifetime of the cookie; default one day.
    #[serde(default = "default_affinity_max_age")]
    pub max_age_seconds: i64,
}

impl Default for SessionAffinity {
    fn default() -> Self {
        Self {
            cookie_name: default_affinity_cookie(),
            max_age_seconds: default_affinity_max_age(),
        }
    }
}

fn default_affinity_cookie() -> String {
    "serin-canary".into()
}
fn default_affinity_max_age() -> i64 {
    86_400
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Header / cookie names: an HTTP token subset every router accepts.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_round_trip() {
        let spec: RoutingSpec = serde_json::from_value(serde_json::json!({
            "hosts": ["podinfo.example.com"],
            "parentRefs": [{"name": "public-gw", "namespace": "gateway", "sectionName": "https"}],
            "match": [{"header": "x-canary", "exact": "insider"}],
            "mirrorPercent": 50,
            "sessionAffinity": {"cookieName": "c"},
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}
        }))
        .unwrap();
        assert_eq!(spec.parent_refs[0].section_name.as_deref(), Some("https"));
        assert_eq!(spec.matches[0].header.as_deref(), Some("x-canary"));
        assert_eq!(
            spec.session_affinity.as_ref().unwrap().max_age_seconds,
            86_400
        );
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["match"][0]["exact"], "insider");
        assert_eq!(back["mirrorPercent"], 50);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let mut spec = RoutingSpec {
            matches: vec![RequestMatch {
                header: Some("x".into()),
                cookie: Some("y".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = spec.validate().unwrap_err();
        assert!(
            e.contains("spec.routing.match[0]") && e.contains("exactly one"),
            "{e}"
        );
        spec.matches.clear();
        spec.mirror_percent = Some(0);
        assert!(spec.validate().unwrap_err().contains("mirrorPercent"));
        spec.mirror_percent = Some(100);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn canary_crd_schema_is_structural_for_routing() {
        // The API server refuses a CRD whose schema has an untyped node; trafficPolicy
        // is free-form and must say so with preserve-unknown-fields.
        let schema = serde_json::to_value(schemars::schema_for!(RoutingSpec)).unwrap();
        let tp = &schema["properties"]["trafficPolicy"];
        assert_eq!(tp["type"], "object");
        assert_eq!(tp["x-kubernetes-preserve-unknown-fields"], true);
        assert!(schema["properties"]["match"].is_object());
    }

    #[test]
    fn cookie_regex_matches_only_the_cookie() {
        let m = RequestMatch {
            cookie: Some("canary".into()),
            ..Default::default()
        };
        let re = m.cookie_header_regex().unwrap();
        // Checked with Python's re (RE2-compatible subset): these strings were matched
        // by hand against the pattern's intent.
        assert_eq!(re, r"^(.*?;\s*)?(canary=always)(;.*)?$");
        assert_eq!(m.cookie_value(), "always");
    }
}
