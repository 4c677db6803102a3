//! The validation (422) the real server runs, kept to the rules a controller trips on:
//! names, a Deployment's selector/template/containers, a Service's ports, an Event's
//! note length, and finalizers on an object being deleted.

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::Cause;
use super::resources::ResourceType;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Go's `%q` of a string (close enough for the ASCII names in tests).
pub fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn label_ok(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(label_ok)
}

fn is_dns1035_label(s: &str) -> bool {
    s.len() <= 63 && label_ok(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A `generateName` is checked as a name prefix: a trailing `-` is fine (fixture 23).
pub fn check_generate_name(prefix: &str) -> Option<Cause> {
    let masked = match prefix.strip_suffix('-') {
        Some(p) => format!("{p}a"),
        None => prefix.to_string(),
    };
    (!is_subdomain(&masked))
        .then(|| Cause::invalid("metadata.generateName", &quote(prefix), SUBDOMAIN_MSG))
}

/// Go's `%#v` of a `map[string]string`.
fn go_map(m: &serde_json::Map<String, Value>) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}:{}", quote(k), quote(v.as_str().unwrap_or_default())))
        .collect();
    format!("map[string]string{{{}}}", parts.join(", "))
}

/// Every failure for `obj` of type `rt`.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        out.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if rt.kind == "Service" {
        if !is_dns1035_label(name) {
            out.push(Cause::invalid(
                "metadata.name",
                &quote(name),
                LABEL_1035_MSG,
            ));
        }
    } else if name.len() > 253 {
        out.push(Cause::too_long("metadata.name", 253));
    } else if !is_subdomain(name) {
        out.push(Cause::invalid("metadata.name", &quote(name), SUBDOMAIN_MSG));
    }
    match rt.kind {
        "Deployment" => deployment(obj, &mut out),
        "Service" => service(obj, &mut out),
        "Event" if obj["note"].as_str().is_some_and(|n| n.len() > 1024) => {
            out.push(Cause::too_long("note", 1024));
        }
        _ => {}
    }
    out
}

fn deployment(obj: &Value, out: &mut Vec<Cause>) {
    let spec = &obj["spec"];
    if let Some(r) = spec["replicas"].as_i64().filter(|r| *r < 0) {
        out.push(Cause::invalid(
            "spec.replicas",
            &r.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => out.push(Cause::required("spec.selector", "")),
        Some(sel) => {
            let labels = sel["matchLabels"].as_object().cloned().unwrap_or_default();
            let exprs = sel["matchExpressions"].as_array().map_or(0, Vec::len);
            if labels.is_empty() && exprs == 0 {
                out.push(Cause::invalid(
                    "spec.selector",
                    "&LabelSelector{MatchLabels:map[string]string{},MatchExpressions:[]LabelSelectorRequirement{},}",
                    "empty selector is invalid for deployment",
                ));
            } else {
                // Only matchLabels are checked against the template (matchExpressions not modelled).
                let tl = spec["template"]["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                let matches = labels.iter().all(|(k, v)| tl.get(k) == Some(v));
                if !matches {
                    out.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &go_map(&tl),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    let containers = spec["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        out.push(Cause::required("spec.template.spec.containers", ""));
    }
    let mut seen = BTreeMap::new();
    for (i, c) in containers.iter().enumerate() {
        let at = format!("spec.template.spec.containers[{i}]");
        match c["name"].as_str().filter(|n| !n.is_empty()) {
            None => out.push(Cause::required(&format!("{at}.name"), "")),
            Some(n) => {
                if seen.insert(n.to_string(), i).is_some() {
                    out.push(Cause {
                        field: format!("{at}.name"),
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {}", quote(n)),
                    });
                }
            }
        }
        if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
            out.push(Cause::required(&format!("{at}.image"), ""));
        }
    }
}

fn service(obj: &Value, out: &mut Vec<Cause>) {
    let spec = &obj["spec"];
    let headless = spec["clusterIP"] == "None";
    let external = spec["type"] == "ExternalName";
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && !headless && !external {
        out.push(Cause::required("spec.ports", ""));
    }
    for (i, p) in ports.iter().enumerate() {
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            out.push(Cause::invalid(
                &format!("spec.ports[{i}].port"),
                &port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.len() > 1 && p["name"].as_str().is_none_or(str::is_empty) {
            out.push(Cause::required(&format!("spec.ports[{i}].name"), ""));
        }
    }
}

/// Finalizers may only shrink while an object is being deleted.
pub fn finalizers_on_delete(old: &Value, new: &Value) -> Option<Cause> {
    old["metadata"].get("deletionTimestamp")?;
    let before: Vec<&Value> = old["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let added: Vec<String> = new["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| !before.contains(f))
        .map(|f| quote(f.as_str().unwrap_or_default()))
        .collect();
    (!added.is_empty()).then(|| {
        Cause::forbidden(
            "metadata.finalizers",
            &format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                added.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::resources::RESOURCES;
    use super::*;
    use serde_json::json;

    fn rt(plural: &str) -> &'static ResourceType {
        RESOURCES.iter().find(|r| r.plural == plural).unwrap()
    }

    #[test]
    fn names_follow_dns_rules() {
        assert!(is_subdomain("podinfo.17f3a"));
        assert!(!is_subdomain("Podinfo"));
        assert!(!is_subdomain("podinfo."));
        assert!(check_generate_name("podinfo-").is_none());
        let c = check_generate_name("podinfo.").unwrap();
        let (_, fixture) = crate::testing::fixture_response("23-event-create-bad-generatename-422");
        assert_eq!(c.message, fixture["details"]["causes"][0]["message"]);
        let causes = validate(
            rt("services"),
            &json!({"metadata": {"name": "a.b"}, "spec": {"ports": [{"port": 80}]}}),
        );
        assert_eq!(causes[0].field, "metadata.name");
    }

    #[test]
    fn deployment_template_labels_must_match_selector() {
        let d = json!({"metadata": {"name": "p"}, "spec": {
            "selector": {"matchLabels": {"app": "p"}},
            "template": {"metadata": {"labels": {"app": "q", "tier": "web"}},
                         "spec": {"containers": [{"name": "p"}]}}}});
        let causes = validate(rt("deployments"), &d);
        let msgs: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            msgs,
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"q\", \"tier\":\"web\"}: `selector` does not match template `labels`",
                "spec.template.spec.containers[0].image: Required value",
            ]
        );
    }
}
