//! Small string maps kept as sorted pairs in watch caches: a `BTreeMap` allocates a
//! 544-byte node for even one entry, and the caches hold several per Canary. The pairs
//! share one allocation (a key and a value each as their own `Box<str>` cost two
//! allocations and 32 bytes of pointers per entry; a cached Deployment has a dozen).

use std::collections::BTreeMap;
use std::fmt;

/// Sorted (key, value) pairs in one buffer: the entry count, then each entry's key and
/// value lengths, then the keys' and values' bytes in order (all lengths as
/// little-endian `u32`). Empty pairs allocate nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pairs(Box<[u8]>);

const LEN: usize = std::mem::size_of::<u32>();

impl From<BTreeMap<String, String>> for Pairs {
    fn from(m: BTreeMap<String, String>) -> Self {
        Self::from_sorted(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl fmt::Debug for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Pairs {
    /// From entries sorted by key (as a `BTreeMap` yields them).
    fn from_sorted<'a>(entries: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let n = entries.len();
        if n == 0 {
            return Self::default();
        }
        let text: usize = entries.clone().map(|(k, v)| k.len() + v.len()).sum();
        let mut buf = Vec::with_capacity(LEN * (1 + 2 * n) + text);
        buf.extend_from_slice(&len_bytes(n));
        for (k, v) in entries.clone() {
            buf.extend_from_slice(&len_bytes(k.len()));
            buf.extend_from_slice(&len_bytes(v.len()));
        }
        for (k, v) in entries {
            buf.extend_from_slice(k.as_bytes());
            buf.extend_from_slice(v.as_bytes());
        }
        Self(buf.into_boxed_slice())
    }

    /// Moves a metadata map out into pairs (a cached copy keeps them here instead).
    pub fn take_from(map: &mut Option<BTreeMap<String, String>>) -> Self {
        map.take().map(Self::from).unwrap_or_default()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let n = self.read_len(0).unwrap_or(0);
        let mut at = LEN * (1 + 2 * n);
        (0..n).map_while(move |i| {
            let k = self.read_len(LEN * (1 + 2 * i))?;
            let v = self.read_len(LEN * (2 + 2 * i))?;
            let key = self.text(at, k)?;
            let value = self.text(at + k, v)?;
            at += k + v;
            Some((key, value))
        })
    }

    fn read_len(&self, at: usize) -> Option<usize> {
        let bytes = self.0.get(at..at + LEN)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    }

    fn text(&self, at: usize, len: usize) -> Option<&str> {
        std::str::from_utf8(self.0.get(at..at + len)?).ok()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .take_while(|(k, _)| *k <= key)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The map, or `None` for no entries (as an absent map is serialized).
    pub fn to_optional_map(&self) -> Option<BTreeMap<String, String>> {
        (!self.is_empty()).then(|| self.to_map())
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Whether these are exactly the entries of `m` (both are sorted by key).
    pub fn is(&self, m: &BTreeMap<String, String>) -> bool {
        self.iter()
            .eq(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// A length as stored: keys and values come from API objects, far below 4 GiB.
fn len_bytes(n: usize) -> [u8; LEN] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
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

    #[test]
    fn any_strings_survive_the_shared_buffer() {
        // Empty keys and values, multibyte characters and NUL bytes are all legal in
        // annotation values; the lengths, not separators, delimit them.
        let m = map(&[
            ("", "empty key"),
            ("a", ""),
            ("é/ключ", "値\0with\u{0}nul"),
            ("serin.dev/steps", "10,25,50"),
        ]);
        let p = Pairs::from(m.clone());
        assert_eq!(p.to_map(), m);
        assert_eq!(p.get(""), Some("empty key"));
        assert_eq!(p.get("a"), Some(""));
        assert_eq!(p.get("é/ключ"), Some("値\0with\u{0}nul"));
        assert_eq!(p.get("é"), None);
        assert_eq!(p.iter().count(), 4);
        assert_eq!(format!("{p:?}"), format!("{m:?}"), "printed as the map");
        let many: BTreeMap<String, String> = (0..300)
            .map(|i| (format!("k{i:03}"), "v".repeat(i)))
            .collect();
        let p = Pairs::from(many.clone());
        assert!(p.is(&many));
        assert_eq!(p.get("k299").map(str::len), Some(299));
        assert_eq!(p.get("k300"), None);
    }
}
