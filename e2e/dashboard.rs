//! The dashboard in a real browser: `serin demo` as a newcomer runs it, with a gate
//! before promotion, and Debian's chromium driven by Playwright (e2e/dashboard/walk.mjs)
//! through the list, the release page's charts of real Prometheus data, and the
//! approval. Screenshots are kept in `target/tmp/dashboard-screenshots`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{scratch, SERIAL};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The demo process; interrupted (so it stops its nginx and Prometheus) when dropped.
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser_test_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/dashboard"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_in_the_browser_moves_the_demo_release_on() {
    let _serial = SERIAL.lock().await;
    let dir = browser_test_dir();
    // What CI installs (.ci/run): a missing part fails here, saying what to install.
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: apt-get install chromium (see .ci/run)"
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core missing: npm ci --prefix {} (see .ci/run)",
        dir.display()
    );
    let work = scratch("dashboard");
    let mut child = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args([
            "demo",
            "--dashboard-addr",
            "127.0.0.1:0",
            "--approve-before-promotion",
        ])
        .args(["--interval", "5s", "--dir"])
        .arg(&work)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start serin demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo { child };
    // The demo's output, line by line, for the URL and for the failure message.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no dashboard URL from serin demo:\n{}", log.join("\n")));
        log.push(line.clone());
        if let Some(at) = line.find("dashboard  http://") {
            let rest = &line[at + "dashboard  ".len()..];
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let walk = tokio::process::Command::new("node")
        .arg(dir.join("walk.mjs"))
        .arg(&url)
        .arg(&artifacts)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(420), walk)
        .await
        .expect("the browser walk ended within 7 minutes")
        .expect("run node");
    drop(demo);
    log.extend(rx.try_iter());
    let said = format!(
        "browser:\n{}{}\ndemo:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log.join("\n")
    );
    assert!(out.status.success(), "{said}");
    for shot in [
        "1-list",
        "3-release-waiting",
        "4-confirm",
        "5-release-promoted",
        "6-release-phone",
    ] {
        let png = artifacts.join(format!("{shot}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "{} missing or empty\n{said}", png.display());
    }
}
