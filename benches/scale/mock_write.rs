//! The mock API server's writes: create, replace (with resourceVersion preconditions),
//! delete, and patches (merge patches and server-side apply, object and `/status`).

use axum::http::Method;
use serde_json::{json, Value};

use super::{as_partial, parse_path, status, uriless_collection, ApiPath, Mock, State};

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else if k == "selector" || k == "matchLabels" || k == "finalizers" {
                    a.insert(k.clone(), v.clone());
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

impl Mock {
    pub(super) fn apply(
        &self,
        st: &mut State,
        method: &Method,
        p: &ApiPath,
        body: Value,
        how: &How,
    ) -> (u16, Value) {
        let plural = p.type_key.rsplit('/').next().unwrap_or("");
        let partial = how.partial;
        let not_found = || {
            (
                404,
                status(
                    404,
                    "NotFound",
                    &format!(
                        "{plural} \"{}\" not found",
                        p.name.clone().unwrap_or_default()
                    ),
                ),
            )
        };
        // Events are counted, not kept.
        if plural == "events" {
            let mut o = body;
            if o["metadata"]["name"].is_null() {
                o["metadata"]["name"] = json!(format!("ev-{}", st.rv));
            }
            return (if *method == Method::POST { 201 } else { 200 }, o);
        }
        match *method {
            Method::GET if p.name.is_none() => unreachable!("lists are served by handle"),
            Method::GET => match st.get(p) {
                Some(o) => (200, if partial { as_partial(o) } else { o.clone() }),
                None => not_found(),
            },
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                let item = format!("{}/{name}", uriless_collection(p));
                let q = parse_path(&item).unwrap();
                if st.get(&q).is_some() {
                    return (409, status(409, "AlreadyExists", "already exists"));
                }
                let mut o = body;
                o["metadata"]["uid"] = json!(format!("uid-{}", st.rv + 1));
                (201, st.store(&q, o))
            }
            Method::PUT => {
                let Some(cur) = st.get(p) else {
                    return not_found();
                };
                if body["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                    return (409, status(409, "Conflict", "the object has been modified"));
                }
                (200, st.store(p, body))
            }
            Method::DELETE => match st.remove(p) {
                Some(o) => {
                    st.rv += 1;
                    st.record(p, "DELETED", &o);
                    (200, o)
                }
                None => not_found(),
            },
            Method::PATCH => {
                let existed = st.get(p).cloned();
                let is_status = p.sub.as_deref() == Some("status");
                if is_status && existed.is_none() {
                    return not_found();
                }
                let mut obj = existed.clone().unwrap_or_else(|| {
                    json!({"apiVersion": body["apiVersion"], "kind": body["kind"],
                           "metadata": {"name": p.name, "namespace": p.ns, "generation": 0,
                                        "uid": format!("uid-{}", st.rv + 1),
                                        "creationTimestamp": "2026-11-22T14:23:08Z"}})
                });
                if let Some(want) = body["metadata"]["resourceVersion"].as_str() {
                    if obj["metadata"]["resourceVersion"].as_str() != Some(want) {
                        return (409, status(409, "Conflict", "the object has been modified"));
                    }
                }
                let mut patch = body;
                if let Some(m) = patch["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                if is_status {
                    write_status(st, p, &mut obj, &patch["status"], how);
                } else {
                    let before = obj["spec"].clone();
                    if let Some(m) = patch.as_object_mut() {
                        m.remove("status");
                    }
                    merge(&mut obj, &patch);
                    if obj["spec"] != before {
                        let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                        obj["metadata"]["generation"] = json!(g);
                    }
                }
                if existed.as_ref() == Some(&obj) {
                    // A no-op apply leaves the resourceVersion alone, as the server does.
                    return (200, obj);
                }
                let out = st.store(p, obj);
                if plural == "deployments" && !is_status {
                    st.finish_rollout(p);
                    return (200, st.get(p).unwrap().clone());
                }
                (200, out)
            }
            _ => (405, status(405, "MethodNotAllowed", "")),
        }
    }
}

/// How a request was made.
pub(super) struct How {
    /// Metadata only (PartialObjectMetadata).
    pub partial: bool,
    /// A server-side apply patch (else a merge patch).
    pub server_side_apply: bool,
    /// The `fieldManager` of a write.
    pub manager: String,
}

/// Write `patch` into the status of `obj` as a kube-apiserver would, with field
/// ownership tracked per top-level status field: a server-side apply sets the fields
/// it sends (forced: it takes them over) and removes those its manager owned and no
/// longer sends; fields of other managers stay (serin's status apply leaves out the
/// approval records the approval API owns). A merge patch merges.
fn write_status(st: &mut State, p: &ApiPath, obj: &mut Value, patch: &Value, how: &How) {
    let owners = st.status_owners.entry(p.item.clone()).or_default();
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    let cur = obj["status"].as_object_mut().unwrap();
    let fields = patch.as_object().cloned().unwrap_or_default();
    if how.server_side_apply {
        let dropped: Vec<String> = owners
            .iter()
            .filter(|(k, m)| **m == how.manager && !fields.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in dropped {
            cur.remove(&k);
            owners.remove(&k);
        }
        for (k, v) in fields {
            if v.is_null() {
                cur.remove(&k);
            } else {
                cur.insert(k.clone(), v);
            }
            owners.insert(k, how.manager.clone());
        }
    } else {
        merge(&mut obj["status"], patch);
        for k in fields.keys() {
            owners.insert(k.clone(), how.manager.clone());
        }
    }
}
