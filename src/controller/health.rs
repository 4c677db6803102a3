//! The health endpoints: `/live`, `/ready` and `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::routing::get;

use super::run::RunError;
use crate::metrics::{ControllerMetrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};

/// `/live`, `/ready` and `/metrics`.
pub fn health_router(ready: Arc<AtomicBool>, metrics: Arc<ControllerMetrics>) -> axum::Router {
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
                        "watches not synced yet (or shutting down)",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(m): State<Arc<ControllerMetrics>>| async move {
                ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], m.encode())
            }),
        )
        .with_state(metrics)
}

pub(super) async fn health(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: Arc<ControllerMetrics>,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Health { addr, source })?;
    axum::serve(listener, health_router(ready, metrics))
        .await
        .map_err(|source| RunError::Health { addr, source })
}
