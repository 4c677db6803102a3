//! The local "cluster" on disk: one JSON file holding the Canary (spec and status), the
//! user's workload spec, and the processes serin runs. Every write is a locked
//! read-modify-write, committed with write-temp + fsync + rename, so a crash at any
//! moment leaves either the old or the new file, and a restarted serin resumes from it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::LocalError;
use crate::crd::{AnalysisTemplateSpec, Approval, CanarySpec, CanaryStatus, GateKind};

/// The demo app's "pod template": its arguments and environment. The binary itself is
/// the backend's setting, so the same spec works from any checkout.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppTemplate {
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl AppTemplate {
    pub fn revision(&self) -> String {
        let json = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        crate::workloads::revision::revision_of(&json, &BTreeMap::new())
    }
}

/// The user's workload, as a Deployment would declare it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetSpec {
    pub template: AppTemplate,
    /// Replicas of the stable version.
    pub replicas: i32,
}

/// One running instance of the app.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcRecord {
    pub pid: u32,
    pub port: u16,
    pub instance_id: String,
    /// Prometheus `pod` label.
    pub pod: String,
    pub revision: String,
    pub started_at: DateTime<Utc>,
}

/// A set of identical instances: the primary, or the canary (the user's workload).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<AppTemplate>,
    /// Desired instances.
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub procs: Vec<ProcRecord>,
}

/// Everything serin keeps about one local release.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalState {
    pub namespace: String,
    pub name: String,
    pub spec: CanarySpec,
    #[serde(default)]
    pub status: CanaryStatus,
    pub target: TargetSpec,
    /// AnalysisTemplates by name, as the cluster would hold them.
    #[serde(default)]
    pub templates: BTreeMap<String, AnalysisTemplateSpec>,
    /// `None` until the primary was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<Group>,
    #[serde(default)]
    pub canary: Group,
}

/// A state file and its lock file.
#[derive(Clone, Debug)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<File, LocalError> {
        let lock_path = self.path.with_extension("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LocalError::io(&lock_path, e))?;
        // Writers from other processes (approve_local, a second serin) wait here.
        f.lock().map_err(|e| LocalError::io(&lock_path, e))?;
        Ok(f)
    }

    /// Write a fresh state file (replacing any).
    pub fn create(&self, state: &LocalState) -> Result<(), LocalError> {
        let _guard = self.lock()?;
        self.write(state)
    }

    pub fn load(&self) -> Result<LocalState, LocalError> {
        let _guard = self.lock()?;
        self.read()
    }

    fn read(&self) -> Result<LocalState, LocalError> {
        let bytes = std::fs::read(&self.path).map_err(|e| LocalError::io(&self.path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| LocalError::StateFormat {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    fn write(&self, state: &LocalState) -> Result<(), LocalError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| LocalError::StateFormat {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        atomic_write(&self.path, &json)
    }

    /// Locked read-modify-write; `f`'s result is returned after the commit.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut LocalState) -> Result<T, LocalError>,
    ) -> Result<T, LocalError> {
        let _guard = self.lock()?;
        let mut state = self.read()?;
        let out = f(&mut state)?;
        self.write(&state)?;
        Ok(out)
    }
}

/// Write `bytes` to `path` so readers see the old or the new content, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| LocalError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| LocalError::io(&tmp, e))?;
    f.sync_all().map_err(|e| LocalError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| LocalError::io(path, e))?;
    // The rename is durable once the directory entry is.
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Record an approval (or rejection) of the gate the release waits at, as
/// `kubectl serin approve` would. Returns the record written.
pub fn approve_local(
    state_file: &Path,
    approved: bool,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Approval, LocalError> {
    StateStore::new(state_file).update(|s| {
        let gate: GateKind = s.status.pending_gate.ok_or_else(|| {
            LocalError::Invalid(format!(
                "{}/{} waits at no gate (phase {})",
                s.namespace,
                s.name,
                s.status.phase.as_str()
            ))
        })?;
        let revision = s.status.canary_revision.clone().unwrap_or_default();
        let step = s.status.current_step;
        let a = Approval {
            id: Approval::key(gate, &revision, step),
            gate,
            revision,
            step,
            approved,
            by: by.to_string(),
            via: "cli".into(),
            at: now,
            groups: Vec::new(),
        };
        s.status.approvals.retain(|x| x.id != a.id);
        s.status.approvals.push(a.clone());
        Ok(a)
    })
}

/// Change the user's workload spec, as `kubectl apply` of a new Deployment would.
/// Returns the new revision.
pub fn set_target(state_file: &Path, template: AppTemplate) -> Result<String, LocalError> {
    StateStore::new(state_file).update(|s| {
        s.target.template = template;
        Ok(s.target.template.revision())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("serin-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.json")
    }

    fn state() -> LocalState {
        LocalState {
            namespace: "demo".into(),
            name: "podinfo".into(),
            spec: serde_json::from_value(serde_json::json!({"targetRef": {"name": "podinfo"}}))
                .unwrap(),
            status: CanaryStatus::default(),
            target: TargetSpec {
                template: AppTemplate {
                    args: vec!["--version".into(), "v1".into()],
                    env: BTreeMap::new(),
                },
                replicas: 2,
            },
            templates: BTreeMap::new(),
            primary: None,
            canary: Group::default(),
        }
    }

    #[test]
    fn round_trips_and_updates_atomically() {
        let path = scratch("rt");
        let store = StateStore::new(&path);
        store.create(&state()).unwrap();
        assert_eq!(store.load().unwrap(), state());
        let rev = set_target(
            &path,
            AppTemplate {
                args: vec!["--version".into(), "v2".into()],
                env: BTreeMap::new(),
            },
        )
        .unwrap();
        assert_ne!(rev, state().target.template.revision());
        assert_eq!(store.load().unwrap().target.template.revision(), rev);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
    }

    #[test]
    fn approval_needs_a_pending_gate_and_records_its_key() {
        let path = scratch("gate");
        let store = StateStore::new(&path);
        store.create(&state()).unwrap();
        let now = Utc::now();
        assert!(matches!(
            approve_local(&path, true, "ana", now),
            Err(LocalError::Invalid(_))
        ));
        store
            .update(|s| {
                s.status.pending_gate = Some(GateKind::BeforePromotion);
                s.status.canary_revision = Some("abc".into());
                s.status.current_step = 2;
                Ok(())
            })
            .unwrap();
        let a = approve_local(&path, true, "ana", now).unwrap();
        assert_eq!(a.id, "beforePromotion/abc/2");
        let s = store.load().unwrap();
        assert_eq!(s.status.approvals, vec![a]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let path = scratch("bad");
        std::fs::write(&path, b"{not json").unwrap();
        let err = StateStore::new(&path).load().unwrap_err();
        assert_eq!(err.category(), "state");
    }
}
