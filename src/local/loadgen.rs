//! Steady real HTTP traffic at a fixed rate, bounded in time and count, counting the
//! responses per version (the `x-version` header the demo app sets).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub url: String,
    /// Requests started per second (open loop: slow answers do not slow the rate).
    pub rate_per_sec: u32,
    /// Stop after this long...
    pub duration: Duration,
    /// ...or after this many requests.
    pub max_requests: u64,
    /// Requests in flight at most; ticks beyond it are counted as `skipped`.
    pub max_in_flight: usize,
    pub timeout: Duration,
}

impl LoadOptions {
    pub fn new(url: impl Into<String>, rate_per_sec: u32, duration: Duration) -> Self {
        Self {
            url: url.into(),
            rate_per_sec,
            duration,
            max_requests: u64::from(rate_per_sec) * duration.as_secs().max(1),
            max_in_flight: 64,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Responses of one version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionCount {
    pub ok: u64,
    /// 5xx answers.
    pub errors: u64,
}

impl VersionCount {
    pub fn total(&self) -> u64 {
        self.ok + self.errors
    }
}

/// Everything the generator saw so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadCounts {
    pub by_version: BTreeMap<String, VersionCount>,
    /// Answers without a version (e.g. nginx's own 502) and transport failures.
    pub unattributed: u64,
    pub skipped: u64,
    pub sent: u64,
}

impl LoadCounts {
    pub fn served(&self, version: &str) -> u64 {
        self.by_version.get(version).map_or(0, |c| c.total())
    }

    pub fn total_served(&self) -> u64 {
        self.by_version.values().map(|c| c.total()).sum()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &LoadCounts) -> LoadCounts {
        let mut by_version = BTreeMap::new();
        for (v, c) in &self.by_version {
            let e = earlier.by_version.get(v).copied().unwrap_or_default();
            let d = VersionCount {
                ok: c.ok.saturating_sub(e.ok),
                errors: c.errors.saturating_sub(e.errors),
            };
            if d.total() > 0 {
                by_version.insert(v.clone(), d);
            }
        }
        LoadCounts {
            by_version,
            unattributed: self.unattributed.saturating_sub(earlier.unattributed),
            skipped: self.skipped.saturating_sub(earlier.skipped),
            sent: self.sent.saturating_sub(earlier.sent),
        }
    }

    /// "v1 1200 (0 errors), v2 300 (15 errors)".
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .by_version
            .iter()
            .map(|(v, c)| format!("{v} {} ({} errors)", c.total(), c.errors))
            .collect();
        if self.unattributed > 0 {
            parts.push(format!("{} failed", self.unattributed));
        }
        if parts.is_empty() {
            "nothing yet".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A running generator; stops at its bounds, on [`LoadGen::stop`], or when dropped.
pub struct LoadGen {
    counts: Arc<Mutex<LoadCounts>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl LoadGen {
    pub fn start(opts: LoadOptions) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .pool_max_idle_per_host(opts.max_in_flight)
            .build()?;
        let counts = Arc::new(Mutex::new(LoadCounts::default()));
        let (stop, mut stopped) = watch::channel(false);
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / f64::from(opts.rate_per_sec.max(1)));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let slots = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
            let end = tokio::time::Instant::now() + opts.duration;
            let mut started = 0u64;
            while started < opts.max_requests && tokio::time::Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                started += 1;
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    lock(&c).skipped += 1;
                    continue;
                };
                lock(&c).sent += 1;
                let (client, url, c) = (client.clone(), opts.url.clone(), c.clone());
                tokio::spawn(async move {
                    let answer = client.get(&url).send().await;
                    let mut counts = lock(&c);
                    match answer {
                        Ok(r) => {
                            let version = r
                                .headers()
                                .get("x-version")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            match version {
                                Some(v) => {
                                    let e = counts.by_version.entry(v).or_default();
                                    if r.status().is_server_error() {
                                        e.errors += 1;
                                    } else {
                                        e.ok += 1;
                                    }
                                }
                                None => counts.unattributed += 1,
                            }
                        }
                        Err(_) => counts.unattributed += 1,
                    }
                    drop(permit);
                });
            }
            // Let the requests in flight finish (bounded by the client timeout).
            let _ = slots.acquire_many(opts.max_in_flight.max(1) as u32).await;
        });
        Ok(Self {
            counts,
            stop,
            task: Some(task),
        })
    }

    pub fn snapshot(&self) -> LoadCounts {
        lock(&self.counts).clone()
    }

    /// Stop sending, wait for the answers in flight, return the totals.
    pub async fn stop(mut self) -> LoadCounts {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.snapshot()
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn lock(m: &Mutex<LoadCounts>) -> std::sync::MutexGuard<'_, LoadCounts> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_subtract_per_version() {
        let mut a = LoadCounts::default();
        a.by_version
            .insert("v1".into(), VersionCount { ok: 10, errors: 1 });
        let mut b = a.clone();
        b.by_version
            .insert("v1".into(), VersionCount { ok: 25, errors: 1 });
        b.by_version
            .insert("v2".into(), VersionCount { ok: 4, errors: 2 });
        b.unattributed = 3;
        let d = b.since(&a);
        assert_eq!(d.served("v1"), 15);
        assert_eq!(d.served("v2"), 6);
        assert_eq!(d.by_version["v2"].errors, 2);
        assert_eq!(d.unattributed, 3);
        assert_eq!(b.since(&b).by_version.len(), 0);
        assert_eq!(d.describe(), "v1 15 (0 errors), v2 6 (2 errors), 3 failed");
    }

    #[tokio::test]
    async fn counts_versions_from_a_loopback_server() {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", get(|| async { ([("x-version", "v7")], "hi") }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut opts = LoadOptions::new(format!("http://{addr}/"), 100, Duration::from_secs(5));
        opts.max_requests = 20;
        let lg = LoadGen::start(opts).unwrap();
        let counts = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if lg.snapshot().total_served() >= 20 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(counts.is_ok());
        let c = lg.stop().await;
        assert_eq!(c.served("v7"), 20);
        assert_eq!(c.sent, 20);
        server.abort();
    }
}
