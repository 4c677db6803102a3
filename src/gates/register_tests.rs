//! Registering a release through the API, against the stateful fake API server (which
//! enforces the chart's controller RBAC and tracks server-side-apply ownership) with a
//! scripted authenticator.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::gates::record::tests::canary_json;
use crate::gates::{api_router, Authenticator, RateLimit, RateLimiter, UserInfo};
use crate::testing::apiserver::{FakeApiServer, Rbac};

const URI: &str = "/api/v1/namespaces/shop/canaries/podinfo/release";
const TOKEN: &str = "ci-token";
const CI_USER: &str = "system:serviceaccount:shop:ci";
const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Knows one token; allows or denies every check, and keeps the checks it was asked.
struct Scripted {
    allow: bool,
    checks: Mutex<Vec<ResourceCheck>>,
}

#[async_trait]
impl Authenticator for Scripted {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError> {
        Ok((token == TOKEN).then(|| UserInfo {
            username: CI_USER.into(),
            ..Default::default()
        }))
    }
    async fn authorize(&self, _user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError> {
        self.checks.lock().unwrap().push(check.clone());
        Ok(self.allow)
    }
}

struct World {
    server: FakeApiServer,
    auth: Arc<Scripted>,
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "shop", "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {
                    "initContainers": [{"name": "migrate", "image": "ghcr.io/acme/migrate:1"}],
                    "containers": [
                        {"name": "app", "image": "ghcr.io/acme/podinfo:6.7.0"},
                        {"name": "proxy", "image": "envoyproxy/envoy:v1.30.1"}
                    ]
                }
            }
        }
    })
}

/// A Canary over Deployment shop/podinfo (written by a user), with the controller's
/// ClusterRole from the chart enforced on the controller's client.
fn world(allow: bool) -> World {
    let server = FakeApiServer::new();
    server.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    let mut canary = canary_json("Succeeded", None);
    canary["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    server.insert(canary);
    server.insert(deployment());
    let role: Value =
        serde_json::from_str(include_str!("../../charts/serin/tests/rendered-rbac.json")).unwrap();
    server.set_rbac(Some(Rbac::from_rules(&role)));
    World {
        server,
        auth: Arc::new(Scripted {
            allow,
            checks: Mutex::new(vec![]),
        }),
    }
}

impl World {
    async fn post(&self, token: Option<&str>, body: &str) -> (u16, Value) {
        let router = api_router(ApiState {
            client: self.server.client(),
            auth: self.auth.clone(),
            limiter: Arc::new(RateLimiter::new(RateLimit {
                burst: 100,
                per_second: 100.0,
            })),
        });
        let mut req = Request::builder().method("POST").uri(URI);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = router
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn deployment(&self) -> Value {
        self.server
            .get("apps/v1", "deployments", Some("shop"), "podinfo")
            .unwrap()
    }

    /// `name=image` of every container, init containers first.
    fn images(&self) -> Vec<String> {
        let spec = &self.deployment()["spec"]["template"]["spec"];
        ["initContainers", "containers"]
            .iter()
            .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default())
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["image"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// The writes to the Deployment that reached the fake server.
    fn deployment_writes(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && r.path.contains("/deployments/"))
            .map(|r| r.line())
            .collect()
    }

    /// Containers whose image `manager` owns, per managedFields.
    fn owned_images(&self, manager: &str) -> Vec<String> {
        let d: k8s_openapi::api::apps::v1::Deployment =
            serde_json::from_value(self.deployment()).unwrap();
        if manager == RELEASE_FIELD_MANAGER {
            return release_owned_containers(&d).into_iter().collect();
        }
        let mut out = vec![];
        for e in d.metadata.managed_fields.iter().flatten() {
            if e.manager.as_deref() != Some(manager) {
                continue;
            }
            let f = &e.fields_v1.as_ref().unwrap().0;
            let cs = &f["f:spec"]["f:template"]["f:spec"]["f:containers"];
            for (k, v) in cs.as_object().into_iter().flatten() {
                if v.get("f:image").is_some() {
                    out.push(k.clone());
                }
            }
        }
        out
    }
}

const ORIGINAL: [&str; 3] = [
    "migrate=ghcr.io/acme/migrate:1",
    "app=ghcr.io/acme/podinfo:6.7.0",
    "proxy=envoyproxy/envoy:v1.30.1",
];

#[tokio::test]
async fn an_authorized_registration_applies_only_the_image_under_its_own_manager() {
    let w = world(true);
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}, "reason": "CI run 4711"}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["changed"], true);
    assert_eq!(body["deployment"], "shop/podinfo");
    assert_eq!(body["images"], json!({"app": "ghcr.io/acme/podinfo:6.8.0"}));
    assert_eq!(body["reason"], "CI run 4711");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("release policies"), "{message}");
    assert!(
        message.contains("kubectl serin status podinfo -n shop"),
        "{message}"
    );
    // Exactly one check: create on the virtual subresource canaries/release.
    let checks = w.auth.checks.lock().unwrap().clone();
    assert_eq!(checks, vec![ResourceCheck::for_release("shop", "podinfo")]);
    assert_eq!(
        (checks[0].verb, checks[0].resource, checks[0].subresource),
        ("create", "canaries", Some("release"))
    );
    assert_eq!(checks[0].describe(), "create canaries/release.serin.dev");
    // The Deployment: only app's image moved.
    assert_eq!(
        w.images(),
        [ORIGINAL[0], "app=ghcr.io/acme/podinfo:6.8.0", ORIGINAL[2]]
    );
    assert_eq!(w.deployment()["spec"]["replicas"], 2);
    // One forced apply as serin-release, of the image alone.
    let apply: Vec<_> = w
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(apply.len(), 1);
    assert_eq!(apply[0].status, 200);
    assert!(
        apply[0].path.contains("fieldManager=serin-release")
            && apply[0].path.contains("force=true"),
        "{}",
        apply[0].path
    );
    assert_eq!(
        apply[0].content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let sent = apply[0].body.clone().unwrap();
    assert_eq!(
        (
            &sent["apiVersion"],
            &sent["kind"],
            &sent["metadata"]["name"],
            &sent["metadata"]["namespace"]
        ),
        (
            &json!("apps/v1"),
            &json!("Deployment"),
            &json!("podinfo"),
            &json!("shop")
        )
    );
    assert_eq!(
        sent["spec"],
        json!({"template": {"spec": {"containers": [
            {"name": "app", "image": "ghcr.io/acme/podinfo:6.8.0"}]}}})
    );
    // Ownership: serin-release has app's image; the user keeps proxy's.
    assert_eq!(w.owned_images(RELEASE_FIELD_MANAGER), ["app"]);
    assert_eq!(
        w.owned_images("kubectl-client-side-apply"),
        [r#"k:{"name":"proxy"}"#]
    );
}

#[tokio::test]
async fn the_controllers_next_apply_and_a_later_registration_keep_the_image() {
    let w = world(true);
    let (status, _) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}}"#,
        )
        .await;
    assert_eq!(status, 202);
    // The controller scales the target as `serin`, sending no image: the image stays,
    // because another manager owns it.
    w.server.set_rbac(None);
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(w.server.client(), "shop");
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "shop"}, "spec": {"replicas": 0}});
    api.patch(
        "podinfo",
        &PatchParams::apply(crate::crd::FIELD_MANAGER).force(),
        &Patch::Apply(&scale),
    )
    .await
    .unwrap();
    assert_eq!(w.images()[1], "app=ghcr.io/acme/podinfo:6.8.0");
    // A later registration of another container alone keeps the first one's image:
    // the apply re-sends what serin-release owns.
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"proxy": "envoyproxy/envoy:v1.31.0"}}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        w.images(),
        [
            ORIGINAL[0],
            "app=ghcr.io/acme/podinfo:6.8.0",
            "proxy=envoyproxy/envoy:v1.31.0"
        ]
    );
    assert_eq!(w.owned_images(RELEASE_FIELD_MANAGER), ["app", "proxy"]);
}

#[tokio::test]
async fn the_same_images_again_answer_200_unchanged_without_a_write() {
    let w = world(true);
    let body = format!(r#"{{"images": {{"app": "ghcr.io/acme/podinfo:6.8.0@{SHA}"}}}}"#);
    assert_eq!(w.post(Some(TOKEN), &body).await.0, 202);
    let writes = w.deployment_writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let (status, answer) = w.post(Some(TOKEN), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["changed"], false);
    assert!(
        answer["message"].as_str().unwrap().contains("already"),
        "{answer}"
    );
    assert_eq!(w.deployment_writes(), writes, "no second write");
    // The image as the Deployment already had it is no release either.
    let w = world(true);
    let (status, answer) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"proxy": "envoyproxy/envoy:v1.30.1"}}"#,
        )
        .await;
    assert_eq!((status, &answer["changed"]), (200, &json!(false)));
    assert!(w.deployment_writes().is_empty());
}

#[tokio::test]
async fn denied_by_rbac_is_403_and_the_deployment_is_unchanged() {
    let w = world(false);
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}}"#,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(CI_USER) && message.contains("create canaries/release.serin.dev"),
        "{message}"
    );
    assert_eq!(
        *w.auth.checks.lock().unwrap(),
        [ResourceCheck::for_release("shop", "podinfo")]
    );
    assert_eq!(w.images(), ORIGINAL);
    // Refused before reading anything.
    assert!(w.server.requests().is_empty(), "{:?}", w.server.requests());
}

#[tokio::test]
async fn no_token_or_an_invalid_one_is_401() {
    let w = world(true);
    let body = r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}}"#;
    for token in [None, Some("stolen")] {
        let (status, answer) = w.post(token, body).await;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert_eq!(answer["error"], "unauthenticated");
    }
    assert!(w.auth.checks.lock().unwrap().is_empty());
    assert_eq!(w.images(), ORIGINAL);
    assert!(w.server.requests().is_empty());
}

#[tokio::test]
async fn an_unknown_container_is_422_naming_it_and_the_ones_there_are() {
    let w = world(true);
    // One good and one unknown: nothing is written, not even the good one.
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0", "worker": "ghcr.io/acme/worker:2"}}"#,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("no container worker"), "{message}");
    assert!(message.contains("app, proxy"), "{message}");
    // Init containers are not released this way.
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"migrate": "ghcr.io/acme/migrate:2"}}"#,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("init containers"));
    assert_eq!(w.images(), ORIGINAL);
    assert!(w.deployment_writes().is_empty());
}

#[tokio::test]
async fn malformed_bodies_and_bad_image_references_are_422_before_any_read() {
    let w = world(true);
    let too_many: serde_json::Map<String, Value> = (0..=RELEASE_IMAGES_MAX)
        .map(|i| (format!("c{i}"), json!("app:1")))
        .collect();
    let cases = [
        ("".to_string(), "invalid JSON body"),
        ("images=app:1".to_string(), "invalid JSON body"),
        (r#"{"images": {}}"#.to_string(), "images is empty"),
        (
            r#"{"images": {"app": "x:1"}, "by": "me"}"#.to_string(),
            "unknown field",
        ),
        (json!({"images": too_many}).to_string(), "at most 32"),
        (
            json!({"images": {"app": "x:1"}, "reason": "r".repeat(257)}).to_string(),
            "longer than 256",
        ),
        (
            r#"{"images": {"app": "x:1"}, "reason": "a\nb"}"#.to_string(),
            "one line",
        ),
        (
            r#"{"images": {"App": "x:1"}}"#.to_string(),
            "not a valid container name",
        ),
        (
            r#"{"images": {"app": "ghcr.io/Acme/podinfo:6.8.0"}}"#.to_string(),
            "container app: image \"ghcr.io/Acme/podinfo:6.8.0\" is not a valid image reference",
        ),
        (
            r#"{"images": {"app": "podinfo:6.8.0 --privileged"}}"#.to_string(),
            "whitespace",
        ),
        (
            r#"{"images": {"app": "podinfo@sha256:beef"}}"#.to_string(),
            "digest",
        ),
    ];
    for (body, want) in &cases {
        let (status, answer) = w.post(Some(TOKEN), body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid", "{body}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(want), "{body}: {message}");
    }
    // The image message says what is accepted.
    let (_, answer) = w.post(Some(TOKEN), &cases[8].0).await;
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("expected [registry[:port]/]path"));
    assert_eq!(w.images(), ORIGINAL);
    assert!(w.server.requests().is_empty(), "{:?}", w.server.requests());
}

#[tokio::test]
async fn an_unknown_canary_is_404() {
    let w = world(true);
    w.server.set_rbac(None);
    assert!(w
        .server
        .delete_object("serin.dev/v1alpha1", "canaries", Some("shop"), "podinfo"));
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}}"#,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(w.images(), ORIGINAL);
    assert!(w.deployment_writes().is_empty());
}

#[tokio::test]
async fn a_container_renamed_under_the_write_is_not_recreated() {
    let w = world(true);
    // Between serin's read and its apply, the owner renames app to web.
    let mut fired = false;
    w.server.set_hook(Box::new(move |req, ctl| {
        if fired || req.method != "PATCH" || req.resource != "deployments" {
            return None;
        }
        fired = true;
        let mut d = ctl
            .get("apps/v1", "deployments", Some("shop"), "podinfo")
            .unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["name"] = json!("web");
        ctl.insert(d);
        None
    }));
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}}"#,
        )
        .await;
    // The stale apply is refused (409), planned again from a fresh read: no app now.
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("web, proxy"),
        "{body}"
    );
    assert_eq!(
        w.images(),
        [ORIGINAL[0], "web=ghcr.io/acme/podinfo:6.7.0", ORIGINAL[2]]
    );
    let writes = w.deployment_writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].ends_with("409"), "{writes:?}");
}

#[tokio::test]
async fn a_write_that_raced_another_is_planned_again_and_lands() {
    let w = world(true);
    let mut fired = false;
    w.server.set_hook(Box::new(move |req, ctl| {
        if !fired && req.method == "PATCH" && req.resource == "deployments" {
            fired = true;
            ctl.bump_resource_version("apps/v1", "deployments", Some("shop"), "podinfo");
        }
        None
    }));
    let (status, body) = w
        .post(
            Some(TOKEN),
            r#"{"images": {"app": "ghcr.io/acme/podinfo:6.8.0"}}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(w.images()[1], "app=ghcr.io/acme/podinfo:6.8.0");
    let writes = w.deployment_writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes[0].ends_with("409") && writes[1].ends_with("200"),
        "{writes:?}"
    );
}
