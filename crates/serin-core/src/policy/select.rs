//! Which policies select a Canary: a `ReleasePolicy` in the Canary's namespace whose
//! `selector` matches the Canary's labels, and a `ClusterReleasePolicy` whose
//! `namespaceSelector` matches the namespace's labels and whose `selector` matches the
//! Canary's labels. An absent or empty selector selects everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{CompiledPolicy, PolicyError, PolicyKind};

/// Does `selector` select an object with `labels`? Operators are checked by
/// [`check_selector`] when the policy is compiled; an unknown one selects nothing.
pub fn matches(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else { return true };
    let by_label = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Check a selector's expressions as the API server checks a Deployment's.
pub fn check_selector(selector: Option<&LabelSelector>, field: &str) -> Result<(), PolicyError> {
    let Some(sel) = selector else { return Ok(()) };
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        let n = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if n == 0 => {
                return Err(PolicyError::new(
                    format!("{f}.values"),
                    format!("empty: operator {} needs at least one value", e.operator),
                ))
            }
            "Exists" | "DoesNotExist" if n > 0 => {
                return Err(PolicyError::new(
                    format!("{f}.values"),
                    format!("must be empty for operator {}", e.operator),
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(PolicyError::new(
                    format!("{f}.operator"),
                    format!("{other:?} is not an operator: use In, NotIn, Exists or DoesNotExist"),
                ))
            }
        }
    }
    Ok(())
}

/// The policies among `policies` that select the Canary in `namespace` with `labels`;
/// `namespace_labels` are the labels of its Namespace. In a stable order: namespaced
/// policies first, then cluster ones, each by name.
pub fn select<'a>(
    policies: &'a [CompiledPolicy],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<&'a CompiledPolicy> {
    let mut out: Vec<&CompiledPolicy> = policies
        .iter()
        .filter(|p| match p.reference.kind {
            PolicyKind::ReleasePolicy => p.reference.namespace.as_deref() == Some(namespace),
            PolicyKind::ClusterReleasePolicy => {
                matches(p.namespace_selector.as_ref(), namespace_labels)
            }
        })
        .filter(|p| matches(p.selector.as_ref(), labels))
        .collect();
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    out
}
