//! `kubectl serin status`, `status --watch` and `history`, run as the built binary
//! against a fake API server on loopback with a generated kubeconfig.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-serin");
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Fake {
    canaries: Arc<Mutex<Vec<Value>>>,
    /// Every request as "METHOD path?query".
    requests: Arc<Mutex<Vec<String>>>,
    /// Watch events to send to every open watch.
    events: broadcast::Sender<Value>,
}

fn ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
}

fn canary(ns: &str, name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "5",
                     "creationTimestamp": ago(3 * 86400)},
        "spec": {"targetRef": {"name": name}},
        "status": status,
    })
}

fn progressing() -> Value {
    canary(
        "shop",
        "podinfo",
        json!({
            "phase": "Progressing", "canaryWeight": 25, "currentStep": 2, "stepLabel": "2/3",
            "stableRevision": "r1", "canaryRevision": "r2",
            "releaseStartedAt": ago(1800), "stepStartedAt": ago(20), "lastTransitionTime": ago(1800),
            "message": "step 1 passed: errors: 0.1% <= max 1%",
            "metrics": [{"name": "errors", "verdict": "Pass", "value": 0.001, "reason": "0.1% <= max 1%",
                         "checkedAt": ago(20)}],
            "history": [
                {"revision": "r0", "startedAt": ago(7200), "finishedAt": ago(6900), "result": "promoted",
                 "reason": "all 3 steps passed", "step": 3, "steps": 3, "weight": 100},
                {"revision": "r1x", "startedAt": ago(3600), "finishedAt": ago(3000), "result": "rolledBack",
                 "reason": "failed checks 2/2: errors: 5% > max 1%", "step": 2, "steps": 3, "weight": 25},
            ],
        }),
    )
}

fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.replace("%3D", "=").replace("%3d", "="))
}

fn status_404(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("canaries.serin.dev \"{name}\" not found"),
            "reason": "NotFound", "code": 404}),
        ),
    )
        .into_response()
}

async fn handle(State(fake): State<Fake>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    fake.requests
        .lock()
        .unwrap()
        .push(format!("{} {path}?{query}", req.method()));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // apis/serin.dev/v1alpha1[/namespaces/NS]/canaries[/NAME]
    let (ns, name) = match parts.as_slice() {
        ["apis", "serin.dev", "v1alpha1", "canaries"] => (None, None),
        ["apis", "serin.dev", "v1alpha1", "namespaces", ns, "canaries"] => (Some(*ns), None),
        ["apis", "serin.dev", "v1alpha1", "namespaces", ns, "canaries", name] => {
            (Some(*ns), Some(*name))
        }
        _ => return (StatusCode::NOT_FOUND, "no such path").into_response(),
    };
    let field_name = param(&query, "fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name=").map(String::from));
    let matches = |c: &Value| {
        ns.is_none_or(|ns| c["metadata"]["namespace"] == ns)
            && field_name
                .as_deref()
                .is_none_or(|n| c["metadata"]["name"] == n)
    };
    if param(&query, "watch").as_deref() == Some("true") {
        let rx = fake.events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        return Some((Ok::<_, std::io::Error>(format!("{ev}\n")), rx));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let canaries = fake.canaries.lock().unwrap().clone();
    if let Some(name) = name {
        return match canaries
            .iter()
            .find(|c| matches(c) && c["metadata"]["name"] == name)
        {
            Some(c) => axum::Json(c.clone()).into_response(),
            None => status_404(name),
        };
    }
    let items: Vec<Value> = canaries.into_iter().filter(|c| matches(c)).collect();
    axum::Json(
        json!({"apiVersion": "serin.dev/v1alpha1", "kind": "CanaryList",
                      "metadata": {"resourceVersion": "10"}, "items": items}),
    )
    .into_response()
}

struct Env {
    fake: Fake,
    kubeconfig: std::path::PathBuf,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(canaries: Vec<Value>) -> Env {
    let fake = Fake {
        canaries: Arc::new(Mutex::new(canaries)),
        requests: Default::default(),
        events: broadcast::channel(16).0,
    };
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = std::env::temp_dir().join(format!(
        "kubectl-serin-test-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"http://{addr}\"}}}}]\n\
             users: [{{name: me, user: {{token: t0ken}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: me, namespace: shop}}}}]\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    Env {
        fake,
        kubeconfig,
        _dir: TempDir(dir),
    }
}

impl Env {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("SERIN_NAMESPACE")
            .env_remove("SERIN_CONTEXT")
            .env_remove("SERIN_OUTPUT")
            .env_remove("SERIN_WATCH_INTERVAL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(LIMIT, self.command(args).output())
            .await
            .expect("the command finishes")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn requests(&self) -> Vec<String> {
        self.fake.requests.lock().unwrap().clone()
    }
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn status_of_one_canary_reads_it_from_the_context_namespace() {
    let env = start(vec![progressing()]).await;
    let (ok, out, err) = env.run(&["status", "podinfo"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Canary:     shop/podinfo");
    assert_eq!(lines[1], "Phase:      Progressing for 30m");
    assert_eq!(lines[2], "Revision:   r2 (primary serves r1)");
    assert_eq!(lines[3], "Step:       2/3  [█████░░░░░░░░░░░░░░░] 25%");
    assert!(lines[4].starts_with("In step:    2"), "{out}");
    assert!(lines[4].contains("; next check in "), "{out}");
    // No managedFields here: the latest status clock (the step's start, 20s ago).
    assert!(lines[5].starts_with("Last acted: "), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    let verdict = lines.iter().find(|l| l.starts_with("  errors")).unwrap();
    assert_eq!(words(verdict)[..3], ["errors", "Pass", "0.001"]);
    assert_eq!(
        env.requests(),
        ["GET /apis/serin.dev/v1alpha1/namespaces/shop/canaries/podinfo?"]
    );

    // -n wins over the context's namespace; a missing Canary is an error.
    let (ok, out, err) = env.run(&["status", "podinfo", "-n", "web"]).await;
    assert!(!ok, "{out}");
    assert_eq!(err.trim(), "error: canary web/podinfo not found");
    // Watching a Canary that does not exist fails too, rather than waiting forever.
    let (ok, _, err) = env.run(&["status", "nope", "--watch"]).await;
    assert!(!ok);
    assert_eq!(err.trim(), "error: canary shop/nope not found");

    // Machine-readable: the status itself.
    let (ok, out, err) = env.run(&["status", "podinfo", "-o", "json"]).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["phase"].as_str(), v["canaryWeight"].as_i64()),
        (Some("Progressing"), Some(25))
    );
    assert!(
        v.get("spec").is_none() && v.get("metadata").is_none(),
        "{v}"
    );
}

#[tokio::test]
async fn status_without_a_name_lists_the_namespace_or_all_of_them() {
    let other = canary(
        "web",
        "api",
        json!({"phase": "Succeeded", "stableRevision": "r9", "canaryRevision": "r9",
               "stepLabel": "0/3", "message": "revision r9 promoted"}),
    );
    let env = start(vec![progressing(), other]).await;
    let (ok, out, err) = env.run(&["status"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "only namespace shop: {out}");
    assert_eq!(
        words(lines[0]),
        ["NAME", "PHASE", "WEIGHT", "STEP", "REVISION", "AGE", "MESSAGE"]
    );
    assert_eq!(
        words(lines[1])[..6],
        ["podinfo", "Progressing", "25%", "2/3", "r2", "3d"]
    );
    assert_eq!(
        env.requests().last().unwrap(),
        "GET /apis/serin.dev/v1alpha1/namespaces/shop/canaries?"
    );

    let (ok, out, err) = env.run(&["status", "-A"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(words(lines[0])[..2], ["NAMESPACE", "NAME"]);
    assert_eq!(words(lines[1])[..3], ["shop", "podinfo", "Progressing"]);
    assert_eq!(words(lines[2])[..4], ["web", "api", "Succeeded", "0%"]);
    assert_eq!(
        env.requests().last().unwrap(),
        "GET /apis/serin.dev/v1alpha1/canaries?"
    );

    let (ok, out, _) = env.run(&["status", "-n", "empty"]).await;
    assert!(ok);
    assert_eq!(out, "No canaries found in namespace empty.\n");
}

#[tokio::test]
async fn history_prints_ended_releases_newest_first_after_the_one_in_flight() {
    let env = start(vec![progressing()]).await;
    let (ok, out, err) = env.run(&["history", "podinfo"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(words(lines[0])[..2], ["REVISION", "RESULT"]);
    assert_eq!(words(lines[1])[..2], ["r2", "(Progressing)"]);
    assert_eq!(words(lines[2])[..2], ["r1x", "rolledBack"]);
    assert!(lines[2].contains("failed checks 2/2"), "{out}");
    assert_eq!(words(lines[3])[..2], ["r0", "promoted"]);

    let (ok, out, err) = env.run(&["history", "podinfo", "-o", "json"]).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["revision"], "r1x", "newest first: {v}");
    assert_eq!(v[1]["revision"], "r0");

    let (ok, _, err) = env.run(&["history", "nope"]).await;
    assert!(!ok);
    assert!(err.contains("canary shop/nope not found"), "{err}");
}

/// Read stdout lines until one satisfies `pred`; returns everything read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut String,
    pred: impl Fn(&str) -> bool,
) {
    let found = tokio::time::timeout(LIMIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            seen.push_str(&l);
            seen.push('\n');
            if pred(&l) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "not found in output:\n{seen}");
}

#[tokio::test]
async fn watch_redraws_on_a_change_and_stops_on_ctrl_c() {
    let env = start(vec![progressing()]).await;
    let mut child = env
        .command(&["status", "podinfo", "--watch"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    read_until(&mut lines, &mut seen, |l| {
        l.starts_with("Phase:      Progressing")
    })
    .await;

    // Wait for the watch request, then the controller promotes the release.
    tokio::time::timeout(LIMIT, async {
        while env.fake.events.receiver_count() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the CLI opens a watch");
    let watch = env
        .requests()
        .into_iter()
        .find(|r| r.contains("watch=true"))
        .unwrap();
    assert!(
        watch.starts_with("GET /apis/serin.dev/v1alpha1/namespaces/shop/canaries?")
            && watch.contains("fieldSelector=metadata.name%3Dpodinfo"),
        "watches only this Canary: {watch}"
    );
    let mut done = progressing();
    done["metadata"]["resourceVersion"] = json!("11");
    done["status"]["phase"] = json!("Succeeded");
    done["status"]["canaryWeight"] = json!(0);
    done["status"]["stableRevision"] = json!("r2");
    done["status"]["message"] = json!("revision r2 promoted");
    env.fake
        .events
        .send(json!({"type": "MODIFIED", "object": done}))
        .unwrap();
    read_until(&mut lines, &mut seen, |l| {
        l.starts_with("Phase:      Succeeded")
    })
    .await;
    read_until(&mut lines, &mut seen, |l| l.starts_with("Revision:   r2")).await;
    // Not a terminal: frames are appended, without escape codes.
    assert!(!seen.contains('\x1b'), "{seen:?}");
    assert_eq!(
        seen.matches("Canary:     shop/podinfo").count(),
        2,
        "{seen}"
    );

    // Ctrl-C ends it cleanly.
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("exits on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn watching_the_list_shows_added_canaries_as_json_lines() {
    let env = start(vec![progressing()]).await;
    let mut child = env
        .command(&["status", "-A", "--watch", "-o", "json"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    read_until(&mut lines, &mut seen, |l| l.contains("podinfo")).await;
    let first: Value = serde_json::from_str(seen.lines().next().unwrap()).unwrap();
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    tokio::time::timeout(LIMIT, async {
        while env.fake.events.receiver_count() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let watch = env
        .requests()
        .into_iter()
        .find(|r| r.contains("watch=true"))
        .unwrap();
    assert!(
        watch.starts_with("GET /apis/serin.dev/v1alpha1/canaries?"),
        "{watch}"
    );
    let added = canary("web", "api", json!({"phase": "Initialized"}));
    env.fake
        .events
        .send(json!({"type": "ADDED", "object": added}))
        .unwrap();
    read_until(&mut lines, &mut seen, |l| l.contains("\"api\"")).await;
    let last: Value = serde_json::from_str(seen.lines().last().unwrap()).unwrap();
    let names: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["podinfo", "api"], "sorted by namespace: {last}");
    assert_eq!(last[1]["status"]["phase"], "Initialized");
    assert_eq!(last[0]["liveness"]["stalled"], false, "{last}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `kubectl serin status -A | head -1`: far more output than a pipe buffers (64 KiB),
    // the reader takes one line and closes its end.
    let many = (0..3000)
        .map(|i| {
            canary(
                &format!("team-{}", i % 40),
                &format!("app-{i:04}"),
                json!({"phase": "Succeeded", "stableRevision": "r9", "canaryRevision": "r9",
                       "stepLabel": "0/3", "message": "revision r9 promoted after all 3 steps passed"}),
            )
        })
        .collect();
    let env = start(many).await;
    for args in [&["status", "-A"][..], &["status", "-A", "-o", "json"][..]] {
        let mut child = env.command(args).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        tokio::time::timeout(LIMIT, stdout.read_line(&mut first))
            .await
            .expect("the first line comes")
            .unwrap();
        assert!(!first.is_empty());
        drop(stdout);
        let out = tokio::time::timeout(LIMIT, child.wait_with_output())
            .await
            .expect("the command ends")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
}

/// `kubectl serin dashboard`: the list and a release page read with the kubeconfig,
/// the change stream fed by a watch, and actions off (and saying so) without the
/// approval API.
#[tokio::test]
async fn the_dashboard_serves_the_contexts_canaries_and_streams_their_changes() {
    let env = start(vec![progressing()]).await;
    let mut child = env.command(&["dashboard", "--port", "0"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    read_until(&mut lines, &mut seen, |l| l.contains("actions are off")).await;
    let url = seen
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL printed: {seen}"))
        .to_string();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{url}{path}")).send();
    let list: Value = get("api/canaries").await.unwrap().json().await.unwrap();
    assert_eq!(list["rows"][0]["name"], "podinfo", "{list}");
    assert_eq!(list["rows"][0]["lastVerdict"], "Pass", "{list}");
    let page: Value = get("api/canaries/shop/podinfo")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["row"]["step"], 2, "{page}");
    // This API server serves no Events: the page still shows the release, and why.
    assert!(page["eventsError"].is_string(), "{page}");

    let mut stream = get("api/changes").await.unwrap();
    let watching = tokio::time::timeout(LIMIT, async {
        while !env.requests().iter().any(|r| r.contains("watch=true")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(watching.is_ok(), "{:?}", env.requests());
    let cart = canary("shop", "cart", json!({"phase": "Succeeded"}));
    env.fake
        .events
        .send(json!({"type": "ADDED", "object": cart}))
        .unwrap();
    let mut events = String::new();
    let got = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            events.push_str(&String::from_utf8_lossy(&chunk));
            if events.contains("\"name\":\"cart\"") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "{events}");

    let html = get("").await.unwrap().text().await.unwrap();
    let at = html.find("name=\"serin-csrf\" content=\"").unwrap() + 27;
    let refused = http
        .post(format!("{url}api/canaries/shop/podinfo/pause"))
        .header("x-serin-csrf", &html[at..at + 64])
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("--api-url"),
        "{body}"
    );
    child.kill().await.unwrap();
}
