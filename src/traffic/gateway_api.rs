//! Gateway API: an HTTPRoute (`gateway.networking.k8s.io/v1`) named after the apex
//! Service whose backendRefs split traffic between `-primary` and `-canary`.
//!
//! This drives every Gateway API implementation: Envoy Gateway, Cilium, Contour,
//! Istio's Gateway API mode, and Linkerd 2.14+ (mesh routing: the parentRef is the
//! apex Service itself, kind `Service`, group `""`, which is also the default).
//!
//! `spec.rules` is an atomic list in the CRD (`x-kubernetes-list-type: atomic`), so
//! when the user owns the HTTPRoute serin reads it and applies the whole `rules` list,
//! changing only the backendRefs of rules that point at the application and keeping
//! every other rule and field; `parentRefs` and `hostnames` stay the user's.

use async_trait::async_trait;
use kube::Client;
use serde_json::{json, Value};

use super::apply::{
    observed, owned_by, owned_metadata, partial, split, validate_routing, Resource,
    WEIGHT_ANNOTATION,
};
use super::registry::HTTP_ROUTE;
use super::{RouteTarget, RouterError, RouterKind, TrafficRouter};
use crate::crd::{ParentRef, RequestMatch};

/// Name prefix of the A/B rules serin adds (one per app rule).
const AB_RULE: &str = "serin-ab";

fn is_ab_rule(r: &Value) -> bool {
    r["name"].as_str().is_some_and(|n| n.starts_with(AB_RULE))
}

pub struct GatewayApiRouter {
    route: Resource,
}

impl GatewayApiRouter {
    pub fn new(client: Client) -> Self {
        Self {
            route: Resource::new(client, &HTTP_ROUTE),
        }
    }
}

pub(crate) fn parent_ref(p: &ParentRef) -> Value {
    let mut v = json!({ "name": p.name });
    if let Some(g) = &p.group {
        // `core` is how people write the core group; the API spells it "".
        v["group"] = json!(if g == "core" { "" } else { g.as_str() });
    }
    if let Some(k) = &p.kind {
        v["kind"] = json!(k);
        if k == "Service" && p.group.is_none() {
            v["group"] = json!("");
        }
    }
    if let Some(ns) = &p.namespace {
        v["namespace"] = json!(ns);
    }
    if let Some(s) = &p.section_name {
        v["sectionName"] = json!(s);
    }
    if let Some(port) = p.port {
        v["port"] = json!(port);
    }
    v
}

fn parent_refs(t: &RouteTarget) -> Value {
    if t.routing.parent_refs.is_empty() {
        return json!([{ "group": "", "kind": "Service", "name": t.service }]);
    }
    Value::Array(t.routing.parent_refs.iter().map(parent_ref).collect())
}

/// A backendRef to a Service of this app (kind Service in the core group, the default).
fn app_ref_port(t: &RouteTarget, b: &Value) -> Option<i64> {
    let core = b["group"].as_str().unwrap_or("").is_empty()
        && b["kind"].as_str().unwrap_or("Service") == "Service";
    let name = b["name"].as_str()?;
    let ours = [t.service.clone(), t.primary_service(), t.canary_service()]
        .iter()
        .any(|s| s == name);
    (core && ours).then(|| b["port"].as_i64().unwrap_or(i64::from(t.port)))
}

fn rule_port(t: &RouteTarget, rule: &Value) -> Option<i64> {
    rule["backendRefs"]
        .as_array()?
        .iter()
        .find_map(|b| app_ref_port(t, b))
}

fn backend(name: String, port: i64, weight: Option<i32>) -> Value {
    let mut b = json!({ "group": "", "kind": "Service", "name": name, "port": port });
    if let Some(w) = weight {
        b["weight"] = json!(w);
    }
    b
}

fn header_match(m: &RequestMatch) -> Value {
    match (&m.header, &m.regex) {
        (Some(h), Some(r)) => json!({ "type": "RegularExpression", "name": h, "value": r }),
        (Some(h), None) => {
            json!({ "type": "Exact", "name": h, "value": m.exact.clone().unwrap_or_default() })
        }
        (None, _) => json!({
            "type": "RegularExpression",
            "name": "Cookie",
            "value": m.cookie_header_regex().unwrap_or_default(),
        }),
    }
}

/// Every user match (or the default "/" prefix) ANDed with each A/B condition.
fn cross_matches(user: &Value, ab: &[RequestMatch]) -> Value {
    let base: Vec<Value> = match user.as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!({ "path": { "type": "PathPrefix", "value": "/" } })],
    };
    let mut out = Vec::new();
    for m in &base {
        for x in ab {
            let mut m = m.clone();
            let mut headers = m["headers"].as_array().cloned().unwrap_or_default();
            headers.push(header_match(x));
            m["headers"] = Value::Array(headers);
            out.push(m);
        }
    }
    Value::Array(out)
}

fn is_our_mirror(t: &RouteTarget, f: &Value) -> bool {
    f["type"] == "RequestMirror"
        && f["requestMirror"]["backendRef"]["name"].as_str() == Some(t.canary_service().as_str())
}

/// Rewrite `rules` so the app's rules carry `weight` percent to the canary.
pub(crate) fn route_rules(t: &RouteTarget, rules: &[Value], weight: i32) -> Vec<Value> {
    let routing = &t.routing;
    let on = partial(weight);
    let (mut p, mut c) = split(weight);
    if on && routing.weight_is_virtual() {
        (p, c) = (100, 0);
    }
    let mut ab_rules = Vec::new();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().filter(|r| !is_ab_rule(r)).enumerate() {
        let Some(port) = rule_port(t, rule) else {
            out.push(rule.clone());
            continue;
        };
        let mut r = rule.clone();
        let mut filters: Vec<Value> = r["filters"]
            .as_array()
            .map(|f| f.iter().filter(|f| !is_our_mirror(t, f)).cloned().collect())
            .unwrap_or_default();
        if on && routing.is_ab() {
            let mut ab = r.clone();
            ab["name"] = json!(if i == 0 {
                AB_RULE.to_string()
            } else {
                format!("{AB_RULE}-{i}")
            });
            ab["matches"] = cross_matches(&rule["matches"], &routing.matches);
            ab["backendRefs"] = json!([backend(t.canary_service(), port, None)]);
            if filters.is_empty() {
                if let Some(o) = ab.as_object_mut() {
                    o.remove("filters");
                }
            } else {
                ab["filters"] = json!(filters);
            }
            ab_rules.push(ab);
        }
        if let (true, Some(pct)) = (on, routing.mirror_percent) {
            filters.push(json!({
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": backend(t.canary_service(), port, None),
                    "percent": pct,
                },
            }));
        }
        if let Some(o) = r.as_object_mut() {
            if filters.is_empty() {
                o.remove("filters");
            } else {
                o.insert("filters".into(), Value::Array(filters));
            }
        }
        r["backendRefs"] = json!([
            backend(t.primary_service(), port, Some(p)),
            backend(t.canary_service(), port, Some(c)),
        ]);
        out.push(r);
    }
    // The A/B rule goes first; Gateway API also ranks it higher for its header match.
    ab_rules.extend(out);
    ab_rules
}

/// The app's rules pointed back at the apex Service.
pub(crate) fn unroute_rules(t: &RouteTarget, rules: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| !is_ab_rule(r)) {
        let Some(port) = rule_port(t, rule) else {
            out.push(rule.clone());
            continue;
        };
        let mut r = rule.clone();
        let filters: Vec<Value> = r["filters"]
            .as_array()
            .map(|f| f.iter().filter(|f| !is_our_mirror(t, f)).cloned().collect())
            .unwrap_or_default();
        if let Some(o) = r.as_object_mut() {
            if filters.is_empty() {
                o.remove("filters");
            } else {
                o.insert("filters".into(), Value::Array(filters));
            }
        }
        r["backendRefs"] = json!([backend(t.service.clone(), port, None)]);
        out.push(r);
    }
    out
}

fn read_rules(t: &RouteTarget, rules: &[Value]) -> Option<(i32, bool)> {
    let special = rules.iter().any(|r| {
        is_ab_rule(r)
            || r["filters"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| is_our_mirror(t, f)))
    });
    let rule = rules
        .iter()
        .find(|r| !is_ab_rule(r) && rule_port(t, r).is_some())?;
    let (mut canary, mut total, mut split_seen) = (0i64, 0i64, false);
    for b in rule["backendRefs"].as_array()? {
        if app_ref_port(t, b).is_none() {
            continue;
        }
        let w = b["weight"].as_i64().unwrap_or(1);
        total += w;
        let name = b["name"].as_str().unwrap_or_default();
        if name == t.canary_service() {
            canary += w;
            split_seen = true;
        } else if name == t.primary_service() {
            split_seen = true;
        }
    }
    if !split_seen || total <= 0 {
        return None;
    }
    Some((i32::try_from(canary * 100 / total).ok()?, special))
}

fn rules_of(route: &Value) -> Vec<Value> {
    route["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

impl GatewayApiRouter {
    /// The HTTPRoute serin applies at `weight`, given the existing one.
    pub(crate) fn desired(
        &self,
        t: &RouteTarget,
        existing: Option<&Value>,
        weight: i32,
    ) -> Result<Value, RouterError> {
        let name = &t.service;
        let mut body = self.route.body(&t.namespace, name);
        if let Some(route) = existing.filter(|r| !owned_by(r, t.owner.as_ref())) {
            let rules = rules_of(route);
            if !rules.iter().any(|r| rule_port(t, r).is_some()) {
                return Err(RouterError::Config(format!(
                    "HTTPRoute {}/{name} exists but was not created by serin and has no rule \
                     with a backendRef to Service {name}; add one (serin splits it between \
                     {} and {}) or delete the HTTPRoute so serin creates one",
                    t.namespace,
                    t.primary_service(),
                    t.canary_service()
                )));
            }
            body["metadata"]["annotations"] = json!({ WEIGHT_ANNOTATION: weight.to_string() });
            body["spec"] = json!({ "rules": route_rules(t, &rules, weight) });
            return Ok(body);
        }
        let base =
            [json!({ "backendRefs": [backend(t.service.clone(), i64::from(t.port), None)] })];
        body["metadata"] = owned_metadata(t, name, weight);
        body["spec"] = json!({
            "parentRefs": parent_refs(t),
            "rules": route_rules(t, &base, weight),
        });
        if !t.routing.hosts.is_empty() {
            body["spec"]["hostnames"] = json!(t.routing.hosts);
        }
        Ok(body)
    }
}

#[async_trait]
impl TrafficRouter for GatewayApiRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::GatewayApi
    }

    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        validate_routing(t)?;
        // Gateway API has no response-header-on-one-backend filter serin could rely on
        // across implementations, so cookie affinity is refused rather than faked.
        super::apply::unsupported(
            t,
            "gateway-api",
            "istio",
            &[(
                "session affinity (spec.routing.sessionAffinity)",
                t.routing.session_affinity.is_some(),
            )],
        )?;
        let existing = self.route.get(&t.namespace, &t.service).await?;
        let body = self.desired(t, existing.as_ref(), weight)?;
        self.route.apply(&t.namespace, &t.service, body).await
    }

    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        let Some(route) = self.route.get(&t.namespace, &t.service).await? else {
            return Ok(None);
        };
        Ok(read_rules(t, &rules_of(&route))
            .and_then(|(live, special)| observed(t, &route, live, special)))
    }

    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        let Some(route) = self.route.get(&t.namespace, &t.service).await? else {
            return Ok(());
        };
        if owned_by(&route, t.owner.as_ref()) {
            return self.route.delete(&t.namespace, &t.service).await;
        }
        let mut body = self.route.body(&t.namespace, &t.service);
        body["spec"] = json!({ "rules": unroute_rules(t, &rules_of(&route)) });
        self.route.apply(&t.namespace, &t.service, body).await
    }
}
