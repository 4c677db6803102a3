//! Shared server-side-apply helpers of the CRD-based routers.
//!
//! Every write is an apply patch under field manager [`FIELD_MANAGER`], so repeating
//! it changes nothing and fields other managers own survive. `force` is set because
//! the fields serin sends are exactly the ones it owns (routing weights, its own
//! objects); fields it does not own are never part of the patch.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::registry::ObjectKind;
use super::{RouteTarget, RouterError};
use crate::crd::FIELD_MANAGER;

/// Annotation holding the weight serin last set, for modes (A/B, mirroring) where the
/// route itself cannot say it.
pub const WEIGHT_ANNOTATION: &str = "serin.dev/canary-weight";

/// A namespaced dynamic API for one resource type.
#[derive(Clone)]
pub(crate) struct Resource {
    pub client: Client,
    pub ar: ApiResource,
}

impl Resource {
    pub fn new(client: Client, kind: &ObjectKind) -> Self {
        Self {
            client,
            ar: kind.api_resource(),
        }
    }

    fn api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &self.ar)
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(&self, ns: &str, name: &str) -> Result<Option<Value>, RouterError> {
        match self.api(ns).get_opt(name).await {
            Ok(Some(o)) => serde_json::to_value(o)
                .map(Some)
                .map_err(|e| RouterError::Backend(format!("decoding {}: {e}", self.ar.kind))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.error(ns, name, e)),
        }
    }

    /// Server-side apply of `body` (a full object: apiVersion, kind, metadata.name).
    pub async fn apply(&self, ns: &str, name: &str, body: Value) -> Result<(), RouterError> {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        self.api(ns)
            .patch(name, &pp, &Patch::Apply(body))
            .await
            .map(|_| ())
            .map_err(|e| self.error(ns, name, e))
    }

    /// Delete, treating "already gone" as done.
    pub async fn delete(&self, ns: &str, name: &str) -> Result<(), RouterError> {
        match self.api(ns).delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.error(ns, name, e)),
        }
    }

    /// The skeleton of an apply body: apiVersion, kind, name, namespace.
    pub fn body(&self, ns: &str, name: &str) -> Value {
        json!({
            "apiVersion": self.ar.api_version,
            "kind": self.ar.kind,
            "metadata": {"name": name, "namespace": ns},
        })
    }

    /// A 422 means the object serin built from the Canary is invalid for this cluster
    /// (a bad parentRef, an unknown trafficPolicy field): a config error the user can
    /// fix, quoting the server's reasons. Anything else stays a Kubernetes error.
    fn error(&self, ns: &str, name: &str, e: kube::Error) -> RouterError {
        match e {
            kube::Error::Api(s) if s.code == 422 => RouterError::Config(format!(
                "the API server rejected {} {ns}/{name} written by serin: {}",
                self.ar.kind, s.message
            )),
            other => RouterError::Kube(other),
        }
    }
}

/// Owner references for objects serin creates (never for the user's own objects).
pub(crate) fn owner_refs(t: &RouteTarget) -> Value {
    match &t.owner {
        Some(o) => json!([o]),
        None => json!([]),
    }
}

/// Whether `obj` was created by serin for this Canary (carries its owner reference).
pub(crate) fn owned_by(obj: &Value, owner: Option<&OwnerReference>) -> bool {
    let Some(owner) = owner else {
        // Without an owner to compare (local runs), treat serin's label as ownership.
        return obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "serin";
    };
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner.uid.as_str()))
}

/// The weight recorded in [`WEIGHT_ANNOTATION`], if valid.
pub(crate) fn recorded_weight(obj: &Value) -> Option<i32> {
    obj["metadata"]["annotations"][WEIGHT_ANNOTATION]
        .as_str()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|w| (0..=100).contains(w))
}

/// Metadata serin puts on objects it creates.
pub(crate) fn owned_metadata(t: &RouteTarget, name: &str, weight: i32) -> Value {
    json!({
        "name": name,
        "namespace": t.namespace,
        "labels": {"app.kubernetes.io/managed-by": "serin", crate::crd::CANARY_LABEL: t.name},
        "annotations": {WEIGHT_ANNOTATION: weight.to_string()},
        "ownerReferences": owner_refs(t),
    })
}

/// Primary and canary shares for a canary weight, clamped to 0..=100.
pub(crate) fn split(weight: i32) -> (i32, i32) {
    let w = weight.clamp(0, 100);
    (100 - w, w)
}

/// Whether matching / mirrored / affinity routes are active at this weight.
pub(crate) fn partial(weight: i32) -> bool {
    (1..100).contains(&weight)
}

/// The canary weight the routers observe. `live_canary` is the canary's share of the
/// default route; `special` says whether serin's A/B / mirror routes are present. In
/// A/B or mirror mode the live split stays 100/0 during a release, so the recorded
/// weight is reported. An object in a shape the spec would not produce yields `None`,
/// which makes the controller write it again.
pub(crate) fn observed(
    t: &RouteTarget,
    obj: &Value,
    live_canary: i32,
    special: bool,
) -> Option<i32> {
    match (t.routing.weight_is_virtual(), special) {
        (true, true) if live_canary == 0 => recorded_weight(obj).filter(|w| partial(*w)),
        (true, false) if !partial(live_canary) => Some(live_canary),
        (false, false) => Some(live_canary),
        _ => None,
    }
}

/// The features a router cannot provide, as a config error naming them and the
/// routers that can.
pub(crate) fn unsupported(
    t: &RouteTarget,
    router: &str,
    alternatives: &str,
    what: &[(&str, bool)],
) -> Result<(), RouterError> {
    let asked: Vec<&str> = what.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    if asked.is_empty() {
        return Ok(());
    }
    Err(RouterError::Config(format!(
        "Canary {}/{} asks for {} but router {router} cannot provide it; \
         remove it or use router {alternatives}",
        t.namespace,
        t.name,
        asked.join(" and ")
    )))
}

pub(crate) fn validate_routing(t: &RouteTarget) -> Result<(), RouterError> {
    t.routing
        .validate()
        .map_err(|e| RouterError::Config(format!("Canary {}/{}: {e}", t.namespace, t.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_clamps() {
        assert_eq!(split(10), (90, 10));
        assert_eq!(split(-5), (100, 0));
        assert_eq!(split(120), (0, 100));
    }

    #[test]
    fn ownership_by_uid() {
        let owner = OwnerReference {
            uid: "u1".into(),
            ..Default::default()
        };
        let obj = json!({"metadata": {"ownerReferences": [{"uid": "u1"}]}});
        assert!(owned_by(&obj, Some(&owner)));
        let other = json!({"metadata": {"ownerReferences": [{"uid": "u2"}]}});
        assert!(!owned_by(&other, Some(&owner)));
        assert!(!owned_by(&json!({"metadata": {}}), Some(&owner)));
    }
}
