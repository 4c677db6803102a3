//! The dashboard against the fake API server (reads with the user's rights, actions
//! through the approval API, as the CLI sends them) and against the demo's state file.

mod actions;
mod local;
mod page;
mod view;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{ApiToken, ApprovalApi, ClusterSource, ClusterSourceOptions, Source};
use crate::gates::{
    api_router, serve_api, ApiState, ApiTransport, Authenticator, GateError, RateLimit,
    RateLimiter, ResourceCheck, UserInfo,
};
use crate::testing::apiserver::FakeApiServer;

pub(super) const TOKEN: &str = "alice-token";
pub(super) const ALICE: &str = "alice@example.com";

/// The approval API's authenticator: knows Alice's token; allows what `allow` says.
pub(super) struct Alice {
    pub allow: bool,
    pub checks: Mutex<Vec<ResourceCheck>>,
}

#[async_trait]
impl Authenticator for Alice {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError> {
        Ok((token == TOKEN).then(|| UserInfo {
            username: ALICE.into(),
            ..Default::default()
        }))
    }
    async fn authorize(&self, _user: &UserInfo, check: &ResourceCheck) -> Result<bool, GateError> {
        self.checks.lock().unwrap().push(check.clone());
        Ok(self.allow)
    }
}

/// A dashboard as a person would open it, on loopback.
pub(super) struct Page {
    pub url: String,
    pub http: reqwest::Client,
}

impl Page {
    pub async fn open(source: Arc<dyn Source>) -> Page {
        let addr = "127.0.0.1:0".parse().unwrap();
        let (url, serve) = super::bind(addr, source).await.unwrap();
        tokio::spawn(serve);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        Page { url, http }
    }

    /// The CSRF token, read from the page as app.js reads it.
    pub async fn token(&self) -> String {
        let html = self
            .http
            .get(&self.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = html
            .find("name=\"serin-csrf\" content=\"")
            .expect("csrf meta")
            + 27;
        html[at..at + 64].to_string()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An action as the page sends it.
    pub async fn act(&self, path: &str, body: Value) -> (u16, Value) {
        let token = self.token().await;
        let r = self
            .http
            .post(format!("{}api/canaries/{path}", self.url))
            .header(super::CSRF_HEADER, token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A cluster (the fake API server), the controller's approval API on loopback, and
/// the dashboard reading as the user and acting through that API with Alice's token.
pub(super) struct World {
    pub server: FakeApiServer,
    pub auth: Arc<Alice>,
    pub api_base: String,
    pub page: Page,
}

impl World {
    pub async fn start(allow: bool) -> World {
        let server = FakeApiServer::new();
        let auth = Arc::new(Alice {
            allow,
            checks: Mutex::new(Vec::new()),
        });
        let app = api_router(ApiState {
            client: server.client(),
            auth: auth.clone(),
            limiter: Arc::new(RateLimiter::new(RateLimit::default())),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve_api(listener, app, ApiTransport::InsecureHttp));
        let source = ClusterSource::new(
            server.client(),
            ClusterSourceOptions {
                context: "kind-test".into(),
                namespaces: Vec::new(),
                default_namespace: "shop".into(),
                api: Some(ApprovalApi {
                    base: api_base.clone(),
                    http: reqwest::Client::new(),
                    token: ApiToken::Static(TOKEN.into()),
                }),
            },
        );
        let page = Page::open(Arc::new(source)).await;
        World {
            server,
            auth,
            api_base,
            page,
        }
    }
}

/// A Canary `shop/NAME` waiting at a gate (or in `phase`), as the gate tests build it.
pub(super) fn canary_json(name: &str, phase: &str, gate: Option<&str>) -> Value {
    let mut c = crate::gates::test_canary_json(phase, gate);
    c["metadata"]["name"] = name.into();
    c["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    c
}
