//! serin's Services as their watch delivered them, by namespace and name. kube's
//! reflector store would key each by an `ObjectRef` (96 bytes inline and four strings:
//! name, namespace, resourceVersion, uid) and needs a whole `ObjectMeta` in each object
//! (360 bytes inline); this one keys by the two names and keeps a [`CachedService`].
//! The cache holds up to three Services per Canary.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use super::cached_service::CachedService;
use super::fresh_store::{CacheStore, FreshStore, WatchProgress};

/// The Service cache with serin's own writes on top (see [`FreshStore`]).
pub type ServiceCache = FreshStore<CachedService, ServiceStore>;

type ByName = HashMap<Box<str>, HashMap<Box<str>, Arc<CachedService>>>;

/// The read half: cheap to clone, shared with the [`ServiceWriter`] that fills it.
#[derive(Clone, Debug, Default)]
pub struct ServiceStore(Arc<RwLock<State>>);

#[derive(Debug, Default)]
struct State {
    by_namespace: ByName,
    /// The first list is complete.
    listed: bool,
}

impl ServiceStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// How many Services it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.read().by_namespace.values().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CacheStore for ServiceStore {
    type Object = CachedService;

    fn get(&self, ns: &str, name: &str) -> Option<Arc<CachedService>> {
        self.read().by_namespace.get(ns)?.get(name).cloned()
    }

    fn is_listed(&self) -> bool {
        self.read().listed
    }

    fn filter(&self, keep: impl Fn(&CachedService) -> bool) -> Vec<Arc<CachedService>> {
        self.read()
            .by_namespace
            .values()
            .flat_map(HashMap::values)
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }

    fn key(o: &CachedService) -> Option<(&str, &str)> {
        Some((o.namespace(), o.name()))
    }

    fn resource_version(o: &CachedService) -> Option<&str> {
        o.resource_version()
    }
}

/// The write half: applies a watch's events as kube's reflector does. A (re-)list is
/// collected apart and replaces the store whole when complete, so what vanished
/// meanwhile (no delete event for it) goes too.
#[derive(Debug)]
pub struct ServiceWriter {
    store: ServiceStore,
    relisting: Option<ByName>,
}

impl ServiceWriter {
    pub fn new(store: ServiceStore) -> Self {
        Self {
            store,
            relisting: None,
        }
    }

    pub fn apply_watcher_event(&mut self, event: watcher::Event<CachedService>) {
        match event {
            watcher::Event::Init => self.relisting = Some(ByName::default()),
            // A watch always starts a list with `Init`; without one, this starts it.
            watcher::Event::InitApply(s) => insert(self.relisting.get_or_insert_default(), s),
            watcher::Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let mut state = self.store.write();
                state.by_namespace = listed;
                state.listed = true;
            }
            watcher::Event::Apply(s) => insert(&mut self.store.write().by_namespace, s),
            watcher::Event::Delete(s) => {
                let mut state = self.store.write();
                if let Some(names) = state.by_namespace.get_mut(s.namespace()) {
                    names.remove(s.name());
                    if names.is_empty() {
                        state.by_namespace.remove(s.namespace());
                    }
                }
            }
        }
    }
}

fn insert(by_namespace: &mut ByName, s: CachedService) {
    let names = match by_namespace.get_mut(s.namespace()) {
        Some(names) => names,
        None => by_namespace.entry(s.namespace().into()).or_default(),
    };
    names.insert(s.name().into(), Arc::new(s));
}

/// A watch event of a Service, as the cache keeps it.
fn cached(event: watcher::Event<Service>) -> watcher::Event<CachedService> {
    match event {
        watcher::Event::Apply(s) => watcher::Event::Apply(s.into()),
        watcher::Event::Delete(s) => watcher::Event::Delete(s.into()),
        watcher::Event::InitApply(s) => watcher::Event::InitApply(s.into()),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A store filled by a watch of `api` in a background task that ends with the runtime,
/// and the watch's progress (reported before the store applies each event, as
/// [`super::fresh_store::watched`] does).
pub fn watched_services(
    api: Api<Service>,
    config: watcher::Config,
) -> (ServiceStore, Arc<WatchProgress>) {
    let store = ServiceStore::default();
    let mut writer = ServiceWriter::new(store.clone());
    let progress = Arc::new(WatchProgress::default());
    let observed = progress.clone();
    let events = watcher(api, config).default_backoff();
    tokio::spawn(events.for_each(move |e| {
        // Errors are retried by the backoff; the store keeps what it had meanwhile.
        if let Ok(e) = e {
            observed.observe(&e);
            writer.apply_watcher_event(cached(e));
        }
        std::future::ready(())
    }));
    (store, progress)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(ns: &str, name: &str, rv: &str, weight: i32) -> CachedService {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                "annotations": {crate::traffic::WEIGHT_ANNOTATION: weight.to_string()}},
        }))
        .unwrap()
    }

    fn weight(store: &ServiceStore, ns: &str, name: &str) -> Option<i32> {
        store.get(ns, name).and_then(|s| s.weight())
    }

    #[test]
    fn a_list_replaces_the_store_whole_and_events_then_apply_one_by_one() {
        let store = ServiceStore::default();
        let mut w = ServiceWriter::new(store.clone());
        assert!(!store.is_listed());
        w.apply_watcher_event(watcher::Event::Init);
        w.apply_watcher_event(watcher::Event::InitApply(svc("shop", "a", "1", 10)));
        w.apply_watcher_event(watcher::Event::InitApply(svc("shop", "b", "2", 20)));
        w.apply_watcher_event(watcher::Event::InitApply(svc("bank", "a", "3", 30)));
        assert!(!store.is_listed(), "a list shows once complete");
        assert!(store.is_empty());
        w.apply_watcher_event(watcher::Event::InitDone);
        assert!(store.is_listed());
        assert_eq!(store.len(), 3);
        assert_eq!(weight(&store, "shop", "a"), Some(10));
        assert_eq!(
            weight(&store, "bank", "a"),
            Some(30),
            "same name, other namespace"
        );
        assert_eq!(store.get("shop", "c"), None);
        assert_eq!(store.get("nowhere", "a"), None);

        w.apply_watcher_event(watcher::Event::Apply(svc("shop", "a", "4", 25)));
        assert_eq!(weight(&store, "shop", "a"), Some(25));
        assert_eq!(
            store
                .get("shop", "a")
                .and_then(|s| ServiceStore::resource_version(&s).map(str::to_string)),
            Some("4".to_string())
        );
        w.apply_watcher_event(watcher::Event::Delete(svc("bank", "a", "5", 30)));
        assert_eq!(store.get("bank", "a"), None);
        assert_eq!(store.len(), 2);
        let mut names: Vec<String> = store
            .filter(|s| s.namespace() == "shop")
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);

        // A re-list: the old contents answer until it completes; then what it lacks
        // (deleted while the watch was down, no delete event) is gone.
        w.apply_watcher_event(watcher::Event::Init);
        w.apply_watcher_event(watcher::Event::InitApply(svc("shop", "b", "6", 50)));
        assert_eq!(weight(&store, "shop", "a"), Some(25));
        w.apply_watcher_event(watcher::Event::InitDone);
        assert_eq!(store.get("shop", "a"), None);
        assert_eq!(weight(&store, "shop", "b"), Some(50));
        assert_eq!(store.len(), 1);
        assert!(store.is_listed());
    }

    #[test]
    fn serins_writes_answer_over_the_store_until_the_watch_brings_them() {
        let store = ServiceStore::default();
        let mut w = ServiceWriter::new(store.clone());
        let cache = ServiceCache::new(store.clone(), |_| {});
        assert_eq!(cache.get("shop", "a"), None, "not listed: cannot tell");
        w.apply_watcher_event(watcher::Event::Init);
        w.apply_watcher_event(watcher::Event::InitApply(svc("shop", "a", "5", 10)));
        w.apply_watcher_event(watcher::Event::InitDone);
        let seen = |c: &ServiceCache| c.get("shop", "a").map(|o| o.and_then(|s| s.weight()));
        assert_eq!(seen(&cache), Some(Some(10)));
        cache.note_write(&svc("shop", "a", "7", 25));
        assert_eq!(
            seen(&cache),
            Some(Some(25)),
            "the write is newer than the store"
        );
        w.apply_watcher_event(watcher::Event::Apply(svc("shop", "a", "7", 25)));
        w.apply_watcher_event(watcher::Event::Apply(svc("shop", "a", "8", 50)));
        assert_eq!(seen(&cache), Some(Some(50)), "the store passed the write");
        cache.note_delete("shop", "a");
        assert_eq!(seen(&cache), None, "deleted but still cached: read");
        w.apply_watcher_event(watcher::Event::Delete(svc("shop", "a", "9", 50)));
        assert_eq!(seen(&cache), Some(None));
    }
}
