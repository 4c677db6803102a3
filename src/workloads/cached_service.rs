//! A Service as serin's watch cache keeps it: what the checks compare (labels, owners,
//! the weight annotation, selector and ports) and its identity. The k8s-openapi
//! `Service` is 824 bytes inline, its `ObjectMeta` alone 360, and each of its maps
//! (labels, selector) a `BTreeMap` node of 544 bytes; the cache holds up to three
//! Services per Canary, in a [`super::service_store::ServiceStore`]. Writes never start
//! from a cached copy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pairs::Pairs;
use crate::traffic::WEIGHT_ANNOTATION;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedService {
    namespace: Box<str>,
    name: Box<str>,
    resource_version: Option<Box<str>>,
    labels: Pairs,
    /// An owner reference is four strings and 100 bytes inline; serin compares uids.
    owner_uids: Box<[Box<str>]>,
    weight: Option<i32>,
    selector: Option<Pairs>,
    ports: Box<[PortKey]>,
}

/// What identifies a Service port for serin: a change to any of these is a drift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortKey {
    pub name: Option<String>,
    pub port: i32,
    pub target_port: Option<IntOrString>,
    pub protocol: Option<String>,
}

impl PortKey {
    /// The ports of `spec`, as serin compares them.
    pub fn of(spec: Option<&ServiceSpec>) -> Vec<PortKey> {
        spec.and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| PortKey {
                name: p.name.clone(),
                port: p.port,
                target_port: p.target_port.clone(),
                protocol: p.protocol.clone(),
            })
            .collect()
    }
}

impl From<Service> for CachedService {
    fn from(s: Service) -> Self {
        let mut metadata = s.metadata;
        let weight = metadata
            .annotations
            .take()
            .and_then(|a| a.get(WEIGHT_ANNOTATION)?.parse::<i32>().ok());
        let labels = Pairs::take_from(&mut metadata.labels);
        let owner_uids = metadata
            .owner_references
            .take()
            .into_iter()
            .flatten()
            .map(|o| o.uid.into_boxed_str())
            .collect();
        let ports = PortKey::of(s.spec.as_ref()).into_boxed_slice();
        Self {
            namespace: metadata.namespace.unwrap_or_default().into(),
            name: metadata.name.unwrap_or_default().into(),
            resource_version: metadata.resource_version.map(String::into_boxed_str),
            labels,
            owner_uids,
            weight,
            selector: s.spec.and_then(|s| s.selector).map(Pairs::from),
            ports,
        }
    }
}

impl<'de> serde::Deserialize<'de> for CachedService {
    /// The whole Service, slimmed on the way in.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Service::deserialize(d).map(Self::from)
    }
}

impl CachedService {
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// Whether the selector is exactly `selector` (an absent one is empty).
    pub fn selects(&self, selector: &BTreeMap<String, String>) -> bool {
        match &self.selector {
            Some(have) => have.is(selector),
            None => selector.is_empty(),
        }
    }

    pub fn ports(&self) -> &[PortKey] {
        &self.ports
    }

    /// The weight serin last wrote on it, if it parses.
    pub fn weight(&self) -> Option<i32> {
        self.weight
    }

    pub fn labels(&self) -> &Pairs {
        &self.labels
    }

    /// Whether its owners are exactly those with `uids`, in order.
    pub fn owned_by<'a>(&self, uids: impl IntoIterator<Item = &'a str>) -> bool {
        self.owner_uids.iter().map(|u| &**u).eq(uids)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_cached_copy_keeps_what_serin_compares_and_drops_the_rest() {
        let s: CachedService = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": "shop", "resourceVersion": "7",
                "labels": {"serin.dev/canary": "podinfo"},
                "ownerReferences": [{"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                    "name": "podinfo", "uid": "u-1", "controller": true}],
                "annotations": {WEIGHT_ANNOTATION: "25", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "serin", "operation": "Apply"}]},
            "spec": {"selector": {"app": "podinfo"}, "clusterIP": "10.0.0.1",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
            "status": {"loadBalancer": {}},
        }))
        .unwrap();
        assert_eq!(s.weight(), Some(25));
        assert_eq!(s.labels().get("serin.dev/canary"), Some("podinfo"));
        assert!(s.owned_by(["u-1"]));
        assert!(!s.owned_by(["u-2"]), "a Canary created again owns it anew");
        assert!(!s.owned_by([]) && !s.owned_by(["u-1", "u-2"]));
        assert_eq!(
            (s.namespace(), s.name(), s.resource_version()),
            ("shop", "podinfo", Some("7"))
        );
        assert!(s.selects(&BTreeMap::from([("app".into(), "podinfo".into())])));
        assert!(!s.selects(&BTreeMap::from([("app".into(), "podinfo-primary".into())])));
        assert!(!s.selects(&BTreeMap::new()));
        assert_eq!(
            s.ports(),
            [PortKey {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
            }]
        );
        // No selector selects nothing more than the empty one.
        let bare = CachedService::from(Service::default());
        assert!(bare.selects(&BTreeMap::new()));
        assert!(bare.owned_by([]));
        assert_eq!(bare.weight(), None);
    }
}
