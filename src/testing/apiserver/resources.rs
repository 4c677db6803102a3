//! The resource types the fake serves, and the little schema knowledge server-side
//! apply needs: which lists are keyed maps or sets, which maps are atomic, what a
//! typed zero object holds, and the few defaults the real server fills in.

use serde_json::{json, Value};

/// One REST resource (plural name under a group), as a CRD or a built-in type.
#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    /// Every version served; storage is shared, the reply's apiVersion follows the request.
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: status and the rest are written separately.
    pub status: bool,
    /// Tracks `metadata.generation` (bumped when anything outside metadata and status changes).
    pub generation: bool,
    /// Compiled-in type (schema-aware lists, strategic merge patch); otherwise a CRD.
    pub builtin: bool,
}

const fn rt(
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    kind: &'static str,
    status: bool,
    generation: bool,
    builtin: bool,
) -> ResourceType {
    ResourceType {
        group,
        versions,
        plural,
        kind,
        namespaced: true,
        status,
        generation,
        builtin,
    }
}

const fn cluster(mut r: ResourceType) -> ResourceType {
    r.namespaced = false;
    r
}

const V1: &[&str] = &["v1"];
const ISTIO: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SMI: &[&str] = &["v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"];
const SERIN: &[&str] = &["v1alpha1"];

/// Everything the fake knows; the order is the discovery order.
/// Columns: group, versions, plural, kind, status subresource, generation, built-in.
#[rustfmt::skip]
pub static RESOURCES: &[ResourceType] = &[
    cluster(rt("", V1, "namespaces", "Namespace", true, false, true)),
    rt("", V1, "configmaps", "ConfigMap", false, false, true),
    rt("", V1, "secrets", "Secret", false, false, true),
    rt("", V1, "services", "Service", true, false, true),
    rt("", V1, "serviceaccounts", "ServiceAccount", false, false, true),
    rt("", V1, "pods", "Pod", true, false, true),
    rt("apps", V1, "deployments", "Deployment", true, true, true),
    rt("apps", V1, "replicasets", "ReplicaSet", true, true, true),
    rt("apps", V1, "controllerrevisions", "ControllerRevision", false, false, true),
    rt("autoscaling", &["v2", "v1"], "horizontalpodautoscalers", "HorizontalPodAutoscaler", true, false, true),
    rt("coordination.k8s.io", V1, "leases", "Lease", false, false, true),
    rt("events.k8s.io", V1, "events", "Event", false, false, true),
    rt("networking.k8s.io", V1, "ingresses", "Ingress", true, true, true),
    rt("serin.dev", SERIN, "canaries", "Canary", true, true, false),
    rt("serin.dev", SERIN, "analysistemplates", "AnalysisTemplate", false, true, false),
    cluster(rt("serin.dev", SERIN, "clusteranalysistemplates", "ClusterAnalysisTemplate", false, true, false)),
    rt("serin.dev", SERIN, "notifiers", "Notifier", false, true, false),
    cluster(rt("serin.dev", SERIN, "clusternotifiers", "ClusterNotifier", false, true, false)),
    rt("serin.dev", SERIN, "releasepolicies", "ReleasePolicy", true, true, false),
    cluster(rt("serin.dev", SERIN, "clusterreleasepolicies", "ClusterReleasePolicy", true, true, false)),
    rt("networking.istio.io", ISTIO, "virtualservices", "VirtualService", true, true, false),
    rt("networking.istio.io", ISTIO, "destinationrules", "DestinationRule", true, true, false),
    rt("gateway.networking.k8s.io", &["v1", "v1beta1"], "httproutes", "HTTPRoute", true, true, false),
    rt("split.smi-spec.io", SMI, "trafficsplits", "TrafficSplit", false, true, false),
];

impl ResourceType {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `deployments.apps`, or `services` for the core group: how errors name a resource.
    pub fn qualified_resource(&self) -> String {
        qualify(self.plural, self.group)
    }

    /// `Deployment.apps`, or `Service`: how validation errors name a kind. Events are
    /// stored as the core Event whatever API group wrote them, so they say `Event`.
    pub fn qualified_kind(&self) -> String {
        if self.plural == "events" {
            return self.kind.to_string();
        }
        qualify(self.kind, self.group)
    }

    /// Group for `details.group` of validation errors (core Events for events.k8s.io).
    pub fn validation_group(&self) -> &'static str {
        if self.plural == "events" {
            ""
        } else {
            self.group
        }
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// How a list is merged and owned under server-side apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced and owned whole (`x-kubernetes-list-type: atomic`, every CRD default).
    Atomic,
    /// Items owned one by one by value (`v:"x"`), e.g. `metadata.finalizers`.
    Set,
    /// Items owned one by one by these key fields (`k:{"name":"x"}`).
    Map(&'static [&'static str]),
}

/// The list type at `fields` (the field names from the root, list keys left out).
pub fn list_type(rt: &ResourceType, fields: &[&str]) -> ListType {
    let last = fields.last().copied().unwrap_or("");
    let parent = if fields.len() >= 2 {
        fields[fields.len() - 2]
    } else {
        ""
    };
    match (fields.first().copied(), last) {
        (Some("metadata"), "finalizers") if fields.len() == 2 => return ListType::Set,
        (Some("metadata"), "ownerReferences") if fields.len() == 2 => {
            return ListType::Map(&["uid"])
        }
        (Some("metadata"), _) => return ListType::Atomic,
        _ => {}
    }
    if !rt.builtin {
        // CRD lists are atomic unless the schema says otherwise; serin's own CRD
        // keys the Canary status lists (checked against the chart's CRDs below). The
        // router CRDs' keyed lists all sit inside atomic ones.
        return match (rt.kind, fields) {
            ("Canary", ["status", "metrics" | "hooks"]) => ListType::Map(&["name"]),
            ("Canary", ["status", "approvals" | "commands"]) => ListType::Map(&["id"]),
            ("Canary" | "ReleasePolicy" | "ClusterReleasePolicy", ["status", "conditions"]) => {
                ListType::Map(&["type"])
            }
            _ => ListType::Atomic,
        };
    }
    match last {
        "conditions" => ListType::Map(&["type"]),
        "containers" | "initContainers" | "ephemeralContainers" => ListType::Map(&["name"]),
        "env" | "volumes" | "imagePullSecrets" => ListType::Map(&["name"]),
        "volumeMounts" => ListType::Map(&["mountPath"]),
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            ListType::Map(&["containerPort", "protocol"])
        }
        "ports" if rt.kind == "Service" && fields == ["spec", "ports"] => {
            ListType::Map(&["port", "protocol"])
        }
        _ => ListType::Atomic,
    }
}

/// Maps assigned whole (`x-kubernetes-map-type: atomic`, atomic structs).
pub fn atomic_map(rt: &ResourceType, fields: &[&str]) -> bool {
    let last = fields.last().copied().unwrap_or("");
    match last {
        "selector" | "matchLabels" | "labelSelector" | "namespaceSelector" => rt.builtin,
        // ObjectReference is an atomic struct.
        "regarding" | "related" => rt.plural == "events",
        _ => false,
    }
}

/// The value a missing list-map key field stands for (the schema default).
pub fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| json!("TCP"))
}

/// What a typed zero value of the kind serializes to. An Update's ownership is the
/// difference from the old object, and a create's "old" object is this zero value, so
/// the nodes present here never get a `.` (self) entry (fixture 02: `f:spec` has none,
/// `f:labels` has one). CRDs have an empty zero object.
pub fn zero_object(rt: &ResourceType) -> Value {
    if !rt.builtin {
        return json!({});
    }
    match rt.kind {
        "Deployment" | "ReplicaSet" => json!({
            "metadata": {},
            "spec": {"selector": null,
                     "template": {"metadata": {}, "spec": {"containers": null}},
                     "strategy": {}},
            "status": {}
        }),
        "Service" | "Ingress" => {
            json!({"metadata": {}, "spec": {}, "status": {"loadBalancer": {}}})
        }
        "HorizontalPodAutoscaler" => json!({
            "metadata": {},
            "spec": {"scaleTargetRef": {"kind": "", "name": ""}, "maxReplicas": 0},
            "status": {"desiredReplicas": 0, "currentMetrics": null}
        }),
        "Lease" | "Namespace" | "Pod" => json!({"metadata": {}, "spec": {}}),
        "Event" => {
            json!({"metadata": {}, "eventTime": null, "regarding": {}, "deprecatedSource": {}})
        }
        "ControllerRevision" => json!({"metadata": {}, "data": null, "revision": 0}),
        _ => json!({"metadata": {}}),
    }
}

/// The defaults the real server fills in that matter to a controller: a Deployment's
/// `spec.replicas` (1) and a port's `protocol` (TCP, also part of the port list key).
/// The many other defaults (imagePullPolicy, strategy, ...) are left out.
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    match rt.kind {
        "Deployment" | "ReplicaSet" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("replicas").or_insert(json!(1));
            }
            if let Some(containers) = obj
                .pointer_mut("/spec/template/spec/containers")
                .and_then(Value::as_array_mut)
            {
                for c in containers {
                    default_protocols(c.get_mut("ports"));
                }
            }
        }
        "Service" => default_protocols(obj.pointer_mut("/spec/ports")),
        _ => {}
    }
}

fn default_protocols(ports: Option<&mut Value>) {
    for p in ports.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            p.entry("protocol").or_insert(json!("TCP"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(plural: &str) -> &'static ResourceType {
        RESOURCES.iter().find(|r| r.plural == plural).unwrap()
    }

    #[test]
    fn list_types_follow_the_real_schemas() {
        let d = find("deployments");
        let c = ["spec", "template", "spec", "containers"];
        assert_eq!(list_type(d, &c), ListType::Map(&["name"]));
        assert_eq!(
            list_type(d, &["spec", "template", "spec", "containers", "ports"]),
            ListType::Map(&["containerPort", "protocol"])
        );
        assert_eq!(
            list_type(d, &["spec", "template", "spec", "containers", "args"]),
            ListType::Atomic
        );
        assert_eq!(list_type(d, &["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            list_type(find("services"), &["spec", "ports"]),
            ListType::Map(&["port", "protocol"])
        );
        // CRD lists are atomic (fixture 11: `f:rules: {}`), Canary status lists keyed.
        assert_eq!(
            list_type(find("httproutes"), &["spec", "rules"]),
            ListType::Atomic
        );
        assert_eq!(
            list_type(find("canaries"), &["status", "approvals"]),
            ListType::Map(&["id"])
        );
        assert!(atomic_map(d, &["spec", "selector"]));
        assert!(!atomic_map(d, &["spec", "template", "metadata", "labels"]));
    }

    /// The table agrees with the chart's CRDs: scope, status subresource, list types.
    #[test]
    fn serin_crds_match_the_chart() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/serin/crds/crds.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut kinds = 0;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(doc).unwrap();
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            kinds += 1;
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
            let rt = RESOURCES
                .iter()
                .find(|r| r.kind == kind)
                .unwrap_or_else(|| panic!("{kind} missing"));
            assert_eq!(rt.plural, crd["spec"]["names"]["plural"], "{kind}");
            assert_eq!(
                rt.namespaced,
                crd["spec"]["scope"] == "Namespaced",
                "{kind}"
            );
            let v = &crd["spec"]["versions"][0];
            assert_eq!(
                rt.status,
                v["subresources"].get("status").is_some(),
                "{kind}"
            );
            let mut lists = Vec::new();
            collect_lists(&v["schema"]["openAPIV3Schema"], &mut Vec::new(), &mut lists);
            for (fields, want) in lists {
                let names: Vec<&str> = fields.iter().map(String::as_str).collect();
                assert_eq!(list_type(rt, &names), want, "{kind} {names:?}");
            }
        }
        assert_eq!(kinds, 7);
    }

    fn collect_lists(
        schema: &Value,
        path: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, ListType)>,
    ) {
        if schema["type"] == "array" {
            let lt = match (
                schema["x-kubernetes-list-type"].as_str(),
                schema["x-kubernetes-list-map-keys"].as_array(),
            ) {
                (Some("map"), Some(keys)) => {
                    let keys: Vec<&'static str> = keys
                        .iter()
                        .map(|k| &*Box::leak(k.as_str().unwrap().to_string().into_boxed_str()))
                        .collect();
                    ListType::Map(Box::leak(keys.into_boxed_slice()))
                }
                (Some("set"), _) => ListType::Set,
                _ => ListType::Atomic,
            };
            out.push((path.clone(), lt));
            if lt != ListType::Atomic {
                collect_lists(&schema["items"], path, out);
            }
            return;
        }
        for (k, sub) in schema["properties"].as_object().into_iter().flatten() {
            path.push(k.clone());
            collect_lists(sub, path, out);
            path.pop();
        }
    }

    #[test]
    fn defaults_fill_replicas_and_protocol_only_when_missing() {
        let d = find("deployments");
        let mut o = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}]}}}});
        apply_defaults(d, &mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][0]["ports"][1]["protocol"],
            "UDP"
        );
        let mut o = json!({"spec": {"replicas": 0}});
        apply_defaults(d, &mut o);
        assert_eq!(o["spec"]["replicas"], 0);
    }
}
