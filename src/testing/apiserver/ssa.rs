//! Server-side apply and field ownership, after structured-merge-diff (SMD) as the
//! real server runs it:
//!
//! * Apply: the applier's set becomes exactly the applied config's fields; the config
//!   is merged into the live object; fields the applier owned before and no longer
//!   applies are removed unless some manager still owns them; other managers whose
//!   fields *change value* conflict (409) unless forced, in which case they lose them.
//!   Equal values are not changes, so they end up shared.
//! * Update (create, PUT, merge/JSON/strategic patch): the updater gains the fields it
//!   added or changed, other managers lose them; nothing conflicts.

use serde_json::{Map, Value};

use super::fieldset::{path_string, FieldSet};
use super::resources::{atomic_map, key_default, list_type, ListType, ResourceType};

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflict messages name a manager: `"curl" using apps/v1` for an Update,
    /// just `"serin"` for an Apply (apimachinery's printManager, without the time).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// Decode `metadata.managedFields`; `None` when it is not a valid list (the server
/// then keeps the live object's entries).
pub fn decode(v: &Value) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    for e in v.as_array()? {
        let operation = e["operation"].as_str()?;
        if operation != "Apply" && operation != "Update" {
            return None;
        }
        if e.get("fieldsType").is_some_and(|t| t != "FieldsV1") {
            return None;
        }
        let mut fields =
            FieldSet::from_v1(e.get("fieldsV1").unwrap_or(&Value::Object(Map::new())))?;
        fields.member = false;
        out.push(Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: operation.to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            fields,
        });
    }
    Some(out)
}

/// `[{}]`: the documented way to clear every entry.
pub fn is_reset(v: &Value) -> bool {
    matches!(v.as_array().map(Vec::as_slice), Some([e]) if e.as_object().is_some_and(Map::is_empty))
}

/// Encode entries in the real server's order: Apply before Update, then by time, manager.
pub fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.fields.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), e.manager.clone().into());
                m.insert("operation".into(), e.operation.clone().into());
                m.insert("apiVersion".into(), e.api_version.clone().into());
                m.insert("time".into(), e.time.clone().into());
                m.insert("fieldsType".into(), "FieldsV1".into());
                m.insert("fieldsV1".into(), e.fields.to_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), e.subresource.clone().into());
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Which part of an object a write may own: server-set metadata never, and with a
/// status subresource either only `status` (writes to `/status`) or all but `status`.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub rt: &'a ResourceType,
    pub status_only: bool,
}

const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

impl Scope<'_> {
    fn restrict(&self, mut set: FieldSet) -> FieldSet {
        set.children.remove("f:apiVersion");
        set.children.remove("f:kind");
        if let Some(meta) = set.children.get_mut("f:metadata") {
            meta.member = false;
            for f in SERVER_META {
                meta.children.remove(&format!("f:{f}"));
            }
        }
        if self.status_only {
            set.children.retain(|k, _| k == "f:status");
        } else if self.rt.status {
            set.children.remove("f:status");
        }
        set
    }
}

/// An error that lists conflicting managers and paths.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflicts(pub Vec<(String, String)>);

impl Conflicts {
    /// The message, as apimachinery's getConflictMessage words it.
    pub fn message(&self) -> String {
        if let [(m, p)] = self.0.as_slice() {
            return format!("Apply failed with 1 conflict: conflict with {m}: {p}");
        }
        let mut lines = Vec::new();
        let mut last: Option<&str> = None;
        for (m, p) in &self.0 {
            if last != Some(m) {
                lines.push(format!("conflicts with {m}:"));
                last = Some(m);
            }
            lines.push(format!("- {p}"));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

/// Server-side apply of `config` (nulls already dropped) onto `live`. Returns the new
/// object and entries, or the conflicts. `live` is the skeleton object on create.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    scope: Scope,
    live: &Value,
    mut managers: Vec<Entry>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<(Value, Vec<Entry>), Conflicts> {
    let rt = scope.rt;
    let sub = if scope.status_only { "status" } else { "" };
    let mut merged = merge(rt, live, config, &mut Vec::new());
    let new_set = scope.restrict(field_set(rt, config));
    let previous = managers.iter().position(|e| e.is(manager, "Apply", sub));
    let (last, old_time) = match previous {
        Some(i) => {
            let e = managers.remove(i);
            (e.fields, Some(e.time))
        }
        None => (FieldSet::new(), None),
    };
    let owned = managers
        .iter()
        .fold(new_set.clone(), |acc, e| acc.union(&e.fields));
    prune(&mut merged, &last.difference(&new_set), Some(&owned));
    let cmp = compare(scope, live, &merged);
    let changed = cmp.added.union(&cmp.modified);
    let mut conflicts = Vec::new();
    for e in &managers {
        for p in e.fields.intersection(&changed).paths() {
            conflicts.push((e.describe(), path_string(&p)));
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        return Err(Conflicts(conflicts));
    }
    for e in &mut managers {
        e.fields = e.fields.difference(&changed).difference(&cmp.removed);
    }
    managers.retain(|e| !e.fields.is_empty());
    let time = match old_time {
        Some(t) if cmp.is_empty() && last == new_set => t,
        _ => now.to_string(),
    };
    managers.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time,
        subresource: sub.to_string(),
        fields: new_set,
    });
    Ok((merged, managers))
}

/// Ownership after an Update from `old` to `new` by `manager`.
pub fn update(
    scope: Scope,
    old: &Value,
    new: &Value,
    mut managers: Vec<Entry>,
    manager: &str,
    api_version: &str,
    now: &str,
) -> Vec<Entry> {
    let sub = if scope.status_only { "status" } else { "" };
    let cmp = compare(scope, old, new);
    let gained = cmp.added.union(&cmp.modified);
    for e in &mut managers {
        e.fields = e.fields.difference(&gained).difference(&cmp.removed);
    }
    if !gained.is_empty() {
        match managers.iter_mut().find(|e| e.is(manager, "Update", sub)) {
            Some(e) => {
                e.fields = e.fields.union(&gained);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => managers.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: sub.to_string(),
                fields: gained,
            }),
        }
    }
    managers.retain(|e| !e.fields.is_empty());
    managers
}

// ---- walking objects with the schema knowledge ----

enum Shape {
    Leaf,
    Map,
    List(ListType),
}

fn field_names(path: &[String]) -> Vec<&str> {
    path.iter().filter_map(|e| e.strip_prefix("f:")).collect()
}

fn shape(rt: &ResourceType, path: &[String], v: &Value) -> Shape {
    match v {
        Value::Object(_) if !atomic_map(rt, &field_names(path)) => Shape::Map,
        Value::Array(items) => match list_type(rt, &field_names(path)) {
            ListType::Atomic => Shape::Leaf,
            lt => {
                // A list whose items lack their keys cannot be merged by key.
                if items.iter().all(|i| item_key(lt, i).is_some()) {
                    Shape::List(lt)
                } else {
                    Shape::Leaf
                }
            }
        },
        _ => Shape::Leaf,
    }
}

/// `k:{"name":"x"}` (keys sorted, defaults filled) or `v:"x"`.
fn item_key(lt: ListType, item: &Value) -> Option<String> {
    match lt {
        ListType::Set => Some(format!("v:{item}")),
        ListType::Map(keys) => {
            let mut keys: Vec<&str> = keys.to_vec();
            keys.sort();
            let mut parts = Vec::new();
            for k in keys {
                let v = item.get(k).cloned().or_else(|| key_default(k))?;
                parts.push(format!("{}:{v}", Value::String(k.to_string())));
            }
            Some(format!("k:{{{}}}", parts.join(",")))
        }
        ListType::Atomic => None,
    }
}

fn keyed(lt: ListType, items: &[Value]) -> Vec<(String, &Value)> {
    items
        .iter()
        .filter_map(|i| Some((item_key(lt, i)?, i)))
        .collect()
}

/// The fields a value sets (SMD's toFieldSet): leaves, list items, empty maps.
pub fn field_set(rt: &ResourceType, v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    walk_set(rt, v, &mut Vec::new(), &mut out);
    out
}

fn walk_set(rt: &ResourceType, v: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    match shape(rt, path, v) {
        Shape::Leaf => out.insert(path),
        Shape::Map => {
            let m = v.as_object().expect("map shape");
            if m.is_empty() {
                out.insert(path);
            }
            for (k, c) in m {
                path.push(format!("f:{k}"));
                walk_set(rt, c, path, out);
                path.pop();
            }
        }
        Shape::List(lt) => {
            for (key, item) in keyed(lt, v.as_array().expect("list shape")) {
                path.push(key);
                out.insert(path);
                if let Some(m) = item.as_object() {
                    for (k, c) in m {
                        path.push(format!("f:{k}"));
                        walk_set(rt, c, path, out);
                        path.pop();
                    }
                }
                path.pop();
            }
        }
    }
}

/// What changed between two objects, restricted to `scope`.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

pub fn compare(scope: Scope, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    walk_cmp(scope.rt, Some(old), Some(new), &mut Vec::new(), &mut c);
    Comparison {
        added: scope.restrict(c.added),
        modified: scope.restrict(c.modified),
        removed: scope.restrict(c.removed),
    }
}

fn walk_cmp(
    rt: &ResourceType,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Vec<String>,
    c: &mut Comparison,
) {
    // A null map or list (a typed zero value's `containers: null`) is an empty one that
    // is present: its items count, the node itself is not added.
    let (old, new) = match (old, new) {
        (Some(Value::Null), Some(n)) if n.is_object() || n.is_array() => (Some(empty_like(n)), new),
        (Some(o), Some(Value::Null)) if o.is_object() || o.is_array() => (old, Some(empty_like(o))),
        _ => (old, new),
    };
    let Some(v) = new.or(old) else { return };
    let s = shape(rt, path, v);
    // A value that changed shape (map to scalar, ...) is a plain replacement.
    let same_shape = match (old, new) {
        (Some(a), Some(b)) => {
            std::mem::discriminant(&shape(rt, path, a)) == std::mem::discriminant(&s)
                && a.is_object() == b.is_object()
                && a.is_array() == b.is_array()
        }
        _ => true,
    };
    match s {
        Shape::Map | Shape::List(_) if same_shape => {
            match s {
                Shape::Map => {
                    let empty = Map::new();
                    let om = old.and_then(Value::as_object).unwrap_or(&empty);
                    let nm = new.and_then(Value::as_object).unwrap_or(&empty);
                    let mut keys: Vec<&String> = om.keys().chain(nm.keys()).collect();
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        path.push(format!("f:{k}"));
                        walk_cmp(rt, om.get(k), nm.get(k), path, c);
                        path.pop();
                    }
                }
                Shape::List(lt) => {
                    let none = Vec::new();
                    let oi = keyed(lt, old.and_then(Value::as_array).unwrap_or(&none));
                    let ni = keyed(lt, new.and_then(Value::as_array).unwrap_or(&none));
                    let mut keys: Vec<&String> =
                        oi.iter().chain(ni.iter()).map(|(k, _)| k).collect();
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        let o = oi.iter().find(|(x, _)| x == k).map(|(_, v)| *v);
                        let n = ni.iter().find(|(x, _)| x == k).map(|(_, v)| *v);
                        path.push(k.clone());
                        walk_cmp(rt, o, n, path, c);
                        path.pop();
                    }
                }
                Shape::Leaf => unreachable!(),
            }
            // SMD's post-item hook: a container node that appears or disappears is itself a change.
            if !path.is_empty() {
                if old.is_none() {
                    c.added.insert(path);
                } else if new.is_none() {
                    c.removed.insert(path);
                }
            }
        }
        _ => match (old, new) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if a != b => c.modified.insert(path),
            _ => {}
        },
    }
}

fn empty_like(v: &Value) -> &'static Value {
    static EMPTY_MAP: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| Value::Object(Map::new()));
    static EMPTY_LIST: Value = Value::Array(Vec::new());
    if v.is_object() {
        &EMPTY_MAP
    } else {
        &EMPTY_LIST
    }
}

/// Merge an applied config into the live object: maps by key, list-maps and sets by
/// item, everything else replaced.
fn merge(rt: &ResourceType, live: &Value, cfg: &Value, path: &mut Vec<String>) -> Value {
    match (shape(rt, path, cfg), live) {
        (Shape::Map, Value::Object(lm)) => {
            let mut out = lm.clone();
            for (k, c) in cfg.as_object().expect("map shape") {
                path.push(format!("f:{k}"));
                let v = match lm.get(k) {
                    Some(l) => merge(rt, l, c, path),
                    None => c.clone(),
                };
                path.pop();
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        (Shape::List(lt), Value::Array(litems)) => {
            let mut out: Vec<(Option<String>, Value)> = litems
                .iter()
                .map(|i| (item_key(lt, i), i.clone()))
                .collect();
            for (key, item) in keyed(lt, cfg.as_array().expect("list shape")) {
                path.push(key.clone());
                match out
                    .iter_mut()
                    .find(|(k, _)| k.as_deref() == Some(key.as_str()))
                {
                    Some((_, l)) => *l = merge(rt, l, item, path),
                    None => out.push((Some(key), item.clone())),
                }
                path.pop();
            }
            Value::Array(out.into_iter().map(|(_, v)| v).collect())
        }
        _ => cfg.clone(),
    }
}

/// Remove what `last` (the applier's dropped fields) names unless `owned` still has it.
/// A map field stays while anything below it is owned, and goes with its last owned
/// field (kube-apiserver v1.36 removes `status.policyWait` whole when its only manager
/// stops sending it, no `{}` left); a list item goes when nobody owns the item itself
/// (as SMD's prune does).
fn prune(v: &mut Value, last: &FieldSet, owned: Option<&FieldSet>) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let e = format!("f:{k}");
                let Some(l) = last.child(&e) else { continue };
                let o = owned.and_then(|o| o.child(&e));
                if l.member && o.is_none_or(FieldSet::is_empty) {
                    m.remove(&k);
                } else if !l.children.is_empty() {
                    let child = m.get_mut(&k).expect("key listed");
                    let was_filled = child.as_object().is_some_and(|c| !c.is_empty());
                    prune(child, l, o);
                    let emptied = was_filled && child.as_object().is_some_and(|c| c.is_empty());
                    if emptied && o.is_none_or(FieldSet::is_empty) {
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            // Only keyed lists have item paths in `last`, so atomic lists never get here.
            let mut keep = Vec::new();
            for mut item in std::mem::take(items) {
                let key = last
                    .children
                    .keys()
                    .find(|k| item_matches(k, &item))
                    .cloned();
                match key.and_then(|k| last.child(&k).map(|l| (k, l))) {
                    Some((k, l)) => {
                        let o = owned.and_then(|o| o.child(&k));
                        if l.member && !o.is_some_and(|o| o.member) {
                            continue;
                        }
                        prune(&mut item, l, o);
                        keep.push(item);
                    }
                    None => keep.push(item),
                }
            }
            *items = keep;
        }
        _ => {}
    }
}

/// Whether a list item is the one an encoded `k:`/`v:` element names.
fn item_matches(elem: &str, item: &Value) -> bool {
    if let Some(v) = elem.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item);
    }
    let Some(k) = elem.strip_prefix("k:") else {
        return false;
    };
    let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(k) else {
        return false;
    };
    keys.iter()
        .all(|(f, want)| item.get(f).cloned().or_else(|| key_default(f)).as_ref() == Some(want))
}
