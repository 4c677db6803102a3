//! Who is calling the API, and may they: TokenReview and SubjectAccessReview.

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::GateError;

/// An authenticated Kubernetes user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
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

/// Authentication and authorization of API callers; tests script the answers.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// `Ok(None)` when the token is not valid.
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError>;
    async fn authorize(&self, user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError>;
}

/// The cluster decides: TokenReview and SubjectAccessReview through the controller's client.
#[derive(Clone)]
pub struct KubeAuthenticator {
    client: Client,
    /// Audiences the token must be for; empty means the API server's default.
    audiences: Vec<String>,
}

impl KubeAuthenticator {
    pub fn new(client: Client, audiences: Vec<String>) -> Self {
        Self { client, audiences }
    }
}

#[async_trait]
impl Authenticator for KubeAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        // A real server answers 201 for valid and invalid tokens alike: the verdict
        // is in status.authenticated.
        let Some(status) = answer.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        match user.username {
            Some(username) if !username.is_empty() => Ok(Some(UserInfo {
                username,
                uid: user.uid,
                groups: user.groups.unwrap_or_default(),
            })),
            _ => Ok(None),
        }
    }

    async fn authorize(&self, user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.username.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
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
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}
