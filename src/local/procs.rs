//! Local processes: free loopback ports, spawning in their own process group, liveness,
//! readiness over HTTP, and stopping whole groups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::LocalError;

/// A port nobody listens on right now (bind :0, read it, release it).
pub fn free_port() -> Result<u16, LocalError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LocalError::io(Path::new("127.0.0.1:0"), e))?;
    let port = l
        .local_addr()
        .map_err(|e| LocalError::io(Path::new("127.0.0.1:0"), e))?
        .port();
    Ok(port)
}

/// Start `program` in a process group of its own, so it outlives a crashed serin
/// (to be adopted on restart) and can be stopped with everything it spawned.
pub fn spawn_group(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<Child, LocalError> {
    use std::os::unix::process::CommandExt as _;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LocalError::io(dir, e))?;
    }
    let out = std::fs::File::create(log).map_err(|e| LocalError::io(log, e))?;
    let err = out.try_clone().map_err(|e| LocalError::io(log, e))?;
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .map_err(|e| LocalError::Spawn {
            program: program.display().to_string(),
            message: e.to_string(),
        })
}

/// The process exists and is not a zombie. Linux `/proc`; false when unknown.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}

/// SIGKILL the process group led by `pid` (our children lead their own groups).
pub fn kill_group(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        if raw > 0 {
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// Reap a killed process spawned by an earlier serin, if it became our child (a
/// subreaper inherits orphans); anyone else's child is left alone (ECHILD).
fn reap_adopted(pid: u32) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let Ok(raw) = i32::try_from(pid) else { return };
    for _ in 0..50 {
        match waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
}

/// Children this process spawned, so stopped ones are reaped instead of lingering as
/// zombies. Processes adopted after a restart are not here and are reaped by init.
#[derive(Default)]
pub struct Children {
    map: Mutex<HashMap<u32, Child>>,
}

impl Children {
    pub fn insert(&self, child: Child) -> u32 {
        let pid = child.id();
        self.lock().insert(pid, child);
        pid
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Child>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `pid` still runs (reaping it if it exited).
    pub fn alive(&self, pid: u32) -> bool {
        let mut map = self.lock();
        if let Some(c) = map.get_mut(&pid) {
            return match c.try_wait() {
                Ok(None) => true,
                _ => {
                    map.remove(&pid);
                    false
                }
            };
        }
        drop(map);
        pid_alive(pid)
    }

    /// Kill a group and reap its leader if it is ours.
    pub fn stop(&self, pid: u32) {
        kill_group(pid);
        let owned = self.lock().remove(&pid);
        match owned {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            None => reap_adopted(pid),
        }
    }

    pub fn stop_all(&self) {
        let pids: Vec<u32> = self.lock().keys().copied().collect();
        for pid in pids {
            self.stop(pid);
        }
    }
}

/// An owned child process group stopped on drop, even when a test panics.
pub struct GroupGuard {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
}

impl GroupGuard {
    pub fn new(name: &str, child: Child, log: PathBuf) -> Self {
        Self {
            child: Some(child),
            name: name.to_string(),
            log,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 20)
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Wait until `probe` answers true, polling every 100 ms, for at most `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `url` and check the status is 2xx and the body contains `needle`.
pub async fn http_ok(client: &reqwest::Client, url: &str, needle: &str) -> bool {
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => match r.text().await {
            Ok(body) => body.contains(needle),
            Err(_) => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_process() {
        let log = std::env::temp_dir().join(format!("serin-procs-{}.log", std::process::id()));
        let child = spawn_group(Path::new("sleep"), &["30".into()], &[], &log).unwrap();
        let children = Children::default();
        let pid = children.insert(child);
        assert!(children.alive(pid));
        assert!(pid_alive(pid));
        children.stop(pid);
        assert!(!children.alive(pid));
        assert!(!pid_alive(pid));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn free_ports_are_bindable() {
        let p = free_port().unwrap();
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    }
}
