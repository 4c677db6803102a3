//! Tracked ConfigMaps and Secrets: their fingerprints (for the revision) and their
//! `-primary` copies (so the primary keeps its config while the canary tries new one).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::apply;
use super::primary::primary_config_name;
use crate::workloads::pods::ConfigRef;
use crate::workloads::{WorkloadError, WorkloadRef};

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Per config, key -> digest of the value (Secret values never leave as plain text).
/// A missing config fingerprints as absent, so creating it later is a new revision.
pub async fn fingerprints(
    client: &Client,
    ns: &str,
    tracked: &BTreeSet<ConfigRef>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, WorkloadError> {
    let mut out = BTreeMap::new();
    for r in tracked {
        let data: BTreeMap<String, String> = match r {
            ConfigRef::ConfigMap(n) => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                match api.get_opt(n).await? {
                    None => BTreeMap::from([("<absent>".into(), String::new())]),
                    Some(cm) => cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, digest(v.as_bytes())))
                        .chain(
                            cm.binary_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, digest(&v.0))),
                        )
                        .collect(),
                }
            }
            ConfigRef::Secret(n) => {
                let api: Api<Secret> = Api::namespaced(client.clone(), ns);
                match api.get_opt(n).await? {
                    None => BTreeMap::from([("<absent>".into(), String::new())]),
                    Some(s) => s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, digest(&v.0)))
                        .collect(),
                }
            }
        };
        out.insert(r.key(), data);
    }
    Ok(out)
}

/// Apply `-primary` copies of every tracked config that exists.
pub async fn copy_for_primary(
    client: &Client,
    w: &WorkloadRef,
    tracked: &BTreeSet<ConfigRef>,
) -> Result<(), WorkloadError> {
    let owners: Vec<_> = w.owner.iter().collect();
    for r in tracked {
        let copy = primary_config_name(r.name());
        match r {
            ConfigRef::ConfigMap(n) => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &w.namespace);
                let Some(cm) = api.get_opt(n).await? else {
                    continue;
                };
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": copy, "namespace": w.namespace, "ownerReferences": owners,
                                 "labels": cm.metadata.labels},
                    "data": cm.data, "binaryData": cm.binary_data});
                api.patch(&copy, &apply(), &Patch::Apply(&body)).await?;
            }
            ConfigRef::Secret(n) => {
                let api: Api<Secret> = Api::namespaced(client.clone(), &w.namespace);
                let Some(s) = api.get_opt(n).await? else {
                    continue;
                };
                let body = json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": copy, "namespace": w.namespace, "ownerReferences": owners,
                                 "labels": s.metadata.labels},
                    "type": s.type_, "data": s.data});
                api.patch(&copy, &apply(), &Patch::Apply(&body)).await?;
            }
        }
    }
    Ok(())
}

/// Delete the copies named in the primary's template (already `-primary` names).
pub async fn delete_copies(
    client: &Client,
    ns: &str,
    tracked_primary: &BTreeSet<ConfigRef>,
) -> Result<(), WorkloadError> {
    let dp = DeleteParams::background();
    for r in tracked_primary {
        if !r.name().ends_with(crate::workloads::pods::PRIMARY_SUFFIX) {
            continue;
        }
        let res = match r {
            ConfigRef::ConfigMap(n) => Api::<ConfigMap>::namespaced(client.clone(), ns)
                .delete(n, &dp)
                .await
                .map(|_| ()),
            ConfigRef::Secret(n) => Api::<Secret>::namespaced(client.clone(), ns)
                .delete(n, &dp)
                .await
                .map(|_| ()),
        };
        match res {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => other?,
        }
    }
    Ok(())
}
