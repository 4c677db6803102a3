//! `kubectl serin release NAME --image CONTAINER=IMAGE`: register a release through
//! the controller's approval API, as CI does with `POST .../canaries/{name}/release`.
//! The caller needs `create` on `canaries/release`; the controller writes the images
//! on the target Deployment and its release policies decide when the release starts.

use std::collections::BTreeMap;

use super::decide::DecideError;
use crate::gates::{parse_image_ref, Registered, ReleaseRequest, IMAGE_REF_FORMAT};

/// One `--image` value: `CONTAINER=IMAGE`, the image a valid reference.
pub fn parse_image_arg(s: &str) -> Result<(String, String), String> {
    let (container, image) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not CONTAINER=IMAGE (e.g. app=ghcr.io/acme/app:1.2.3)"))?;
    if container.is_empty() || image.is_empty() {
        return Err(format!(
            "{s:?} is not CONTAINER=IMAGE: both sides must be given"
        ));
    }
    parse_image_ref(image).map_err(|e| {
        format!("{image:?} is not an image reference: {e}; expected {IMAGE_REF_FORMAT}")
    })?;
    Ok((container.to_string(), image.to_string()))
}

/// The request for `--image` values (each container once) and an optional reason.
pub fn release_request(
    images: &[(String, String)],
    reason: Option<&str>,
) -> Result<ReleaseRequest, DecideError> {
    let mut map = BTreeMap::new();
    for (container, image) in images {
        if map.insert(container.clone(), image.clone()).is_some() {
            return Err(DecideError::Config(format!(
                "--image names container {container} twice"
            )));
        }
    }
    let request = ReleaseRequest {
        images: map,
        reason: reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string),
    };
    request
        .check()
        .map_err(|e| DecideError::Config(e.to_string()))?;
    Ok(request)
}

/// The URL of the release registration of Canary `ns/name` under the API's base URL.
pub fn release_url(base: &str, ns: &str, name: &str) -> String {
    format!(
        "{}/api/v1/namespaces/{ns}/canaries/{name}/release",
        base.trim_end_matches('/')
    )
}

/// Ask the approval API at `base` to register `request`, as the holder of `token`.
pub async fn register(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    ns: &str,
    name: &str,
    request: &ReleaseRequest,
) -> Result<Registered, DecideError> {
    let url = release_url(base, ns, name);
    let transport = |e: reqwest::Error| DecideError::Transport {
        url: base.to_string(),
        message: e.without_url().to_string(),
    };
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .json(request)
        .send()
        .await
        .map_err(transport)?;
    super::decide::answer(resp).await
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
