//! A watch cache that knows about serin's own writes. A reconcile right after a write
//! may run before the watch brings that write back, so each write is noted with the
//! resourceVersion it returned, and the object counts as unknown (read it from the
//! API) until the cache holds that version or a later one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use tokio::time::Instant;

/// A write the cache has not shown yet is trusted to it after this long at most: by
/// then a watch that has not delivered it is broken and being re-listed anyway.
const WRITE_SETTLES_WITHIN: Duration = Duration::from_secs(60);

/// One of serin's writes, until the cache has it.
#[derive(Clone, Debug)]
struct Written {
    /// The resourceVersion the write returned; `None`: deleted.
    resource_version: Option<String>,
    at: Instant,
}

/// A reflector's store plus serin's writes it may not have yet.
pub struct FreshStore<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    written: Arc<Mutex<HashMap<(String, String), Written>>>,
}

impl<K> Clone for FreshStore<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            written: self.written.clone(),
        }
    }
}

impl<K> FreshStore<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub fn new(store: Store<K>) -> Self {
        Self {
            store,
            written: Arc::default(),
        }
    }

    /// The store itself (reads ignore serin's pending writes).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Whether the watch has delivered its first list.
    pub fn is_ready(&self) -> bool {
        matches!(self.store.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    /// Note serin's write of `ns/name`: `Some(rv)` as the API returned it, `None` for a
    /// delete.
    pub fn note_write(&self, ns: &str, name: &str, resource_version: Option<String>) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.insert(
            (ns.to_string(), name.to_string()),
            Written {
                resource_version,
                at: Instant::now(),
            },
        );
    }

    /// The cached `ns/name` (`Some(None)`: known absent), or `None` when the cache cannot
    /// answer: not listed yet, or behind one of serin's own writes.
    pub fn get(&self, ns: &str, name: &str) -> Option<Option<Arc<K>>> {
        if !self.is_ready() {
            return None;
        }
        let cached = self.store.get(&ObjectRef::new(name).within(ns));
        let key = (ns.to_string(), name.to_string());
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = written.get(&key) else {
            return Some(cached);
        };
        let caught_up = w.at.elapsed() >= WRITE_SETTLES_WITHIN
            || match (&w.resource_version, &cached) {
                (None, None) => true,
                (Some(ours), Some(c)) => c
                    .meta()
                    .resource_version
                    .as_deref()
                    .is_some_and(|theirs| same_or_later(theirs, ours)),
                _ => false,
            };
        if caught_up {
            written.remove(&key);
            Some(cached)
        } else {
            None
        }
    }

    /// The cached objects `keep` admits, whatever serin wrote since (for checks that
    /// confirm anything wrong with a fresh read); `None` until the first list.
    pub fn filter(&self, keep: impl Fn(&K) -> bool) -> Option<Vec<Arc<K>>> {
        self.is_ready().then(|| self.store.state_filter(keep))
    }
}

/// Whether `theirs` is `ours` or later. Equality is always meaningful; order only when
/// both are numbers, as an etcd-backed API server's are. Anything else counts as not
/// yet seen (and [`WRITE_SETTLES_WITHIN`] bounds how long).
fn same_or_later(theirs: &str, ours: &str) -> bool {
    theirs == ours
        || matches!((theirs.parse::<u64>(), ours.parse::<u64>()), (Ok(t), Ok(o)) if t > o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn cm(rv: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("app".into());
        c.metadata.namespace = Some("shop".into());
        c.metadata.resource_version = Some(rv.into());
        c
    }

    #[test]
    fn resource_versions_compare_as_numbers_only_when_both_are() {
        assert!(same_or_later("17", "17"));
        assert!(same_or_later("18", "17"));
        assert!(!same_or_later("9", "17"));
        assert!(same_or_later("abc", "abc"));
        assert!(!same_or_later("abd", "abc"));
        assert!(!same_or_later("18", "x17"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_noted_write_makes_the_object_unknown_until_the_cache_has_it() {
        let (store, mut writer) = reflector::store();
        let fresh = FreshStore::<ConfigMap>::new(store);
        assert!(fresh.get("shop", "app").is_none(), "not listed yet");
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(cm("5")));
        writer.apply_watcher_event(&Event::InitDone);
        assert!(fresh.get("shop", "app").unwrap().is_some());
        assert!(fresh.get("shop", "other").unwrap().is_none());
        fresh.note_write("shop", "app", Some("7".into()));
        assert!(fresh.get("shop", "app").is_none(), "the cache is at 5");
        writer.apply_watcher_event(&Event::Apply(cm("8")));
        assert!(fresh.get("shop", "app").unwrap().is_some(), "8 is later");
        // A delete: unknown while the cache still has it.
        fresh.note_write("shop", "app", None);
        assert!(fresh.get("shop", "app").is_none());
        writer.apply_watcher_event(&Event::Delete(cm("9")));
        assert!(fresh.get("shop", "app").unwrap().is_none());
        // A write the watch never shows (re-listed past it) is trusted after a while.
        writer.apply_watcher_event(&Event::Apply(cm("x1")));
        fresh.note_write("shop", "app", Some("x0".into()));
        assert!(fresh.get("shop", "app").is_none());
        tokio::time::advance(WRITE_SETTLES_WITHIN).await;
        assert!(fresh.get("shop", "app").unwrap().is_some());
    }
}
