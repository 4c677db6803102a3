//! `serin controller`, run as the built binary against a fake API server on loopback
//! where another replica holds the leader Lease: the process must build its clients
//! (two rustls crypto providers are linked; it must pick one rather than panic), stay a
//! standby, report ready on `/ready` (it serves the approval API), say `serin_leader 0`
//! on `/metrics`, and never start the watches. The other replica's renewTime is an hour
//! old by this machine's clock: expiry is measured on the standby's own monotonic clock
//! from when it saw the Lease, so it still waits.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_serin");

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../shared/apiserver-fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Value>(&text).unwrap()["response"]["body"].clone()
}

#[derive(Clone, Default)]
struct Fake {
    requests: Arc<Mutex<Vec<String>>>,
}

async fn handle(State(fake): State<Fake>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let line = format!(
        "{} {}{}",
        req.method(),
        path,
        req.uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    fake.requests.lock().unwrap().push(line);
    if path == "/apis" {
        return axum::Json(fixture("27-discovery-apis.json")).into_response();
    }
    if path == "/apis/coordination.k8s.io/v1/namespaces/serin-system/leases/serin-leader" {
        // Held by another replica whose wall clock is an hour behind: its renewTime
        // looks long expired here. The standby must not compare it with its own clock;
        // it has seen the Lease only for moments, far less than the lease duration.
        let mut lease = fixture("21-lease-create.json");
        lease["metadata"]["namespace"] = json!("serin-system");
        lease["spec"]["holderIdentity"] = json!("serin-other-replica");
        lease["spec"]["leaseDurationSeconds"] = json!(15);
        lease["spec"]["renewTime"] = json!((chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        return axum::Json(lease).into_response();
    }
    if req.uri().query().is_some_and(|q| q.contains("watch=")) {
        // Notifier watches: keep them open and quiet.
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if req.method() == "GET" && !path.contains("/namespaces/") {
        // Lists (Notifiers, ClusterNotifiers): empty.
        return axum::Json(json!({"apiVersion": "v1", "kind": "List",
                                 "metadata": {"resourceVersion": "1"}, "items": []}))
        .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
    )
        .into_response()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_standby_controller_is_ready_and_not_leading() {
    let fake = Fake::default();
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("serin-standby-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"http://{addr}\"}}}}]\n\
             users: [{{name: me, user: {{token: t0ken}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: me}}}}]\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    let (health, api) = (free_port(), free_port());
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let mut child = tokio::process::Command::new(BIN)
        .args(["controller", "--identity", "serin-test-standby"])
        .env("KUBECONFIG", &kubeconfig)
        .env("SERIN_HEALTH_ADDR", format!("127.0.0.1:{health}"))
        .env("SERIN_API_ADDR", format!("127.0.0.1:{api}"))
        // The approval API serves TLS only (test certificate and key).
        .env("SERIN_API_TLS_CERT", tls.join("a.crt"))
        .env("SERIN_API_TLS_KEY", tls.join("a.key"))
        .env_remove("SERIN_API_INSECURE_HTTP")
        .env_remove("SERIN_SLACK_SIGNING_SECRET_FILE")
        .env("SERIN_LEASE_NAMESPACE", "serin-system")
        .env_remove("SERIN_LEASE_NAME")
        .env_remove("SERIN_NAMESPACE")
        .env_remove("SERIN_NAMESPACE_SELECTOR")
        .env_remove("SERIN_LABEL_SELECTOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{health}{path}"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    };
    let mut ready = None;
    for _ in 0..100 {
        if let Some(r) = get("/ready").await {
            ready = Some(r);
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use tokio::io::AsyncReadExt;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .await
                .unwrap();
            panic!("serin controller exited with {status}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = ready.expect("the health endpoint answers within 10 s");
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = get("/metrics").await.expect("/metrics answers");
    assert!(metrics.contains("serin_leader 0"), "{metrics}");
    // The approval API answers over TLS with the mounted certificate (a standby too).
    let ca = std::fs::read(tls.join("a-ca.crt")).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let doc = https
        .get(format!("https://localhost:{api}/openapi.json"))
        .send()
        .await
        .expect("the approval API answers over TLS");
    assert_eq!(doc.status(), 200);

    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r
                == "GET /apis/coordination.k8s.io/v1/namespaces/serin-system/leases/serin-leader"),
        "{requests:#?}"
    );
    // A standby never starts the Canary or Deployment watches, and writes nothing.
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("/canaries") || r.contains("/deployments")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("GET ") || r.starts_with("POST /apis/authorization")),
        "{requests:#?}"
    );
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
