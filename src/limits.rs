//! Bounds shared by every reconcile, so one namespace cannot take what all need:
//! [`KeyedLimiter`] (wait for a permit: Prometheus queries, webhook calls),
//! [`KeyedLocks`] (one Canary reconcile at a time across the routine and the people's
//! controller) and [`NamespaceSlots`] (take a reconcile slot now or come back later).
//!
//! Both count per key (the namespace) under a global bound: a key holds at most its
//! share, so a namespace full of slow Canaries leaves room for the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// At most `global` permits in flight, and at most `per_key` of them for any one key.
/// A permit may name several keys (a query names its namespace and its Prometheus):
/// it needs room under each. Waiters are served in order (tokio's semaphore is fair);
/// keys are taken first, in the order given, the global permit last, so a busy key
/// never holds global permits while it waits. Every caller passes its keys in the same
/// order of kinds (namespace, then provider), so no two waiters can hold what the
/// other waits for.
#[derive(Debug)]
pub struct KeyedLimiter {
    global: Arc<Semaphore>,
    global_size: usize,
    per_key: usize,
    keys: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// One permit of a [`KeyedLimiter`]; released on drop.
#[derive(Debug)]
pub struct KeyedPermit {
    held: Vec<(String, OwnedSemaphorePermit)>,
    global: Option<OwnedSemaphorePermit>,
    keys: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    per_key: usize,
}

impl KeyedLimiter {
    /// `global` permits (at least 1), `per_key` of them at most for one key (clamped to
    /// 1..=global).
    pub fn new(global: usize, per_key: usize) -> Self {
        let global = global.max(1);
        Self {
            global: Arc::new(Semaphore::new(global)),
            global_size: global,
            per_key: per_key.clamp(1, global),
            keys: Arc::default(),
        }
    }

    /// A key may hold half of the permits (at least one).
    pub fn half_per_key(global: usize) -> Self {
        Self::new(global, global.max(1).div_ceil(2))
    }

    pub fn global_size(&self) -> usize {
        self.global_size
    }

    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// Permits in use now, overall.
    pub fn in_flight(&self) -> usize {
        self.global_size - self.global.available_permits()
    }

    /// Wait for a permit with room under every key of `keys`. Cancel-safe: dropping
    /// the future gives back whatever it took.
    pub async fn acquire(&self, keys: &[&str]) -> KeyedPermit {
        let mut permit = KeyedPermit {
            held: Vec::with_capacity(keys.len()),
            global: None,
            keys: self.keys.clone(),
            per_key: self.per_key,
        };
        for key in keys {
            let sem = {
                let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(key.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_key)))
                    .clone()
            };
            // Never closed: acquire_owned only fails on a closed semaphore.
            if let Ok(p) = sem.acquire_owned().await {
                permit.held.push((key.to_string(), p));
            }
        }
        permit.global = self.global.clone().acquire_owned().await.ok();
        permit
    }
}

impl Drop for KeyedPermit {
    fn drop(&mut self) {
        self.global.take();
        let held: Vec<String> = self.held.drain(..).map(|(k, _)| k).collect();
        // Forget a key's semaphore once nobody holds or waits for it.
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in held {
            if let Some(sem) = keys.get(&key) {
                if Arc::strong_count(sem) == 1 && sem.available_permits() == self.per_key {
                    keys.remove(&key);
                }
            }
        }
    }
}

/// Which of the two Canary controllers runs a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Analyses, steps, re-checks: `--reconcile-concurrency` slots, in the order they
    /// came due.
    Routine,
    /// The Canary holds a person's input to act on (an approval, an abort, a retry): a
    /// few slots of their own, so a person does not wait behind routine work
    /// (kube-runtime's scheduler has no priorities).
    PersonWaiting,
}

impl Lane {
    /// Slots kept for [`Lane::PersonWaiting`] beside `routine` ones: one eighth, at
    /// least one.
    pub fn people_slots(routine: u16) -> u16 {
        (routine / 8).max(1)
    }
}

/// One async lock per key, so that the two Canary controllers never reconcile the same
/// Canary at once. A key's lock is forgotten once nobody holds or waits for it.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held [`KeyedLocks`] lock; released (and forgotten when idle) on drop.
#[derive(Debug)]
pub struct KeyedGuard<'a> {
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: &'a KeyedLocks,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.to_string()).or_default().clone()
        };
        KeyedGuard {
            key: key.to_string(),
            guard: Some(lock.lock_owned().await),
            locks: self,
        }
    }

    /// Keys with a holder or a waiter.
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

/// Reconcile slots per namespace: [`NamespaceSlots::try_enter`] never waits, so a
/// Canary whose namespace is at its limit gives its global slot back at once. It is
/// remembered, and the first one put off in a namespace is handed to
/// [`NamespaceSlots::take_wakeups`] as soon as a slot there frees (an approval in a
/// busy namespace is acted on when a slot frees, not after a fixed retry).
#[derive(Debug)]
pub struct NamespaceSlots {
    per_namespace: usize,
    state: Arc<Mutex<SlotState>>,
    wakeups: Mutex<Option<mpsc::Receiver<(String, String)>>>,
}

#[derive(Debug)]
struct SlotState {
    busy: HashMap<String, usize>,
    /// Names put off, per namespace, first first; each at most once.
    deferred: HashMap<String, VecDeque<String>>,
    wake: mpsc::Sender<(String, String)>,
}

/// Wake-ups not yet taken by the controller; past this, the put-off retry covers.
const WAKEUPS_BUFFERED: usize = 1024;

/// A taken slot; freed on drop.
#[derive(Debug)]
pub struct SlotGuard {
    namespace: String,
    state: Arc<Mutex<SlotState>>,
}

impl NamespaceSlots {
    pub fn new(per_namespace: usize) -> Self {
        let (wake, wakeups) = mpsc::channel(WAKEUPS_BUFFERED);
        Self {
            per_namespace: per_namespace.max(1),
            state: Arc::new(Mutex::new(SlotState {
                busy: HashMap::new(),
                deferred: HashMap::new(),
                wake,
            })),
            wakeups: Mutex::new(Some(wakeups)),
        }
    }

    pub fn per_namespace(&self) -> usize {
        self.per_namespace
    }

    /// A slot in `namespace` for `name`, or `None` when the namespace already runs its
    /// limit (then `name` is woken when a slot there frees).
    pub fn try_enter(&self, namespace: &str, name: &str) -> Option<SlotGuard> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = state.busy.entry(namespace.to_string()).or_default();
        if *n >= self.per_namespace {
            let waiting = state.deferred.entry(namespace.to_string()).or_default();
            if !waiting.iter().any(|w| w == name) {
                waiting.push_back(name.to_string());
            }
            return None;
        }
        *n += 1;
        Some(SlotGuard {
            namespace: namespace.to_string(),
            state: self.state.clone(),
        })
    }

    /// Slots taken in `namespace` now.
    pub fn busy(&self, namespace: &str) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.busy.get(namespace).copied().unwrap_or(0)
    }

    /// The (namespace, name) of each put-off reconcile whose namespace freed a slot;
    /// the first call only.
    pub fn take_wakeups(&self) -> Option<mpsc::Receiver<(String, String)>> {
        self.wakeups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = state.busy.get_mut(&self.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.busy.remove(&self.namespace);
            }
        }
        let Some(waiting) = state.deferred.get_mut(&self.namespace) else {
            return;
        };
        let next = waiting.pop_front();
        if waiting.is_empty() {
            state.deferred.remove(&self.namespace);
        }
        if let Some(name) = next {
            // Buffer full, or no receiver: the fallback retry still comes.
            let _ = state.wake.try_send((self.namespace.clone(), name));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_locked_once_others_pass_and_idle_keys_are_forgotten() {
        let locks = Arc::new(KeyedLocks::default());
        let held = locks.lock("shop/podinfo").await;
        let waiting = {
            let l = locks.clone();
            tokio::spawn(async move {
                let _g = l.lock("shop/podinfo").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "the same Canary waits");
        let other = tokio::time::timeout(Duration::from_millis(1), locks.lock("shop/api"))
            .await
            .expect("another Canary does not");
        drop(other);
        assert_eq!(locks.len(), 1);
        drop(held);
        tokio::time::timeout(Duration::from_millis(1), waiting)
            .await
            .expect("served once released")
            .unwrap();
        assert!(locks.is_empty(), "idle keys are forgotten");
        assert_eq!((Lane::people_slots(16), Lane::people_slots(3)), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_holds_at_most_its_share_and_others_pass_it() {
        let l = Arc::new(KeyedLimiter::new(4, 2));
        let mut held = vec![];
        for _ in 0..2 {
            held.push(l.acquire(&["noisy"]).await);
        }
        // A third permit for the busy key waits, without taking a global one.
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&["noisy"]).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        assert_eq!(l.in_flight(), 2);
        // Another key gets the remaining two at once.
        let a = tokio::time::timeout(Duration::from_millis(1), l.acquire(&["shop"]))
            .await
            .expect("not blocked by the busy key");
        let b = tokio::time::timeout(Duration::from_millis(1), l.acquire(&["blog"]))
            .await
            .expect("not blocked by the busy key");
        assert_eq!(l.in_flight(), 4);
        drop(held.pop());
        let third = tokio::time::timeout(Duration::from_millis(1), waiting)
            .await
            .expect("served once its key has room")
            .unwrap();
        drop((a, b, third, held));
        assert_eq!(l.in_flight(), 0);
        assert!(l.keys.lock().unwrap().is_empty(), "idle keys are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_bound_holds_across_keys() {
        let l = Arc::new(KeyedLimiter::half_per_key(3));
        assert_eq!((l.global_size(), l.per_key()), (3, 2));
        let p: Vec<KeyedPermit> = futures::future::join_all(["a", "b", "c"].into_iter().map(|k| {
            let l = l.clone();
            async move { l.acquire(&[k]).await }
        }))
        .await;
        assert!(
            tokio::time::timeout(Duration::from_secs(60), l.acquire(&["d"]))
                .await
                .is_err(),
            "a fourth waits while three are out"
        );
        drop(p);
        let _d = l.acquire(&["d"]).await;
        assert_eq!(l.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_needs_room_under_each_of_its_keys() {
        // Namespaces and Prometheus servers each hold at most 2 of 4.
        let l = KeyedLimiter::new(4, 2);
        let _a = l.acquire(&["ns:a", "prom:dead"]).await;
        let _b = l.acquire(&["ns:b", "prom:dead"]).await;
        // A third namespace querying the dead server waits, though its namespace is idle.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), l.acquire(&["ns:c", "prom:dead"]))
                .await
                .is_err()
        );
        // The same namespace on a healthy server passes at once.
        let _c = tokio::time::timeout(Duration::from_millis(1), l.acquire(&["ns:c", "prom:ok"]))
            .await
            .expect("a dead server holds only its share");
        assert_eq!(l.in_flight(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_nothing_back_it_did_not_take() {
        let l = KeyedLimiter::new(1, 1);
        let held = l.acquire(&["x"]).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(5), l.acquire(&["x"]))
                .await
                .is_err()
        );
        drop(held);
        assert_eq!(l.in_flight(), 0);
        let _again = l.acquire(&["x"]).await;
        assert_eq!(l.in_flight(), 1);
    }

    #[test]
    fn namespace_slots_refuse_past_the_limit_and_free_on_drop() {
        let s = NamespaceSlots::new(2);
        let a = s.try_enter("noisy", "a").unwrap();
        let _b = s.try_enter("noisy", "b").unwrap();
        assert!(s.try_enter("noisy", "c").is_none());
        assert!(
            s.try_enter("shop", "d").is_some(),
            "other namespaces unaffected"
        );
        drop(a);
        assert_eq!(s.busy("noisy"), 1);
        assert!(s.try_enter("noisy", "c").is_some());
        assert_eq!(NamespaceSlots::new(0).per_namespace(), 1);
    }

    #[test]
    fn a_freed_slot_wakes_the_first_put_off_in_its_namespace_once() {
        let s = NamespaceSlots::new(1);
        let mut wakeups = s.take_wakeups().expect("first call");
        assert!(s.take_wakeups().is_none(), "handed out once");
        let busy = s.try_enter("noisy", "a").unwrap();
        assert!(s.try_enter("noisy", "b").is_none());
        assert!(s.try_enter("noisy", "c").is_none());
        // Put off twice, queued once.
        assert!(s.try_enter("noisy", "b").is_none());
        let other = s.try_enter("shop", "x").unwrap();
        drop(other);
        assert!(wakeups.try_recv().is_err(), "nobody waits in shop");
        drop(busy);
        assert_eq!(wakeups.try_recv().ok(), Some(("noisy".into(), "b".into())));
        assert!(wakeups.try_recv().is_err(), "one slot freed, one woken");
        // b takes the slot; when it is done, c is next; then nobody.
        let b = s.try_enter("noisy", "b").unwrap();
        drop(b);
        assert_eq!(wakeups.try_recv().ok(), Some(("noisy".into(), "c".into())));
        let c = s.try_enter("noisy", "c").unwrap();
        drop(c);
        assert!(wakeups.try_recv().is_err());
    }
}
