//! SMI: a TrafficSplit (`split.smi-spec.io/v1alpha2`, as Linkerd's SMI extension
//! serves it) named after the apex Service, splitting it between `-primary` and
//! `-canary`. Weighted routing only: A/B, mirroring and session affinity need the
//! Istio or Gateway API router.

use async_trait::async_trait;
use kube::Client;
use serde_json::{json, Value};

use super::apply::{
    observed, owned_by, owned_metadata, split, unsupported, validate_routing, Resource,
};
use super::registry::TRAFFIC_SPLIT;
use super::{RouteTarget, RouterError, RouterKind, TrafficRouter};

pub struct SmiRouter {
    split: Resource,
}

impl SmiRouter {
    pub fn new(client: Client) -> Self {
        Self {
            split: Resource::new(client, &TRAFFIC_SPLIT),
        }
    }

    pub(crate) fn desired(&self, t: &RouteTarget, weight: i32) -> Value {
        let (p, c) = split(weight);
        let mut body = self.split.body(&t.namespace, &t.service);
        body["metadata"] = owned_metadata(t, &t.service, weight);
        body["spec"] = json!({
            "service": t.service,
            "backends": [
                { "service": t.primary_service(), "weight": p },
                { "service": t.canary_service(), "weight": c },
            ],
        });
        body
    }
}

fn read_split(t: &RouteTarget, ts: &Value) -> Option<i32> {
    let mut canary = 0f64;
    let mut total = 0f64;
    let mut seen = false;
    for b in ts["spec"]["backends"].as_array()? {
        // v1alpha2 weights are numbers; v1alpha1 allowed quantities such as "500m".
        let w = b["weight"].as_f64()?;
        total += w;
        let svc = b["service"].as_str().unwrap_or_default();
        if svc == t.canary_service() {
            canary += w;
            seen = true;
        } else if svc == t.primary_service() {
            seen = true;
        }
    }
    if !seen || total <= 0.0 {
        return None;
    }
    Some((canary * 100.0 / total).round() as i32)
}

#[async_trait]
impl TrafficRouter for SmiRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Smi
    }

    async fn set_weight(&self, t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        validate_routing(t)?;
        let r = &t.routing;
        unsupported(
            t,
            "smi",
            "istio or gateway-api",
            &[
                ("A/B matching (spec.routing.match)", r.is_ab()),
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
        if let Some(ts) = self.split.get(&t.namespace, &t.service).await? {
            if !owned_by(&ts, t.owner.as_ref()) {
                return Err(RouterError::Config(format!(
                    "TrafficSplit {}/{} exists but was not created by serin for this Canary; \
                     delete it (another controller may own it) so serin can create its own",
                    t.namespace, t.service
                )));
            }
        }
        let body = self.desired(t, weight);
        self.split.apply(&t.namespace, &t.service, body).await
    }

    async fn observed_weight(&self, t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        let Some(ts) = self.split.get(&t.namespace, &t.service).await? else {
            return Ok(None);
        };
        Ok(read_split(t, &ts).and_then(|live| observed(t, &ts, live, false)))
    }

    async fn finalize(&self, t: &RouteTarget) -> Result<(), RouterError> {
        match self.split.get(&t.namespace, &t.service).await? {
            Some(ts) if owned_by(&ts, t.owner.as_ref()) => {
                self.split.delete(&t.namespace, &t.service).await
            }
            _ => Ok(()),
        }
    }
}
