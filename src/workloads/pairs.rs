//! Small string maps kept as sorted pairs in watch caches: a `BTreeMap` allocates a
//! 544-byte node for even one entry, and the caches hold several per Canary.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairs(Box<[(Box<str>, Box<str>)]>);

impl From<BTreeMap<String, String>> for Pairs {
    fn from(m: BTreeMap<String, String>) -> Self {
        Self(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl Pairs {
    /// Moves a metadata map out into pairs (a cached copy keeps them here instead).
    pub fn take_from(map: &mut Option<BTreeMap<String, String>>) -> Self {
        map.take().map(Self::from).unwrap_or_default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The map, or `None` for no entries (as an absent map is serialized).
    pub fn to_optional_map(&self) -> Option<BTreeMap<String, String>> {
        (!self.is_empty()).then(|| self.to_map())
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Whether these are exactly the entries of `m` (both are sorted by key).
    pub fn is(&self, m: &BTreeMap<String, String>) -> bool {
        self.0.len() == m.len()
            && self
                .0
                .iter()
                .zip(m)
                .all(|((k, v), (mk, mv))| **k == **mk && **v == **mv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pairs_keep_the_map_and_compare_entry_by_entry() {
        let m = map(&[("b", "2"), ("a", "1")]);
        let p = Pairs::from(m.clone());
        assert_eq!(p.to_map(), m);
        assert!(p.is(&m));
        assert!(!p.is(&map(&[("a", "1")])), "fewer entries");
        assert!(!p.is(&map(&[("a", "1"), ("b", "3")])), "another value");
        assert!(!p.is(&map(&[("a", "1"), ("c", "2")])), "another key");
        assert!(Pairs::default().is(&BTreeMap::new()));
    }

    #[test]
    fn a_key_is_found_by_its_exact_name() {
        let p = Pairs::from(map(&[("c", "3"), ("a", "1"), ("b", "2")]));
        assert_eq!(
            (p.get("a"), p.get("b"), p.get("c")),
            (Some("1"), Some("2"), Some("3"))
        );
        assert_eq!(p.get("ab"), None);
        assert_eq!(p.get(""), None);
        assert_eq!(Pairs::default().get("a"), None);
        assert_eq!(Pairs::default().to_optional_map(), None);
        assert_eq!(p.to_optional_map().map(|m| m.len()), Some(3));
        let mut taken = Some(map(&[("a", "1")]));
        assert_eq!(Pairs::take_from(&mut taken).get("a"), Some("1"));
        assert_eq!(taken, None, "moved out");
        assert!(Pairs::take_from(&mut None).is_empty());
    }
}
