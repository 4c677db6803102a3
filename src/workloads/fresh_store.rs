//! A watch cache that knows about serin's own writes. A reconcile right after a write
//! may run before the watch brings that write back, so each write is noted with the
//! object the API returned: while the cache holds an older version, that copy answers;
//! once the cache holds the written version or a later one, the cache does. A written
//! object the cache lacks (just created) answers while the watch has not reached the
//! write ([`WatchProgress`]). Whatever cannot be ordered (versions that are not numbers,
//! a write from before the watch re-listed, a delete the cache still shows) is read from
//! the API.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use tokio::time::Instant;

/// A write the cache has not shown yet is trusted to it after this long at most: by
/// then a watch that has not delivered it is broken and being re-listed anyway.
const WRITE_SETTLES_WITHIN: Duration = Duration::from_secs(60);

/// One of serin's writes, until the cache has it.
#[derive(Clone, Debug)]
struct Written<K> {
    /// The object as the write returned it (slimmed as the cache slims); `None`:
    /// deleted.
    copy: Option<Arc<K>>,
    at: Instant,
    /// The watch's [`WatchProgress::lists`] when the write was noted.
    lists: u64,
}

/// How far a watch has come: the highest resourceVersion among the objects it
/// delivered, and how many lists it has completed. Fed before the reflector stores
/// each event, so a watermark below a write's version means the store has seen nothing
/// from that write on. A re-list replaces the store without delete events for what
/// vanished; a write noted before it is therefore read again (the count moved).
#[derive(Debug, Default)]
pub struct WatchProgress {
    watermark: AtomicU64,
    lists: AtomicU64,
}

impl WatchProgress {
    /// Note one watch event.
    pub fn observe<K: Resource>(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                if let Some(v) = o
                    .meta()
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    self.watermark.fetch_max(v, AtomicOrdering::SeqCst);
                }
            }
            watcher::Event::InitDone => {
                self.lists.fetch_add(1, AtomicOrdering::SeqCst);
            }
            watcher::Event::Init => {}
        }
    }

    fn watermark(&self) -> u64 {
        self.watermark.load(AtomicOrdering::SeqCst)
    }

    fn lists(&self) -> u64 {
        self.lists.load(AtomicOrdering::SeqCst)
    }
}

/// Serin's writes by namespace and name, and when old ones were last dropped.
struct WrittenByName<K> {
    by_name: HashMap<(String, String), Written<K>>,
    pruned_at: Option<Instant>,
}

impl<K> Default for WrittenByName<K> {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
            pruned_at: None,
        }
    }
}

/// What a [`FreshStore`] reads: a watch's store of `Object`s by namespace and name.
/// kube's reflector [`Store`] is one; [`super::service_store::ServiceStore`] keeps
/// Services without a whole `ObjectMeta` each.
pub trait CacheStore: Clone + Send + Sync + 'static {
    type Object: Clone + Send + Sync + 'static;

    fn get(&self, ns: &str, name: &str) -> Option<Arc<Self::Object>>;

    /// Whether the watch has delivered its first list.
    fn is_listed(&self) -> bool;

    fn filter(&self, keep: impl Fn(&Self::Object) -> bool) -> Vec<Arc<Self::Object>>;

    /// An object's namespace and name.
    fn key(o: &Self::Object) -> Option<(&str, &str)>;

    fn resource_version(o: &Self::Object) -> Option<&str>;
}

impl<K> CacheStore for Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    type Object = K;

    fn get(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        Store::get(self, &ObjectRef::new(name).within(ns))
    }

    fn is_listed(&self) -> bool {
        listed(self)
    }

    fn filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.state_filter(keep)
    }

    fn key(o: &K) -> Option<(&str, &str)> {
        let m = o.meta();
        Some((m.namespace.as_deref()?, m.name.as_deref()?))
    }

    fn resource_version(o: &K) -> Option<&str> {
        o.meta().resource_version.as_deref()
    }
}

/// A watch's store plus serin's writes it may not have yet.
pub struct FreshStore<K, S = Store<K>>
where
    S: CacheStore<Object = K>,
{
    store: S,
    written: Arc<Mutex<WrittenByName<K>>>,
    /// What the cache keeps of an object, applied to written copies too.
    slim: fn(&mut K),
    /// The filling watch's progress, when it reports it; without it a written object
    /// the cache lacks is read.
    progress: Option<Arc<WatchProgress>>,
}

impl<K, S> Clone for FreshStore<K, S>
where
    S: CacheStore<Object = K>,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            written: self.written.clone(),
            slim: self.slim,
            progress: self.progress.clone(),
        }
    }
}

impl<K, S> FreshStore<K, S>
where
    K: Clone,
    S: CacheStore<Object = K>,
{
    /// A store filled by a watch that slims each object with `slim`.
    pub fn new(store: S, slim: fn(&mut K)) -> Self {
        Self {
            store,
            written: Arc::default(),
            slim,
            progress: None,
        }
    }

    /// Trust written copies the cache lacks while `progress` shows the watch behind.
    pub fn with_progress(mut self, progress: Arc<WatchProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The store itself (reads ignore serin's pending writes).
    pub fn store(&self) -> S {
        self.store.clone()
    }

    /// Whether the watch has delivered its first list.
    pub fn is_ready(&self) -> bool {
        self.store.is_listed()
    }

    /// Note serin's write: `written` as the API returned it.
    pub fn note_write(&self, written: &K) {
        let Some((ns, name)) = S::key(written) else {
            return;
        };
        let (ns, name) = (ns.to_string(), name.to_string());
        let mut copy = written.clone();
        (self.slim)(&mut copy);
        self.note(ns, name, Some(Arc::new(copy)));
    }

    /// Note serin's delete of `ns/name`.
    pub fn note_delete(&self, ns: &str, name: &str) {
        self.note(ns.to_string(), name.to_string(), None);
    }

    fn note(&self, ns: String, name: String, copy: Option<Arc<K>>) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let at = Instant::now();
        // Entries go when read past; ones never read again (an object no reconcile
        // looks at, a cache that never lists) go once they are too old to matter, in
        // one sweep per period.
        if written
            .pruned_at
            .is_none_or(|t| t.elapsed() >= WRITE_SETTLES_WITHIN)
        {
            written
                .by_name
                .retain(|_, w| w.at.elapsed() < WRITE_SETTLES_WITHIN);
            written.pruned_at = Some(at);
        }
        let lists = self.progress.as_ref().map_or(0, |p| p.lists());
        written
            .by_name
            .insert((ns, name), Written { copy, at, lists });
    }

    /// `ns/name` as of the newest of the cache and serin's last write (`Some(None)`:
    /// absent), or `None` when that cannot be told: not listed yet, or versions that
    /// cannot be ordered.
    pub fn get(&self, ns: &str, name: &str) -> Option<Option<Arc<K>>> {
        if !self.is_ready() {
            return None;
        }
        let cached = self.store.get(ns, name);
        let key = (ns.to_string(), name.to_string());
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = written.by_name.get(&key) else {
            return Some(cached);
        };
        if w.at.elapsed() >= WRITE_SETTLES_WITHIN {
            written.by_name.remove(&key);
            return Some(cached);
        }
        let version = |o: &Arc<K>| S::resource_version(o).map(str::to_string);
        match (&w.copy, &cached) {
            // Deleted, and the cache agrees.
            (None, None) => {
                written.by_name.remove(&key);
                Some(None)
            }
            (Some(ours), Some(theirs)) => match order(version(theirs), version(ours)) {
                Some(Ordering::Less) => Some(Some(ours.clone())),
                Some(_) => {
                    written.by_name.remove(&key);
                    Some(cached)
                }
                None => None,
            },
            // Written but not in the cache: not there yet while the watch is behind
            // the write (and has not re-listed since); deleted since, or unknown,
            // otherwise.
            (Some(ours), None) => {
                let progress = self.progress.as_ref()?;
                let written_at = S::resource_version(ours)?.parse::<u64>().ok()?;
                let behind = w.lists == progress.lists() && progress.watermark() < written_at;
                behind.then(|| Some(ours.clone()))
            }
            // Deleted but still cached (the delete not seen yet, or created again): read.
            (None, Some(_)) => None,
        }
    }

    /// The cached objects `keep` admits, whatever serin wrote since (for checks that
    /// confirm anything wrong with a fresh read); `None` until the first list.
    pub fn filter(&self, keep: impl Fn(&K) -> bool) -> Option<Vec<Arc<K>>> {
        self.is_ready().then(|| self.store.filter(keep))
    }
}

/// Whether a reflector's store holds its first list.
pub fn listed<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

/// A store filled by a watch of `api` (slimmed by `slim`) in a background task that
/// ends with the runtime, and the watch's progress (for a [`FreshStore`]); every watch
/// cache serin keeps starts this way.
pub fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
) -> (Store<K>, Arc<WatchProgress>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let progress = Arc::new(WatchProgress::default());
    let observed = progress.clone();
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .inspect_ok(move |e| observed.observe(e));
    let stream = reflector::reflector(writer, events);
    tokio::spawn(stream.for_each(|_| async {}));
    (store, progress)
}

/// How resourceVersion `a` orders against `b`. Equality is always meaningful; order
/// only when both are numbers, as an etcd-backed API server's are. Anything else
/// cannot be ordered (and [`WRITE_SETTLES_WITHIN`] bounds how long that matters).
pub fn order(a: Option<String>, b: Option<String>) -> Option<Ordering> {
    let (a, b) = (a?, b?);
    if a == b {
        return Some(Ordering::Equal);
    }
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => Some(a.cmp(&b)),
        _ => None,
    }
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

    fn rv(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn resource_versions_order_as_numbers_only_when_both_are() {
        assert_eq!(order(rv("17"), rv("17")), Some(Ordering::Equal));
        assert_eq!(order(rv("18"), rv("17")), Some(Ordering::Greater));
        assert_eq!(order(rv("9"), rv("17")), Some(Ordering::Less));
        assert_eq!(order(rv("abc"), rv("abc")), Some(Ordering::Equal));
        assert_eq!(order(rv("abd"), rv("abc")), None);
        assert_eq!(order(rv("18"), rv("x17")), None);
        assert_eq!(order(None, rv("1")), None);
    }

    fn no_slim(_: &mut ConfigMap) {}

    #[tokio::test(start_paused = true)]
    async fn a_noted_write_answers_until_the_cache_has_that_version() {
        let (store, mut writer) = reflector::store();
        let fresh = FreshStore::<ConfigMap>::new(store, no_slim);
        assert!(fresh.get("shop", "app").is_none(), "not listed yet");
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(cm("5")));
        writer.apply_watcher_event(&Event::InitDone);
        let version = |f: &FreshStore<ConfigMap>| {
            f.get("shop", "app")
                .map(|o| o.and_then(|c| c.metadata.resource_version.clone()))
        };
        assert_eq!(version(&fresh), Some(rv("5")));
        assert!(fresh.get("shop", "other").unwrap().is_none());
        // Written at 7 while the cache is at 5: the written copy answers.
        fresh.note_write(&cm("7"));
        assert_eq!(version(&fresh), Some(rv("7")));
        // The cache passes it: the cache answers (and the copy is dropped).
        writer.apply_watcher_event(&Event::Apply(cm("8")));
        assert_eq!(version(&fresh), Some(rv("8")));
        // A delete: unknown while the cache still has the object, absent once it has not.
        fresh.note_delete("shop", "app");
        assert_eq!(version(&fresh), None);
        writer.apply_watcher_event(&Event::Delete(cm("9")));
        assert_eq!(version(&fresh), Some(None));
        // A write the cache does not have at all (not there yet, or deleted since): read.
        fresh.note_write(&cm("10"));
        assert_eq!(version(&fresh), None);
        // Versions that cannot be ordered are read too, until the write is old enough
        // to trust the cache again.
        writer.apply_watcher_event(&Event::Apply(cm("x1")));
        fresh.note_write(&cm("x0"));
        assert_eq!(version(&fresh), None);
        tokio::time::advance(WRITE_SETTLES_WITHIN).await;
        assert_eq!(version(&fresh), Some(rv("x1")));
    }

    fn cm_named(name: &str, rv: &str) -> ConfigMap {
        let mut c = cm(rv);
        c.metadata.name = Some(name.into());
        c
    }

    /// Feeds an event to the progress first, then the store, as `watched` does.
    fn deliver(
        progress: &WatchProgress,
        writer: &mut reflector::store::Writer<ConfigMap>,
        e: Event<ConfigMap>,
    ) {
        progress.observe(&e);
        writer.apply_watcher_event(&e);
    }

    #[tokio::test(start_paused = true)]
    async fn a_created_object_answers_until_the_watch_passes_the_write() {
        let (store, mut writer) = reflector::store();
        let progress = Arc::new(WatchProgress::default());
        let fresh = FreshStore::<ConfigMap>::new(store, no_slim).with_progress(progress.clone());
        let version = |f: &FreshStore<ConfigMap>, name: &str| {
            f.get("shop", name)
                .map(|o| o.and_then(|c| c.metadata.resource_version.clone()))
        };
        deliver(&progress, &mut writer, Event::Init);
        deliver(
            &progress,
            &mut writer,
            Event::InitApply(cm_named("other", "4")),
        );
        deliver(&progress, &mut writer, Event::InitDone);
        // Created at 7, the watch at 4: the written copy answers, no read.
        fresh.note_write(&cm("7"));
        assert_eq!(version(&fresh, "app"), Some(rv("7")));
        // The watch delivers the create: the cache answers.
        deliver(&progress, &mut writer, Event::Apply(cm("7")));
        assert_eq!(version(&fresh, "app"), Some(rv("7")));
        // Created again at 12 after a delete the watch delivered at 9.
        deliver(&progress, &mut writer, Event::Delete(cm("9")));
        fresh.note_write(&cm("12"));
        assert_eq!(version(&fresh, "app"), Some(rv("12")));
        // The watch passes 12 without the object: deleted since (or never in the
        // watch's selection): read.
        deliver(
            &progress,
            &mut writer,
            Event::Apply(cm_named("other", "13")),
        );
        assert_eq!(version(&fresh, "app"), None);
        // A re-list after the write: whatever vanished sent no delete, so read even
        // though the listed objects are all older than the write.
        fresh.note_write(&cm("20"));
        assert_eq!(version(&fresh, "app"), Some(rv("20")));
        deliver(&progress, &mut writer, Event::Init);
        deliver(
            &progress,
            &mut writer,
            Event::InitApply(cm_named("other", "13")),
        );
        deliver(&progress, &mut writer, Event::InitDone);
        assert_eq!(version(&fresh, "app"), None);
        // A write after the re-list is trusted again.
        fresh.note_write(&cm("21"));
        assert_eq!(version(&fresh, "app"), Some(rv("21")));
    }
}
