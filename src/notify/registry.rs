use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::Notifier;

/// Which notifiers an event of a Canary goes to.
pub trait NotifierSource: Send + Sync {
    fn notifiers_for(&self, namespace: &str) -> Vec<Arc<dyn Notifier>>;
}

/// A cluster default and the namespaces it is limited to (empty: all).
pub type ScopedNotifier = (Vec<String>, Arc<dyn Notifier>);

/// Notifiers by namespace (from `Notifier` objects) plus cluster defaults (from
/// `ClusterNotifier` objects), used where a namespace has none of its own. The
/// controller replaces entries as the objects and their Secrets change.
#[derive(Default)]
pub struct NotifierRegistry {
    namespaced: RwLock<BTreeMap<String, Vec<Arc<dyn Notifier>>>>,
    cluster: RwLock<Vec<ScopedNotifier>>,
}

impl NotifierRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_namespace(&self, namespace: &str, notifiers: Vec<Arc<dyn Notifier>>) {
        let mut map = self.namespaced.write().unwrap_or_else(|p| p.into_inner());
        if notifiers.is_empty() {
            map.remove(namespace);
        } else {
            map.insert(namespace.to_string(), notifiers);
        }
    }

    pub fn set_cluster(&self, notifiers: Vec<ScopedNotifier>) {
        *self.cluster.write().unwrap_or_else(|p| p.into_inner()) = notifiers;
    }
}

impl NotifierSource for NotifierRegistry {
    fn notifiers_for(&self, namespace: &str) -> Vec<Arc<dyn Notifier>> {
        let own = self
            .namespaced
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        if !own.is_empty() {
            return own;
        }
        self.cluster
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(nss, _)| nss.is_empty() || nss.iter().any(|n| n == namespace))
            .map(|(_, n)| n.clone())
            .collect()
    }
}
