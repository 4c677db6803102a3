//! From an HTTP request to an answer: routing, the RBAC verb, and the dispatch to the
//! store. Discovery (`/api`, `/apis`, `/apis/{group}/{version}`) is served too.

use serde_json::{json, Value};

use super::errors::{self, ApiError, Result};
use super::patch;
use super::rbac::{Denied, Rbac};
use super::resources::{ResourceType, RESOURCES};
use super::store::{Store, Target};
use super::RequestInfo;
use crate::controller::selector::parse_selector;

/// The request as it came off the wire.
pub struct Raw {
    pub method: String,
    pub path_and_query: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub body: Vec<u8>,
}

pub enum Route {
    Discovery(Value),
    /// A group/version nobody serves: the real mux answers `404 page not found` in text.
    NotServed,
    /// Known group/version, unknown resource or subresource.
    NoResource,
    Resource(Target, Option<String>),
}

fn parse_body(raw: &Raw) -> Option<Value> {
    if raw.body.is_empty() {
        return None;
    }
    serde_json::from_slice(&raw.body)
        .ok()
        .or_else(|| serde_yaml::from_slice(&raw.body).ok())
        .or_else(|| Some(Value::String(String::from_utf8_lossy(&raw.body).into())))
}

/// Parse the request line into what a hook and the recorder see.
pub fn request_info(store: &Store, raw: &Raw) -> (RequestInfo, Route) {
    let (path, query) = raw
        .path_and_query
        .split_once('?')
        .unwrap_or((raw.path_and_query.as_str(), ""));
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let route = route(store, path);
    let mut info = RequestInfo {
        method: raw.method.clone(),
        path: path.to_string(),
        query,
        verb: String::new(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: None,
        namespace: None,
        name: None,
        content_type: raw
            .content_type
            .as_deref()
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string()),
        body: parse_body(raw),
    };
    if let Route::Resource(t, sub) = &route {
        info.group = t.rt.group.into();
        info.version = t.version.clone();
        info.resource = t.rt.plural.into();
        info.subresource = sub.clone();
        info.namespace = t.namespace.clone();
        info.name = Some(t.name.clone()).filter(|n| !n.is_empty());
    }
    let named = info.name.is_some();
    info.verb = match (raw.method.as_str(), named) {
        ("GET", _) if info.query("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
    .to_string();
    (info, route)
}

fn served(store: &Store, group: &str, version: &str) -> Vec<&'static ResourceType> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.versions.contains(&version) && store.available(r))
        .collect()
}

fn route(store: &Store, path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Route::Discovery(json!({"kind": "APIVersions", "versions": ["v1"]})),
        ["apis"] => return Route::Discovery(group_list(store)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotServed,
    };
    let rts = served(store, group, version);
    if rts.is_empty() {
        return Route::NotServed;
    }
    if rest.is_empty() {
        return Route::Discovery(resource_list(group, version, &rts));
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, more @ ..] => (Some(ns.to_string()), [&[*r][..], more].concat()),
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [r] => (*r, "", None),
        [r, n] => (*r, *n, None),
        [r, n, s] => (*r, *n, Some(s.to_string())),
        _ => return Route::NoResource,
    };
    let Some(rt) = rts.into_iter().find(|r| r.plural == plural) else {
        return Route::NoResource;
    };
    if rt.namespaced != namespace.is_some() && !(rt.namespaced && name.is_empty()) {
        return Route::NoResource;
    }
    let status = match sub.as_deref() {
        None => false,
        Some("status") if rt.status => true,
        Some(_) => return Route::NoResource,
    };
    let t = Target {
        rt,
        version: version.to_string(),
        namespace,
        name: name.to_string(),
        status,
    };
    Route::Resource(t, sub)
}

fn group_list(store: &Store) -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty() && store.available(r))
    {
        if groups.iter().any(|g| g["name"] == r.group) {
            continue;
        }
        let versions: Vec<Value> = r
            .versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{}/{v}", r.group), "version": v}))
            .collect();
        groups
            .push(json!({"name": r.group, "versions": versions, "preferredVersion": versions[0]}));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str, rts: &[&ResourceType]) -> Value {
    let mut resources = Vec::new();
    for r in rts {
        resources.push(json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}));
        if r.status {
            resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// Check the verb against the policy (`None` allows everything).
pub fn authorize(rbac: &Option<Rbac>, info: &RequestInfo, verb: &str) -> Result<()> {
    let Some(rbac) = rbac else { return Ok(()) };
    let resource = match &info.subresource {
        Some(s) => format!("{}/{s}", info.resource),
        None => info.resource.clone(),
    };
    if rbac.allows(verb, &info.group, &resource, info.name.as_deref()) {
        return Ok(());
    }
    Err(ApiError {
        code: 403,
        body: Denied {
            user: &rbac.user,
            verb,
            group: &info.group,
            resource: &info.resource,
            subresource: info.subresource.as_deref(),
            namespace: info.namespace.as_deref(),
            name: info.name.as_deref(),
        }
        .body(),
    })
}

/// Serve a routed request. `Ok((code, body))` or the error answer.
pub fn dispatch(
    store: &mut Store,
    rbac: &Option<Rbac>,
    raw: &Raw,
    info: &RequestInfo,
    route: Route,
) -> Result<(u16, Value)> {
    let (t, _) = match route {
        Route::Discovery(v) => return Ok((200, v)),
        Route::NotServed => return Err(errors::page_not_found()),
        Route::NoResource => return Err(errors::no_resource()),
        Route::Resource(t, sub) => (t, sub),
    };
    authorize(rbac, info, &info.verb)?;
    if info.verb == "watch" {
        // Simplification: no watches; kube's watcher backs off and retries.
        return Err(errors::method_not_allowed(
            "watch is not supported by the fake API server",
        ));
    }
    let manager = info
        .query("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| {
            raw.user_agent
                .as_deref()
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string()
        });
    // Every body but a JSON patch is one object.
    let json_patch = info.content_type.as_deref() == Some("application/json-patch+json");
    let body = || match &info.body {
        None => Err(errors::bad_request("the request body is empty")),
        Some(b) if !b.is_object() && !json_patch => Err(errors::bad_request(
            "the body of the request was in an unknown format",
        )),
        Some(b) => Ok(b.clone()),
    };
    let partial = raw
        .accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    match (info.method.as_str(), info.name.is_some()) {
        ("GET", true) => Ok((200, metadata_only(store.get(&t)?, partial))),
        ("GET", false) => Ok((200, list(store, &t, info, partial)?)),
        ("POST", false) if !t.status => Ok((201, store.create(&t, body()?, &manager, false)?)),
        ("PUT", true) => Ok((200, store.update(&t, body()?, &manager)?)),
        ("PATCH", true) => patch(store, rbac, info, &t, body()?, &manager),
        ("DELETE", true) if !t.status => match store.delete(&t, info.body.as_ref())? {
            Some(o) => Ok((200, o)),
            None => {
                let mut details = json!({"name": t.name, "kind": t.rt.plural});
                if !t.rt.group.is_empty() {
                    details["group"] = json!(t.rt.group);
                }
                Ok((
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                ))
            }
        },
        ("DELETE", false) => {
            let items = list(store, &t, info, false)?;
            for i in items["items"].as_array().into_iter().flatten() {
                let name = i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ns = i["metadata"]["namespace"].as_str().map(str::to_string);
                store.delete(
                    &Target {
                        name,
                        namespace: ns,
                        ..t.clone()
                    },
                    None,
                )?;
            }
            Ok((200, items))
        }
        _ => Err(errors::method_not_allowed(&format!(
            "{} is not allowed here",
            info.method
        ))),
    }
}

fn patch(
    store: &mut Store,
    rbac: &Option<Rbac>,
    info: &RequestInfo,
    t: &Target,
    body: Value,
    manager: &str,
) -> Result<(u16, Value)> {
    let ct = info.content_type.as_deref().unwrap_or("");
    if ct == "application/apply-patch+yaml" {
        let Some(manager) = info.query("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(errors::unprocessable(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        // Apply on a missing object creates it, which RBAC checks separately.
        if store.get(t).is_err() && !t.status {
            authorize(rbac, info, "create")?;
        }
        let force = info.query("force") == Some("true");
        return store.apply(t, body, manager, force);
    }
    let known = [
        "application/merge-patch+json",
        "application/json-patch+json",
    ]
    .contains(&ct)
        || (ct == "application/strategic-merge-patch+json" && t.rt.builtin);
    if !known {
        return Err(errors::unsupported_media_type(t.rt.builtin));
    }
    let live = store.get(t)?;
    let new = match ct {
        "application/merge-patch+json" => patch::merge_patch(&live, &body),
        "application/strategic-merge-patch+json" if t.rt.builtin => {
            patch::strategic_merge_patch(t.rt, &live, &body)
        }
        "application/json-patch+json" => {
            patch::json_patch(&live, &body).map_err(|e| errors::unprocessable(&e))?
        }
        _ => return Err(errors::unsupported_media_type(t.rt.builtin)),
    };
    if !new.is_object() {
        return Err(errors::unprocessable(
            "the patched object is not a JSON object",
        ));
    }
    Ok((200, store.update(t, new, manager)?))
}

fn labels_of(o: &Value) -> std::collections::BTreeMap<String, String> {
    o["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn list(store: &Store, t: &Target, info: &RequestInfo, partial: bool) -> Result<Value> {
    let selector = match info.query("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_selector(s).map_err(|e| {
            errors::bad_request(&format!("unable to parse requirement: {}", e.message))
        })?),
        None => None,
    };
    let fields: Vec<(String, String)> = info
        .query("fieldSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let api_version = t.rt.api_version(&t.version);
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(k, _)| k.0 == t.rt.group && k.1 == t.rt.plural)
        .filter(|(k, _)| t.namespace.as_ref().is_none_or(|ns| &k.2 == ns))
        .map(|(_, o)| o)
        .filter(|o| selector.as_ref().is_none_or(|s| s.matches(&labels_of(o))))
        .filter(|o| {
            fields.iter().all(|(k, v)| {
                o.pointer(&format!("/{}", k.replace('.', "/")))
                    .and_then(Value::as_str)
                    == Some(v)
            })
        })
        .map(|o| {
            let mut o = o.clone();
            if t.rt.builtin {
                // Built-in lists leave kind and apiVersion out of items (fixture 10).
                let m = o.as_object_mut().expect("object");
                m.remove("kind");
                m.remove("apiVersion");
            } else {
                o["apiVersion"] = json!(api_version);
            }
            o
        })
        .collect();
    let meta = json!({"resourceVersion": store.resource_version()});
    if partial {
        let items: Vec<Value> = items
            .into_iter()
            .map(|o| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}))
            .collect();
        return Ok(
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
        );
    }
    Ok(
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": api_version, "metadata": meta, "items": items}),
    )
}

fn metadata_only(o: Value, partial: bool) -> Value {
    if partial {
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
    } else {
        o
    }
}
