//! ingress-nginx: a `<ingress>-canary` copy of the user's Ingress whose backends point
//! at `<svc>-canary`, marked as canary by annotations (weight, by-header, by-cookie).
//! The user's Ingress is only read, never written. The annotation prefix is the
//! controller's `--annotations-prefix` (default `nginx.ingress.kubernetes.io`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use kube::Client;
use serde_json::{json, Value};

use super::apply::{
    observed, owned_by, owned_metadata, partial, split, unsupported, validate_routing, Resource,
};
use super::registry::INGRESS;
use super::{RouteTarget, RouterError, RouterKind, TrafficRouter};

pub const DEFAULT_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";

pub struct IngressNginxRouter {
    ingress: Resource,
    prefix: String,
}

impl IngressNginxRouter {
    /// `prefix`: ingress-nginx's `--annotations-prefix`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            ingress: Resource::new(client, &INGRESS),
            prefix: prefix.into(),
        }
    }

    fn key(&self, k: &str) -> String {
        format!("{}/{k}", self.prefix)
    }

    fn user_ingress(t: &RouteTarget) -> String {
        t.routing
            .ingress
            .clone()
            .unwrap_or_else(|| t.service.clone())
    }

    fn canary_ingress(t: &RouteTarget) -> String {
        format!("{}-canary", Self::user_ingress(t))
    }

    /// The canary annotations for `weight`.
    fn annotations(
        &self,
        t: &RouteTarget,
        weight: i32,
    ) -> Result<BTreeMap<String, String>, RouterError> {
        let r = &t.routing;
        let mut a = BTreeMap::new();
        a.insert(self.key("canary"), "true".to_string());
        let (_, mut c) = split(weight);
        if partial(weight) && r.is_ab() {
            c = 0;
            let bad = |what: &str| {
                RouterError::Config(format!(
                    "Canary {}/{}: spec.routing.match: {what} is not accepted by router \
                     ingress-nginx; it takes at most one header (exact value or regex) \
                     and one cookie (whose value must be \"always\")",
                    t.namespace, t.name
                ))
            };
            let headers: Vec<_> = r.matches.iter().filter(|m| m.header.is_some()).collect();
            let cookies: Vec<_> = r.matches.iter().filter(|m| m.cookie.is_some()).collect();
            if headers.len() > 1 || cookies.len() > 1 {
                return Err(bad("more than one header or cookie"));
            }
            if let Some(h) = headers.first() {
                a.insert(
                    self.key("canary-by-header"),
                    h.header.clone().unwrap_or_default(),
                );
                if let Some(v) = &h.exact {
                    a.insert(self.key("canary-by-header-value"), v.clone());
                }
                if let Some(re) = &h.regex {
                    a.insert(self.key("canary-by-header-pattern"), re.clone());
                }
            }
            if let Some(ck) = cookies.first() {
                if ck.regex.is_some() || ck.cookie_value() != "always" {
                    return Err(bad("a cookie value other than \"always\""));
                }
                a.insert(
                    self.key("canary-by-cookie"),
                    ck.cookie.clone().unwrap_or_default(),
                );
            }
        }
        a.insert(self.key("canary-weight"), c.to_string());
        Ok(a)
    }

    /// The canary Ingress serin applies at `weight`, copied from the user's Ingress.
    pub(crate) fn desired(
        &self,
        t: &RouteTarget,
        user: &Value,
        weight: i32,
    ) -> Result<Value, RouterError> {
        let name = Self::canary_ingress(t);
        let mut spec = user["spec"].clone();
        let mut found = false;
        let mut retarget = |backend: &mut Value| {
            let svc = backend["service"]["name"].as_str().unwrap_or_default();
            if svc == t.service || svc == t.primary_service() {
                backend["service"]["name"] = json!(t.canary_service());
                found = true;
            }
        };
        if spec["defaultBackend"].is_object() {
            retarget(&mut spec["defaultBackend"]);
        }
        if let Some(rules) = spec["rules"].as_array_mut() {
            for rule in rules.iter_mut() {
                if let Some(paths) = rule["http"]["paths"].as_array_mut() {
                    for p in paths.iter_mut() {
                        retarget(&mut p["backend"]);
                    }
                    // Paths to other Services stay on the main Ingress only: a canary
                    // copy of them would split traffic that is not this release's.
                    let canary = t.canary_service();
                    paths.retain(|p| p["backend"]["service"]["name"] == canary.as_str());
                }
            }
            rules.retain(|r| r["http"]["paths"].as_array().is_some_and(|p| !p.is_empty()));
        }
        let canary = t.canary_service();
        if spec["defaultBackend"]["service"]["name"] != canary.as_str() {
            if let Some(o) = spec.as_object_mut() {
                o.remove("defaultBackend");
            }
        }
        if !found {
            return Err(RouterError::Config(format!(
                "Ingress {}/{} has no backend pointing at Service {}; point its backends at \
                 {} (or set spec.routing.ingress / serin.dev/ingress to the right Ingress)",
                t.namespace,
                Self::user_ingress(t),
                t.service,
                t.service
            )));
        }
        // TLS stays on the main Ingress; ingress-nginx takes it from there.
        if let Some(o) = spec.as_object_mut() {
            o.remove("tls");
        }
        let mut annotations: BTreeMap<String, String> = BTreeMap::new();
        if let Some(user_ann) = user["metadata"]["annotations"].as_object() {
            let prefix = format!("{}/", self.prefix);
            for (k, v) in user_ann {
                let keep = k.starts_with(&prefix) && !k[prefix.len()..].starts_with("canary");
                if let (true, Some(v)) = (keep, v.as_str()) {
                    annotations.insert(k.clone(), v.to_string());
                }
            }
        }
        annotations.extend(self.annotations(t, weight)?);
        let mut meta = owned_metadata(t, &name, weight);
        for (k, v) in annotations {
            meta["annotations"][k] = json!(v);
        }
        let mut body = self.ingress.body(&t.namespace, &name);
        body["metadata"] = meta;
        body["spec"] = spec;
        Ok(body)
    }

    fn read(&self, ing: &Value) -> Option<(i32, bool)> {
        let a = &ing["metadata"]["annotations"];
        if a[self.key("canary")] != "true" {
            return None;
        }
        let live = a[self.key("canary-weight")]
            .as_str()
            .and_then(|s| s.parse::<i32>().ok())?;
        let special = ["canary-by-header", "canary-by-cookie"]
            .iter()
            .any(|k| a[self.key(k)].is_string());
        Some((live, special))
    }
}

#[async_trait]
impl TrafficRouter for IngressNginxRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::IngressNginx
    }

    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        validate_routing(t)?;
        let r = &t.routing;
        unsupported(
            t,
            "ingress-nginx",
            "istio (or gateway-api for mirroring)",
            &[
                (
                    "mirroring (spec.routing.mirrorPercent)",
                    r.mirror_percent.is_some(),
                ),
                (
                    "session affinity (spec.routing.sessionAffinity)",
                    r.session_affinity.is_some(),
                ),
            ],
        )?;
        let user_name = Self::user_ingress(t);
        let Some(user) = self.ingress.get(&t.namespace, &user_name).await? else {
            return Err(RouterError::Config(format!(
                "Ingress {}/{user_name} not found; router ingress-nginx copies the application's \
                 Ingress: create it, or name it in spec.routing.ingress / serin.dev/ingress",
                t.namespace
            )));
        };
        let name = Self::canary_ingress(t);
        if let Some(existing) = self.ingress.get(&t.namespace, &name).await? {
            if !owned_by(&existing, t.owner.as_ref()) {
                return Err(RouterError::Config(format!(
                    "Ingress {}/{name} exists but was not created by serin; serin needs that \
                     name for the canary copy of Ingress {user_name}: rename or delete it",
                    t.namespace
                )));
            }
        }
        let body = self.desired(t, &user, weight)?;
        self.ingress.apply(&t.namespace, &name, body).await
    }

    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        let Some(ing) = self
            .ingress
            .get(&t.namespace, &Self::canary_ingress(t))
            .await?
        else {
            return Ok(None);
        };
        Ok(self
            .read(&ing)
            .and_then(|(live, special)| observed(t, &ing, live, special)))
    }

    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        let name = Self::canary_ingress(t);
        match self.ingress.get(&t.namespace, &name).await? {
            Some(ing) if owned_by(&ing, t.owner.as_ref()) => {
                self.ingress.delete(&t.namespace, &name).await
            }
            _ => Ok(()),
        }
    }
}
