//! Validation of router objects against the real CRDs in `../shared/crds`, the way an
//! API server would: defaults applied, the openAPIV3Schema checked with a JSON-schema
//! validator (unknown fields rejected, as server-side apply does), then every CEL rule
//! (`x-kubernetes-validations`) on the path of the written object evaluated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

use crate::testing::shared_crd;

/// The `openAPIV3Schema` of a served `version` of the CRD of `kind` in `file`
/// (parsed once per test binary: the CRD files are large).
pub fn crd_schema(file: &str, kind: &str, version: &str) -> Value {
    static CACHE: OnceLock<Mutex<HashMap<String, Value>>> = OnceLock::new();
    let key = format!("{file}/{kind}/{version}");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&key) {
        return v.clone();
    }
    let v = load_schema(file, kind, version);
    cache.lock().unwrap().insert(key, v.clone());
    v
}

fn load_schema(file: &str, kind: &str, version: &str) -> Value {
    let crd = shared_crd(file, kind);
    let v = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version && v["served"] == true)
        .unwrap_or_else(|| panic!("{kind} {version} not served by {file}"))
        .clone();
    v["schema"]["openAPIV3Schema"].clone()
}

/// Kubernetes structural schema -> JSON Schema: int-or-string becomes anyOf, and
/// objects with declared properties reject unknown fields (server-side apply fails
/// with "field not declared in schema" instead of pruning).
pub fn to_json_schema(s: &Value) -> Value {
    match s {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let v = match k.as_str() {
                    "properties" | "patternProperties" => Value::Object(
                        v.as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v)))
                            .collect(),
                    ),
                    "items" | "additionalProperties" | "not" => to_json_schema(v),
                    "allOf" | "anyOf" | "oneOf" => {
                        Value::Array(v.as_array().unwrap().iter().map(to_json_schema).collect())
                    }
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            if m.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
                out.remove("type");
                out.insert(
                    "anyOf".into(),
                    json!([{"type": "integer"}, {"type": "string"}]),
                );
            }
            if m.get("nullable") == Some(&json!(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if m.contains_key("properties") && !m.contains_key("additionalProperties") && !preserve
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Fill in schema defaults, as the API server does before validation.
pub fn apply_defaults(s: &Value, v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(props) = s["properties"].as_object() {
                for (k, ps) in props {
                    if !obj.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            obj.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = obj.get_mut(k) {
                        apply_defaults(ps, child);
                    }
                }
            }
            if s["additionalProperties"].is_object() {
                for child in obj.values_mut() {
                    apply_defaults(&s["additionalProperties"], child);
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                apply_defaults(&s["items"], child);
            }
        }
        _ => {}
    }
}

const CEL_RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Property names as Kubernetes exposes them to CEL (reserved words and symbols escaped).
fn cel_name(k: &str) -> String {
    if CEL_RESERVED.contains(&k) {
        return format!("__{k}__");
    }
    k.replace("__", "__underscores__")
        .replace('.', "__dot__")
        .replace('-', "__dash__")
        .replace('/', "__slash__")
}

fn to_cel(s: &Value, v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if s["type"] == "number" {
                cel::Value::Float(n.as_f64().unwrap())
            } else if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else {
                cel::Value::Float(n.as_f64().unwrap())
            }
        }
        Value::String(x) => cel::Value::String(Arc::new(x.clone())),
        Value::Array(a) => {
            cel::Value::List(Arc::new(a.iter().map(|x| to_cel(&s["items"], x)).collect()))
        }
        Value::Object(o) => {
            let mut m: HashMap<String, cel::Value> = HashMap::new();
            for (k, x) in o {
                if let Some(ps) = s["properties"].get(k) {
                    m.insert(cel_name(k), to_cel(ps, x));
                } else {
                    m.insert(k.clone(), to_cel(&s["additionalProperties"], x));
                }
            }
            cel::Value::Map(m.into())
        }
    }
}

/// Evaluate every CEL rule that applies to `v` (and below); returns the violations.
pub fn cel_violations(s: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(rules) = s["x-kubernetes-validations"].as_array() {
        for r in rules {
            let rule = r["rule"].as_str().unwrap();
            if rule.contains("oldSelf") {
                continue; // transition rules need the previous object
            }
            let program = cel::Program::compile(rule)
                .unwrap_or_else(|e| panic!("{path}: cannot compile CEL {rule:?}: {e:?}"));
            let mut ctx = cel::Context::default();
            ctx.add_variable_from_value("self", to_cel(s, v));
            match program.execute(&ctx) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(other) => out.push(format!(
                    "{path}: {} (rule {rule:?} gave {other:?})",
                    r["message"].as_str().unwrap_or("CEL rule failed")
                )),
                Err(e) => out.push(format!("{path}: CEL rule {rule:?} failed to run: {e:?}")),
            }
        }
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let child = s["properties"].get(k).unwrap_or(&s["additionalProperties"]);
                if child.is_object() {
                    cel_violations(child, x, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(a) if s["items"].is_object() => {
            for (i, x) in a.iter().enumerate() {
                cel_violations(&s["items"], x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn spec_validator(
    file: &str,
    kind: &str,
    version: &str,
    spec_schema: &Value,
) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = format!("{file}/{kind}/{version}");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&key) {
        return v.clone();
    }
    let js = to_json_schema(spec_schema);
    let v = Arc::new(jsonschema::validator_for(&js).expect("CRD schema compiles"));
    cache.lock().unwrap().insert(key, v.clone());
    v
}

/// Everything wrong with `spec` for this CRD version, as an API server would list it.
pub fn violations(file: &str, kind: &str, version: &str, spec: &Value) -> Vec<String> {
    let schema = crd_schema(file, kind, version);
    let spec_schema = &schema["properties"]["spec"];
    let mut spec = spec.clone();
    apply_defaults(spec_schema, &mut spec);
    let validator = spec_validator(file, kind, version, spec_schema);
    let mut out: Vec<String> = validator
        .iter_errors(&spec)
        .map(|e| format!("spec{}: {e}", e.instance_path()))
        .collect();
    if out.is_empty() {
        // Like the API server, CEL runs only on a schema-valid object.
        cel_violations(spec_schema, &spec, "spec", &mut out);
    }
    out
}

pub const GATEWAY_API: &str = "gateway-api-v1.6.1-httproutes.yaml";
pub const ISTIO: &str = "istio-v1.30.3-virtualservice-destinationrule.yaml";
pub const SMI: &str = "linkerd-smi-trafficsplit-crd.yaml";

/// Panic with the list of violations unless `obj` (a full object) is valid.
pub fn assert_valid(obj: &Value) {
    let kind = obj["kind"].as_str().unwrap();
    let version = obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let file = match kind {
        "HTTPRoute" => GATEWAY_API,
        "VirtualService" | "DestinationRule" => ISTIO,
        "TrafficSplit" => SMI,
        other => panic!("no CRD for {other}"),
    };
    let v = violations(file, kind, version, &obj["spec"]);
    assert!(v.is_empty(), "{kind} rejected by its CRD: {v:#?}\n{obj:#}");
}

#[test]
fn validator_accepts_the_real_servers_objects() {
    // Objects a real API server accepted (fixtures 11, 14, 16) pass.
    for (f, file, kind, version) in [
        ("11-httproute-create", GATEWAY_API, "HTTPRoute", "v1"),
        ("14-virtualservice-create", ISTIO, "VirtualService", "v1"),
        ("16-trafficsplit-create", SMI, "TrafficSplit", "v1alpha2"),
    ] {
        let body = crate::testing::fixture(f)["request"]["body"]["spec"].clone();
        assert_eq!(
            violations(file, kind, version, &body),
            Vec::<String>::new(),
            "{f}"
        );
    }
}

#[test]
fn validator_rejects_what_the_real_server_rejected() {
    // Fixture 12: weight -10 (schema) and a Service backendRef without port (CEL).
    let spec =
        crate::testing::fixture("12-httproute-invalid-422")["request"]["body"]["spec"].clone();
    let v = violations(GATEWAY_API, "HTTPRoute", "v1", &spec);
    assert!(
        v.iter().any(|e| e.contains("backendRefs/0/weight")),
        "{v:#?}"
    );
    let mut fixed = spec.clone();
    fixed["rules"][0]["backendRefs"][0]["weight"] = json!(90);
    let v = violations(GATEWAY_API, "HTTPRoute", "v1", &fixed);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(
        v[0].contains("Must have port for Service reference"),
        "{v:#?}"
    );
    // Fixture 13: a path without leading slash (CEL).
    let spec =
        crate::testing::fixture("13-httproute-cel-invalid-422")["request"]["body"]["spec"].clone();
    let v = violations(GATEWAY_API, "HTTPRoute", "v1", &spec);
    assert!(
        v.iter().any(|e| e.contains("must be an absolute path")),
        "{v:#?}"
    );
    // Fixture 15: a string weight.
    let spec =
        crate::testing::fixture("15-virtualservice-invalid-422")["request"]["body"]["spec"].clone();
    let v = violations(ISTIO, "VirtualService", "v1", &spec);
    assert!(v.iter().any(|e| e.contains("route/0/weight")), "{v:#?}");
}

#[test]
fn validator_rejects_unknown_fields_and_bad_mirror() {
    let spec = json!({"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "p"}}], "mirrorPercent2": 5}]});
    assert!(!violations(ISTIO, "VirtualService", "v1", &spec).is_empty());
    let spec = json!({"parentRefs": [{"name": "gw"}], "rules": [{"filters": [{"type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "podinfo-canary", "port": 80}, "percent": 10, "fraction": {"numerator": 1}}}],
        "backendRefs": [{"name": "podinfo-primary", "port": 80}]}]});
    let v = violations(GATEWAY_API, "HTTPRoute", "v1", &spec);
    assert!(
        v.iter()
            .any(|e| e.contains("Only one of percent or fraction")),
        "{v:#?}"
    );
    let spec =
        json!({"service": "podinfo", "backends": [{"service": "podinfo-primary", "weight": "x"}]});
    assert!(!violations(SMI, "TrafficSplit", "v1alpha2", &spec).is_empty());
}
