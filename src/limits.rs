//! Bounds shared by every reconcile, so one namespace cannot take what all need:
//! [`KeyedLimiter`] (wait for a permit: Prometheus queries, webhook calls),
//! [`ReconcileLanes`] (the global bound on Canary reconciles, with room kept for those
//! a person waits on) and [`NamespaceSlots`] (take a reconcile slot now or come back
//! later).
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

/// Which lane of [`ReconcileLanes`] a Canary reconcile waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Analyses, steps, re-checks: served in the order they asked.
    Routine,
    /// The Canary holds a person's input to act on (an approval, an abort, a retry).
    PersonWaiting,
}

/// The global bound on Canary reconciles, in two lanes. kube-runtime's scheduler has no
/// priorities: behind a burst of analyses that all came due at once, an approval would
/// wait for every one of them. So `routine` slots serve reconciles in the order they
/// asked, and a few slots more are kept for Canaries where a person waits.
#[derive(Debug)]
pub struct ReconcileLanes {
    routine: Arc<Semaphore>,
    people: Arc<Semaphore>,
    people_size: usize,
}

/// A slot in one of the lanes; freed on drop.
#[derive(Debug)]
pub struct LaneSlot {
    _permit: OwnedSemaphorePermit,
    pub lane: Lane,
}

impl ReconcileLanes {
    /// `routine` slots (at least 1), and one eighth as many (at least 1) kept for
    /// Canaries a person waits on.
    pub fn new(routine: usize) -> Self {
        let routine = routine.max(1);
        let people_size = (routine / 8).max(1);
        Self {
            routine: Arc::new(Semaphore::new(routine)),
            people: Arc::new(Semaphore::new(people_size)),
            people_size,
        }
    }

    pub fn people_size(&self) -> usize {
        self.people_size
    }

    /// Wait for a slot. A reconcile a person waits on takes a routine slot when one is
    /// free at once, else waits in its own lane, never behind routine work. Cancel-safe;
    /// `None` only if a semaphore were closed, which none is.
    pub async fn enter(&self, lane: Lane) -> Option<LaneSlot> {
        let permit = match lane {
            Lane::Routine => self.routine.clone().acquire_owned().await.ok()?,
            Lane::PersonWaiting => match self.routine.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => self.people.clone().acquire_owned().await.ok()?,
            },
        };
        Some(LaneSlot {
            _permit: permit,
            lane,
        })
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
    async fn a_person_waiting_passes_a_queue_of_routine_reconciles() {
        let lanes = Arc::new(ReconcileLanes::new(16));
        assert_eq!(lanes.people_size(), 2);
        let mut running = vec![];
        for _ in 0..16 {
            running.push(lanes.enter(Lane::Routine).await.expect("open"));
        }
        // A queue of routine reconciles behind the full lane.
        let queued: Vec<_> = (0..100)
            .map(|_| {
                let l = lanes.clone();
                tokio::spawn(async move { l.enter(Lane::Routine).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(queued.iter().all(|q| !q.is_finished()));
        // Two people's reconciles go at once, in their own lane; a third waits for one.
        let a = tokio::time::timeout(Duration::from_millis(1), lanes.enter(Lane::PersonWaiting))
            .await
            .expect("not behind the queue")
            .expect("open");
        let b = lanes.enter(Lane::PersonWaiting).await.expect("open");
        assert_eq!((a.lane, b.lane), (Lane::PersonWaiting, Lane::PersonWaiting));
        let third = {
            let l = lanes.clone();
            tokio::spawn(async move { l.enter(Lane::PersonWaiting).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!third.is_finished(), "the people's lane is bounded too");
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(1), third)
            .await
            .expect("served when a person's slot frees")
            .unwrap();
        assert!(c.is_some());
        // A freed routine slot goes to the head of the routine queue, in order.
        drop(running.pop());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(queued.iter().filter(|q| q.is_finished()).count(), 1);
        assert!(queued[0].is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_person_waiting_takes_a_free_routine_slot_first() {
        let lanes = ReconcileLanes::new(3);
        assert_eq!(lanes.people_size(), 1);
        let _p1 = lanes.enter(Lane::PersonWaiting).await.expect("open");
        let _p2 = tokio::time::timeout(Duration::from_millis(1), lanes.enter(Lane::PersonWaiting))
            .await
            .expect("a free routine slot serves a person too")
            .expect("open");
        assert_eq!(lanes.routine.available_permits(), 1);
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
