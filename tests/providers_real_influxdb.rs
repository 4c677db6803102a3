//! The InfluxDB provider against a real `influxd` (Debian package `influxdb`, 1.6),
//! started on loopback with authentication on, points written with the line
//! protocol, then asked through serin's provider registry. Fails (never skips)
//! without the binary.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::ByteString;
use serin::crd::{InfluxDbProviderSpec, PrometheusSecretRef, ProviderSpec};
use serin::providers::registry::credential_keys;
use serin::providers::{MetricError, MetricSources, ProviderSources};

const USER: &str = "serin";
const PASSWORD: &str = "correct horse";

fn influxd_installed() {
    let found = std::process::Command::new("influxd")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the `influxd` binary is needed on PATH (Debian/Ubuntu: apt-get install influxdb); this test does not skip"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config keeping everything under `dir` and on loopback, without the internal
/// monitor's writes or any listener but HTTP and the RPC port.
fn config(dir: &std::path::Path, http: u16, rpc: u16) -> String {
    let d = dir.display();
    format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  auth-enabled = true
  log-enabled = false
  pprof-enabled = false
"#
    )
}

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn query_url(base: &str, q: &str) -> reqwest::Url {
    reqwest::Url::parse_with_params(&format!("{base}/query"), &[("q", q)]).unwrap()
}

/// Sends `request` until its status is not `lagging` (at most 3 s): influxd 1.6 can
/// answer for a moment as if a user or database just created did not exist yet.
async fn settled(request: impl Fn() -> reqwest::RequestBuilder, lagging: u16) -> reqwest::Response {
    for _ in 0..30 {
        let r = request().send().await.unwrap();
        if r.status().as_u16() != lagging {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    request().send().await.unwrap()
}

async fn admin(http: &reqwest::Client, base: &str, q: &str) {
    let r = settled(
        || {
            http.post(query_url(base, q))
                .basic_auth(USER, Some(PASSWORD))
        },
        403,
    )
    .await;
    assert!(r.status().is_success(), "{q}: {}", r.status());
}

fn spec(base: &str, database: &str, with_secret: bool) -> ProviderSpec {
    ProviderSpec {
        influxdb: Some(InfluxDbProviderSpec {
            address: base.into(),
            database: database.into(),
            timeout: Some("5s".into()),
            secret_ref: with_secret.then(|| PrometheusSecretRef {
                name: "influx".into(),
                username_key: Some("username".into()),
                password_key: Some("password".into()),
                ..Default::default()
            }),
            insecure_skip_verify: false,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxql_answers_of_a_real_influxd_are_read_as_serin_expects() {
    influxd_installed();
    let started = Instant::now();
    let dir = TempDir(std::env::temp_dir().join(format!("serin-influxd-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (http_port, rpc_port) = (free_port(), free_port());
    let conf = dir.0.join("influxdb.conf");
    std::fs::write(&conf, config(&dir.0, http_port, rpc_port)).unwrap();
    let mut child = tokio::process::Command::new("influxd")
        .arg("run")
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("influxd starts");
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let run = async {
        // Ready once /ping answers 204.
        loop {
            if let Ok(r) = http.get(format!("{base}/ping")).send().await {
                if r.status().as_u16() == 204 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // With no user yet, influxd lets the first admin be created unauthenticated.
        let create = format!("CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES");
        let r = http.post(query_url(&base, &create)).send().await.unwrap();
        assert!(r.status().is_success(), "create user: {}", r.status());
        admin(&http, &base, "CREATE DATABASE telemetry").await;
        let now = Utc::now().timestamp();
        let lines = format!(
            "http,pod=a error_rate=0.5 {}\nhttp,pod=a error_rate=0.25 {}\nhttp,pod=b error_rate=0.75 {}\nhttp,pod=b status=\"ok\" {}\n",
            now - 60,
            now - 30,
            now - 30,
            now - 20
        );
        let r = settled(
            || {
                http.post(format!("{base}/write?db=telemetry&precision=s"))
                    .basic_auth(USER, Some(PASSWORD))
                    .body(lines.clone())
            },
            404,
        )
        .await;
        assert_eq!(r.status().as_u16(), 204, "write");

        let data: BTreeMap<String, ByteString> = [("username", USER), ("password", PASSWORD)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        let sources = ProviderSources::new(None, Duration::from_secs(5));
        let spec_ok = spec(&base, "telemetry", true);
        let creds = credential_keys(Some(&spec_ok))
            .unwrap()
            .read(&data)
            .unwrap();
        let s = sources.source(Some(&spec_ok), Some(&creds)).unwrap();
        let at = Utc::now();

        // One series, one field: the value.
        assert_eq!(
            s.query_scalar(
                "SELECT last(\"error_rate\") FROM \"http\" WHERE \"pod\" = 'a' AND time > now() - 5m",
                at
            )
            .await,
            Ok(0.25)
        );
        let mean = s
            .query_scalar(
                "SELECT mean(\"error_rate\") FROM \"http\" WHERE time > now() - 5m",
                at,
            )
            .await
            .unwrap();
        assert!((mean - 0.5).abs() < 1e-12, "{mean}");
        // Grouped by time, the last bucket with data counts, not a trailing empty one.
        let last_bucket = s
            .query_scalar(
                "SELECT max(\"error_rate\") FROM \"http\" WHERE \"pod\" = 'a' AND time > now() - 5m GROUP BY time(10s) fill(null)",
                at,
            )
            .await
            .unwrap();
        assert_eq!(last_bucket, 0.25);
        // One series per pod: several for a scalar, one value each for a vector.
        let by_pod =
            "SELECT mean(\"error_rate\") FROM \"http\" WHERE time > now() - 5m GROUP BY \"pod\"";
        assert_eq!(
            s.query_scalar(by_pod, at).await,
            Err(MetricError::MultipleSeries {
                count: 2,
                example: "http{pod=\"a\"}".into()
            })
        );
        assert_eq!(s.query_vector(by_pod, at).await, Ok(vec![0.375, 0.75]));
        // Nothing measured: no data, never a value.
        assert_eq!(
            s.query_scalar(
                "SELECT mean(\"error_rate\") FROM \"http\" WHERE \"pod\" = 'zzz' AND time > now() - 5m",
                at
            )
            .await,
            Err(MetricError::NoData)
        );
        // A text field is not a measurement.
        let e = s
            .query_scalar(
                "SELECT last(\"status\") FROM \"http\" WHERE time > now() - 5m",
                at,
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            MetricError::BadQuery("field \"last\" of the query is not numeric".into())
        );
        // influxd's own errors, as it words them.
        let e = s.query_scalar("SELECT FROM", at).await.unwrap_err();
        let MetricError::BadQuery(text) = &e else {
            panic!("{e:?}")
        };
        assert!(
            text.starts_with("HTTP 400 Bad Request: error parsing query:"),
            "{text}"
        );
        let other_db = sources
            .source(Some(&spec(&base, "nope", true)), Some(&creds))
            .unwrap();
        assert_eq!(
            other_db
                .query_scalar("SELECT mean(\"x\") FROM \"m\"", at)
                .await,
            Err(MetricError::BadQuery("database not found: nope".into()))
        );
        // Without credentials, or with a wrong password: refused as auth.
        let anonymous = sources
            .source(Some(&spec(&base, "telemetry", false)), None)
            .unwrap();
        let e = anonymous
            .query_scalar("SELECT mean(\"error_rate\") FROM \"http\"", at)
            .await
            .unwrap_err();
        assert_eq!(e.category(), "auth", "{e}");
        let mut wrong = data.clone();
        wrong.insert("password".into(), ByteString(b"wrong".to_vec()));
        let wrong = credential_keys(Some(&spec_ok))
            .unwrap()
            .read(&wrong)
            .unwrap();
        let e = sources
            .source(Some(&spec_ok), Some(&wrong))
            .unwrap()
            .query_scalar("SELECT mean(\"error_rate\") FROM \"http\"", at)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            MetricError::Auth("HTTP 401 Unauthorized: authorization failed".into())
        );
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the real-influxd test finishes within 60s");
    child.kill().await.ok();
    eprintln!("real influxd test took {:?}", started.elapsed());
}
