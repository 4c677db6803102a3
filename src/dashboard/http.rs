//! The dashboard's HTTP side: the page, its JSON, the change stream, and actions
//! guarded against other sites (CSRF token, same origin, loopback host names).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::source::Source;
use super::{assets, view, DashboardError};
use crate::gates::{DecisionRequest, GateRef, Verb};

/// The header an action must carry the page's token in. A page of another site can
/// neither read the token nor send the header without a CORS preflight we refuse.
pub const CSRF_HEADER: &str = "x-serin-csrf";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                   data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// What the handlers share.
#[derive(Clone)]
pub struct DashboardState {
    source: Arc<dyn Source>,
    csrf: Arc<String>,
    /// `Host` values the page may be reached by (loopback names with our port):
    /// anything else is a DNS-rebinding page of another site.
    hosts: Arc<Vec<String>>,
}

impl DashboardState {
    /// State for a dashboard on loopback `port`, with a fresh CSRF token.
    pub fn new(source: Arc<dyn Source>, port: u16) -> Result<Self, getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let hosts = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("{h}:{port}"))
            .collect();
        Ok(Self {
            source,
            csrf: Arc::new(token),
            hosts: Arc::new(hosts),
        })
    }
}

fn refuse(e: &DashboardError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = json!({"error": e.category(), "message": e.to_string()});
    (status, Json(body)).into_response()
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        refuse(&self)
    }
}

pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/api/canaries", get(list))
        .route("/api/canaries/{ns}/{name}", get(detail))
        .route("/api/canaries/{ns}/{name}/{verb}", post(act))
        .route("/api/changes", get(changes))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serve `router` on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}

/// Every answer: only our loopback host names, and headers that keep the page to
/// itself (no framing, no other origins, no inline script).
async fn guard(
    State(st): State<DashboardState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !st.hosts.iter().any(|h| h == host) {
        return refuse(&DashboardError::Csrf(format!(
            "the dashboard answers only as {}, not as {host:?}",
            st.hosts.join(" or ")
        )));
    }
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn index(State(st): State<DashboardState>) -> Response {
    // The token goes into a meta tag, read by app.js: no inline script.
    let page = assets::INDEX_HTML.replace("{{csrf}}", &st.csrf);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = assets::find(&file) else {
        return refuse(&DashboardError::NotFound(format!("asset {file}")));
    };
    let etag = assets::etag(a.body);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, a.content_type.to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        a.body,
    )
        .into_response()
}

async fn list(State(st): State<DashboardState>) -> Result<Response, DashboardError> {
    let listing = st.source.list().await?;
    let now = chrono::Utc::now();
    let rows: Vec<view::Row> = listing.canaries.iter().map(|c| view::row(c, now)).collect();
    Ok(Json(json!({
        "source": st.source.describe(),
        "rows": rows,
        "notes": listing.notes,
    }))
    .into_response())
}

fn check_names(ns: &str, name: &str) -> Result<(), DashboardError> {
    if crate::gates::valid_name(ns) && crate::gates::valid_name(name) {
        Ok(())
    } else {
        Err(DashboardError::Invalid(
            "namespace and name must be DNS-1123 names (lower case, digits, '-', '.')".into(),
        ))
    }
}

async fn detail(
    State(st): State<DashboardState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, DashboardError> {
    check_names(&ns, &name)?;
    let canary = st.source.get(&ns, &name).await?;
    // The page still shows the release when Events may not be read.
    let (events, events_error) = match st.source.events(&ns, &name).await {
        Ok(ev) => (ev, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let now = chrono::Utc::now();
    Ok(Json(view::detail(&canary, &events, events_error, now)).into_response())
}

async fn changes(State(st): State<DashboardState>) -> Response {
    let stream = st.source.changes().map(|c| {
        Ok::<_, Infallible>(match c {
            Ok(change) => Event::default()
                .event("change")
                .json_data(change)
                .unwrap_or_else(|_| Event::default().event("change").data("{}")),
            Err(e) => Event::default().event("trouble").data(e.to_string()),
        })
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The body of an action: the gate passage the page showed (approve and reject).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    #[serde(default)]
    passage: Option<GateRef>,
}

fn same_origin(st: &DashboardState, headers: &HeaderMap) -> Result<(), DashboardError> {
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(sent.ct_eq(st.csrf.as_bytes())) {
        return Err(DashboardError::Csrf(
            "the action lacks the page's token: reload the dashboard and try again".into(),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let ok = st.hosts.iter().any(|h| origin == format!("http://{h}"));
        if !ok {
            return Err(DashboardError::Csrf(format!(
                "actions are accepted only from the dashboard's own page, not from {origin}"
            )));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(DashboardError::Invalid(
            "actions are JSON: Content-Type application/json".into(),
        ));
    }
    Ok(())
}

async fn act(
    State(st): State<DashboardState>,
    Path((ns, name, verb)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashboardError> {
    same_origin(&st, &headers)?;
    check_names(&ns, &name)?;
    let verb = match Verb::parse(&verb) {
        Some(Verb::Override) => {
            return Err(DashboardError::Invalid(
                "the emergency override needs a reason: use `kubectl serin override`".into(),
            ))
        }
        Some(v) => v,
        None => {
            return Err(DashboardError::NotFound(format!(
                "no action {verb:?}: approve, reject, abort, retry, pause or resume"
            )))
        }
    };
    let body: ActBody = if body.is_empty() {
        ActBody { passage: None }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| DashboardError::Invalid(format!("action body: {e}")))?
    };
    if matches!(verb, Verb::Approve | Verb::Reject) && body.passage.is_none() {
        return Err(DashboardError::Invalid(
            "approve and reject name the gate passage they decide (gate, revision, step)".into(),
        ));
    }
    let decision = DecisionRequest {
        expect: body.passage,
        ..DecisionRequest::new(verb)
    };
    let outcome = st.source.act(&ns, &name, &decision).await?;
    Ok(Json(outcome).into_response())
}

/// Bind `addr` and return the dashboard's URL and the server. Only loopback: the
/// page acts with its user's credentials, so nobody else may reach it.
pub async fn bind(
    addr: std::net::SocketAddr,
    source: Arc<dyn Source>,
) -> Result<
    (
        String,
        impl std::future::Future<Output = std::io::Result<()>>,
    ),
    DashboardError,
> {
    if !addr.ip().is_loopback() {
        return Err(DashboardError::Invalid(format!(
            "the dashboard listens on loopback only (127.0.0.1 or ::1), not {}",
            addr.ip()
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DashboardError::Unavailable(format!("listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| DashboardError::Unavailable(format!("listen on {addr}: {e}")))?;
    let state = DashboardState::new(source, bound.port())
        .map_err(|e| DashboardError::Unavailable(format!("random CSRF token: {e}")))?;
    let host = if bound.is_ipv4() {
        "127.0.0.1".to_string()
    } else {
        "[::1]".to_string()
    };
    let url = format!("http://{host}:{}/", bound.port());
    Ok((url, serve(listener, router(state))))
}
