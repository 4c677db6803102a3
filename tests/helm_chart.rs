//! The Helm chart, rendered by Helm's own engine (charts/serin/tests/render_test.py,
//! through the PyPI package helm-python-sdk) with the default values, the full values
//! file (charts/serin/ci/full-values.yaml) and a few modes in between. The script checks
//! kinds, security context, probes, RBAC rule by rule, the schema's refusals and lint;
//! this side then round-trips every built-in object through k8s-openapi's types, so a
//! misspelt or misplaced field (dropped by the typed decode) fails the test too.
//!
//! Fails, never skips, when python3 or the package is missing: `.ci/run` installs them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use serin::traffic::registry::{RouterKind, OBJECT_VERBS};

/// Decode into the typed object and encode again: equal only if every field is known.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    doc: &Value,
) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not decode: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back == doc {
        return Ok(());
    }
    Err(format!(
        "fields lost or changed by the typed decode:\n{}",
        diff("", doc, &back).join("\n")
    ))
}

fn diff(path: &str, a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .flat_map(|(k, v)| match y.get(k) {
                Some(w) => diff(&format!("{path}.{k}"), v, w),
                None => vec![format!("  {path}.{k} (unknown field)")],
            })
            .collect(),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .flat_map(|(i, (v, w))| diff(&format!("{path}[{i}]"), v, w))
            .collect(),
        _ if a == b => vec![],
        _ => vec![format!("  {path}: {a} became {b}")],
    }
}

/// The chart rendered by render_test.py, once for all tests of this file.
fn rendered() -> &'static serde_json::Map<String, Value> {
    static RENDERED: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    RENDERED.get_or_init(render)
}

fn render() -> serde_json::Map<String, Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("charts/serin/tests/render_test.py");
    let out_file = std::env::temp_dir().join(format!("serin-chart-{}.json", std::process::id()));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(&script)
        .arg("--emit")
        .arg(&out_file)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {python} {}: {e} (install python3)",
                script.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "render_test.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    let rendered: serde_json::Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(&out_file).expect("render_test.py --emit output"),
    )
    .expect("emitted JSON");
    let _ = std::fs::remove_file(&out_file);
    rendered
}

#[test]
fn chart_renders_and_every_object_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rendered = rendered();
    for scenario in ["default", "full", "namespaced", "single"] {
        assert!(
            rendered.contains_key(scenario),
            "no {scenario} scenario emitted"
        );
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for (scenario, docs) in rendered.iter().filter(|(s, _)| !s.starts_with("notes:")) {
        for doc in docs.as_array().expect("a list of documents") {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let result = match kind {
                "Deployment" => round_trip::<Deployment>(doc),
                "Service" => round_trip::<Service>(doc),
                "ServiceAccount" => round_trip::<ServiceAccount>(doc),
                "ConfigMap" => round_trip::<ConfigMap>(doc),
                "NetworkPolicy" => round_trip::<NetworkPolicy>(doc),
                "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(doc),
                "ClusterRole" => round_trip::<ClusterRole>(doc),
                "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(doc),
                "Role" => round_trip::<Role>(doc),
                "RoleBinding" => round_trip::<RoleBinding>(doc),
                // Checked field by field by render_test.py (not a built-in kind).
                "ServiceMonitor" => continue,
                other => Err(format!("unexpected kind {other}")),
            };
            checked += 1;
            if let Err(e) = result {
                problems.push(format!("{scenario}: {kind} {name}: {e}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 30, "only {checked} objects checked");
    check_rbac_copy(root, rendered);
}

/// The controller's ClusterRole rules with every router enabled, as the chart renders
/// them, are kept in `charts/serin/tests/rendered-rbac.json`: the controller tests run
/// serin against a fake API server that enforces exactly these rules (a missing verb is
/// a 403 there, as on a real cluster). The approver ClusterRole's rules are kept in
/// `rendered-approver.json` likewise (the gates tests show what an approver cannot do).
/// This keeps both copies equal to the chart.
fn check_rbac_copy(root: &Path, rendered: &serde_json::Map<String, Value>) {
    let full = rendered["full"].as_array().expect("full scenario");
    for (role_name, file) in [
        ("serin", "rendered-rbac.json"),
        ("serin-approver", "rendered-approver.json"),
    ] {
        let role = full
            .iter()
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == role_name)
            .unwrap_or_else(|| panic!("ClusterRole {role_name} in the full scenario"));
        let rules = serde_json::to_string_pretty(&role["rules"]).expect("rules") + "\n";
        let path = root.join("charts/serin/tests").join(file);
        if std::env::var_os("SERIN_UPDATE_RBAC").is_some() {
            std::fs::write(&path, &rules).expect("writing the rules copy");
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            kept,
            rules,
            "{} is not the chart's ClusterRole {role_name}; regenerate with SERIN_UPDATE_RBAC=1 cargo test --test helm_chart",
            path.display()
        );
    }
}

/// The (apiGroup, resource, verb) triples the controller's ClusterRole grants in a scenario.
fn cluster_role_grants(docs: &Value) -> BTreeSet<(String, String, String)> {
    let role = docs
        .as_array()
        .expect("a list of documents")
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "serin")
        .expect("the controller's ClusterRole");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

/// Each router enabled alone in the chart adds exactly the kinds src/traffic/registry.rs
/// says it writes (the controller watches and applies those), with the verbs serin
/// uses on them; every `routers:` key is a router of the table and every router that
/// writes anything has a key. So the chart's RBAC and the code cannot drift apart.
#[test]
fn chart_grants_each_router_exactly_the_kinds_it_writes() {
    let rendered = rendered();
    let base = cluster_role_grants(&rendered["default"]);
    let mut keys = BTreeSet::new();
    for (scenario, docs) in rendered {
        let Some(key) = scenario.strip_prefix("router:") else {
            continue;
        };
        keys.insert(key.to_string());
        let router = RouterKind::ALL
            .into_iter()
            .find(|k| k.facts().chart_key == Some(key))
            .unwrap_or_else(|| {
                panic!(
                    "values key routers.{key} is no router's chart_key in src/traffic/registry.rs"
                )
            });
        let added: BTreeSet<_> = cluster_role_grants(docs)
            .difference(&base)
            .cloned()
            .collect();
        let writes: BTreeSet<_> = router
            .facts()
            .writes
            .iter()
            .flat_map(|k| {
                OBJECT_VERBS
                    .iter()
                    .map(|v| (k.group.to_string(), k.plural.to_string(), v.to_string()))
            })
            .collect();
        assert_eq!(
            added,
            writes,
            "routers.{key}.enabled grants other rules than router {} writes",
            router.as_str()
        );
        // The install notes name it as users write it in annotations.
        let notes = rendered[&format!("notes:{scenario}")]
            .as_str()
            .expect("NOTES.txt text");
        let listed = format!("routers: service, {};", router.as_str());
        assert!(notes.contains(&listed), "routers.{key}: {notes}");
    }
    for kind in RouterKind::ALL {
        let f = kind.facts();
        match f.chart_key {
            Some(key) => assert!(
                keys.contains(key),
                "router {} has chart_key {key} but the chart has no routers.{key}",
                f.name
            ),
            // Always on: nothing of its own to grant.
            None => assert!(f.writes.is_empty(), "router {} needs a chart key", f.name),
        }
    }
    // The default router can be any router of the table, and only those.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/serin/values.schema.json"),
        )
        .expect("values.schema.json"),
    )
    .expect("values.schema.json is JSON");
    let names: Vec<&str> = RouterKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        schema["properties"]["controller"]["properties"]["defaultRouter"]["enum"],
        serde_json::json!(names)
    );
}
