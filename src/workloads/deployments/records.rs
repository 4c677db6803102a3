//! The spec of every revision serin writes to the primary, kept in an `apps/v1`
//! ControllerRevision (as StatefulSets and DaemonSets keep theirs). While a release or
//! a rolled-back revision sits on the user's Deployment, this record is the only copy
//! of the stable spec: a deleted primary is recreated from it, and the hand-back gives
//! it to the user's Deployment.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{ControllerRevision, DeploymentSpec};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch};
use kube::{Api, Client};

use super::apply;
use crate::crd::CANARY_LABEL;
use crate::workloads::{WorkloadError, WorkloadRef};

/// Label naming the primary a record belongs to.
pub const RECORD_LABEL: &str = "serin.dev/primary";

/// How many records a primary keeps (the stable one and a few before it).
const KEEP: usize = 3;

fn api(client: &Client, ns: &str) -> Api<ControllerRevision> {
    Api::namespaced(client.clone(), ns)
}

pub fn record_name(w: &WorkloadRef, revision: &str) -> String {
    format!("{}-{revision}", w.primary_name())
}

/// Each primary's records (name and number) as this process last left them, so that
/// a promotion does not LIST them again. Only serin writes records. The first save in
/// a namespace lists the records of every primary there at once (onboarding a
/// namespace of Canaries costs one LIST, not one per Canary); a primary the listing
/// did not show had none. A save or removal that fails forgets the namespace, so the
/// next one lists again.
#[derive(Debug, Default)]
pub struct RecordBook(Mutex<Book>);

#[derive(Debug, Default)]
struct Book {
    /// Namespace, then primary. Kept compact: the book has an entry per Canary for
    /// as long as the process runs.
    by_primary: HashMap<Box<str>, HashMap<Box<str>, Records>>,
    listed_namespaces: HashSet<String>,
}

/// A primary's records: name and number.
type Known = Vec<(String, i64)>;

/// [`Known`] as the book keeps it.
type Records = Box<[(Box<str>, i64)]>;

fn compact(known: Known) -> Records {
    known.into_iter().map(|(n, r)| (n.into(), r)).collect()
}

fn expand(known: Records) -> Known {
    known
        .into_vec()
        .into_iter()
        .map(|(n, r)| (n.into(), r))
        .collect()
}

/// What the book says of a primary's records.
enum Recall {
    Known(Known),
    /// Its namespace was listed and it had none.
    None,
    /// Not known here: list.
    Unknown,
}

impl RecordBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the primary's entry out (put back when its save succeeds).
    fn take(&self, (ns, primary): &(String, String)) -> Recall {
        let mut book = self.lock();
        let known = book
            .by_primary
            .get_mut(ns.as_str())
            .and_then(|primaries| primaries.remove(primary.as_str()));
        match known {
            Some(known) => Recall::Known(expand(known)),
            None if book.listed_namespaces.contains(ns) => Recall::None,
            None => Recall::Unknown,
        }
    }

    fn put(&self, (ns, primary): (String, String), records: Known) {
        self.lock()
            .by_primary
            .entry(ns.into())
            .or_default()
            .insert(primary.into(), compact(records));
    }

    /// A namespace's listing: every primary in it not known here yet.
    fn listed(&self, ns: &str, by_primary: HashMap<String, Known>) {
        let mut book = self.lock();
        let primaries = book.by_primary.entry(ns.into()).or_default();
        for (primary, known) in by_primary {
            primaries
                .entry(primary.into())
                .or_insert_with(|| compact(known));
        }
        book.listed_namespaces.insert(ns.to_string());
    }

    fn forget_namespace(&self, ns: &str) {
        let mut book = self.lock();
        book.listed_namespaces.remove(ns);
        book.by_primary.remove(ns);
    }
}

/// Record `spec` (replicas left out: the scale is not part of a revision) as the spec
/// of `revision`, and prune the oldest records beyond [`KEEP`].
pub async fn save(
    client: &Client,
    book: &RecordBook,
    w: &WorkloadRef,
    revision: &str,
    spec: &DeploymentSpec,
) -> Result<(), WorkloadError> {
    let saved = save_recorded(client, book, w, revision, spec).await;
    if saved.is_err() {
        book.forget_namespace(&w.namespace);
    }
    saved
}

async fn save_recorded(
    client: &Client,
    book: &RecordBook,
    w: &WorkloadRef,
    revision: &str,
    spec: &DeploymentSpec,
) -> Result<(), WorkloadError> {
    let api = api(client, &w.namespace);
    let key = (w.namespace.clone(), w.primary_name());
    let name = record_name(w, revision);
    let mut spec = spec.clone();
    spec.replicas = None;
    let data = serde_json::to_value(&spec)
        .map_err(|e| WorkloadError::Backend(format!("encoding the primary's spec: {e}")))?;
    let (mut existing, unchanged) = match book.take(&key) {
        // Known here: applied again whatever it holds (a record deleted behind serin's
        // back comes back, and applying what is there changes nothing).
        Recall::Known(known) => (known, false),
        Recall::None => (Vec::new(), false),
        Recall::Unknown => {
            let listed = api
                .list(&ListParams::default().labels(RECORD_LABEL))
                .await?
                .items;
            let unchanged = listed.iter().any(|r| {
                r.metadata.name.as_deref() == Some(name.as_str())
                    && r.data.as_ref().map(|d| &d.0) == Some(&data)
            });
            let mut by_primary: HashMap<String, Known> = HashMap::new();
            for r in listed {
                let primary = r.metadata.labels.as_ref().and_then(|l| l.get(RECORD_LABEL));
                if let (Some(primary), Some(n)) = (primary.cloned(), r.metadata.name) {
                    by_primary.entry(primary).or_default().push((n, r.revision));
                }
            }
            let mine = by_primary.remove(&key.1).unwrap_or_default();
            book.listed(&w.namespace, by_primary);
            (mine, unchanged)
        }
    };
    let number = match existing.iter().find(|(n, _)| *n == name) {
        Some((_, number)) => *number,
        None => existing.iter().map(|(_, r)| *r).max().unwrap_or(0) + 1,
    };
    if !unchanged {
        let body = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(w.namespace.clone()),
                labels: Some(
                    [
                        (RECORD_LABEL.to_string(), w.primary_name()),
                        (CANARY_LABEL.to_string(), w.canary_name()),
                    ]
                    .into(),
                ),
                owner_references: w.owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: number,
        };
        let mut value = serde_json::to_value(&body)
            .map_err(|e| WorkloadError::Backend(format!("encoding a ControllerRevision: {e}")))?;
        value["apiVersion"] = "apps/v1".into();
        value["kind"] = "ControllerRevision".into();
        api.patch(&name, &apply(), &Patch::Apply(&value)).await?;
    }
    existing.retain(|(n, _)| *n != name);
    existing.sort_by_key(|(_, r)| std::cmp::Reverse(*r));
    let old = existing.split_off(existing.len().min(KEEP - 1));
    for (n, _) in &old {
        ignore_missing(api.delete(n, &DeleteParams::background()).await.map(|_| ()))?;
    }
    existing.push((name, number));
    book.put(key, existing);
    Ok(())
}

/// The recorded spec of `revision`, if serin wrote that revision to the primary.
pub async fn load(
    client: &Client,
    w: &WorkloadRef,
    revision: &str,
) -> Result<Option<DeploymentSpec>, WorkloadError> {
    let Some(r) = api(client, &w.namespace)
        .get_opt(&record_name(w, revision))
        .await?
    else {
        return Ok(None);
    };
    let Some(data) = r.data else {
        return Ok(None);
    };
    serde_json::from_value(data.0).map(Some).map_err(|e| {
        WorkloadError::Backend(format!(
            "ControllerRevision {} does not hold a Deployment spec: {e}",
            record_name(w, revision)
        ))
    })
}

/// Remove every record of the primary (on hand-back).
pub async fn delete_all(
    client: &Client,
    book: &RecordBook,
    w: &WorkloadRef,
) -> Result<(), WorkloadError> {
    // Known from here on to have none, unless this fails midway.
    book.take(&(w.namespace.clone(), w.primary_name()));
    let deleted = delete_listed(client, w).await;
    if deleted.is_err() {
        book.forget_namespace(&w.namespace);
    }
    deleted
}

async fn delete_listed(client: &Client, w: &WorkloadRef) -> Result<(), WorkloadError> {
    let api = api(client, &w.namespace);
    let selector = format!("{RECORD_LABEL}={}", w.primary_name());
    for r in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        if let Some(n) = &r.metadata.name {
            ignore_missing(api.delete(n, &DeleteParams::background()).await.map(|_| ()))?;
        }
    }
    Ok(())
}

pub(crate) fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}
