//! Pure helpers on pod templates: tracked ConfigMaps/Secrets, label suffixing, readiness.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodSpec;

/// Suffix of every object serin derives for the primary.
pub const PRIMARY_SUFFIX: &str = "-primary";

/// A ConfigMap or Secret the pods reference.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigRef {
    ConfigMap(String),
    Secret(String),
}

impl ConfigRef {
    pub fn name(&self) -> &str {
        match self {
            ConfigRef::ConfigMap(n) | ConfigRef::Secret(n) => n,
        }
    }
    /// "configmap/NAME" or "secret/NAME", the key used in revision hashing.
    pub fn key(&self) -> String {
        match self {
            ConfigRef::ConfigMap(n) => format!("configmap/{n}"),
            ConfigRef::Secret(n) => format!("secret/{n}"),
        }
    }
}

/// Every ConfigMap and Secret a pod spec references (env, envFrom, volumes, projected).
pub fn config_refs(spec: &PodSpec) -> BTreeSet<ConfigRef> {
    let mut out = BTreeSet::new();
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value_from {
                if let Some(r) = &v.config_map_key_ref {
                    out.insert(ConfigRef::ConfigMap(r.name.clone()));
                }
                if let Some(r) = &v.secret_key_ref {
                    out.insert(ConfigRef::Secret(r.name.clone()));
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                out.insert(ConfigRef::ConfigMap(r.name.clone()));
            }
            if let Some(r) = &e.secret_ref {
                out.insert(ConfigRef::Secret(r.name.clone()));
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            out.insert(ConfigRef::ConfigMap(cm.name.clone()));
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.insert(ConfigRef::Secret(s));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                out.insert(ConfigRef::ConfigMap(cm.name.clone()));
            }
            if let Some(s) = &src.secret {
                out.insert(ConfigRef::Secret(s.name.clone()));
            }
        }
    }
    out.retain(|r| !r.name().is_empty());
    out
}

/// Rename references to tracked configs: `rename(name) -> new name`. Used to point the
/// primary at its own `-primary` copies, and back when handing the Deployment back.
pub fn rewrite_config_refs(
    spec: &mut PodSpec,
    tracked: &BTreeSet<ConfigRef>,
    rename: &dyn Fn(&str) -> String,
) {
    let cm = |n: &mut String| {
        if tracked.contains(&ConfigRef::ConfigMap(n.clone())) {
            *n = rename(n);
        }
    };
    let sec = |n: &mut String| {
        if tracked.contains(&ConfigRef::Secret(n.clone())) {
            *n = rename(n);
        }
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for e in c.env.iter_mut().flatten() {
            if let Some(v) = &mut e.value_from {
                if let Some(r) = &mut v.config_map_key_ref {
                    cm(&mut r.name);
                }
                if let Some(r) = &mut v.secret_key_ref {
                    sec(&mut r.name);
                }
            }
        }
        for e in c.env_from.iter_mut().flatten() {
            if let Some(r) = &mut e.config_map_ref {
                cm(&mut r.name);
            }
            if let Some(r) = &mut e.secret_ref {
                sec(&mut r.name);
            }
        }
    }
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(c) = &mut v.config_map {
            cm(&mut c.name);
        }
        if let Some(s) = v.secret.as_mut().and_then(|s| s.secret_name.as_mut()) {
            sec(s);
        }
        for src in v
            .projected
            .iter_mut()
            .flat_map(|p| p.sources.iter_mut().flatten())
        {
            if let Some(c) = &mut src.config_map {
                cm(&mut c.name);
            }
            if let Some(s) = &mut src.secret {
                sec(&mut s.name);
            }
        }
    }
}

/// Suffix the values of `keys` in `labels` (so primary and canary selectors never overlap).
pub fn suffix_labels(
    labels: &BTreeMap<String, String>,
    keys: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| {
            let v = if keys.contains(k) {
                format!("{v}{PRIMARY_SUFFIX}")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// Undo [`suffix_labels`].
pub fn unsuffix_labels(
    labels: &BTreeMap<String, String>,
    keys: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| {
            let v = match v.strip_suffix(PRIMARY_SUFFIX) {
                Some(base) if keys.contains(k) => base.to_string(),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Labels both pod templates carry with equal values, other than selector keys.
pub fn shared_labels(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    selector_keys: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    a.iter()
        .filter(|(k, v)| !selector_keys.contains(*k) && b.get(*k) == Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Readiness of a Deployment: `(all, any)`. `all`: the controller saw the latest spec,
/// every replica runs it and is available, no old pods remain, and there is at least one
/// replica. `any`: the latest spec runs and at least one replica of it is available.
pub fn readiness(d: &Deployment) -> (bool, bool) {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else {
        return (false, false);
    };
    let observed = st.observed_generation.unwrap_or(0) >= generation;
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    let only_new = total == updated;
    let all = observed && want > 0 && updated >= want && available >= want && only_new;
    let any = observed && only_new && updated >= 1 && available >= 1;
    (all, any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_spec() -> PodSpec {
        serde_json::from_value(json!({
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
            "containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "b"}}},
                    {"name": "C", "value": "plain"}
                ],
                "envFrom": [{"configMapRef": {"name": "env-config"}}]
            }],
            "volumes": [
                {"name": "v1", "configMap": {"name": "vol-config"}},
                {"name": "v2", "secret": {"secretName": "vol-secret"}},
                {"name": "v3", "projected": {"sources": [{"configMap": {"name": "proj-config"}}, {"secret": {"name": "proj-secret"}}]}},
                {"name": "v4", "emptyDir": {}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn finds_every_config_reference() {
        let refs = config_refs(&pod_spec());
        let keys: Vec<String> = refs.iter().map(|r| r.key()).collect();
        assert_eq!(
            keys,
            vec![
                "configmap/app-config",
                "configmap/env-config",
                "configmap/proj-config",
                "configmap/vol-config",
                "secret/app-secret",
                "secret/init-secret",
                "secret/proj-secret",
                "secret/vol-secret"
            ]
        );
    }

    #[test]
    fn rewrites_only_tracked_references_and_round_trips() {
        let mut spec = pod_spec();
        let tracked: BTreeSet<ConfigRef> = [
            ConfigRef::ConfigMap("app-config".into()),
            ConfigRef::Secret("vol-secret".into()),
        ]
        .into();
        rewrite_config_refs(&mut spec, &tracked, &|n| format!("{n}-primary"));
        let refs: Vec<String> = config_refs(&spec).iter().map(|r| r.key()).collect();
        assert!(refs.contains(&"configmap/app-config-primary".to_string()));
        assert!(refs.contains(&"secret/vol-secret-primary".to_string()));
        assert!(
            refs.contains(&"configmap/env-config".to_string()),
            "untracked left alone"
        );
        // A ConfigMap named like a tracked Secret is not renamed.
        assert!(!refs.contains(&"configmap/vol-secret-primary".to_string()));
        let renamed: BTreeSet<ConfigRef> = tracked
            .iter()
            .map(|r| match r {
                ConfigRef::ConfigMap(n) => ConfigRef::ConfigMap(format!("{n}-primary")),
                ConfigRef::Secret(n) => ConfigRef::Secret(format!("{n}-primary")),
            })
            .collect();
        rewrite_config_refs(&mut spec, &renamed, &|n| {
            n.trim_end_matches("-primary").to_string()
        });
        assert_eq!(spec, pod_spec());
    }

    #[test]
    fn labels_suffix_and_unsuffix_selector_keys_only() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "podinfo".to_string()),
            ("app.kubernetes.io/name".to_string(), "podinfo".to_string()),
        ]
        .into();
        let keys: BTreeSet<String> = ["app".to_string()].into();
        let p = suffix_labels(&labels, &keys);
        assert_eq!(p["app"], "podinfo-primary");
        assert_eq!(p["app.kubernetes.io/name"], "podinfo");
        assert_eq!(unsuffix_labels(&p, &keys), labels);
        assert_eq!(
            shared_labels(&labels, &p, &keys),
            [("app.kubernetes.io/name".to_string(), "podinfo".to_string())].into()
        );
    }

    fn dep(generation: i64, replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn readiness_requires_observed_generation_updated_available_and_no_old_pods() {
        let ok = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(readiness(&dep(2, 3, ok)), (true, true));
        let stale = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(readiness(&dep(2, 3, stale)), (false, false));
        let rolling = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3});
        assert_eq!(readiness(&dep(2, 3, rolling)), (false, false));
        let scaling = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        assert_eq!(readiness(&dep(2, 3, scaling)), (false, true));
        let zero = json!({"observedGeneration": 2});
        assert_eq!(readiness(&dep(2, 0, zero)), (false, false));
    }
}
