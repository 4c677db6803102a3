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
}
