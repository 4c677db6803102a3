//! Runs the judging and gating webhooks in the background: a reconcile starts a call
//! (after its status says so) and returns; a later reconcile picks up the answer. One
//! call per (namespace, Canary, hook) at a time; a new call replaces the old one.
//! Calls in flight are bounded overall, per namespace and per receiver, so neither the
//! hooks of one namespace nor one receiver that never answers (a blackholed shared
//! load tester) hold every connection.
//!
//! Nothing here survives a restart, on purpose: the status says which calls were
//! running, and the planner ([`super::hook_runs`]) starts a lost one again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::hook_runs::Polled;
use super::secret::SecretString;
use super::webhooks::{HookResult, WebhookCaller, WebhookPayload};
use crate::crd::{HookRun, WebhookSpec};
use crate::limits::KeyedLimiter;

/// Webhook calls in flight at once, overall; one namespace, or one receiver, may hold
/// half.
pub const HOOK_CALLS_IN_FLIGHT: usize = 64;

/// Finished calls waiting for their Canary's reconcile, before wake-ups are dropped (a
/// later requeue still picks the answers up).
const WAKE_QUEUE: usize = 1024;

/// The clock finished calls are stamped with (the controller's; tests pin it).
pub type HookClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

type Key = (String, String, String);

enum State {
    Running(tokio::task::AbortHandle),
    Done(HookResult, DateTime<Utc>),
}

struct Call {
    revision: String,
    passage: String,
    generation: u64,
    state: State,
}

#[derive(Default)]
struct Calls {
    by_key: HashMap<Key, Call>,
    generation: u64,
}

/// Background webhook calls, by (namespace, Canary, hook name).
pub struct HookRunner {
    caller: WebhookCaller,
    clock: HookClock,
    limiter: Arc<KeyedLimiter>,
    calls: Arc<Mutex<Calls>>,
    wake_tx: mpsc::Sender<(String, String)>,
    wake_rx: Mutex<Option<mpsc::Receiver<(String, String)>>>,
}

impl std::fmt::Debug for HookRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRunner")
            .field("calls", &self.lock().by_key.len())
            .finish()
    }
}

impl HookRunner {
    pub fn new(caller: WebhookCaller, clock: HookClock) -> Self {
        let (wake_tx, wake_rx) = mpsc::channel(WAKE_QUEUE);
        Self {
            caller,
            clock,
            limiter: Arc::new(KeyedLimiter::half_per_key(HOOK_CALLS_IN_FLIGHT)),
            calls: Arc::default(),
            wake_tx,
            wake_rx: Mutex::new(Some(wake_rx)),
        }
    }

    /// The caller, for informational hooks (event, post-rollout).
    pub fn caller(&self) -> &WebhookCaller {
        &self.caller
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (namespace, Canary) of every call that finished, for the controller to reconcile
    /// at once; `None` after the first take.
    pub fn take_wakeups(&self) -> Option<mpsc::Receiver<(String, String)>> {
        self.wake_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// What this runner knows of the call `run` records.
    pub fn poll(&self, namespace: &str, canary: &str, run: &HookRun) -> Polled {
        let calls = self.lock();
        let key = (namespace.to_string(), canary.to_string(), run.name.clone());
        match calls.by_key.get(&key) {
            Some(c) if c.revision == run.revision && c.passage == run.passage => match &c.state {
                State::Running(_) => Polled::Running,
                State::Done(result, at) => Polled::Finished {
                    result: result.clone(),
                    at: *at,
                },
            },
            _ => Polled::Unknown,
        }
    }

    /// Start a call, replacing (and stopping) any other call of the same hook.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        namespace: &str,
        canary: &str,
        hook: WebhookSpec,
        secret: Option<SecretString>,
        payload: WebhookPayload,
        revision: &str,
        passage: &str,
    ) {
        let key: Key = (namespace.to_string(), canary.to_string(), hook.name.clone());
        let mut calls = self.lock();
        calls.generation += 1;
        let generation = calls.generation;
        let (caller, clock, limiter, shared, wake) = (
            self.caller.clone(),
            self.clock.clone(),
            self.limiter.clone(),
            self.calls.clone(),
            self.wake_tx.clone(),
        );
        let task_key = key.clone();
        let receiver = reqwest::Url::parse(&hook.url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| hook.url.clone());
        let limit_keys = [
            format!("namespace:{namespace}"),
            format!("receiver:{receiver}"),
        ];
        let task = tokio::spawn(async move {
            let result = {
                let _permit = limiter
                    .acquire(&[limit_keys[0].as_str(), limit_keys[1].as_str()])
                    .await;
                caller.call(&hook, secret.as_ref(), &payload).await
            };
            let at = clock();
            let mut calls = shared.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = calls.by_key.get_mut(&task_key) {
                if c.generation == generation {
                    c.state = State::Done(result, at);
                    // Full queue: the Canary's next requeue picks the answer up.
                    let _ = wake.try_send((task_key.0.clone(), task_key.1.clone()));
                }
            }
        });
        let call = Call {
            revision: revision.to_string(),
            passage: passage.to_string(),
            generation,
            state: State::Running(task.abort_handle()),
        };
        if let Some(old) = calls.by_key.insert(key, call) {
            if let State::Running(h) = old.state {
                h.abort();
            }
        }
    }

    /// Stop and forget every call of a Canary (deleted), or those of hooks not in
    /// `keep` (removed from its spec).
    pub fn forget(&self, namespace: &str, canary: &str, keep: &[&str]) {
        let mut calls = self.lock();
        calls.by_key.retain(|(ns, c, hook), call| {
            let drop = ns == namespace && c == canary && !keep.contains(&hook.as_str());
            if drop {
                if let State::Running(h) = &call.state {
                    h.abort();
                }
            }
            !drop
        });
    }

    /// Calls running now.
    pub fn running(&self) -> usize {
        self.lock()
            .by_key
            .values()
            .filter(|c| matches!(c.state, State::Running(_)))
            .count()
    }

    /// Calls held (running or answered).
    pub fn held(&self) -> usize {
        self.lock().by_key.len()
    }
}

impl Drop for HookRunner {
    fn drop(&mut self) {
        for call in self.lock().by_key.values() {
            if let State::Running(h) = &call.state {
                h.abort();
            }
        }
    }
}
