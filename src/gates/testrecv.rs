//! A real HTTP receiver on loopback for tests: records every request and answers from
//! a script (status, delay), then 200.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Clone)]
struct Rs {
    tx: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<VecDeque<(u16, Duration)>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, or panic after `secs`.
    pub async fn next(&mut self, secs: u64) -> Received {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .expect("receiver got nothing in time")
            .expect("receiver closed")
    }
}

async fn handle(State(s): State<Rs>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _ = s.tx.send(Received {
        path: uri.path().to_string(),
        headers,
        body,
    });
    let next = s.script.lock().unwrap().pop_front();
    let (status, delay) = next.unwrap_or((200, Duration::ZERO));
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap()
}

/// Start a receiver answering `script` in order, then 200 forever.
pub async fn start(script: Vec<(u16, Duration)>) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Rs {
        tx,
        script: Arc::new(Mutex::new(script.into())),
    };
    let app = Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { addr, rx }
}

/// Serve `router` on loopback; returns its address.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}
