//! Sets of field paths in the `FieldsV1` format of `metadata.managedFields`.
//!
//! A path is a list of encoded elements: `f:name` (a field), `k:{"name":"x"}` (a
//! list-map item by its keys), `v:"x"` (a set item by value). A node is a *member* when
//! its own path is in the set: a leaf `{}` in FieldsV1, or a `".": {}` entry when it
//! also has members below it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse FieldsV1; `None` if it is not a FieldsV1 tree.
    pub fn from_v1(v: &Value) -> Option<FieldSet> {
        let obj = v.as_object()?;
        let mut set = FieldSet {
            member: obj.is_empty(),
            children: BTreeMap::new(),
        };
        for (k, child) in obj {
            if k == "." {
                set.member = true;
            } else if k.starts_with("f:")
                || k.starts_with("k:")
                || k.starts_with("v:")
                || k.starts_with("i:")
            {
                set.children.insert(k.clone(), FieldSet::from_v1(child)?);
            } else {
                return None;
            }
        }
        Some(set)
    }

    /// FieldsV1 of a set; the root itself is never a member.
    pub fn to_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && self.children.values().any(|c| !c.is_empty()) {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        // Nodes without members below them are not in the set.
        for (k, c) in self.children.iter().filter(|(_, c)| !c.is_empty()) {
            m.insert(k.clone(), c.to_v1());
        }
        Value::Object(m)
    }

    /// No member anywhere.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((head, rest)) => self.children.entry(head.clone()).or_default().insert(rest),
        }
    }

    /// The subtree at `path`, if any node is there.
    pub fn at(&self, path: &[String]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((head, rest)) => self.children.get(head)?.at(rest),
        }
    }

    pub fn child(&self, elem: &str) -> Option<&FieldSet> {
        self.children.get(elem)
    }

    pub fn has(&self, path: &[String]) -> bool {
        self.at(path).is_some_and(|s| s.member)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, c) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    /// Members of both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Drop the whole subtree at `path` (members below included).
    pub fn remove_subtree(&mut self, path: &[String]) {
        match path {
            [] => *self = FieldSet::new(),
            [last] => {
                self.children.remove(last);
            }
            [head, rest @ ..] => {
                if let Some(c) = self.children.get_mut(head) {
                    c.remove_subtree(rest);
                }
            }
        }
    }

    /// Every member path, in set order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }
}

/// A path as the real server prints it in conflicts: `.spec.template.spec.containers[name="podinfo"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for e in path {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = e.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

/// Build a path from `.`-free field names, for tests and callers: `p(&["spec", "replicas"])`.
pub fn fields(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("f:{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_fields_v1_with_self_markers() {
        let v1 = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}}}});
        let set = FieldSet::from_v1(&v1).unwrap();
        assert_eq!(set.to_v1(), v1);
        assert!(set.has(&fields(&["metadata", "labels"])));
        assert!(!set.has(&fields(&["metadata"])));
        let item = vec![
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"a\"}".into(),
        ];
        assert!(set.has(&item));
        assert_eq!(set.paths().len(), 4);
        assert!(FieldSet::from_v1(&json!({"bogus": {}})).is_none());
    }

    #[test]
    fn set_algebra_works_on_members_not_nodes() {
        let mut a = FieldSet::new();
        a.insert(&fields(&["spec", "replicas"]));
        a.insert(&fields(&["spec", "paused"]));
        let mut b = FieldSet::new();
        b.insert(&fields(&["spec", "replicas"]));
        b.insert(&fields(&["spec"]));
        let d = a.difference(&b);
        assert_eq!(d.paths(), vec![fields(&["spec", "paused"])]);
        assert_eq!(
            a.intersection(&b).paths(),
            vec![fields(&["spec", "replicas"])]
        );
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn paths_print_like_structured_merge_diff() {
        let p = vec![
            "f:spec".to_string(),
            "f:ports".to_string(),
            "k:{\"port\":80,\"protocol\":\"TCP\"}".to_string(),
            "f:name".to_string(),
        ];
        assert_eq!(
            path_string(&p),
            ".spec.ports[port=80,protocol=\"TCP\"].name"
        );
        let v = vec![
            "f:metadata".to_string(),
            "f:finalizers".to_string(),
            "v:\"x\"".to_string(),
        ];
        assert_eq!(path_string(&v), ".metadata.finalizers[=\"x\"]");
    }
}
