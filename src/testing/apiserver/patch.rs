//! The non-apply patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
//! and a simplified strategic merge patch.

use serde_json::Value;

use super::resources::{list_type, ListType, ResourceType};

/// RFC 7386: maps merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// Strategic merge patch, simplified: a merge patch where the built-in lists with a
/// patch merge key (containers by name, ports by containerPort / port, env, volumes,
/// conditions, ownerReferences, ...) merge item by item on their first key, items with
/// `"$patch": "delete"` are removed, `metadata.finalizers` merges as a set, and
/// `$deleteFromPrimitiveList/<field>` removes values. `$retainKeys`, `$setElementOrder`
/// and list-level `$patch: replace` are ignored (order and retain semantics not modelled).
pub fn strategic_merge_patch(rt: &ResourceType, target: &Value, patch: &Value) -> Value {
    smp(rt, target, patch, &mut Vec::new())
}

fn smp(rt: &ResourceType, target: &Value, patch: &Value, fields: &mut Vec<String>) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = p.clone();
        p.remove("$patch");
        return Value::Object(p);
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(drop)) = (out.get_mut(field), v.as_array()) {
                items.retain(|i| !drop.contains(i));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        fields.push(k.clone());
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        let merged = match (out.get(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => match list_type(rt, &names) {
                ListType::Map(keys) => Value::Array(merge_by_key(rt, cur, items, keys[0], fields)),
                ListType::Set => {
                    let mut cur = cur.clone();
                    for i in items {
                        if !cur.contains(i) {
                            cur.push(i.clone());
                        }
                    }
                    Value::Array(cur)
                }
                ListType::Atomic => v.clone(),
            },
            (Some(cur), Value::Object(_)) => smp(rt, cur, v, fields),
            (None, Value::Object(_)) => smp(rt, &Value::Null, v, fields),
            _ => v.clone(),
        };
        fields.pop();
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn merge_by_key(
    rt: &ResourceType,
    cur: &[Value],
    items: &[Value],
    key: &str,
    fields: &mut Vec<String>,
) -> Vec<Value> {
    let mut out = cur.to_vec();
    for item in items {
        let id = item.get(key);
        let pos = out.iter().position(|c| id.is_some() && c.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = smp(rt, &out[i], item, fields),
            (None, false) => out.push(smp(rt, &Value::Null, item, fields)),
        }
    }
    out
}

/// RFC 6902 JSON patch, every op including `test`. Errors read like the real server's
/// (evanphx/json-patch) messages.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("json patch must be a list of operations")?;
    let mut doc = target.clone();
    for op in ops {
        let name = op["op"].as_str().ok_or("missing op")?;
        let path = op["path"]
            .as_str()
            .ok_or_else(|| format!("{name} operation: missing path"))?;
        match name {
            "add" => add(&mut doc, path, op["value"].clone())?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)
                    .map_err(|_| format!("replace operation does not apply: doc is missing key: {path}: missing value"))?;
                add(&mut doc, path, op["value"].clone())?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move operation: missing from")?;
                let v = remove(&mut doc, from)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy operation: missing from")?;
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("copy operation does not apply: doc is missing from path: {from}: missing value"))?;
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(doc)
}

fn split(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("JSON pointer must be empty or start with a \"/\": {path}"))?;
    let last = path[i + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), last))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let missing =
        || format!("add operation does not apply: doc is missing path: \"{path}\": missing value");
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(items) => {
            let i = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>().map_err(|_| missing())?
            };
            if i > items.len() {
                return Err(format!(
                    "add operation does not apply: index out of bounds: {path}"
                ));
            }
            items.insert(i, v);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let missing = || {
        format!("remove operation does not apply: doc is missing path: \"{path}\": missing value")
    };
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(items) => {
            let i = last.parse::<usize>().map_err(|_| missing())?;
            if i >= items.len() {
                return Err(missing());
            }
            Ok(items.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Drop `null`s from an applied config's maps (simplification: the real server would
/// own them as explicit nulls).
pub fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::RESOURCES;
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_with_null_and_replaces_lists() {
        let t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let out = merge_patch(&t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(out, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_patch_merges_containers_by_name() {
        let d = RESOURCES
            .iter()
            .find(|r| r.plural == "deployments")
            .unwrap();
        let t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "s:1"}]}}},
            "metadata": {"finalizers": ["x"]}});
        let p = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:2"}, {"name": "sidecar", "$patch": "delete"}]}}},
            "metadata": {"finalizers": ["y"]}});
        let out = strategic_merge_patch(d, &t, &p);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "a:2", "ports": [{"containerPort": 80}]}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
    }

    #[test]
    fn json_patch_ops_and_failing_test() {
        let t = json!({"metadata": {"managedFields": [{"manager": "a"}], "labels": {"a/b": "1"}}, "l": [1]});
        let out = json_patch(
            &t,
            &json!([
                {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
                {"op": "replace", "path": "/metadata/managedFields", "value": [{}]},
                {"op": "add", "path": "/l/-", "value": 2},
                {"op": "copy", "from": "/l/0", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/d"},
                {"op": "remove", "path": "/metadata/labels/a~1b"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"managedFields": [{}], "labels": {}}, "l": [1, 2], "d": 1})
        );
        let err = json_patch(&t, &json!([{"op": "test", "path": "/l/0", "value": 5}])).unwrap_err();
        assert_eq!(err, "testing value /l/0 failed: test failed");
        assert!(json_patch(&t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&t, &json!([{"op": "replace", "path": "/nope", "value": 1}])).is_err());
    }
}
