//! A real Prometheus on loopback scraping every local instance. Targets come from a
//! file_sd file the local backend rewrites whenever instances come and go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::procs::{free_port, spawn_group, wait_until, GroupGuard};
use super::state::atomic_write;
use super::LocalError;

/// One scrape target and the labels Kubernetes service discovery would have given it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SdTarget {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

pub fn write_targets(path: &Path, targets: &[SdTarget]) -> Result<(), LocalError> {
    let json = serde_json::to_vec_pretty(targets).map_err(|e| LocalError::StateFormat {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    atomic_write(path, &json)
}

pub fn render_config(targets_file: &Path, scrape_interval: Duration) -> String {
    let s = scrape_interval.as_secs().max(1);
    format!(
        r#"global:
  scrape_interval: {s}s
  scrape_timeout: {s}s
  evaluation_interval: {s}s
scrape_configs:
  - job_name: serin-local
    # The instances' own namespace/deployment labels (mesh shapes) win over the
    # discovery labels, as they would for a mesh's or ingress's exporter.
    honor_labels: true
    file_sd_configs:
      - files: ["{}"]
        refresh_interval: {s}s
"#,
        targets_file.display()
    )
}

/// A Prometheus the harness owns; stopped on drop.
pub struct PrometheusServer {
    pub port: u16,
    pub targets_file: PathBuf,
    guard: GroupGuard,
}

impl PrometheusServer {
    pub async fn start(
        binary: &Path,
        dir: &Path,
        scrape_interval: Duration,
    ) -> Result<Self, LocalError> {
        std::fs::create_dir_all(dir.join("data")).map_err(|e| LocalError::io(dir, e))?;
        let targets_file = dir.join("targets.json");
        if !targets_file.exists() {
            write_targets(&targets_file, &[])?;
        }
        let config = dir.join("prometheus.yml");
        atomic_write(
            &config,
            render_config(&targets_file, scrape_interval).as_bytes(),
        )?;
        let port = free_port()?;
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.retention.time=1h".into(),
            "--log.level=warn".into(),
        ];
        let log = dir.join("prometheus.log");
        let child = spawn_group(binary, &args, &[], &log)?;
        let mut guard = GroupGuard::new("prometheus", child, log);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| LocalError::Metrics(e.to_string()))?;
        let url = format!("http://127.0.0.1:{port}/-/ready");
        let ready = wait_until(Duration::from_secs(30), || {
            let (client, url) = (&client, &url);
            async move { super::procs::http_ok(client, url, "").await }
        })
        .await;
        if !ready || !guard.running() {
            return Err(LocalError::Metrics(format!(
                "prometheus did not become ready on 127.0.0.1:{port}: {}",
                guard.log_tail()
            )));
        }
        Ok(Self {
            port,
            targets_file,
            guard,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_at_the_targets_file() {
        let c = render_config(Path::new("/x/targets.json"), Duration::from_secs(1));
        assert!(c.contains(r#"files: ["/x/targets.json"]"#));
        assert!(c.contains("scrape_interval: 1s"));
        let parsed: serde_yaml::Value = serde_yaml::from_str(&c).unwrap();
        assert_eq!(
            parsed["scrape_configs"][0]["honor_labels"],
            serde_yaml::Value::Bool(true)
        );
    }
}
