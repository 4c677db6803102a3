//! Who is calling the API, and may they: TokenReview and SubjectAccessReview.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::record::{Verb, ACTION_RBAC_VERB};
use super::GateError;
use crate::crd::GROUP;

/// The virtual subresource of `canaries` whose `create` RBAC grants registering a
/// release (new images for the target Deployment's containers): `canaries/release`.
/// Like the actions' subresources it is not served; it exists only in RBAC rules.
pub const RELEASE_SUBRESOURCE: &str = "release";

/// The TokenReview audience the approval API asks for by default.
pub const DEFAULT_API_AUDIENCE: &str = "serin";

/// An authenticated Kubernetes user, as a TokenReview (or the Slack identity mapping)
/// states it. `extra` (e.g. `authentication.kubernetes.io/credential-id`, scopes of a
/// scoped token) goes into every SubjectAccessReview, so an authorizer that narrows
/// by it judges the token, not just the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The permission a request needs, in RBAC terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceCheck {
    pub namespace: String,
    pub name: String,
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
}

impl ResourceCheck {
    /// What `verb` needs on Canary `ns/name` (None: reading it). Every action is
    /// `create` on a virtual subresource of `canaries` ([`Verb::subresource`]), so a
    /// Role that grants it grants nothing else: not `canaries/status`, not the spec.
    pub fn for_action(ns: &str, name: &str, verb: Option<Verb>) -> Self {
        let (k8s_verb, subresource) = match verb {
            None => ("get", None),
            Some(v) => (ACTION_RBAC_VERB, Some(v.subresource())),
        };
        ResourceCheck {
            namespace: ns.to_string(),
            name: name.to_string(),
            verb: k8s_verb,
            group: GROUP,
            resource: "canaries",
            subresource,
        }
    }

    /// What registering a release on Canary `ns/name` needs: `create` on
    /// `canaries/release`, which grants no action on a release in flight and no
    /// write to the Canary or the Deployment (the controller writes the images).
    pub fn for_release(ns: &str, name: &str) -> Self {
        ResourceCheck {
            namespace: ns.to_string(),
            name: name.to_string(),
            verb: ACTION_RBAC_VERB,
            group: GROUP,
            resource: "canaries",
            subresource: Some(RELEASE_SUBRESOURCE),
        }
    }

    /// `create canaries/approve` as people read it in a Role.
    pub fn describe(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{} {}/{sub}.{}", self.verb, self.resource, self.group),
            None => format!("{} {}.{}", self.verb, self.resource, self.group),
        }
    }
}

/// Authentication and authorization of API callers; tests script the answers.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// `Ok(None)` when the token is not valid (or not for our audience).
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError>;
    async fn authorize(&self, user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError>;
}

/// The cluster decides: TokenReview and SubjectAccessReview through the controller's client.
#[derive(Clone)]
pub struct KubeAuthenticator {
    client: Client,
    /// Audiences a token must be for. Empty means the API server's own audience,
    /// which accepts every token the user could also use against the API server.
    audiences: Vec<String>,
    /// Each review's deadline.
    timeout: Duration,
}

impl KubeAuthenticator {
    pub fn new(client: Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn create<K>(&self, obj: &K) -> Result<K, GateError>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        match tokio::time::timeout(self.timeout, api.create(&PostParams::default(), obj)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(GateError::Unavailable(format!(
                "review not answered within {:?}",
                self.timeout
            ))),
        }
    }
}

/// The TokenReview's verdict, pure: the user if the token is valid for one of
/// `audiences` (any, when empty).
pub fn reviewed_user(review: &TokenReview, audiences: &[String]) -> Option<UserInfo> {
    let status = review.status.as_ref()?;
    if status.authenticated != Some(true) {
        return None;
    }
    if !audiences.is_empty() {
        // An authenticator that ignores audiences answers without any: such an
        // answer only says the token is good for the API server, not for us.
        let granted = status.audiences.as_deref().unwrap_or_default();
        if !granted.iter().any(|a| audiences.contains(a)) {
            tracing::info!(
                granted = ?granted,
                "token refused: not issued for the approval API's audience"
            );
            return None;
        }
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.filter(|u| !u.is_empty())?;
    Some(UserInfo {
        username,
        uid: user.uid,
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
    })
}

/// The SubjectAccessReview asking whether `user` may do `check`.
pub fn access_review(user: &UserInfo, check: &ResourceCheck) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(check.namespace.clone()),
                name: Some(check.name.clone()),
                verb: Some(check.verb.to_string()),
                group: Some(check.group.to_string()),
                resource: Some(check.resource.to_string()),
                subresource: check.subresource.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[async_trait]
impl Authenticator for KubeAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        // A real server answers 201 for valid and invalid tokens alike: the verdict
        // is in status.authenticated.
        let answer = self.create(&review).await?;
        Ok(reviewed_user(&answer, &self.audiences))
    }

    async fn authorize(&self, user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError> {
        let answer = self.create(&access_review(user, check)).await?;
        Ok(answer
            .status
            .is_some_and(|s| s.allowed && !s.denied.unwrap_or(false)))
    }
}
