//! RBAC: an allow-list of rules as a Role or ClusterRole states them, checked per
//! request the way the real authorizer sees it (verb, API group, resource or
//! `resource/subresource`, name).

use serde_json::{json, Value};

/// One PolicyRule. Empty `resource_names` means every name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// The rules granted to the client's user, plus that user's name for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rbac {
    pub user: String,
    pub rules: Vec<Rule>,
}

/// serin's service account, as the chart installs it.
pub const DEFAULT_USER: &str = "system:serviceaccount:serin-system:serin";

impl Default for Rbac {
    fn default() -> Self {
        Rbac {
            user: DEFAULT_USER.into(),
            rules: Vec::new(),
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rbac {
    /// Nothing allowed yet.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Rules from a rendered Role/ClusterRole: either its `rules` list or the whole
    /// object (`{"kind": "ClusterRole", "rules": [...]}`), or several objects in a list.
    pub fn from_rules(v: &Value) -> Self {
        let mut rbac = Self::default();
        rbac.add_rules(v);
        rbac
    }

    /// Add rules as [`Rbac::from_rules`] reads them (e.g. a Role and a ClusterRole).
    pub fn add_rules(&mut self, v: &Value) {
        match v {
            Value::Object(o) if o.contains_key("rules") => self.add_rules(&o["rules"]),
            Value::Object(o) => self.rules.push(Rule {
                verbs: strings(&o.get("verbs").cloned().unwrap_or_default()),
                api_groups: strings(&o.get("apiGroups").cloned().unwrap_or_default()),
                resources: strings(&o.get("resources").cloned().unwrap_or_default()),
                resource_names: strings(&o.get("resourceNames").cloned().unwrap_or_default()),
            }),
            Value::Array(items) => items.iter().for_each(|i| self.add_rules(i)),
            _ => {}
        }
    }

    /// Builder: allow `verbs` on `resources` (`"deployments"`, `"deployments/status"`) in `group`.
    pub fn allow(mut self, group: &str, resources: &[&str], verbs: &[&str]) -> Self {
        self.rules.push(Rule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: vec![group.to_string()],
            resources: resources.iter().map(|s| s.to_string()).collect(),
            resource_names: Vec::new(),
        });
        self
    }

    pub fn with_user(mut self, user: &str) -> Self {
        self.user = user.to_string();
        self
    }

    /// `resource` includes the subresource: `deployments/status`.
    pub fn allows(&self, verb: &str, group: &str, resource: &str, name: Option<&str>) -> bool {
        self.rules.iter().any(|r| {
            let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
            let res_ok = r.resources.iter().any(|x| {
                x == "*"
                    || x == resource
                    || (x.ends_with("/*")
                        && resource.split('/').next() == Some(&x[..x.len() - 2])
                        && resource.contains('/'))
            });
            any(&r.verbs, verb)
                && any(&r.api_groups, group)
                && res_ok
                && (r.resource_names.is_empty()
                    || name.is_some_and(|n| r.resource_names.iter().any(|x| x == n)))
        })
    }
}

/// The 403 the real server sends, e.g. `deployments.apps "podinfo-primary" is forbidden:
/// User "system:serviceaccount:serin-system:serin" cannot create resource "deployments"
/// in API group "apps" in the namespace "shop"`.
pub struct Denied<'a> {
    pub user: &'a str,
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Denied<'_> {
    pub fn body(&self) -> Value {
        let res = match self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.to_string(),
        };
        let scope = match self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let why = format!(
            "User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
            self.user, self.verb, self.group
        );
        let qualified = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let message = match self.name {
            Some(n) => format!("{qualified} \"{n}\" is forbidden: {why}"),
            None => format!("{qualified} is forbidden: {why}"),
        };
        let mut details = json!({"kind": self.resource});
        if let Some(n) = self.name {
            details["name"] = json!(n);
        }
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": "Forbidden", "details": details, "code": 403})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_a_rendered_cluster_role() {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch"]},
            {"apiGroups": ["serin.dev"], "resources": ["canaries/status"], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["only-me"], "verbs": ["get"]}
        ]});
        let r = Rbac::from_rules(&role);
        assert!(r.allows("patch", "apps", "deployments", Some("x")));
        assert!(!r.allows("create", "apps", "deployments", Some("x")));
        // A subresource needs its own rule.
        assert!(!r.allows("patch", "apps", "deployments/status", Some("x")));
        assert!(r.allows("update", "serin.dev", "canaries/status", Some("x")));
        assert!(!r.allows("get", "serin.dev", "canaries", Some("x")));
        assert!(r.allows("get", "", "configmaps", Some("only-me")));
        assert!(!r.allows("get", "", "configmaps", Some("other")));
        assert!(!r.allows("list", "", "configmaps", None));
    }

    #[test]
    fn forbidden_body_matches_the_real_shape() {
        let d = Denied {
            user: DEFAULT_USER,
            verb: "create",
            group: "",
            resource: "services",
            subresource: None,
            namespace: Some("shop"),
            name: Some("podinfo"),
        };
        let b = d.body();
        assert_eq!(
            b["message"],
            "services \"podinfo\" is forbidden: User \"system:serviceaccount:serin-system:serin\" cannot create resource \"services\" in API group \"\" in the namespace \"shop\""
        );
        assert_eq!(b["details"], json!({"name": "podinfo", "kind": "services"}));
    }
}
