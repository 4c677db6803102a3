//! A loopback stand-in for the Prometheus HTTP API, answering recorded bodies.
//!
//! Replies are scripted by the `query` parameter; every request is recorded so a
//! test can assert the path, parameters and headers serin sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
    /// Extra response headers (e.g. a rate limit's reset).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// An instant vector of `(labels, value)` samples at `ts`, as Prometheus writes it.
    pub fn vector(ts: i64, series: &[(&str, &str)]) -> Self {
        let result: Vec<String> = series
            .iter()
            .map(|(labels, v)| format!(r#"{{"metric":{labels},"value":[{ts},"{v}"]}}"#))
            .collect();
        Self::json(
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                result.join(",")
            ),
        )
    }

    /// A matrix of one series per entry: `(labels, [(ts, value)])`.
    pub fn matrix(series: &[(&str, Vec<(i64, String)>)]) -> Self {
        let result: Vec<String> = series
            .iter()
            .map(|(labels, points)| {
                let values: Vec<String> = points
                    .iter()
                    .map(|(t, v)| format!(r#"[{t},"{v}"]"#))
                    .collect();
                format!(r#"{{"metric":{labels},"values":[{}]}}"#, values.join(","))
            })
            .collect();
        Self::json(
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
                result.join(",")
            ),
        )
    }
}

/// The key of [`FakePrometheus::otherwise`]'s reply (no query is NUL).
const OTHERWISE: &str = "\0otherwise";

/// What the fake saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub params: HashMap<String, String>,
    pub headers: HeaderMap,
}

#[derive(Clone, Default)]
struct Shared {
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct FakePrometheus {
    pub address: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePrometheus {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::get(answer).post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            shared,
            task,
        }
    }

    /// Answer `query` (the rendered PromQL) with `reply`.
    pub fn on(&self, query: &str, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(query.to_string(), reply);
    }

    /// Answer `query` evaluated at `time` (unix seconds) with `reply`; takes
    /// precedence over [`FakePrometheus::on`].
    pub fn on_at(&self, query: &str, time: i64, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(format!("{query}@{time}"), reply);
    }

    /// Answer `query` asked as a range query (/api/v1/query_range) with `reply`.
    pub fn on_range(&self, query: &str, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(format!("range:{query}"), reply);
    }

    /// Answer every query nothing else is scripted for with `reply`.
    pub fn otherwise(&self, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(OTHERWISE.to_string(), reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn answer(
    State(shared): State<Shared>,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        params: params.clone(),
        headers,
    });
    // Prometheus and Datadog name the query `query`, InfluxDB `q`, Graphite `target`.
    let reply = params
        .get("query")
        .or_else(|| params.get("q"))
        .or_else(|| params.get("target"))
        .and_then(|q| {
            let replies = shared.replies.lock().unwrap();
            if uri.path().ends_with("/query_range") {
                return replies.get(&format!("range:{q}")).cloned();
            }
            let timed = params.get("time").map(|t| format!("{q}@{t}"));
            timed
                .and_then(|k| replies.get(&k).cloned())
                .or_else(|| replies.get(q).cloned())
        })
        .or_else(|| shared.replies.lock().unwrap().get(OTHERWISE).cloned())
        .unwrap_or_else(|| {
            Reply::json(
                400,
                r#"{"status":"error","errorType":"bad_data","error":"no reply scripted for this query"}"#,
            )
        });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap();
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, axum::http::HeaderValue::from_str(&value).unwrap());
    }
    response
}
