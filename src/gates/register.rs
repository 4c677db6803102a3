//! Releases registered by CI: `POST /api/v1/namespaces/{ns}/canaries/{name}/release`
//! with `{"images": {"<container>": "<image>"}, "reason": "..."}` sets those images
//! on the Canary's target Deployment, and the controller takes it from there as from
//! any other change of the target: its release policies decide whether the release
//! starts now, waits for a window or waits for an approval.
//!
//! The caller needs `create` on the virtual subresource `canaries/release`
//! ([`ResourceCheck::for_release`]); the controller writes the Deployment with its own
//! client, by server-side apply of exactly `spec.template.spec.containers[{name,
//! image}]` under the field manager [`RELEASE_FIELD_MANAGER`]. Only regular containers
//! can be named, not init or ephemeral containers. Everything is checked before
//! anything is written: the body, every image reference ([`parse_image_ref`]), the
//! Canary, and that every named container exists in the Deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api::{admit, check_names, valid_name, ApiError, ApiState};
use super::auth::ResourceCheck;
use super::image_ref::{parse_image_ref, IMAGE_REF_FORMAT};
use super::record::get_canary;
use super::GateError;
use crate::rollout::text::one_line;

/// The field manager release images are applied with. Not serin's own (`serin`): the
/// controller applies other fields of the same Deployment (replicas, an annotation,
/// the template on hand-back), and a server-side apply that stops sending a field
/// removes it when that manager was its only owner, so sharing the manager would make
/// the controller's next apply delete the image. For the same reason every apply
/// under this manager re-sends the images it already owns on other containers.
pub use crate::crd::RELEASE_FIELD_MANAGER;
/// At most this many containers per registration.
pub const RELEASE_IMAGES_MAX: usize = 32;
/// The longest `reason`, in characters.
pub const RELEASE_REASON_MAX_CHARS: usize = 256;
/// The largest request body.
const BODY_MAX_BYTES: usize = 16 * 1024;
/// Each call to the Kubernetes API gets this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an apply that lost a race (409: the Deployment changed since it was
/// read) is planned again from a fresh read.
const WRITE_ATTEMPTS: usize = 5;

/// A registration as the API accepts it: container name to image reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub images: BTreeMap<String, String>,
    /// Free text for the log and the answer (e.g. the CI run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer: 202 when the images were written, 200 when they were already there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub changed: bool,
    /// The target Deployment, `namespace/name`.
    pub deployment: String,
    pub images: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub message: String,
}

impl ReleaseRequest {
    /// Parse and check a request body: 1 to [`RELEASE_IMAGES_MAX`] containers, each a
    /// valid image reference, and a bounded single-line reason.
    pub fn parse(body: &[u8]) -> Result<Self, GateError> {
        if body.len() > BODY_MAX_BYTES {
            return Err(GateError::Invalid(format!(
                "the body is larger than {BODY_MAX_BYTES} bytes"
            )));
        }
        // serde's reason may quote the body: bounded.
        let mut req: ReleaseRequest = serde_json::from_slice(body).map_err(|e| {
            GateError::Invalid(format!(
                "invalid JSON body (expected {{\"images\": {{\"<container>\": \"<image>\"}}, \"reason\": \"...\"}}): {}",
                one_line(&e.to_string(), 200)
            ))
        })?;
        req.reason = req
            .reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        req.check()?;
        Ok(req)
    }

    /// The checks of [`ReleaseRequest::parse`], for a request built in code.
    pub fn check(&self) -> Result<(), GateError> {
        if self.images.is_empty() {
            return Err(GateError::Invalid(
                "images is empty: name at least one container and its image".into(),
            ));
        }
        if self.images.len() > RELEASE_IMAGES_MAX {
            return Err(GateError::Invalid(format!(
                "{} containers named; at most {RELEASE_IMAGES_MAX}",
                self.images.len()
            )));
        }
        for (container, image) in &self.images {
            if !valid_name(container) {
                return Err(GateError::Invalid(format!(
                    "{:?} is not a valid container name (a DNS-1123 label)",
                    one_line(container, 64)
                )));
            }
            parse_image_ref(image).map_err(|e| {
                GateError::Invalid(format!(
                    "container {container}: image {:?} is not a valid image reference: {e}; expected {IMAGE_REF_FORMAT}",
                    one_line(image, 300)
                ))
            })?;
        }
        if let Some(r) = &self.reason {
            if r.chars().count() > RELEASE_REASON_MAX_CHARS {
                return Err(GateError::Invalid(format!(
                    "reason is longer than {RELEASE_REASON_MAX_CHARS} characters"
                )));
            }
            if r.chars().any(char::is_control) {
                return Err(GateError::Invalid(
                    "reason must be one line without control characters".into(),
                ));
            }
        }
        Ok(())
    }
}

/// What to write for a registration on `deployment`.
#[derive(Clone, Debug, PartialEq)]
pub enum ReleasePlan {
    /// Every named container already runs its image.
    Unchanged,
    /// The server-side apply body (under [`RELEASE_FIELD_MANAGER`], forced).
    Apply(Value),
}

/// Containers whose `image` [`RELEASE_FIELD_MANAGER`] owns on `deployment`, from its
/// `metadata.managedFields`.
pub fn release_owned_containers(deployment: &Deployment) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let entries = deployment.metadata.managed_fields.iter().flatten();
    for e in entries.filter(|e| e.manager.as_deref() == Some(RELEASE_FIELD_MANAGER)) {
        let Some(fields) = &e.fields_v1 else { continue };
        let containers = &fields.0["f:spec"]["f:template"]["f:spec"]["f:containers"];
        for (key, owned) in containers.as_object().into_iter().flatten() {
            let Some(k) = key.strip_prefix("k:") else {
                continue;
            };
            let name = serde_json::from_str::<Value>(k)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string));
            if let Some(name) = name.filter(|_| owned.get("f:image").is_some()) {
                out.insert(name);
            }
        }
    }
    out
}

/// Plan a registration, pure: 422 ([`GateError::Invalid`]) naming a container the
/// Deployment does not have; otherwise nothing to do, or the apply body. The body
/// holds the named images, the images this manager already owns on other containers
/// (re-sent as they are, so they are not dropped), and the resourceVersion read, so
/// a Deployment changed in between (a container renamed) is refused with 409 instead
/// of gaining a container.
pub fn plan_release(
    deployment: &Deployment,
    request: &ReleaseRequest,
) -> Result<ReleasePlan, GateError> {
    let containers: Vec<(&str, &str)> = deployment
        .spec
        .iter()
        .filter_map(|s| s.template.spec.as_ref())
        .flat_map(|p| &p.containers)
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default()))
        .collect();
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let namespace = deployment.metadata.namespace.as_deref().unwrap_or_default();
    let unknown: Vec<&str> = request
        .images
        .keys()
        .map(String::as_str)
        .filter(|n| !containers.iter().any(|(c, _)| c == n))
        .collect();
    if !unknown.is_empty() {
        let have: Vec<&str> = containers.iter().map(|(c, _)| *c).collect();
        return Err(GateError::Invalid(format!(
            "Deployment {namespace}/{name} has no container {}; its containers are {} (init containers cannot be released this way)",
            unknown.join(", "),
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        )));
    }
    let unchanged = containers
        .iter()
        .all(|(c, image)| request.images.get(*c).is_none_or(|want| want == image));
    if unchanged {
        return Ok(ReleasePlan::Unchanged);
    }
    let owned = release_owned_containers(deployment);
    let applied: Vec<Value> = containers
        .iter()
        .filter_map(|(c, image)| match request.images.get(*c) {
            Some(want) => Some(json!({"name": c, "image": want})),
            None if owned.contains(*c) && !image.is_empty() => {
                Some(json!({"name": c, "image": image}))
            }
            None => None,
        })
        .collect();
    Ok(ReleasePlan::Apply(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace,
                     "resourceVersion": deployment.metadata.resource_version},
        "spec": {"template": {"spec": {"containers": applied}}},
    })))
}

async fn timed<T>(what: &str, call: impl Future<Output = T>) -> Result<T, GateError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| GateError::Unavailable(format!("{what} not answered within {CALL_TIMEOUT:?}")))
}

/// The controller's own trouble with a Deployment call, never the caller's 403.
fn deployment_error(e: kube::Error, ns: &str, deployment: &str) -> GateError {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            tracing::warn!(namespace = %ns, deployment = %deployment, error = %s.message,
                "the controller may not read or patch the Deployment");
            GateError::Unavailable(format!(
                "the controller may not write Deployment {ns}/{deployment}; check its RBAC"
            ))
        }
        kube::Error::Api(s) if s.code == 422 => GateError::Invalid(s.message),
        e => GateError::Kube(e),
    }
}

/// Register `request` on Canary `ns/name` with the controller's client, once the
/// caller is authorized: read the Canary and its target Deployment, plan, apply.
pub async fn register_release(
    client: &Client,
    ns: &str,
    name: &str,
    request: &ReleaseRequest,
) -> Result<Registered, GateError> {
    request.check()?;
    let canary = timed("reading the Canary", get_canary(client, ns, name)).await??;
    let target = canary.spec.target_ref.name.clone();
    if !valid_name(&target) {
        return Err(GateError::Conflict(format!(
            "canary {ns}/{name} names no valid target Deployment (spec.targetRef.name)"
        )));
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let answer = |changed: bool, message: String| Registered {
        changed,
        deployment: format!("{ns}/{target}"),
        images: request.images.clone(),
        reason: request.reason.clone(),
        message,
    };
    let pp = PatchParams::apply(RELEASE_FIELD_MANAGER).force();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let deployment = timed("reading the Deployment", api.get_opt(&target))
            .await?
            .map_err(|e| deployment_error(e, ns, &target))?
            .ok_or_else(|| {
                GateError::Conflict(format!(
                    "Deployment {ns}/{target}, the target of canary {name}, does not exist"
                ))
            })?;
        let body = match plan_release(&deployment, request)? {
            ReleasePlan::Unchanged => {
                return Ok(answer(
                    false,
                    format!(
                        "Deployment {ns}/{target} already has these images; nothing to release"
                    ),
                ))
            }
            ReleasePlan::Apply(body) => body,
        };
        match timed(
            "applying the images",
            api.patch(&target, &pp, &Patch::Apply(&body)),
        )
        .await?
        {
            Ok(_) => {
                let listed: Vec<String> = request
                    .images
                    .iter()
                    .map(|(c, i)| format!("{c}={i}"))
                    .collect();
                return Ok(answer(
                    true,
                    format!(
                        "registered {} on Deployment {ns}/{target}; the controller now decides by the Canary's release policies whether the release starts now or waits for a window or an approval (see `kubectl serin status {name} -n {ns}`)",
                        listed.join(", ")
                    ),
                ));
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < WRITE_ATTEMPTS => {
                tracing::debug!(namespace = %ns, deployment = %target, attempt,
                    "release apply raced a change of the Deployment; planning again");
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(GateError::Conflict(format!(
                "Deployment {ns}/{target} kept changing while the images were written; try again"
            )))
            }
            Err(e) => return Err(deployment_error(e, ns, &target)),
        }
    }
}

/// `POST .../canaries/{name}/release`.
pub(super) async fn release(
    State(state): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_names(&ns, &name)?;
    let user = admit(&state, &headers, ResourceCheck::for_release(&ns, &name)).await?;
    let request = ReleaseRequest::parse(&body)?;
    let out = register_release(&state.client, &ns, &name, &request).await?;
    tracing::info!(namespace = %ns, name = %name, deployment = %out.deployment,
        user = %user.username, images = ?out.images, reason = ?out.reason,
        changed = out.changed, "release registered via API");
    let status = if out.changed {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
