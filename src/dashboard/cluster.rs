//! The dashboard of a cluster: reads with the user's own kubeconfig credentials, so
//! the API server's RBAC decides what the pages show, and actions through the
//! controller's approval API exactly as `kubectl serin approve` sends them.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use super::source::{Change, Listing, Source};
use super::view::EventRow;
use super::DashboardError;
use crate::cli::decide::{decide, service_account_token};
use crate::crd::Canary;
use crate::gates::{DecisionRequest, Outcome};

/// Deadline of each read the pages make.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Events shown per release page (the newest).
const EVENTS_MAX: usize = 200;

/// The bearer token actions carry to the approval API.
#[derive(Clone)]
pub enum ApiToken {
    /// Given (`--token`, `--token-file`, or the kubeconfig's own bearer token).
    Static(String),
    /// A short-lived token of this ServiceAccount, requested for each action
    /// (`ns/name`, or `name` in the Canary's namespace).
    ServiceAccount { account: String, audience: String },
}

/// Where actions go: the approval API, as the CLI reaches it.
#[derive(Clone)]
pub struct ApprovalApi {
    pub base: String,
    pub http: reqwest::Client,
    pub token: ApiToken,
}

#[derive(Clone)]
pub struct ClusterSourceOptions {
    /// The kubeconfig context, said on the page.
    pub context: String,
    /// Namespaces to show; empty: all the user may list, or else `default_namespace`.
    pub namespaces: Vec<String>,
    pub default_namespace: String,
    /// `None`: the pages are read-only and say why.
    pub api: Option<ApprovalApi>,
}

pub struct ClusterSource {
    client: Client,
    opts: ClusterSourceOptions,
}

async fn within<T>(
    what: &str,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, DashboardError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(DashboardError::from),
        Err(_) => Err(DashboardError::Unavailable(format!(
            "{what}: the API server did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

impl ClusterSource {
    pub fn new(client: Client, opts: ClusterSourceOptions) -> Self {
        Self { client, opts }
    }

    /// The scope to fall back to when the user may not list all namespaces, and the
    /// note saying so.
    fn fallback(&self, refused: &str) -> (Vec<Option<String>>, Vec<String>) {
        let ns = &self.opts.default_namespace;
        (
            vec![Some(ns.clone())],
            vec![format!(
                "listing Canaries in all namespaces is forbidden for you ({refused}); showing \
                 namespace {ns} (choose others with --namespace)"
            )],
        )
    }

    /// The namespaces to watch (`None`: all), and why when narrowed to a fallback.
    async fn scopes(&self) -> Result<(Vec<Option<String>>, Vec<String>), DashboardError> {
        if !self.opts.namespaces.is_empty() {
            return Ok((
                self.opts.namespaces.iter().cloned().map(Some).collect(),
                vec![],
            ));
        }
        let probe = Api::<Canary>::all(self.client.clone());
        match within(
            "list canaries",
            probe.list_metadata(&ListParams::default().limit(1)),
        )
        .await
        {
            Ok(_) => Ok((vec![None], vec![])),
            Err(DashboardError::Forbidden(msg)) => Ok(self.fallback(&msg)),
            Err(e) => Err(e),
        }
    }

    fn api(&self, ns: Option<&str>) -> Api<Canary> {
        match ns {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

fn sorted(mut canaries: Vec<Canary>, notes: Vec<String>) -> Listing {
    canaries.sort_by_key(|c| (c.namespace().unwrap_or_default(), c.name_any()));
    Listing { canaries, notes }
}

#[async_trait]
impl Source for ClusterSource {
    fn describe(&self) -> String {
        format!("cluster {}", self.opts.context)
    }

    async fn list(&self) -> Result<Listing, DashboardError> {
        // All namespaces in one request when the user may; the named or fallback
        // namespaces otherwise (no probe first: the list itself says which).
        let (scopes, mut notes) = if self.opts.namespaces.is_empty() {
            match within("list canaries", self.api(None).list(&ListParams::default())).await {
                Ok(l) => return Ok(sorted(l.items, Vec::new())),
                Err(DashboardError::Forbidden(msg)) => self.fallback(&msg),
                Err(e) => return Err(e),
            }
        } else {
            self.scopes().await?
        };
        let mut canaries = Vec::new();
        let mut refused = Vec::new();
        for ns in &scopes {
            let what = format!(
                "list canaries in {}",
                ns.as_deref().unwrap_or("all namespaces")
            );
            match within(&what, self.api(ns.as_deref()).list(&ListParams::default())).await {
                Ok(l) => canaries.extend(l.items),
                Err(DashboardError::Forbidden(msg)) => refused.push(msg),
                Err(e) => return Err(e),
            }
        }
        if canaries.is_empty() && refused.len() == scopes.len() && !refused.is_empty() {
            return Err(DashboardError::Forbidden(refused.join("; ")));
        }
        notes.extend(refused.into_iter().map(|m| format!("forbidden: {m}")));
        Ok(sorted(canaries, notes))
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Canary, DashboardError> {
        within("get canary", self.api(Some(namespace)).get(name)).await
    }

    async fn events(&self, namespace: &str, name: &str) -> Result<Vec<EventRow>, DashboardError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let lp =
            ListParams::default().fields(&format!("regarding.kind=Canary,regarding.name={name}"));
        let list = within("list events", api.list(&lp)).await?;
        let mut rows: Vec<EventRow> = list
            .items
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .map(|v| EventRow::from_event(&v))
            .collect();
        rows.sort_by_key(|r| r.at);
        let skip = rows.len().saturating_sub(EVENTS_MAX);
        Ok(rows.split_off(skip))
    }

    async fn act(
        &self,
        namespace: &str,
        name: &str,
        decision: &DecisionRequest,
    ) -> Result<Outcome, DashboardError> {
        let Some(api) = &self.opts.api else {
            return Err(DashboardError::Unavailable(
                "actions go through serin's approval API: start the dashboard with --api-url \
                 (and a token, as for `kubectl serin approve`)"
                    .into(),
            ));
        };
        let token = match &api.token {
            ApiToken::Static(t) => t.clone(),
            ApiToken::ServiceAccount { account, audience } => {
                let (ns, sa) = account.split_once('/').unwrap_or((namespace, account));
                let ttl = Duration::from_secs(600);
                service_account_token(&self.client, ns, sa, audience, ttl).await?
            }
        };
        Ok(decide(&api.http, &api.base, &token, namespace, name, decision).await?)
    }

    fn changes(&self) -> BoxStream<'static, Result<Change, DashboardError>> {
        let me = ClusterSource {
            client: self.client.clone(),
            opts: self.opts.clone(),
        };
        stream::once(async move {
            let scopes = match me.scopes().await {
                Ok((s, _)) => s,
                Err(e) => return stream::once(async { Err(e) }).boxed(),
            };
            let watches = scopes.iter().map(|ns| {
                watcher(me.api(ns.as_deref()), watcher::Config::default())
                    .default_backoff()
                    .filter_map(|ev| async move {
                        match ev {
                            // The initial list too: a page that connects (or reconnects
                            // after a gap) fetches what it shows once more.
                            Ok(
                                watcher::Event::Apply(c)
                                | watcher::Event::Delete(c)
                                | watcher::Event::InitApply(c),
                            ) => Some(Ok(Change {
                                namespace: c.namespace().unwrap_or_default(),
                                name: c.name_any(),
                            })),
                            Ok(_) => None,
                            Err(e) => Some(Err(DashboardError::Unavailable(format!("watch: {e}")))),
                        }
                    })
                    .boxed()
            });
            stream::select_all(watches).boxed()
        })
        .flatten()
        .boxed()
    }
}
