//! Real metric stores other than Prometheus, and what fills them: Graphite
//! (carbon-cache, and graphite-web under gunicorn) and InfluxDB 1.x (influxd), each on
//! free loopback ports under a scratch directory and stopped on drop; and
//! [`Reporter`], which writes the demo apps' real request counts into them.
//!
//! Missing binaries fail the test with the packages to install (CI installs them:
//! `apt-get install -y --no-install-recommends graphite-carbon graphite-web gunicorn
//! influxdb`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serin::local::procs::{free_port, spawn_group, wait_until, GroupGuard};
use tokio::io::AsyncWriteExt as _;

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn installed(what: &str, ok: bool, packages: &str) {
    assert!(
        ok,
        "\n\n*** `{what}` is not installed or does not run. ***\n\
         *** Install it: apt-get install -y --no-install-recommends {packages} ***\n\n"
    );
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// carbon-cache writing whisper files that graphite-web reads (and asks carbon's
/// cache for points not yet on disk), as a Graphite installation runs them.
pub struct Graphite {
    /// graphite-web's base URL.
    pub url: String,
    /// carbon's plaintext receiver (`<path> <value> <timestamp>\n` over TCP).
    pub carbon: SocketAddr,
    // Dropped in this order: the web app first, then carbon.
    _web: GroupGuard,
    _carbon: GroupGuard,
}

impl Graphite {
    /// Start both under `dir`; panics (with the log) when either does not come up
    /// within 30 s.
    pub async fn start(dir: &Path) -> Self {
        installed(
            "carbon-cache",
            runs("carbon-cache", &["--help"]),
            "graphite-carbon",
        );
        installed("gunicorn", runs("gunicorn", &["--version"]), "gunicorn");
        // Its own binary, on PATH when the package is installed (running it loads Django).
        installed(
            "graphite-web",
            runs("sh", &["-c", "command -v graphite-manage"]),
            "graphite-web",
        );
        let storage = dir.join("storage");
        let whisper = storage.join("whisper");
        let conf = dir.join("conf");
        let py = dir.join("py");
        let logs = dir.join("log");
        for d in [&whisper, &conf, &py, &logs] {
            std::fs::create_dir_all(d).unwrap();
        }
        let [line, pickle, cache_query, web] = [(); 4].map(|_| free_port().unwrap());
        let (s, w, c, l) = (
            storage.display(),
            whisper.display(),
            conf.display(),
            logs.display(),
        );
        // Only loopback listeners; no UDP, no self-reported carbon.* metrics.
        std::fs::write(
            conf.join("carbon.conf"),
            format!(
                "[cache]\nSTORAGE_DIR = {s}/\nLOCAL_DATA_DIR = {w}/\nWHITELISTS_DIR = {s}/lists/\n\
                 CONF_DIR = {c}/\nLOG_DIR = {l}/\nPID_DIR = {s}/\nDATABASE = whisper\n\
                 ENABLE_LOGROTATION = False\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = 10000\n\
                 MAX_CREATES_PER_MINUTE = 10000\nENABLE_UDP_LISTENER = False\n\
                 LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line}\n\
                 PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle}\n\
                 CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {cache_query}\n\
                 CARBON_METRIC_INTERVAL = 0\nENABLE_TAGS = False\n"
            ),
        )
        .unwrap();
        // One-second points kept for an hour: the cases judge windows of seconds.
        std::fs::write(
            conf.join("storage-schemas.conf"),
            "[everything]\npattern = .*\nretentions = 1s:1h\n",
        )
        .unwrap();
        // graphite-web imports the module named by GRAPHITE_SETTINGS_MODULE in place of
        // Debian's /etc/graphite/local_settings.py: the scratch store, carbon's cache.
        std::fs::write(
            py.join("serin_graphite_settings.py"),
            format!(
                "SECRET_KEY = 'serin-e2e'\nSTORAGE_DIR = '{s}'\nWHISPER_DIR = '{w}'\n\
                 STANDARD_DIRS = ['{w}']\nLOG_DIR = '{l}'\nINDEX_FILE = '{s}/index'\n\
                 CONF_DIR = '{c}'\nCARBONLINK_HOSTS = ['127.0.0.1:{cache_query}']\n\
                 GRAPHITE_ROOT = '/usr/share/graphite-web'\nLOG_ROTATION = False\n\
                 DEFAULT_XFILES_FACTOR = 0\n"
            ),
        )
        .unwrap();
        let carbon = spawn_group(
            Path::new("carbon-cache"),
            &[
                format!("--config={}", conf.join("carbon.conf").display()),
                format!("--logdir={l}"),
                format!("--pidfile={s}/carbon.pid"),
                "--nodaemon".into(),
                "start".into(),
            ],
            &[],
            &logs.join("carbon-cache.out"),
        )
        .unwrap();
        let mut carbon = GroupGuard::new("carbon-cache", carbon, logs.join("carbon-cache.out"));
        let web_proc = spawn_group(
            Path::new("gunicorn"),
            &[
                format!("--bind=127.0.0.1:{web}"),
                "--workers=1".into(),
                format!("--pythonpath={}", py.display()),
                format!("--chdir={}", dir.display()),
                "graphite.wsgi:application".into(),
            ],
            &[(
                "GRAPHITE_SETTINGS_MODULE".into(),
                "serin_graphite_settings".into(),
            )],
            &logs.join("gunicorn.out"),
        )
        .unwrap();
        let mut web_guard = GroupGuard::new("graphite-web", web_proc, logs.join("gunicorn.out"));
        let carbon_addr: SocketAddr = format!("127.0.0.1:{line}").parse().unwrap();
        let up = wait_until(Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(carbon_addr).await.is_ok()
        })
        .await;
        assert!(
            up && carbon.running(),
            "carbon-cache did not listen on {carbon_addr}: {}",
            carbon.log_tail()
        );
        let url = format!("http://127.0.0.1:{web}");
        let http = client();
        let probe = format!("{url}/render?target=serin.ready&format=json");
        let up = wait_until(Duration::from_secs(30), || {
            let (http, probe) = (&http, &probe);
            async move {
                http.get(probe)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(
            up && web_guard.running(),
            "graphite-web did not answer on {url}: {}",
            web_guard.log_tail()
        );
        Self {
            url,
            carbon: carbon_addr,
            _web: web_guard,
            _carbon: carbon,
        }
    }
}

/// influxd 1.x without authentication (tests/providers_real_influxdb.rs covers it),
/// with one database.
pub struct Influx {
    pub url: String,
    pub database: String,
    _influxd: GroupGuard,
}

impl Influx {
    pub async fn start(dir: &Path, database: &str) -> Self {
        installed("influxd", runs("influxd", &["version"]), "influxdb");
        std::fs::create_dir_all(dir).unwrap();
        let (http_port, rpc_port) = (free_port().unwrap(), free_port().unwrap());
        let d = dir.display();
        let conf = dir.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc_port}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n[subscriber]\n  enabled = false\n\
                 [continuous_queries]\n  enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n"
            ),
        )
        .unwrap();
        let log = dir.join("influxd.out");
        let child = spawn_group(
            Path::new("influxd"),
            &["run".into(), "-config".into(), conf.display().to_string()],
            &[],
            &log,
        )
        .unwrap();
        let mut guard = GroupGuard::new("influxd", child, log);
        let url = format!("http://127.0.0.1:{http_port}");
        let http = client();
        let ping = format!("{url}/ping");
        let up = wait_until(Duration::from_secs(30), || {
            let (http, ping) = (&http, &ping);
            async move {
                http.get(ping)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 204)
            }
        })
        .await;
        assert!(
            up && guard.running(),
            "influxd did not answer on {url}: {}",
            guard.log_tail()
        );
        let create = reqwest::Url::parse_with_params(
            &format!("{url}/query"),
            &[("q", format!("CREATE DATABASE \"{database}\""))],
        )
        .unwrap();
        let r = http.post(create).send().await.unwrap();
        assert!(r.status().is_success(), "CREATE DATABASE: {}", r.status());
        Self {
            url,
            database: database.into(),
            _influxd: guard,
        }
    }
}

/// Where a [`Reporter`] writes.
#[derive(Clone, Debug)]
pub enum Store {
    /// carbon's plaintext protocol, StatsD's flush shape: one count per flush under
    /// `stats_counts.<namespace>.<deployment>.<pod>.http.{requests,errors}`.
    Carbon(SocketAddr),
    /// InfluxDB's `/write`, line protocol: `http_requests,namespace=,workload=,pod=
    /// requests=,errors=`.
    Influx { url: String, database: String },
}

/// Every second, the request counts each running demo-app instance served since the
/// last report, read from the instance's own counters (`http_requests_total` on its
/// `/metrics`), written to a store per pod and Deployment.
///
/// It stands in for the app's own reporter (a StatsD client, a Graphite or InfluxDB
/// metrics registry) that serin-demo-app does not have: the numbers are the app's real
/// counts of the real traffic, taken from the instances Prometheus is pointed at (its
/// file_sd targets file, with the Kubernetes-style labels), so the stored series are
/// what an instrumented app would have pushed, a second late at most.
pub struct Reporter {
    task: tokio::task::JoinHandle<()>,
    /// Batches the store accepted.
    pub writes: Arc<AtomicU64>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(serde::Deserialize)]
struct Target {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    requests: f64,
    errors: f64,
}

struct Point {
    namespace: String,
    workload: String,
    pod: String,
    delta: Counts,
}

impl Reporter {
    pub fn start(targets_file: PathBuf, store: Store) -> Self {
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(report(targets_file, store, writes.clone()));
        Self { task, writes }
    }
}

async fn report(targets_file: PathBuf, store: Store, writes: Arc<AtomicU64>) {
    let http = client();
    let mut carbon: Option<tokio::net::TcpStream> = None;
    // Counts at the last accepted write, per pod: each write carries the increase.
    let mut reported: HashMap<String, Counts> = HashMap::new();
    let mut last_second = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        // Whisper keeps one point per second: a second written twice would lose counts.
        if now.timestamp() <= last_second {
            continue;
        }
        let Ok(text) = std::fs::read(&targets_file) else {
            continue;
        };
        let targets: Vec<Target> = serde_json::from_slice(&text).unwrap_or_default();
        let mut points = Vec::new();
        let mut seen = HashMap::new();
        for t in &targets {
            let label = |k: &str| t.labels.get(k).cloned().unwrap_or_default();
            for addr in &t.targets {
                let Some(now_counts) = scrape(&http, addr).await else {
                    continue;
                };
                let pod = label("pod");
                let before = reported.get(&pod).copied().unwrap_or_default();
                // A restarted instance starts from zero.
                let delta = if now_counts.requests >= before.requests {
                    Counts {
                        requests: now_counts.requests - before.requests,
                        errors: (now_counts.errors - before.errors).max(0.0),
                    }
                } else {
                    now_counts
                };
                points.push(Point {
                    namespace: label("namespace"),
                    workload: label("deployment"),
                    pod: pod.clone(),
                    delta,
                });
                seen.insert(pod, now_counts);
            }
        }
        if points.is_empty() {
            continue;
        }
        let ok = match &store {
            Store::Carbon(addr) => {
                let ts = now.timestamp();
                let mut body = String::new();
                for p in &points {
                    let path =
                        format!("stats_counts.{}.{}.{}.http", p.namespace, p.workload, p.pod);
                    body.push_str(&format!("{path}.requests {} {ts}\n", p.delta.requests));
                    body.push_str(&format!("{path}.errors {} {ts}\n", p.delta.errors));
                }
                if carbon.is_none() {
                    carbon = tokio::net::TcpStream::connect(addr).await.ok();
                }
                let sent = match carbon.as_mut() {
                    Some(c) => c.write_all(body.as_bytes()).await.is_ok(),
                    None => false,
                };
                if !sent {
                    carbon = None;
                }
                sent
            }
            Store::Influx { url, database } => {
                let ns = now.timestamp_nanos_opt().unwrap_or_default();
                let body: String = points
                    .iter()
                    .map(|p| {
                        format!(
                            "http_requests,namespace={},workload={},pod={} requests={},errors={} {ns}\n",
                            p.namespace, p.workload, p.pod, p.delta.requests, p.delta.errors
                        )
                    })
                    .collect();
                let write = reqwest::Url::parse_with_params(
                    &format!("{url}/write"),
                    &[("db", database.as_str())],
                )
                .unwrap();
                http.post(write)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 204)
            }
        };
        if ok {
            reported.extend(seen);
            last_second = now.timestamp();
            writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The instance's requests and 5xx so far, from its `http_requests_total`.
async fn scrape(http: &reqwest::Client, addr: &str) -> Option<Counts> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut c = Counts::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("http_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ")?;
        let value: f64 = value.trim().parse().ok()?;
        c.requests += value;
        if labels.contains("code=\"5") {
            c.errors += value;
        }
    }
    Some(c)
}
