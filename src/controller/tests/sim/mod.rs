//! A deterministic, seeded fault simulation of the real release code: the Kubernetes
//! backend and the routers (Service, Istio) against the stateful fake API server, two
//! controller replicas behind a lease, a scripted Prometheus, and a schedule per seed
//! that injects, between any two API calls, crashes, conflicts, 5xx, timeouts, 403s,
//! lost responses and a lease takeover, and between reconciles the user's commands and
//! the environment's failures. The invariants in [`check::INVARIANTS`] are checked
//! after every step and once the schedule has gone quiet.
//!
//! A failing seed is shrunk to a minimal schedule (ops removed one by one while it
//! still fails) and printed with its trace; add it to [`REGRESSION_SEEDS`].

mod check;
mod faults;
mod schedule;
mod world;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use self::schedule::{Schedule, STEPS};
use self::world::World;

/// Seeds that once failed; each stays a test.
const REGRESSION_SEEDS: &[u64] = &[
    // Hand-back with the primary deleted during a promotion: the promoted spec, not
    // the old stable one; before initialization: the user's own spec.
    2469, 4545, 5982,
];

/// Schedules per `cargo test` run (`SERIN_SIM_SCHEDULES` overrides, e.g. for a soak).
const SCHEDULES: u64 = 10_000;

/// Reconciles the quiet phase may take to converge.
const QUIET_RECONCILES: u32 = 80;

#[derive(Default)]
struct Totals {
    schedules: AtomicU64,
    reconciles: AtomicU64,
    faults: AtomicU64,
    user_events: AtomicU64,
}

fn mix(seed: u64, step: u32) -> u64 {
    schedule::Rng::new(seed.wrapping_mul(31).wrapping_add(u64::from(step))).next()
}

/// Run one schedule; on failure the message and the world as it was.
async fn run(schedule: &Schedule) -> Result<World, (String, World)> {
    let mut w = World::new(schedule);
    for step in 0..schedule.steps {
        let events: Vec<_> = schedule.user_events(step).collect();
        for e in events {
            w.trace.push(format!("step {step:>2}: {e:?}"));
            w.user(e).await;
        }
        let dice = mix(schedule.seed, step);
        if schedule.setup.manual_rollouts && dice.is_multiple_of(3) {
            // Rollouts finish a while after they start.
            w.server.settle();
        }
        w.advance(5 + ((dice >> 8) % 40) as i64);
        w.reconcile(step).await;
        if let Err(e) = check::step(&w) {
            return Err((format!("after step {step}: {e}"), w));
        }
        if w.canary().is_none() {
            break;
        }
    }
    quiesce(w).await
}

/// Stop every fault, undo the environment's failures, answer any gate, and let the
/// controller converge; then the world must agree with the status.
async fn quiesce(mut w: World) -> Result<World, (String, World)> {
    {
        let mut s = w.shared.lock().unwrap();
        s.active = false;
        s.prometheus_down = false;
    }
    w.server.set_rbac(None);
    w.server.set_resource_available("virtualservices", true);
    w.server.set_resource_available("destinationrules", true);
    if w.get("analysistemplates", "error-rate").is_none() {
        w.server.insert(world::template());
    }
    w.edit("canaries", "podinfo", |c| {
        c["spec"]["suspend"] = false.into()
    });
    w.trace
        .push("quiet: faults off, environment restored".into());
    let mut settled = 0;
    for i in 0..QUIET_RECONCILES {
        w.server.settle();
        w.approve().await;
        w.advance(20);
        w.reconcile(STEPS + i).await;
        if let Err(e) = check::step(&w) {
            return Err((format!("while quiet: {e}"), w));
        }
        if w.canary().is_none() || check::quiet(&w).is_ok() {
            settled += 1;
            if settled >= 2 {
                break;
            }
        } else {
            settled = 0;
        }
    }
    w.server.settle();
    match check::quiet(&w) {
        Ok(()) => Ok(w),
        Err(e) => Err((format!("after {QUIET_RECONCILES} quiet reconciles: {e}"), w)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Remove ops one at a time while the schedule still fails: a 1-minimal schedule.
fn shrink(rt: &tokio::runtime::Runtime, mut s: Schedule) -> (Schedule, String, Vec<String>) {
    let (mut why, mut trace) = match rt.block_on(run(&s)) {
        Err((why, w)) => (why, w.trace),
        Ok(_) => return (s, "passed on replay (not deterministic)".into(), vec![]),
    };
    let mut i = s.ops.len();
    while i > 0 {
        i -= 1;
        let smaller = s.without(i);
        if let Err((w2, world)) = rt.block_on(run(&smaller)) {
            s = smaller;
            why = w2;
            trace = world.trace;
        }
    }
    (s, why, trace)
}

fn report(rt: &tokio::runtime::Runtime, seed: u64) -> String {
    let (s, why, trace) = shrink(rt, Schedule::draw(seed));
    let mut out = format!(
        "seed {seed} fails: {why}\nsetup: {:?}\nminimal schedule ({} ops):\n",
        s.setup,
        s.ops.len()
    );
    for op in &s.ops {
        out.push_str(&format!("  {op}\n"));
    }
    out.push_str("trace:\n");
    for line in trace {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!(
        "add {seed} to REGRESSION_SEEDS in src/controller/tests/sim/mod.rs\n"
    ));
    out
}

fn schedules_to_run() -> u64 {
    std::env::var("SERIN_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SCHEDULES)
}

#[test]
fn fault_simulation_keeps_every_invariant() {
    let n = schedules_to_run();
    let threads = std::thread::available_parallelism()
        .map_or(2, |p| p.get())
        .clamp(1, 4) as u64;
    let totals = Arc::new(Totals::default());
    let started = std::time::Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let totals = totals.clone();
                scope.spawn(move || {
                    let rt = runtime();
                    let mut failed = Vec::new();
                    for seed in (t..n).step_by(threads as usize) {
                        let s = Schedule::draw(seed);
                        match rt.block_on(run(&s)) {
                            Ok(w) => {
                                totals
                                    .reconciles
                                    .fetch_add(u64::from(w.reconciles), Ordering::Relaxed);
                            }
                            Err(_) => {
                                failed.push(report(&rt, seed));
                                if failed.len() >= 3 {
                                    break;
                                }
                            }
                        }
                        let faults = s
                            .ops
                            .iter()
                            .filter(|o| matches!(o, schedule::Op::Fault { .. }))
                            .count();
                        totals.faults.fetch_add(faults as u64, Ordering::Relaxed);
                        totals
                            .user_events
                            .fetch_add((s.ops.len() - faults) as u64, Ordering::Relaxed);
                        totals.schedules.fetch_add(1, Ordering::Relaxed);
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    });
    println!(
        "fault simulation: {} schedules, {} reconciles, {} faults injected between API calls, {} user and environment events, {:.1}s",
        totals.schedules.load(Ordering::Relaxed),
        totals.reconciles.load(Ordering::Relaxed),
        totals.faults.load(Ordering::Relaxed),
        totals.user_events.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    println!("invariants checked after every step and after quiescence:");
    for i in check::INVARIANTS {
        println!("  - {i}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(totals.schedules.load(Ordering::Relaxed) >= n.min(SCHEDULES));
}

#[test]
fn fault_simulation_regression_seeds() {
    let rt = runtime();
    for &seed in REGRESSION_SEEDS {
        if rt.block_on(run(&Schedule::draw(seed))).is_err() {
            panic!("{}", report(&rt, seed));
        }
    }
}
