//! Keeps the notifier registry in line with the Notifier and ClusterNotifier objects.
//! URLs come from Secrets and live only in memory (redacted in every Debug output).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::crd::{ClusterNotifier, Notifier, NotifierSpec};
use crate::gates::SecretString;
use crate::notify::{HttpNotifier, Notifier as NotifierTrait, NotifierRegistry};

async fn url_of(client: &Client, ns: &str, spec: &NotifierSpec) -> Option<(SecretString, String)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = match secrets.get_opt(&spec.secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::warn!(namespace = ns, secret = %spec.secret_ref.name, "notifier Secret not found");
            return None;
        }
        Err(e) => {
            tracing::warn!(namespace = ns, error = %e, "reading notifier Secret failed");
            return None;
        }
    };
    let rv = secret.resource_version().unwrap_or_default();
    let bytes = secret
        .data
        .unwrap_or_default()
        .remove(&spec.secret_ref.key)?;
    let url = String::from_utf8(bytes.0).ok()?;
    Some((SecretString::new(url.trim().to_string()), rv))
}

/// Watch both kinds and rebuild the registry on every change. Runs until the process ends.
pub async fn run_notifier_watch(
    client: Client,
    controller_ns: String,
    registry: Arc<NotifierRegistry>,
    http: reqwest::Client,
) {
    let (ns_store, ns_writer) = reflector::store::<Notifier>();
    let (cl_store, cl_writer) = reflector::store::<ClusterNotifier>();
    let namespaced = reflector(
        ns_writer,
        watcher(
            Api::<Notifier>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .applied_objects()
    .map(|_| ());
    let cluster = reflector(
        cl_writer,
        watcher(
            Api::<ClusterNotifier>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .applied_objects()
    .map(|_| ());
    let mut changes = std::pin::pin!(futures::stream::select(namespaced, cluster));
    while changes.next().await.is_some() {
        let mut by_ns: BTreeMap<String, Vec<Arc<dyn NotifierTrait>>> = BTreeMap::new();
        for n in ns_store.state() {
            let ns = n.namespace().unwrap_or_default();
            if let Some((url, rv)) = url_of(&client, &ns, &n.spec).await {
                let key = format!("Notifier/{ns}/{}@{rv}", n.name_any());
                by_ns
                    .entry(ns)
                    .or_default()
                    .push(Arc::new(HttpNotifier::from_spec(
                        key,
                        &n.spec,
                        url,
                        http.clone(),
                    )));
            }
        }
        for (ns, list) in by_ns {
            registry.set_namespace(&ns, list);
        }
        let mut scoped = Vec::new();
        for c in cl_store.state() {
            // A ClusterNotifier's Secret lives in the controller's namespace.
            if let Some((url, rv)) = url_of(&client, &controller_ns, &c.spec.notifier).await {
                let key = format!("ClusterNotifier/{}@{rv}", c.name_any());
                let n: Arc<dyn NotifierTrait> = Arc::new(HttpNotifier::from_spec(
                    key,
                    &c.spec.notifier,
                    url,
                    http.clone(),
                ));
                scoped.push((c.spec.namespaces.clone(), n));
            }
        }
        registry.set_cluster(scoped);
    }
}
