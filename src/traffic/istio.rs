//! Istio: a VirtualService named after the apex Service with weighted routes to the
//! `-primary` and `-canary` hosts, and a DestinationRule per host.
//!
//! Why serin reads and writes the whole `http` list: server-side apply merges a list
//! entry by entry only when the CRD declares it a map list (`x-kubernetes-list-type:
//! map` with keys). Istio's CRD declares no list type, so `spec.http` is atomic: an
//! apply that sends `http` replaces all of it. When the user owns the VirtualService,
//! serin therefore reads it, rewrites only the destinations of the routes that point at
//! the application (keeping every other route and every other field of those routes:
//! matches, retries, timeouts, corsPolicy, headers, rewrites) and applies `spec.http`
//! alone, so `hosts`, `gateways` and the rest stay the user's. Routes serin adds (A/B,
//! session affinity) are named `serin-…` and are regenerated on every write.

use async_trait::async_trait;
use kube::Client;
use serde_json::{json, Map, Value};

use super::apply::{
    owned_by, owned_metadata, partial, split, validate_routing, Resource, WEIGHT_ANNOTATION,
};
use super::registry::{DESTINATION_RULE, VIRTUAL_SERVICE};
use super::{RouteTarget, RouterError, RouterKind, TrafficRouter};
use crate::crd::RequestMatch;

const SERIN_PREFIX: &str = "serin-";

pub struct IstioRouter {
    vs: Resource,
    dr: Resource,
}

impl IstioRouter {
    pub fn new(client: Client) -> Self {
        Self {
            vs: Resource::new(client.clone(), &VIRTUAL_SERVICE),
            dr: Resource::new(client, &DESTINATION_RULE),
        }
    }
}

/// Host names that address `svc` in namespace `ns` from inside the mesh.
fn names_of(svc: &str, ns: &str) -> [String; 4] {
    [
        svc.to_string(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ]
}

fn is_app_host(t: &RouteTarget, host: &str) -> bool {
    [t.service.clone(), t.primary_service(), t.canary_service()]
        .iter()
        .any(|s| names_of(s, &t.namespace).iter().any(|n| n == host))
}

fn is_canary_host(t: &RouteTarget, host: &str) -> bool {
    names_of(&t.canary_service(), &t.namespace)
        .iter()
        .any(|n| n == host)
}

fn is_serin_route(e: &Value) -> bool {
    e["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(SERIN_PREFIX))
}

/// The destination port of the first app destination of a route entry.
fn app_route_port(t: &RouteTarget, e: &Value) -> Option<Option<Value>> {
    e["route"].as_array()?.iter().find_map(|r| {
        let d = &r["destination"];
        d["host"]
            .as_str()
            .filter(|h| is_app_host(t, h))
            .map(|_| d.get("port").cloned())
    })
}

fn destination(host: String, port: &Option<Value>) -> Value {
    let mut d = json!({ "host": host });
    if let Some(p) = port {
        d["port"] = p.clone();
    }
    d
}

/// Istio header conditions for one A/B match.
fn header_condition(m: &RequestMatch) -> (String, Value) {
    if let Some(h) = &m.header {
        let cond = match (&m.exact, &m.regex) {
            (_, Some(r)) => json!({ "regex": r }),
            (Some(x), None) => json!({ "exact": x }),
            (None, None) => json!({ "regex": ".*" }),
        };
        return (h.to_ascii_lowercase(), cond);
    }
    (
        "cookie".into(),
        json!({ "regex": m.cookie_header_regex().unwrap_or_default() }),
    )
}

/// Every user match (or none) combined with every extra condition: Istio ORs the
/// entries of `match` and ANDs the conditions inside one entry.
fn cross_match(user: &Value, extra: &[RequestMatch]) -> Value {
    let base: Vec<Value> = match user.as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!({})],
    };
    let mut out = Vec::new();
    for m in &base {
        for x in extra {
            let mut m = m.clone();
            let (k, v) = header_condition(x);
            if !m["headers"].is_object() {
                m["headers"] = json!({});
            }
            m["headers"][k] = v;
            out.push(m);
        }
    }
    Value::Array(out)
}

fn affinity_match(t: &RouteTarget) -> Option<RequestMatch> {
    t.routing.session_affinity.as_ref().map(|a| RequestMatch {
        cookie: Some(a.cookie_name.clone()),
        exact: Some(t.name.clone()),
        ..Default::default()
    })
}

/// Rewrite `http` so the app's routes carry `weight` percent to the canary.
pub(crate) fn route_http(t: &RouteTarget, http: &[Value], weight: i32) -> Vec<Value> {
    let routing = &t.routing;
    let on = partial(weight);
    let (mut p, mut c) = split(weight);
    if on && routing.weight_is_virtual() {
        (p, c) = (100, 0);
    }
    let mut out = Vec::new();
    for (i, e) in http.iter().filter(|e| !is_serin_route(e)).enumerate() {
        let Some(port) = app_route_port(t, e) else {
            out.push(e.clone());
            continue;
        };
        let mut base = e.clone();
        if let Some(o) = base.as_object_mut() {
            let ours = o
                .get("mirror")
                .and_then(|m| m["host"].as_str())
                .is_some_and(|h| is_canary_host(t, h));
            if ours {
                o.remove("mirror");
                o.remove("mirrorPercentage");
            }
        }
        let to_canary = |name: String, matches: Value| {
            let mut x = base.clone();
            if let Some(o) = x.as_object_mut() {
                o.remove("mirror");
                o.remove("mirrorPercentage");
            }
            x["name"] = json!(name);
            x["match"] = matches;
            x["route"] =
                json!([{ "destination": destination(t.canary_service(), &port), "weight": 100 }]);
            x
        };
        if on {
            if let Some(m) = affinity_match(t) {
                let name = format!("{SERIN_PREFIX}affinity-{i}");
                out.push(to_canary(name, cross_match(&e["match"], &[m])));
            }
            if routing.is_ab() {
                let name = format!("{SERIN_PREFIX}ab-{i}");
                out.push(to_canary(name, cross_match(&e["match"], &routing.matches)));
            }
        }
        let mut canary =
            json!({ "destination": destination(t.canary_service(), &port), "weight": c });
        if let (true, Some(a)) = (on, &routing.session_affinity) {
            let cookie = format!(
                "{}={}; Max-Age={}",
                a.cookie_name, t.name, a.max_age_seconds
            );
            canary["headers"] = json!({ "response": { "add": { "Set-Cookie": cookie } } });
        }
        base["route"] = json!([
            { "destination": destination(t.primary_service(), &port), "weight": p },
            canary,
        ]);
        if let (true, Some(pct)) = (on, routing.mirror_percent) {
            base["mirror"] = destination(t.canary_service(), &port);
            base["mirrorPercentage"] = json!({ "value": f64::from(pct) });
        }
        out.push(base);
    }
    out
}

/// The app's routes pointed back at the apex Service: what the user had before serin.
pub(crate) fn unroute_http(t: &RouteTarget, http: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for e in http.iter().filter(|e| !is_serin_route(e)) {
        let Some(port) = app_route_port(t, e) else {
            out.push(e.clone());
            continue;
        };
        let mut e = e.clone();
        if let Some(o) = e.as_object_mut() {
            let ours = o
                .get("mirror")
                .and_then(|m| m["host"].as_str())
                .is_some_and(|h| is_canary_host(t, h));
            if ours {
                o.remove("mirror");
                o.remove("mirrorPercentage");
            }
        }
        e["route"] = json!([{ "destination": destination(t.service.clone(), &port) }]);
        out.push(e);
    }
    out
}

/// The canary's live share on the first app route, and whether A/B or mirror routes
/// are present; `None` when no app route has been rewritten by serin yet.
fn read_http(t: &RouteTarget, http: &[Value]) -> Option<(i32, bool)> {
    let special = http.iter().any(|e| {
        e["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("serin-ab-"))
            || e["mirror"]["host"]
                .as_str()
                .is_some_and(|h| is_canary_host(t, h))
    });
    let e = http
        .iter()
        .find(|e| !is_serin_route(e) && app_route_port(t, e).is_some())?;
    let routes = e["route"].as_array()?;
    let mut seen_split = false;
    let mut canary = 0i64;
    let mut total = 0i64;
    for r in routes {
        let host = r["destination"]["host"].as_str().unwrap_or_default();
        // A destination without weight takes everything (Istio's default of 100).
        let w = r["weight"]
            .as_i64()
            .unwrap_or(if routes.len() == 1 { 100 } else { 0 });
        total += w;
        if is_canary_host(t, host) {
            canary += w;
            seen_split = true;
        } else if names_of(&t.primary_service(), &t.namespace)
            .iter()
            .any(|n| n == host)
        {
            seen_split = true;
        }
    }
    if !seen_split || total <= 0 {
        return None;
    }
    let pct = i32::try_from(canary * 100 / total).ok()?;
    Some((pct, special))
}

fn http_of(vs: &Value) -> Vec<Value> {
    vs["spec"]["http"].as_array().cloned().unwrap_or_default()
}

impl IstioRouter {
    fn destination_rule(&self, t: &RouteTarget, host: String, weight: i32) -> Value {
        let mut body = self.dr.body(&t.namespace, &host);
        body["metadata"] = owned_metadata(t, &host, weight);
        if let Some(o) = body["metadata"].as_object_mut() {
            o.remove("annotations");
        }
        body["spec"] = json!({ "host": host });
        if let Some(tp) = &t.routing.traffic_policy {
            body["spec"]["trafficPolicy"] = tp.clone();
        }
        body
    }

    /// The objects serin would apply at `weight`, given the existing VirtualService.
    /// Returns (VirtualService body, DestinationRule bodies).
    pub(crate) fn desired(
        &self,
        t: &RouteTarget,
        existing: Option<&Value>,
        weight: i32,
    ) -> Result<(Value, Vec<Value>), RouterError> {
        let name = &t.service;
        let drs = vec![
            self.destination_rule(t, t.primary_service(), weight),
            self.destination_rule(t, t.canary_service(), weight),
        ];
        let user_owned = existing.filter(|vs| !owned_by(vs, t.owner.as_ref()));
        if let Some(vs) = user_owned {
            let http = http_of(vs);
            if !http.iter().any(|e| app_route_port(t, e).is_some()) {
                return Err(RouterError::Config(format!(
                    "VirtualService {}/{name} exists but was not created by serin and has no \
                     http route to host {name}; add a route to {name} (serin splits it between \
                     {} and {}) or delete the VirtualService so serin creates one",
                    t.namespace,
                    t.primary_service(),
                    t.canary_service()
                )));
            }
            let mut body = self.vs.body(&t.namespace, name);
            body["metadata"]["annotations"] = json!({ WEIGHT_ANNOTATION: weight.to_string() });
            body["spec"] = json!({ "http": route_http(t, &http, weight) });
            return Ok((body, drs));
        }
        let hosts = if t.routing.hosts.is_empty() {
            vec![t.service.clone()]
        } else {
            t.routing.hosts.clone()
        };
        let port = Some(json!({ "number": t.port }));
        let base = [json!({ "route": [{ "destination": destination(t.service.clone(), &port) }] })];
        let mut spec = Map::new();
        spec.insert("hosts".into(), json!(hosts));
        if !t.routing.gateways.is_empty() {
            spec.insert("gateways".into(), json!(t.routing.gateways));
        }
        spec.insert("http".into(), json!(route_http(t, &base, weight)));
        let mut body = self.vs.body(&t.namespace, name);
        body["metadata"] = owned_metadata(t, name, weight);
        body["spec"] = Value::Object(spec);
        Ok((body, drs))
    }
}

#[async_trait]
impl TrafficRouter for IstioRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Istio
    }

    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        validate_routing(t)?;
        let existing = self.vs.get(&t.namespace, &t.service).await?;
        let (vs, drs) = self.desired(t, existing.as_ref(), weight)?;
        // Destination rules first: the VirtualService refers to their hosts.
        for dr in drs {
            let name = dr["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.dr.apply(&t.namespace, &name, dr).await?;
        }
        self.vs.apply(&t.namespace, &t.service, vs).await
    }

    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        let Some(vs) = self.vs.get(&t.namespace, &t.service).await? else {
            return Ok(None);
        };
        Ok(read_http(t, &http_of(&vs))
            .and_then(|(live, special)| super::apply::observed(t, &vs, live, special)))
    }

    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        if let Some(vs) = self.vs.get(&t.namespace, &t.service).await? {
            if owned_by(&vs, t.owner.as_ref()) {
                self.vs.delete(&t.namespace, &t.service).await?;
            } else {
                // Hand the user's routes back to the apex Service; the weight annotation
                // is left out, so server-side apply removes it.
                let mut body = self.vs.body(&t.namespace, &t.service);
                body["spec"] = json!({ "http": unroute_http(t, &http_of(&vs)) });
                self.vs.apply(&t.namespace, &t.service, body).await?;
            }
        }
        self.dr.delete(&t.namespace, &t.primary_service()).await?;
        self.dr.delete(&t.namespace, &t.canary_service()).await
    }
}
