//! The local workload backend and nginx router over one state file.
//!
//! A "Deployment" is a [`Group`] of demo-app processes. Like a ReplicaSet controller,
//! [`LocalCluster`] replaces dead or outdated instances whenever it observes, and like
//! the Endpoints controller it rewrites nginx's upstream and Prometheus's targets when
//! instances change. Process ids and ports live in the state file, so a restarted
//! serin adopts the instances that still answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::future::join_all;

use super::nginx::NginxControl;
use super::procs::{free_port, http_ok, spawn_group, wait_until, Children};
use super::prometheus::{write_targets, SdTarget};
use super::state::{AppTemplate, Group, LocalState, ProcRecord, StateStore};
use super::telemetry::Rng;
use super::LocalError;
use crate::crd::Strategy;
use crate::traffic::{RouteTarget, RouterError, RouterKind, TrafficRouter};
use crate::workloads::{HandBack, WorkloadBackend, WorkloadError, WorkloadRef, WorkloadState};

/// Where the local backend finds its parts.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// The `serin-demo-app` binary every instance runs.
    pub app_binary: PathBuf,
    pub state_file: PathBuf,
    /// One log file per instance.
    pub log_dir: PathBuf,
    pub nginx: NginxControl,
    /// Prometheus file_sd targets file, rewritten as instances change.
    pub targets_file: Option<PathBuf>,
    /// How long a new instance may take to answer `/healthz`.
    pub ready_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Primary,
    Canary,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Canary => "canary",
        }
    }
}

/// Local processes as workloads, nginx as the router.
pub struct LocalCluster {
    cfg: LocalConfig,
    store: StateStore,
    children: Children,
    http: reqwest::Client,
    rng: Rng,
    /// Serializes this process's changes to groups (the file lock covers other writers).
    op: tokio::sync::Mutex<()>,
}

impl LocalCluster {
    pub fn new(cfg: LocalConfig) -> Result<Arc<Self>, LocalError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .map_err(|e| LocalError::Invalid(format!("HTTP client: {e}")))?;
        let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        Ok(Arc::new(Self {
            store: StateStore::new(&cfg.state_file),
            cfg,
            children: Children::default(),
            http,
            rng: Rng::new(seed ^ u64::from(std::process::id())),
            op: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    fn group(state: &LocalState, role: Role) -> Option<&Group> {
        match role {
            Role::Primary => state.primary.as_ref(),
            Role::Canary => Some(&state.canary),
        }
    }

    fn group_mut(state: &mut LocalState, role: Role) -> Option<&mut Group> {
        match role {
            Role::Primary => state.primary.as_mut(),
            Role::Canary => Some(&mut state.canary),
        }
    }

    fn workload_name(state: &LocalState, role: Role) -> String {
        let name = &state.spec.target_ref.name;
        match role {
            Role::Primary => format!("{name}-primary"),
            Role::Canary => name.clone(),
        }
    }

    async fn spawn_instance(
        &self,
        state: &LocalState,
        role: Role,
        template: &AppTemplate,
        revision: &str,
    ) -> Result<ProcRecord, LocalError> {
        let port = free_port()?;
        let workload = Self::workload_name(state, role);
        const ALNUM: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|_| ALNUM[(self.rng.next_u64() % ALNUM.len() as u64) as usize] as char)
            .collect();
        let pod = format!("{workload}-{revision}-{suffix}");
        let service = state
            .spec
            .service
            .name
            .clone()
            .unwrap_or_else(|| state.spec.target_ref.name.clone());
        let mut args = template.args.clone();
        args.extend([
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--workload".into(),
            workload,
            "--namespace".into(),
            state.namespace.clone(),
            "--service".into(),
            service,
            "--role".into(),
            role.as_str().into(),
            "--instance-id".into(),
            pod.clone(),
        ]);
        let env: Vec<(String, String)> = template.env.clone().into_iter().collect();
        let log = self.cfg.log_dir.join(format!("{pod}.log"));
        let child = spawn_group(&self.cfg.app_binary, &args, &env, &log)?;
        let pid = self.children.insert(child);
        Ok(ProcRecord {
            pid,
            port,
            instance_id: pod.clone(),
            pod,
            revision: revision.to_string(),
            started_at: Utc::now(),
        })
    }

    async fn ready(&self, p: &ProcRecord) -> bool {
        let url = format!("http://127.0.0.1:{}/healthz", p.port);
        http_ok(&self.http, &url, &format!("\"{}\"", p.instance_id)).await
    }

    async fn all_ready(&self, procs: &[ProcRecord]) -> bool {
        join_all(procs.iter().map(|p| self.ready(p)))
            .await
            .into_iter()
            .all(|r| r)
    }

    /// Bring a group to `replicas` live instances of `template`, replacing dead or
    /// outdated ones; new instances are routed before old ones are stopped.
    async fn converge(
        &self,
        role: Role,
        template: &AppTemplate,
        replicas: i32,
    ) -> Result<(), LocalError> {
        let state = self.store.load()?;
        let Some(group) = Self::group(&state, role) else {
            return Ok(());
        };
        let revision = template.revision();
        let want = replicas.max(0) as usize;
        let (mut keep, mut retire) = (Vec::new(), Vec::new());
        for p in &group.procs {
            let current = p.revision == revision && self.children.alive(p.pid);
            if current && keep.len() < want {
                keep.push(p.clone());
            } else {
                retire.push(p.clone());
            }
        }
        let mut fresh = Vec::new();
        for _ in keep.len()..want {
            fresh.push(
                self.spawn_instance(&state, role, template, &revision)
                    .await?,
            );
        }
        if !fresh.is_empty() {
            let timeout = self.cfg.ready_timeout;
            // Not fatal: observe() reports readiness, the core waits for it.
            let _ = wait_until(timeout, || self.all_ready(&fresh)).await;
        }
        keep.extend(fresh);
        let unchanged = retire.is_empty() && keep == group.procs;
        if unchanged && group.revision.as_deref() == Some(revision.as_str()) {
            return Ok(());
        }
        let state = self.store.update(|s| {
            if let Some(g) = Self::group_mut(s, role) {
                g.procs = keep.clone();
                g.replicas = replicas;
                g.template = Some(template.clone());
                g.revision = Some(revision.clone());
            }
            Ok(s.clone())
        })?;
        self.sync_endpoints(&state).await?;
        for p in retire {
            self.children.stop(p.pid);
        }
        Ok(())
    }

    /// Point nginx and Prometheus at the instances in `state`.
    async fn sync_endpoints(&self, state: &LocalState) -> Result<(), LocalError> {
        let weight = self.cfg.nginx.observed_weight()?.unwrap_or(0);
        self.apply_weight(state, weight).await?;
        if let Some(file) = &self.cfg.targets_file {
            let mut targets = Vec::new();
            for role in [Role::Primary, Role::Canary] {
                let Some(g) = Self::group(state, role) else {
                    continue;
                };
                let workload = Self::workload_name(state, role);
                for p in &g.procs {
                    targets.push(SdTarget {
                        targets: vec![format!("127.0.0.1:{}", p.port)],
                        labels: [
                            ("namespace", state.namespace.clone()),
                            ("pod", p.pod.clone()),
                            ("app", workload.clone()),
                            ("deployment", workload.clone()),
                            ("role", role.as_str().to_string()),
                            ("revision", p.revision.clone()),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    });
                }
            }
            write_targets(file, &targets)?;
        }
        Ok(())
    }

    async fn apply_weight(&self, state: &LocalState, weight: i32) -> Result<(), LocalError> {
        let ports = |g: Option<&Group>| -> Vec<u16> {
            g.map(|g| g.procs.iter().map(|p| p.port).collect())
                .unwrap_or_default()
        };
        self.cfg
            .nginx
            .apply(
                weight,
                &ports(state.primary.as_ref()),
                &ports(Some(&state.canary)),
            )
            .await
    }

    /// Replace instances that died (a ReplicaSet would).
    async fn heal(&self, state: &LocalState) -> Result<(), LocalError> {
        for role in [Role::Primary, Role::Canary] {
            let Some(g) = Self::group(state, role) else {
                continue;
            };
            let dead = g.procs.iter().any(|p| !self.children.alive(p.pid));
            let short = g.procs.len() != g.replicas.max(0) as usize;
            // The user's workload rolls to a changed spec by itself, as a Deployment does.
            let target = state.target.template.revision();
            let outdated = role == Role::Canary && g.procs.iter().any(|p| p.revision != target);
            if dead || short || outdated {
                let template = match role {
                    Role::Primary => g.template.clone(),
                    Role::Canary => Some(state.target.template.clone()),
                };
                if let Some(t) = template {
                    self.converge(role, &t, g.replicas).await?;
                }
            }
        }
        Ok(())
    }

    /// Stop every instance recorded in the state file (harness cleanup).
    pub fn stop_all(&self) {
        if let Ok(state) = self.store.load() {
            for g in state.primary.iter().chain(std::iter::once(&state.canary)) {
                for p in &g.procs {
                    self.children.stop(p.pid);
                }
            }
        }
        self.children.stop_all();
    }
}

fn wl(e: LocalError) -> WorkloadError {
    WorkloadError::Backend(e.to_string())
}

fn rt(e: LocalError) -> RouterError {
    RouterError::Backend(e.to_string())
}

#[async_trait]
impl WorkloadBackend for LocalCluster {
    async fn observe(&self, _w: &WorkloadRef) -> Result<WorkloadState, WorkloadError> {
        let _op = self.op.lock().await;
        let state = self.store.load().map_err(wl)?;
        self.heal(&state).await.map_err(wl)?;
        let state = self.store.load().map_err(wl)?;
        let target_revision = state.target.template.revision();
        let primary_ready = match &state.primary {
            Some(g) => !g.procs.is_empty() && self.all_ready(&g.procs).await,
            None => false,
        };
        let c = &state.canary;
        let canary_ready = c.replicas > 0
            && c.procs.len() == c.replicas as usize
            && c.procs.iter().all(|p| p.revision == target_revision)
            && self.all_ready(&c.procs).await;
        Ok(WorkloadState {
            target_revision,
            primary_exists: state.primary.is_some(),
            primary_revision: state.primary.as_ref().and_then(|g| g.revision.clone()),
            primary_ready,
            primary_replicas: state.target.replicas,
            canary_replicas: c.replicas,
            canary_ready,
            ..Default::default()
        })
    }

    async fn initialize_primary(
        &self,
        _w: &WorkloadRef,
        _rev: &str,
        _replicas: Option<i32>,
    ) -> Result<(), WorkloadError> {
        let _op = self.op.lock().await;
        let state = self
            .store
            .update(|s| {
                if s.primary.is_none() {
                    s.primary = Some(Group {
                        revision: None,
                        template: Some(s.target.template.clone()),
                        replicas: s.target.replicas,
                        procs: vec![],
                    });
                }
                Ok(s.clone())
            })
            .map_err(wl)?;
        let Some(g) = &state.primary else {
            return Ok(());
        };
        let template = g.template.clone().unwrap_or_default();
        self.converge(Role::Primary, &template, g.replicas)
            .await
            .map_err(wl)
    }

    async fn promote_primary(&self, _w: &WorkloadRef, revision: &str) -> Result<(), WorkloadError> {
        let _op = self.op.lock().await;
        let state = self.store.load().map_err(wl)?;
        let found = state.target.template.revision();
        if found != revision {
            return Err(WorkloadError::RevisionMoved {
                expected: revision.to_string(),
                found,
            });
        }
        let replicas = state.target.replicas;
        self.converge(Role::Primary, &state.target.template, replicas)
            .await
            .map_err(wl)
    }

    async fn scale_canary(&self, _w: &WorkloadRef, replicas: i32) -> Result<(), WorkloadError> {
        let _op = self.op.lock().await;
        let state = self.store.load().map_err(wl)?;
        self.converge(Role::Canary, &state.target.template, replicas)
            .await
            .map_err(wl)
    }

    async fn restore_target(
        &self,
        _w: &WorkloadRef,
        _stable: Option<&str>,
        _replicas: Option<i32>,
    ) -> Result<HandBack, WorkloadError> {
        let _op = self.op.lock().await;
        let state = self.store.load().map_err(wl)?;
        let replicas = state.target.replicas;
        self.converge(Role::Canary, &state.target.template, replicas)
            .await
            .map_err(wl)?;
        let state = self.store.load().map_err(wl)?;
        if self.all_ready(&state.canary.procs).await && !state.canary.procs.is_empty() {
            Ok(HandBack::Done)
        } else {
            Ok(HandBack::Pending(
                "the workload's instances are not ready yet".into(),
            ))
        }
    }

    async fn remove_primary(&self, _w: &WorkloadRef) -> Result<(), WorkloadError> {
        let _op = self.op.lock().await;
        let old = self.store.update(|s| Ok(s.primary.take())).map_err(wl)?;
        let state = self.store.load().map_err(wl)?;
        self.sync_endpoints(&state).await.map_err(wl)?;
        for p in old.iter().flat_map(|g| g.procs.iter()) {
            self.children.stop(p.pid);
        }
        Ok(())
    }
}

#[async_trait]
impl TrafficRouter for LocalCluster {
    /// nginx weights per request, as the ingress-nginx router does in a cluster.
    fn kind(&self) -> RouterKind {
        RouterKind::IngressNginx
    }

    fn replica_weighting(&self, _strategy: Strategy) -> bool {
        false
    }

    async fn set_weight(&self, _t: &RouteTarget, weight: i32) -> Result<(), RouterError> {
        let _op = self.op.lock().await;
        let state = self.store.load().map_err(rt)?;
        self.apply_weight(&state, weight).await.map_err(rt)
    }

    async fn observed_weight(&self, _t: &RouteTarget) -> Result<Option<i32>, RouterError> {
        self.cfg.nginx.observed_weight().map_err(rt)
    }

    async fn finalize(&self, _t: &RouteTarget) -> Result<(), RouterError> {
        let _op = self.op.lock().await;
        let state = self.store.load().map_err(rt)?;
        // Everything to the user's own instances.
        self.apply_weight(&state, 100).await.map_err(rt)
    }
}
