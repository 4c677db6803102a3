//! Sharding a large cluster between several controllers: `--namespace-selector` picks
//! the Namespaces (by their labels) a controller serves, `--label-selector` picks the
//! Deployments and Canaries. Each shard elects its own leader.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

pub use super::selector::{parse_selector, LabelSelector, SelectorError};

/// What one controller serves in a sharded cluster; the default serves everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shard {
    /// Namespaces (by their labels) whose objects this controller handles.
    pub namespaces: Option<LabelSelector>,
    /// Deployments and Canaries (by their labels) this controller handles.
    pub labels: Option<LabelSelector>,
}

impl Shard {
    /// Parse the two flags; empty strings mean "not set".
    pub fn from_flags(
        namespace_selector: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Shard, SelectorError> {
        let parse = |s: Option<&str>| -> Result<Option<LabelSelector>, SelectorError> {
            match s.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_selector(s).map(|sel| Some(sel).filter(|x| !x.is_empty())),
            }
        };
        Ok(Shard {
            namespaces: parse(namespace_selector)?,
            labels: parse(label_selector)?,
        })
    }

    pub fn is_sharded(&self) -> bool {
        self.namespaces.is_some() || self.labels.is_some()
    }

    /// The Lease this shard elects its leader with: `base` when not sharded, otherwise
    /// `base-<hash of the selectors>`, so that replicas of one shard share a Lease and
    /// different shards never do.
    pub fn lease_name(&self, base: &str) -> String {
        if !self.is_sharded() {
            return base.to_string();
        }
        let canonical = format!(
            "namespaces:{};labels:{}",
            self.namespaces
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            self.labels
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        let digest = Sha256::digest(canonical.as_bytes());
        let hex: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
        format!("{base}-{hex}")
    }

    /// The shard labels a Canary written for Deployment labels `from` carries: those of
    /// the keys the label selector reads, so the Canary lands in the Deployment's shard.
    pub fn labels_to_copy(&self, from: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let Some(sel) = &self.labels else {
            return BTreeMap::new();
        };
        sel.keys()
            .into_iter()
            .filter_map(|k| from.get(k).map(|v| (k.to_string(), v.clone())))
            .collect()
    }
}

/// Which namespaces a controller serves: all, or those a Namespace watch (filtered by
/// `--namespace-selector`) currently holds.
#[derive(Clone)]
pub struct NamespaceFilter {
    selected: Option<(LabelSelector, Store<PartialObjectMeta<Namespace>>)>,
}

impl NamespaceFilter {
    pub fn all() -> Self {
        NamespaceFilter { selected: None }
    }

    /// Namespaces that are in `store` (a watch with the selector fills it) and whose
    /// labels match `selector` (checked again here, so the store's content alone never
    /// admits a namespace).
    pub fn selected(selector: LabelSelector, store: Store<PartialObjectMeta<Namespace>>) -> Self {
        NamespaceFilter {
            selected: Some((selector, store)),
        }
    }

    /// Until the Namespace watch has listed once (immediately without a selector);
    /// false if the watch is gone.
    pub async fn wait_until_ready(&self) -> bool {
        match &self.selected {
            None => true,
            Some((_, store)) => store.wait_until_ready().await.is_ok(),
        }
    }

    /// Does this controller handle objects in namespace `ns`?
    pub fn admits(&self, ns: Option<&str>) -> bool {
        match (&self.selected, ns) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((sel, store)), Some(ns)) => store
                .get(&ObjectRef::new(ns))
                // A terminating namespace stays admitted: its Canaries' finalizers must run.
                .is_some_and(|n| sel.matches(n.labels())),
        }
    }
}

impl fmt::Debug for NamespaceFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selected {
            None => f.write_str("NamespaceFilter(all)"),
            Some((sel, _)) => write!(f, "NamespaceFilter({sel})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator_and_prints_the_canonical_form() {
        let cases = [
            ("serin.dev/shard=a", "serin.dev/shard=a"),
            ("serin.dev/shard==a", "serin.dev/shard=a"),
            ("  tier != web ", "tier!=web"),
            ("team in (b, a)", "team in (a,b)"),
            ("team notin (x)", "team notin (x)"),
            ("canary", "canary"),
            ("!legacy", "!legacy"),
            ("b=2,a=1", "a=1,b=2"),
            ("a=1,b=2", "a=1,b=2"),
            ("env=", "env="),
            ("env in (prod,)", "env in (,prod)"),
        ];
        for (input, canonical) in cases {
            let s = parse_selector(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), canonical, "{input}");
            // What we send is what we parsed: it parses back to itself.
            assert_eq!(parse_selector(&s.to_string()).unwrap(), s);
        }
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        let cases = [
            (
                "team in (a,b",
                "expected \",\" or \")\" in the set of \"team\", found the end",
            ),
            ("team in a", "expected \"(\" after \"team in\", found \"a\""),
            ("team in ()", "the set of values of \"team\" is empty"),
            ("a=1,,b=2", "expected a label key, found \",\""),
            ("a=1,", "trailing \",\""),
            (
                "a=1 b=2",
                "expected \",\" between requirements, found \"b\"",
            ),
            (
                "replicas>3",
                "the numeric operators > and < are not supported",
            ),
            ("Shard/x=a", "the prefix \"Shard\" must be a DNS subdomain"),
            ("-bad=a", "key \"-bad\": the name must be"),
            ("a=b c", "expected \",\" between requirements, found \"c\""),
            ("a=-x", "value \"-x\" of \"a\""),
            ("a==", ""),
            ("!a=b", "\"!a\" (key does not exist) takes no operator"),
            ("a (b)", "expected an operator"),
            ("=a", "expected a label key, found \"=\""),
        ];
        for (input, want) in cases {
            match parse_selector(input) {
                Err(e) => {
                    assert!(e.message.contains(want), "{input}: {e}");
                    assert!(e
                        .to_string()
                        .starts_with(&format!("label selector {input:?}: ")));
                }
                // `a==` is `a` equal to the empty value: valid upstream too.
                Ok(s) if input == "a==" => assert_eq!(s.to_string(), "a="),
                Ok(s) => panic!("{input}: parsed as {s}"),
            }
        }
        let long = format!("a={}", "v".repeat(64));
        assert!(parse_selector(&long).is_err());
    }

    #[test]
    fn matches_like_the_api_server() {
        let s = parse_selector("serin.dev/shard in (a,b),!legacy,tier!=batch").unwrap();
        assert!(s.matches(&labels(&[("serin.dev/shard", "a")])));
        assert!(s.matches(&labels(&[("serin.dev/shard", "b"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("serin.dev/shard", "c")])));
        assert!(!s.matches(&labels(&[("serin.dev/shard", "a"), ("legacy", "")])));
        assert!(!s.matches(&labels(&[("serin.dev/shard", "a"), ("tier", "batch")])));
        assert!(!s.matches(&labels(&[])));
        assert_eq!(
            s.keys().into_iter().collect::<Vec<_>>(),
            vec!["legacy", "serin.dev/shard", "tier"]
        );
    }

    #[test]
    fn lease_name_is_shared_by_replicas_of_a_shard_and_differs_between_shards() {
        let none = Shard::from_flags(None, Some(" ")).unwrap();
        assert_eq!(none.lease_name("serin-leader"), "serin-leader");
        let a = Shard::from_flags(Some("serin.dev/shard=a"), None).unwrap();
        let a2 = Shard::from_flags(Some(" serin.dev/shard == a "), Some("")).unwrap();
        let b = Shard::from_flags(Some("serin.dev/shard=b"), None).unwrap();
        let a_labels = Shard::from_flags(None, Some("serin.dev/shard=a")).unwrap();
        assert_eq!(a.lease_name("serin-leader"), a2.lease_name("serin-leader"));
        assert_ne!(a.lease_name("serin-leader"), b.lease_name("serin-leader"));
        assert_ne!(
            a.lease_name("serin-leader"),
            a_labels.lease_name("serin-leader")
        );
        let name = a.lease_name("serin-leader");
        assert!(name.starts_with("serin-leader-") && name.len() == "serin-leader-".len() + 10);
    }

    #[test]
    fn copies_only_the_selector_keys_the_deployment_has() {
        let shard = Shard::from_flags(None, Some("serin.dev/shard=a,!legacy")).unwrap();
        let d = labels(&[("serin.dev/shard", "a"), ("app", "web")]);
        assert_eq!(
            shard.labels_to_copy(&d),
            labels(&[("serin.dev/shard", "a")])
        );
        assert!(Shard::default().labels_to_copy(&d).is_empty());
    }

    fn ns(name: &str, l: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        let mut m = PartialObjectMeta::<Namespace>::default();
        m.metadata.name = Some(name.into());
        m.metadata.labels = Some(labels(l));
        m
    }

    #[test]
    fn namespace_filter_admits_only_watched_namespaces_that_match() {
        assert!(NamespaceFilter::all().admits(Some("anything")));
        let (store, mut writer) = reflector::store::<PartialObjectMeta<Namespace>>();
        let sel = parse_selector("serin.dev/shard=a").unwrap();
        let filter = NamespaceFilter::selected(sel, store);
        // Before the watch has listed anything, nothing is admitted.
        assert!(!filter.admits(Some("shop")));
        writer.apply_watcher_event(&watcher::Event::Apply(ns(
            "shop",
            &[("serin.dev/shard", "a")],
        )));
        writer.apply_watcher_event(&watcher::Event::Apply(ns(
            "blog",
            &[("serin.dev/shard", "b")],
        )));
        assert!(filter.admits(Some("shop")));
        assert!(
            !filter.admits(Some("blog")),
            "in the store but not matching"
        );
        assert!(!filter.admits(Some("other")));
        assert!(!filter.admits(None));
        // Relabelled out of the shard: the watch reports it deleted.
        writer.apply_watcher_event(&watcher::Event::Delete(ns(
            "shop",
            &[("serin.dev/shard", "b")],
        )));
        assert!(!filter.admits(Some("shop")));
        // A terminating namespace is still served: its Canaries' finalizers hand back.
        let mut gone = ns("blog", &[("serin.dev/shard", "a")]);
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        writer.apply_watcher_event(&watcher::Event::Apply(gone));
        assert!(filter.admits(Some("blog")));
    }
}
