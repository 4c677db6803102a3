//! Building the primary Deployment from the user's (pure).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::workloads::pods::{
    rewrite_config_refs, suffix_labels, unsuffix_labels, ConfigRef, PRIMARY_SUFFIX,
};
use crate::workloads::{WorkloadError, WorkloadRef};

/// Annotation on the primary (and its pod template) naming the revision it was written
/// with. On the pod template it makes a config-only promotion roll the primary's pods.
pub const REVISION_ANNOTATION: &str = "serin.dev/revision";

/// Pod-template annotation serin sets on the user's Deployment: a digest of the tracked
/// ConfigMaps and Secrets, so a config-only change restarts the canary's pods.
pub const CONFIG_HASH_ANNOTATION: &str = "serin.dev/config-hash";

/// The pod template's `serin.dev/*` annotations removed: serin's own marks are not part
/// of a revision, and the user's Deployment gets none of the primary's back.
pub fn without_serin_annotations(t: &mut PodTemplateSpec) {
    if let Some(m) = t.metadata.as_mut() {
        if let Some(a) = m.annotations.as_mut() {
            a.retain(|k, _| !k.starts_with(crate::annotations::PREFIX));
            if a.is_empty() {
                m.annotations = None;
            }
        }
    }
}

/// Labels of every object serin creates for `w`: the target's own plus the Canary label.
pub fn owned_labels(
    base: Option<&BTreeMap<String, String>>,
    w: &WorkloadRef,
) -> BTreeMap<String, String> {
    let mut labels = base.cloned().unwrap_or_default();
    labels.insert(crate::crd::CANARY_LABEL.into(), w.canary_name());
    labels
}

/// The keys of the target's `spec.selector.matchLabels`.
pub fn selector_keys(target: &Deployment) -> Result<BTreeSet<String>, WorkloadError> {
    let name = target.metadata.name.clone().unwrap_or_default();
    let sel = target.spec.as_ref().map(|s| &s.selector);
    if sel.is_some_and(|s| s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())) {
        return Err(WorkloadError::Invalid(format!(
            "Deployment {name}: spec.selector.matchExpressions is not supported; use matchLabels"
        )));
    }
    let keys: BTreeSet<String> = sel
        .and_then(|s| s.match_labels.as_ref())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return Err(WorkloadError::Invalid(format!(
            "Deployment {name}: spec.selector.matchLabels is empty"
        )));
    }
    Ok(keys)
}

/// Pod labels, as a selector.
pub type Labels = BTreeMap<String, String>;

/// The target's selector labels (the canary's pods) and their suffixed form (the primary's).
pub fn selectors(target: &Deployment) -> Result<(Labels, Labels), WorkloadError> {
    let keys = selector_keys(target)?;
    let canary = target
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let primary = suffix_labels(&canary, &keys);
    Ok((canary, primary))
}

pub fn primary_config_name(name: &str) -> String {
    format!("{name}{PRIMARY_SUFFIX}")
}

/// The primary Deployment: the target's pod template with suffixed selector labels and
/// references to the `-primary` copies of tracked configs.
pub fn primary_deployment(
    target: &Deployment,
    w: &WorkloadRef,
    revision: &str,
    replicas: i32,
    tracked: &BTreeSet<ConfigRef>,
) -> Result<Deployment, WorkloadError> {
    let keys = selector_keys(target)?;
    let tspec = target
        .spec
        .as_ref()
        .ok_or_else(|| WorkloadError::Invalid(format!("Deployment {} has no spec", w.name)))?;
    let mut template = tspec.template.clone();
    without_serin_annotations(&mut template);
    let mut meta = template.metadata.take().unwrap_or_default();
    meta.labels = Some(suffix_labels(&meta.labels.unwrap_or_default(), &keys));
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(REVISION_ANNOTATION.into(), revision.into());
    template.metadata = Some(meta);
    if let Some(pod) = template.spec.as_mut() {
        rewrite_config_refs(pod, tracked, &primary_config_name);
    }
    let match_labels = suffix_labels(
        &tspec.selector.match_labels.clone().unwrap_or_default(),
        &keys,
    );
    Ok(Deployment {
        metadata: primary_metadata(target.metadata.labels.as_ref(), w, revision),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(match_labels),
                match_expressions: None,
            },
            template,
            strategy: tspec.strategy.clone(),
            min_ready_seconds: tspec.min_ready_seconds,
            progress_deadline_seconds: tspec.progress_deadline_seconds,
            revision_history_limit: tspec.revision_history_limit,
            paused: None,
        }),
        status: None,
    })
}

fn primary_metadata(
    labels: Option<&BTreeMap<String, String>>,
    w: &WorkloadRef,
    revision: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(w.primary_name()),
        namespace: Some(w.namespace.clone()),
        labels: Some(owned_labels(labels, w)),
        annotations: Some(BTreeMap::from([(
            REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        )])),
        owner_references: w.owner.clone().map(|o| vec![o]),
        ..Default::default()
    }
}

/// The primary rebuilt from the recorded spec of `revision` (the target has moved on).
pub fn primary_from_record(
    mut spec: DeploymentSpec,
    labels: Option<&BTreeMap<String, String>>,
    w: &WorkloadRef,
    revision: &str,
    replicas: i32,
) -> Deployment {
    spec.replicas = Some(replicas);
    Deployment {
        metadata: primary_metadata(labels, w, revision),
        spec: Some(spec),
        status: None,
    }
}

/// The primary's pod template as the user's Deployment would carry it: labels and
/// config references back to their own names.
pub fn restored_template(
    primary: &DeploymentSpec,
    keys: &BTreeSet<String>,
    tracked_primary: &BTreeSet<ConfigRef>,
) -> PodTemplateSpec {
    let mut t = primary.template.clone();
    without_serin_annotations(&mut t);
    let mut meta = t.metadata.take().unwrap_or_default();
    meta.labels = Some(unsuffix_labels(&meta.labels.unwrap_or_default(), keys));
    t.metadata = Some(meta);
    if let Some(pod) = t.spec.as_mut() {
        rewrite_config_refs(pod, tracked_primary, &|n| {
            n.strip_suffix(PRIMARY_SUFFIX).unwrap_or(n).to_string()
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::pods::config_refs;
    use serde_json::json;

    pub(crate) fn target() -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo", "namespace": "shop", "generation": 1,
                         "labels": {"app.kubernetes.io/name": "podinfo", "team": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "podinfo"}},
                "strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": "podinfo", "app.kubernetes.io/name": "podinfo"}},
                    "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0",
                        "envFrom": [{"configMapRef": {"name": "podinfo-env"}}]}]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn primary_suffixes_selector_keeps_other_labels_and_points_at_config_copies() {
        let w = WorkloadRef {
            namespace: "shop".into(),
            name: "podinfo".into(),
            ..Default::default()
        };
        let t = target();
        let tracked = config_refs(t.spec.as_ref().unwrap().template.spec.as_ref().unwrap());
        let p = primary_deployment(&t, &w, "abc", 3, &tracked).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["metadata"]["name"], "podinfo-primary");
        assert_eq!(v["metadata"]["annotations"][REVISION_ANNOTATION], "abc");
        assert_eq!(
            v["spec"]["template"]["metadata"]["annotations"][REVISION_ANNOTATION], "abc",
            "a config-only promotion rolls the primary's pods"
        );
        assert_eq!(v["metadata"]["labels"][crate::crd::CANARY_LABEL], "podinfo");
        assert_eq!(v["metadata"]["labels"]["team"], "web");
        assert_eq!(
            v["spec"]["selector"]["matchLabels"],
            json!({"app": "podinfo-primary"})
        );
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"],
            json!({"app": "podinfo-primary", "app.kubernetes.io/name": "podinfo"})
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "podinfo-env-primary"
        );
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(v["spec"]["strategy"]["type"], "RollingUpdate");
        assert!(v.get("status").is_none());

        let keys = selector_keys(&t).unwrap();
        let primary_tracked = config_refs(p.spec.as_ref().unwrap().template.spec.as_ref().unwrap());
        let back = restored_template(p.spec.as_ref().unwrap(), &keys, &primary_tracked);
        assert_eq!(back, t.spec.unwrap().template);
    }

    #[test]
    fn selectors_with_expressions_are_refused_with_a_reason() {
        let mut t = target();
        t.spec.as_mut().unwrap().selector.match_expressions = Some(vec![Default::default()]);
        let e = selector_keys(&t).unwrap_err();
        assert!(e.to_string().contains("matchExpressions is not supported"));
        assert_eq!(e.category(), "config");
    }
}
