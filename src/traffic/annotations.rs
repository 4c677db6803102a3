//! Router settings from a Deployment's `serin.dev/*` annotations: a pure parser the
//! annotation onboarding calls to fill `CanarySpec::routing`.
//!
//! | key | value | example |
//! |-----|-------|---------|
//! | `serin.dev/hosts` | comma-separated host names | `podinfo.example.com` |
//! | `serin.dev/istio-gateways` | comma-separated `[namespace/]name` or `mesh` | `istio-system/public-gw,mesh` |
//! | `serin.dev/istio-traffic-policy` | JSON object (DestinationRule trafficPolicy) | `{"tls":{"mode":"ISTIO_MUTUAL"}}` |
//! | `serin.dev/gateway-parent-refs` | comma-separated `[Kind:][namespace/]name[#sectionName]` | `gateway/public-gw#https` |
//! | `serin.dev/ingress` | Ingress name | `podinfo` |
//! | `serin.dev/ab-header` | `name=value` (exact) or `name~regex` | `x-canary=insider` |
//! | `serin.dev/ab-cookie` | `name` (value `always`) or `name=value` | `canary` |
//! | `serin.dev/mirror-percent` | 1..=100 | `50` |
//! | `serin.dev/session-affinity-cookie` | cookie name | `serin-canary` |
//! | `serin.dev/session-affinity-max-age` | duration, e.g. `1h` | `24h` |

use std::collections::BTreeMap;

use crate::crd::{ParentRef, RequestMatch, RoutingSpec, SessionAffinity};

/// A routing annotation whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: value {value:?} is not accepted; expected {accepted}")]
pub struct RoutingAnnotationError {
    pub key: String,
    pub value: String,
    pub accepted: String,
}

impl RoutingAnnotationError {
    pub fn category(&self) -> &'static str {
        "config"
    }
}

pub const HOSTS: &str = "serin.dev/hosts";
pub const ISTIO_GATEWAYS: &str = "serin.dev/istio-gateways";
pub const ISTIO_TRAFFIC_POLICY: &str = "serin.dev/istio-traffic-policy";
pub const GATEWAY_PARENT_REFS: &str = "serin.dev/gateway-parent-refs";
pub const INGRESS: &str = "serin.dev/ingress";
pub const AB_HEADER: &str = "serin.dev/ab-header";
pub const AB_COOKIE: &str = "serin.dev/ab-cookie";
pub const MIRROR_PERCENT: &str = "serin.dev/mirror-percent";
pub const AFFINITY_COOKIE: &str = "serin.dev/session-affinity-cookie";
pub const AFFINITY_MAX_AGE: &str = "serin.dev/session-affinity-max-age";

/// Every routing key, for the onboarding's list of known annotations.
pub const KEYS: [&str; 10] = [
    HOSTS,
    ISTIO_GATEWAYS,
    ISTIO_TRAFFIC_POLICY,
    GATEWAY_PARENT_REFS,
    INGRESS,
    AB_HEADER,
    AB_COOKIE,
    MIRROR_PERCENT,
    AFFINITY_COOKIE,
    AFFINITY_MAX_AGE,
];

fn err(key: &str, value: &str, accepted: &str) -> RoutingAnnotationError {
    RoutingAnnotationError {
        key: key.into(),
        value: value.into(),
        accepted: accepted.into(),
    }
}

fn list(v: &str) -> Vec<&str> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// DNS-1123 subdomain (what Kubernetes accepts for object names and namespaces).
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_host(s: &str) -> bool {
    is_dns_name(s.strip_prefix("*.").unwrap_or(s))
}

fn parse_parent_ref(item: &str) -> Option<ParentRef> {
    let (kind, rest) = match item.split_once(':') {
        Some((k, r)) => (Some(k), r),
        None => (None, item),
    };
    let (rest, section) = match rest.split_once('#') {
        Some((r, s)) => (r, Some(s)),
        None => (rest, None),
    };
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, rest),
    };
    let ok_kind = kind.is_none_or(|k| {
        k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && k.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !ok_kind
        || !is_dns_name(name)
        || !namespace.is_none_or(is_dns_name)
        || !section.is_none_or(is_dns_name)
    {
        return None;
    }
    Some(ParentRef {
        group: (kind == Some("Service")).then(String::new),
        kind: kind.map(str::to_string),
        name: name.into(),
        namespace: namespace.map(str::to_string),
        section_name: section.map(str::to_string),
        port: None,
    })
}

/// The routing part of a Canary from a Deployment's annotations (other keys ignored).
pub fn routing_from_annotations(
    a: &BTreeMap<String, String>,
) -> Result<RoutingSpec, RoutingAnnotationError> {
    let mut r = RoutingSpec::default();
    if let Some(v) = a.get(HOSTS) {
        let hosts = list(v);
        if hosts.is_empty() || !hosts.iter().all(|h| is_host(h)) {
            return Err(err(
                HOSTS,
                v,
                "comma-separated DNS host names, e.g. podinfo.example.com",
            ));
        }
        r.hosts = hosts.into_iter().map(str::to_string).collect();
    }
    if let Some(v) = a.get(ISTIO_GATEWAYS) {
        let gws = list(v);
        let ok = |g: &&str| match g.split_once('/') {
            Some((ns, n)) => is_dns_name(ns) && is_dns_name(n),
            None => is_dns_name(g),
        };
        if gws.is_empty() || !gws.iter().all(ok) {
            return Err(err(
                ISTIO_GATEWAYS,
                v,
                "comma-separated gateways as [namespace/]name, or mesh",
            ));
        }
        r.gateways = gws.into_iter().map(str::to_string).collect();
    }
    if let Some(v) = a.get(ISTIO_TRAFFIC_POLICY) {
        match serde_json::from_str::<serde_json::Value>(v) {
            Ok(p) if p.is_object() => r.traffic_policy = Some(p),
            _ => {
                return Err(err(
                    ISTIO_TRAFFIC_POLICY,
                    v,
                    "a JSON object, e.g. {\"tls\":{\"mode\":\"ISTIO_MUTUAL\"}}",
                ))
            }
        }
    }
    if let Some(v) = a.get(GATEWAY_PARENT_REFS) {
        let refs: Option<Vec<ParentRef>> = list(v).into_iter().map(parse_parent_ref).collect();
        match refs {
            Some(refs) if !refs.is_empty() => r.parent_refs = refs,
            _ => {
                return Err(err(
                    GATEWAY_PARENT_REFS,
                    v,
                    "comma-separated [Kind:][namespace/]name[#sectionName], e.g. \
                     gateway/public-gw#https or Service:podinfo",
                ))
            }
        }
    }
    if let Some(v) = a.get(INGRESS) {
        if !is_dns_name(v.trim()) {
            return Err(err(
                INGRESS,
                v,
                "the name of an Ingress in the Deployment's namespace",
            ));
        }
        r.ingress = Some(v.trim().to_string());
    }
    if let Some(v) = a.get(AB_HEADER) {
        let m = match (v.split_once('='), v.split_once('~')) {
            (Some((h, x)), _) if !x.is_empty() => RequestMatch {
                header: Some(h.trim().into()),
                exact: Some(x.into()),
                ..Default::default()
            },
            (None, Some((h, re))) if !re.is_empty() => RequestMatch {
                header: Some(h.trim().into()),
                regex: Some(re.into()),
                ..Default::default()
            },
            _ => RequestMatch::default(),
        };
        if m.validate().is_err() {
            return Err(err(
                AB_HEADER,
                v,
                "name=value (exact match) or name~regex, e.g. x-canary=insider",
            ));
        }
        r.matches.push(m);
    }
    if let Some(v) = a.get(AB_COOKIE) {
        let (name, value) = match v.split_once('=') {
            Some((n, x)) => (n.trim(), Some(x.to_string())),
            None => (v.trim(), None),
        };
        let m = RequestMatch {
            cookie: Some(name.into()),
            exact: value,
            ..Default::default()
        };
        if m.validate().is_err() || m.exact.as_deref() == Some("") {
            return Err(err(
                AB_COOKIE,
                v,
                "a cookie name (matches value \"always\") or name=value",
            ));
        }
        r.matches.push(m);
    }
    if let Some(v) = a.get(MIRROR_PERCENT) {
        match v.trim().parse::<i32>() {
            Ok(p) if (1..=100).contains(&p) => r.mirror_percent = Some(p),
            _ => return Err(err(MIRROR_PERCENT, v, "a whole number from 1 to 100")),
        }
    }
    if a.contains_key(AFFINITY_COOKIE) || a.contains_key(AFFINITY_MAX_AGE) {
        let mut s = SessionAffinity::default();
        if let Some(v) = a.get(AFFINITY_COOKIE) {
            if !crate::crd::is_token(v.trim()) {
                return Err(err(
                    AFFINITY_COOKIE,
                    v,
                    "a cookie name: letters, digits and -_. only",
                ));
            }
            s.cookie_name = v.trim().into();
        }
        if let Some(v) = a.get(AFFINITY_MAX_AGE) {
            match humantime::parse_duration(v.trim()) {
                Ok(d) if d.as_secs() >= 1 && d.as_secs() <= 400 * 86_400 => {
                    s.max_age_seconds = d.as_secs() as i64
                }
                _ => {
                    return Err(err(
                        AFFINITY_MAX_AGE,
                        v,
                        "a duration from 1s to 400d, e.g. 24h",
                    ))
                }
            }
        }
        r.session_affinity = Some(s);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_keys_no_settings() {
        let r = routing_from_annotations(&ann(&[("serin.dev/enabled", "true")])).unwrap();
        assert_eq!(r, RoutingSpec::default());
    }

    #[test]
    fn every_key_parses() {
        let r = routing_from_annotations(&ann(&[
            (HOSTS, "podinfo.example.com, *.shop.example.com"),
            (ISTIO_GATEWAYS, "istio-system/public-gw,mesh"),
            (ISTIO_TRAFFIC_POLICY, r#"{"tls":{"mode":"ISTIO_MUTUAL"}}"#),
            (
                GATEWAY_PARENT_REFS,
                "gateway/public-gw#https,Service:podinfo",
            ),
            (INGRESS, "podinfo-web"),
            (AB_HEADER, "x-canary=insider"),
            (AB_COOKIE, "canary"),
            (MIRROR_PERCENT, "50"),
            (AFFINITY_MAX_AGE, "1h"),
        ]))
        .unwrap();
        assert_eq!(r.hosts, ["podinfo.example.com", "*.shop.example.com"]);
        assert_eq!(r.gateways, ["istio-system/public-gw", "mesh"]);
        assert_eq!(r.traffic_policy.unwrap()["tls"]["mode"], "ISTIO_MUTUAL");
        assert_eq!(r.parent_refs[0].namespace.as_deref(), Some("gateway"));
        assert_eq!(r.parent_refs[0].section_name.as_deref(), Some("https"));
        assert_eq!(r.parent_refs[0].kind, None);
        assert_eq!(r.parent_refs[1].kind.as_deref(), Some("Service"));
        assert_eq!(r.parent_refs[1].group.as_deref(), Some(""));
        assert_eq!(r.ingress.as_deref(), Some("podinfo-web"));
        assert_eq!(r.matches[0].exact.as_deref(), Some("insider"));
        assert_eq!(r.matches[1].cookie.as_deref(), Some("canary"));
        assert_eq!(r.mirror_percent, Some(50));
        let s = r.session_affinity.unwrap();
        assert_eq!(
            (s.cookie_name.as_str(), s.max_age_seconds),
            ("serin-canary", 3600)
        );
    }

    #[test]
    fn header_regex_form() {
        let r = routing_from_annotations(&ann(&[(AB_HEADER, "x-user~^(alice|bob)$")])).unwrap();
        assert_eq!(r.matches[0].regex.as_deref(), Some("^(alice|bob)$"));
        assert_eq!(r.matches[0].exact, None);
    }

    #[test]
    fn bad_values_quote_key_value_and_accepted() {
        let cases = [
            (MIRROR_PERCENT, "0"),
            (MIRROR_PERCENT, "half"),
            (HOSTS, "Not A Host"),
            (ISTIO_GATEWAYS, "a/b/c"),
            (ISTIO_TRAFFIC_POLICY, "[1]"),
            (GATEWAY_PARENT_REFS, "gateway/"),
            (GATEWAY_PARENT_REFS, "1bad:gw"),
            (INGRESS, "Bad_Name"),
            (AB_HEADER, "x-canary"),
            (AB_HEADER, "bad header=1"),
            (AB_COOKIE, "c="),
            (AFFINITY_COOKIE, "a b"),
            (AFFINITY_MAX_AGE, "0s"),
        ];
        for (k, v) in cases {
            let e = routing_from_annotations(&ann(&[(k, v)])).unwrap_err();
            assert_eq!((e.key.as_str(), e.value.as_str()), (k, v));
            let msg = e.to_string();
            assert!(msg.contains(k) && msg.contains("expected"), "{msg}");
        }
    }
}
