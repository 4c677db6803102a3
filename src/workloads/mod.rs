//! Workloads: the primary and canary versions of an application, behind [`WorkloadBackend`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::crd::ServiceSpec;
use crate::error_kind::ErrorKind;

/// Implements `Resource` for a watch cache's slim copy of a Kubernetes kind: same kind,
/// group, version and plural, metadata in its `metadata` field.
macro_rules! cached_resource {
    ($cached:ty, $kind:ty) => {
        impl kube::Resource for $cached {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::kind(&())
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::group(&())
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::version(&())
            }
            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::api_version(&())
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::plural(&())
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl<'de> serde::Deserialize<'de> for $cached {
            /// The whole object, slimmed on the way in.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$kind as serde::Deserialize>::deserialize(d).map(Self::from)
            }
        }
    };
}

pub mod cached_service;
pub mod deployments;
pub mod fresh_store;
pub(crate) mod pairs;
pub mod pods;
pub mod revision;
pub mod service_store;

/// The workload a Canary releases.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadRef {
    pub namespace: String,
    /// The user's Deployment: the canary.
    pub name: String,
    pub service: ServiceSpec,
    /// The Canary, owner of everything serin creates.
    pub owner: Option<OwnerReference>,
}

impl WorkloadRef {
    pub fn primary_name(&self) -> String {
        format!("{}-primary", self.name)
    }
    /// The Canary's name (the owner's), which labels everything serin creates.
    pub fn canary_name(&self) -> String {
        self.owner
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_else(|| self.name.clone())
    }
    pub fn service_name(&self) -> String {
        self.service
            .name
            .clone()
            .unwrap_or_else(|| self.name.clone())
    }
}

/// What a backend observed about both versions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadState {
    pub target_revision: String,
    pub primary_exists: bool,
    pub primary_revision: Option<String>,
    pub primary_ready: bool,
    pub primary_replicas: i32,
    pub canary_replicas: i32,
    pub canary_ready: bool,
    /// At least one ready canary replica runs the target revision.
    pub canary_available: bool,
    pub primary_selector: BTreeMap<String, String>,
    pub canary_selector: BTreeMap<String, String>,
    pub shared_labels: BTreeMap<String, String>,
    /// Objects serin owns beside the primary that are missing or drifted.
    pub owned_missing: Vec<String>,
    /// The canary's pods run with older data of the tracked configs than the target
    /// references now.
    pub canary_config_stale: bool,
    /// Container name to image of the target's pod template.
    pub target_images: BTreeMap<String, String>,
}

/// Whether handing a Deployment back has finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandBack {
    /// The user's Deployment serves on its own (scaled, stable spec, ready).
    Done,
    /// The user's Deployment no longer exists: serin's objects are removed, nothing
    /// serves the app any more.
    TargetGone,
    Pending(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Deployment {namespace}/{name} not found")]
    TargetNotFound { namespace: String, name: String },
    /// The user's Deployment cannot be released as it is.
    #[error("{0}")]
    Invalid(String),
    /// The target changed since the revision was analysed; nothing was copied.
    #[error("target moved to revision {found} while promoting {expected}")]
    RevisionMoved { expected: String, found: String },
    #[error("{0}")]
    Backend(String),
}

impl WorkloadError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkloadError::Kube(kube::Error::Api(s)) if s.code == 409 => ErrorKind::Conflict,
            WorkloadError::Kube(_) => ErrorKind::Kube,
            WorkloadError::TargetNotFound { .. } => ErrorKind::NotFound,
            WorkloadError::Invalid(_) => ErrorKind::Config,
            WorkloadError::RevisionMoved { .. } => ErrorKind::RevisionMoved,
            WorkloadError::Backend(_) => ErrorKind::Backend,
        }
    }

    pub fn category(&self) -> &'static str {
        self.kind().as_label()
    }
}

/// Runs the primary and canary versions of workloads.
#[async_trait]
pub trait WorkloadBackend: Send + Sync {
    async fn observe(&self, w: &WorkloadRef) -> Result<WorkloadState, WorkloadError>;
    /// Create or repair the primary and its owned objects (Services, HPA copy, config
    /// copies) at `revision`: from the target when it has that revision, else from the
    /// recorded spec of `revision`. `replicas`: its former scale, when known.
    async fn initialize_primary(
        &self,
        w: &WorkloadRef,
        revision: &str,
        replicas: Option<i32>,
    ) -> Result<(), WorkloadError>;
    /// Put the primary on `revision` at its current scale, from the target (which must
    /// still have `revision`) or the recorded spec of `revision`.
    async fn promote_primary(&self, w: &WorkloadRef, revision: &str) -> Result<(), WorkloadError>;
    /// Scale the canary; its pods restart when the tracked configs changed under them.
    async fn scale_canary(&self, w: &WorkloadRef, replicas: i32) -> Result<(), WorkloadError>;
    /// First half of giving the workload back: the target runs the last promoted spec
    /// (`stable_revision`) at the primary's scale (or `replicas` when the primary is
    /// gone). Called until it returns `Done`; traffic still on the primary. The same
    /// fields are written on every call, so nothing is stripped between calls.
    async fn restore_target(
        &self,
        w: &WorkloadRef,
        stable_revision: Option<&str>,
        replicas: Option<i32>,
    ) -> Result<HandBack, WorkloadError>;
    /// Second half, after traffic is back on the target: give the target's fields back
    /// to their owners (serin stops managing them, nothing is removed), then remove
    /// what serin created.
    async fn remove_primary(&self, w: &WorkloadRef) -> Result<(), WorkloadError>;
    /// The write half of the backend's Deployment cache, once, for the controller's
    /// Deployment watch to fill; `None`: the backend reads Deployments from the API.
    /// The cache is filled only while the watch that took it runs: one `run` per
    /// backend (as `serin controller` does).
    fn deployment_feed(&self) -> Option<deployments::DeploymentFeed> {
        None
    }
}
