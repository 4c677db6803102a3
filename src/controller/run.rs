//! Running the controller: leader election, the two watches, health endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};

use super::lease::LeaseLock;
use super::materialize::{materialize_error_policy, reconcile_deployment, MaterializeContext};
use super::{error_policy, reconcile_canary, Context};
use crate::crd::Canary;
use crate::metrics::{Metrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};

/// How the controller runs, as `serin controller` flags set it.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Watch one namespace; `None` watches all.
    pub namespace: Option<String>,
    pub health_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("health endpoint {addr}: {source}")]
    Health {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the leader lease {0}; exiting so a new leader can take over")]
    LeaseLost(String),
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// `/live`, `/ready` and `/metrics`.
pub fn health_router(ready: Arc<AtomicBool>, metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new()
        .route("/live", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "watches not synced or not the leader",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], m.encode())
            }),
        )
        .with_state(metrics)
}

async fn health(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Health { addr, source })?;
    axum::serve(listener, health_router(ready, metrics))
        .await
        .map_err(|source| RunError::Health { addr, source })
}

/// Block until this replica holds the lease, then keep renewing it; returns only when
/// the lease is lost.
async fn keep_lease(lock: &LeaseLock, duration: Duration) -> RunError {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(duration / 3).await;
        match lock.try_acquire_or_renew(chrono::Utc::now()).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => return RunError::LeaseLost(lock.identity().to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if last_ok.elapsed() >= duration {
                    return RunError::LeaseLost(lock.identity().to_string());
                }
            }
        }
    }
}

/// Run until a signal, or until the lease is lost (an error: the process should exit).
pub async fn run(client: Client, ctx: Context, opts: RunOptions) -> Result<(), RunError> {
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = ctx.metrics.clone();
    let health_task = tokio::spawn(health(opts.health_addr, ready.clone(), metrics.clone()));

    let lock = LeaseLock::new(
        Api::<Lease>::namespaced(client.clone(), &opts.lease_namespace),
        opts.lease_name.clone(),
        opts.identity.clone(),
        opts.lease_duration.as_secs().max(1) as i32,
    );
    if opts.leader_election {
        tracing::info!(identity = %opts.identity, lease = %opts.lease_name, "waiting for leadership");
        while !lock.try_acquire_or_renew(chrono::Utc::now()).await? {
            tokio::time::sleep(opts.lease_duration / 2).await;
        }
        tracing::info!("leading");
    }
    // Without leader election every replica acts as the leader.
    metrics.set_leader(true);

    let ns = opts.namespace.as_deref();
    let canary_ctl = Controller::new(api::<Canary>(&client, ns), watcher::Config::default())
        .watches(
            api::<Deployment>(&client, ns),
            watcher::Config::default(),
            |d| {
                // A Deployment wakes the Canary of the same name (if there is one).
                d.namespace()
                    .map(|ns| ObjectRef::new(&d.name_any()).within(&ns))
            },
        );
    let canaries = canary_ctl.store();
    let mctx = Arc::new(MaterializeContext {
        client: client.clone(),
        canaries: canaries.clone(),
        events: ctx.events.clone(),
        clock: ctx.clock.clone(),
        metrics: ctx.metrics.clone(),
    });
    let canary_run = canary_ctl
        .shutdown_on_signal()
        .run(reconcile_canary, error_policy, Arc::new(ctx))
        .for_each(|_| async {});
    let materialize_run =
        Controller::new(api::<Deployment>(&client, ns), watcher::Config::default())
            .shutdown_on_signal()
            .run(reconcile_deployment, materialize_error_policy, mctx)
            .for_each(|_| async {});
    let readiness = {
        let ready = ready.clone();
        async move {
            if canaries.wait_until_ready().await.is_ok() {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("watches synced; ready");
            }
        }
    };
    let lease_watch = async {
        if opts.leader_election {
            keep_lease(&lock, opts.lease_duration).await
        } else {
            std::future::pending().await
        }
    };
    let result = tokio::select! {
        _ = async { tokio::join!(canary_run, materialize_run, readiness) } => Ok(()),
        e = lease_watch => Err(e),
        r = health_task => match r {
            Ok(Err(e)) => Err(e),
            _ => Ok(()),
        },
    };
    ready.store(false, Ordering::Relaxed);
    metrics.set_leader(false);
    result
}
