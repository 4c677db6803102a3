//! A real nginx in front of the local workloads. serin writes the `upstream` block with
//! per-server weights and reloads nginx; nginx, not serin, splits the requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::procs::{free_port, spawn_group, wait_until, GroupGuard};
use super::state::atomic_write;
use super::LocalError;

const WEIGHT_HEADER: &str = "# serin: canary-weight=";

/// The nginx upstream for `weight` percent to the canary. Each primary server gets
/// `(100 - w) * canary_count` and each canary server `w * primary_count`, so the
/// groups' shares are exactly `100 - w` : `w` whatever their sizes; a zero weight
/// leaves the group out. With no server left, a placeholder marked `down` keeps the
/// config valid (nginx answers 502).
pub fn render_upstream(weight: i32, primary: &[u16], canary: &[u16]) -> String {
    let w = weight.clamp(0, 100) as u64;
    let (np, nc) = (primary.len() as u64, canary.len() as u64);
    let (mut pw, mut cw) = ((100 - w) * nc.max(1), w * np.max(1));
    if nc == 0 {
        cw = 0;
        pw = 1;
    }
    if np == 0 {
        pw = 0;
        cw = cw.min(1);
    }
    let g = gcd(pw, cw).max(1);
    (pw, cw) = (pw / g, cw / g);
    let mut out = format!("{WEIGHT_HEADER}{weight}\nupstream app {{\n");
    let mut servers = 0;
    if pw > 0 {
        for p in primary {
            out.push_str(&format!("    server 127.0.0.1:{p} weight={pw};\n"));
            servers += 1;
        }
    }
    if cw > 0 {
        for p in canary {
            out.push_str(&format!("    server 127.0.0.1:{p} weight={cw};\n"));
            servers += 1;
        }
    }
    if servers == 0 {
        out.push_str("    server 127.0.0.1:9 down;\n");
    }
    out.push_str("    keepalive 16;\n}\n");
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The weight recorded in an upstream file serin wrote.
pub fn parse_weight(upstream: &str) -> Option<i32> {
    upstream
        .lines()
        .find_map(|l| l.strip_prefix(WEIGHT_HEADER))
        .and_then(|v| v.trim().parse().ok())
}

/// How serin reaches a running nginx: its binary, prefix and config.
#[derive(Clone, Debug)]
pub struct NginxControl {
    pub binary: PathBuf,
    pub dir: PathBuf,
}

impl NginxControl {
    pub fn conf(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }
    pub fn upstream_file(&self) -> PathBuf {
        self.dir.join("upstream.conf")
    }

    /// The canary weight in the upstream file serin last wrote; `None` before any.
    pub fn observed_weight(&self) -> Result<Option<i32>, LocalError> {
        match std::fs::read_to_string(self.upstream_file()) {
            Ok(text) => Ok(parse_weight(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LocalError::io(&self.upstream_file(), e)),
        }
    }

    /// Write the upstream and make nginx load it (graceful: old workers finish).
    pub async fn apply(
        &self,
        weight: i32,
        primary: &[u16],
        canary: &[u16],
    ) -> Result<(), LocalError> {
        let text = render_upstream(weight, primary, canary);
        if std::fs::read_to_string(self.upstream_file())
            .ok()
            .as_deref()
            == Some(text.as_str())
        {
            return Ok(());
        }
        atomic_write(&self.upstream_file(), text.as_bytes())?;
        self.signal("reload").await
    }

    async fn signal(&self, what: &str) -> Result<(), LocalError> {
        let out = tokio::process::Command::new(&self.binary)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.conf())
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .args(["-s", what])
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), out)
            .await
            .map_err(|_| LocalError::Proxy(format!("nginx -s {what} timed out")))?
            .map_err(|e| LocalError::Spawn {
                program: self.binary.display().to_string(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LocalError::Proxy(format!(
                "nginx -s {what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// The main config: loopback listener, every path under `dir`, upstream included.
pub fn render_main_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/upstream.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
        }}
    }}
}}
"#
    )
}

/// An nginx the harness owns: started in the foreground, stopped on drop.
pub struct NginxServer {
    pub control: NginxControl,
    pub port: u16,
    guard: GroupGuard,
}

impl NginxServer {
    pub async fn start(binary: &Path, dir: &Path) -> Result<Self, LocalError> {
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| LocalError::io(dir, e))?;
        let port = free_port()?;
        let control = NginxControl {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        atomic_write(&control.conf(), render_main_conf(dir, port).as_bytes())?;
        atomic_write(
            &control.upstream_file(),
            render_upstream(0, &[], &[])
                .replace(WEIGHT_HEADER, "# no weight yet: ")
                .as_bytes(),
        )?;
        let log = dir.join("nginx.out");
        let args: Vec<String> = vec![
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            control.conf().display().to_string(),
            "-e".into(),
            dir.join("error.log").display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ];
        let child = spawn_group(binary, &args, &[], &log)?;
        let mut guard = GroupGuard::new("nginx", child, log);
        let up = wait_until(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        if !up || !guard.running() {
            let tail = super::procs::log_tail(&dir.join("error.log"), 10);
            return Err(LocalError::Proxy(format!(
                "nginx did not start on 127.0.0.1:{port}: {} {tail}",
                guard.log_tail()
            )));
        }
        Ok(Self {
            control,
            port,
            guard,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(text: &str) -> Vec<(u16, u64)> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))
            .filter(|l| !l.contains("down"))
            .map(|l| {
                let (port, w) = l.trim_end_matches(';').split_once(" weight=").unwrap();
                (port.parse().unwrap(), w.parse().unwrap())
            })
            .collect()
    }

    fn share(ws: &[(u16, u64)], canary: &[u16]) -> f64 {
        let total: u64 = ws.iter().map(|(_, w)| w).sum();
        let c: u64 = ws
            .iter()
            .filter(|(p, _)| canary.contains(p))
            .map(|(_, w)| w)
            .sum();
        c as f64 / total as f64
    }

    #[test]
    fn canary_share_equals_the_weight_for_any_group_sizes() {
        for (np, nc) in [(1, 1), (2, 1), (3, 2), (2, 5)] {
            let primary: Vec<u16> = (0..np).map(|i| 1000 + i).collect();
            let canary: Vec<u16> = (0..nc).map(|i| 2000 + i).collect();
            for w in [1, 10, 20, 33, 50, 99] {
                let text = render_upstream(w, &primary, &canary);
                let got = share(&weights(&text), &canary);
                assert!(
                    (got - w as f64 / 100.0).abs() < 1e-9,
                    "{np} {nc} {w}: {got}"
                );
                assert_eq!(parse_weight(&text), Some(w));
            }
        }
    }

    #[test]
    fn zero_and_full_weights_remove_a_group() {
        let text = render_upstream(0, &[1], &[2]);
        assert_eq!(weights(&text), vec![(1, 1)]);
        let text = render_upstream(100, &[1], &[2]);
        assert_eq!(weights(&text), vec![(2, 1)]);
        // A weight for a canary that has no instances keeps everything on the primary.
        let text = render_upstream(30, &[1], &[]);
        assert_eq!(weights(&text), vec![(1, 1)]);
        assert_eq!(parse_weight(&text), Some(30));
        let text = render_upstream(0, &[], &[]);
        assert!(text.contains("down;"));
        assert_eq!(parse_weight("upstream app {}"), None);
    }
}
