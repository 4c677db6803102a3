//! Idle re-checks: spread over the period by name, at a stable place per Canary; the
//! requeues of a release in flight stay exact.

use std::time::Duration as StdDuration;

use super::*;

const PERIOD_MS: i64 = 300_000;
const BUCKET_MS: i64 = 30_000;

fn at_ms(ms: i64) -> DateTime<Utc> {
    at(0) + Duration::milliseconds(ms)
}

fn idle_world(ns: &str, name: &str) -> Observation {
    Observation {
        recheck: Recheck::for_canary(ns, name),
        ..world("r1")
    }
}

/// Where the first idle re-checks of 1,000 Canaries land, in 30 s buckets after a
/// start at t=0 that reconciled them all within its first 30 s.
fn first_rechecks(spread: bool) -> Vec<usize> {
    let mut buckets = vec![0usize; 12];
    for i in 0..1000i64 {
        let (ns, name) = (format!("team-{}", i % 37), format!("app-{i}"));
        let mut obs = idle_world(&ns, &name);
        if !spread {
            obs.recheck = Recheck::default();
        }
        let phase = if i % 2 == 0 {
            P::Initialized
        } else {
            P::Succeeded
        };
        let now = at_ms(i * 30);
        let d = transition(&idle(phase), &plan(), &obs, now);
        assert!(d.actions.is_empty(), "idle: {:?}", d.actions);
        let lands =
            (now - at(0)).num_milliseconds() + i64::try_from(d.requeue_after.as_millis()).unwrap();
        let b = usize::try_from(lands / BUCKET_MS).unwrap();
        buckets[b.min(11)] += 1;
    }
    buckets
}

#[test]
fn a_thousand_idle_canaries_started_together_recheck_spread_over_the_period() {
    let spread = first_rechecks(true);
    eprintln!("first idle re-checks per 30 s after a start, spread:   {spread:?}");
    let even = 1000 / (PERIOD_MS / BUCKET_MS) as usize;
    assert!(
        spread.iter().all(|&n| n <= 3 * even),
        "no 30 s holds more than 3x its even share ({even}): {spread:?}"
    );
    // Every bucket of the period gets some (none later than one period plus the start).
    assert!(spread[..10].iter().all(|&n| n > 0), "{spread:?}");
    assert_eq!(spread[11], 0, "{spread:?}");
    // Unspread (the fixed 300 s this replaces) they came back together.
    let fixed = first_rechecks(false);
    eprintln!("first idle re-checks per 30 s after a start, unspread: {fixed:?}");
    assert_eq!(fixed.iter().max(), Some(&1000), "{fixed:?}");
}

#[test]
fn one_canary_rechecks_at_the_same_place_every_period() {
    let obs = idle_world("shop", "checkout");
    let offset_ms = i64::try_from(obs.recheck.offset.as_millis()).unwrap();
    let mut status = idle(P::Succeeded);
    let mut now = at_ms(1_234);
    let mut lands = Vec::new();
    for k in 0..12i64 {
        let d = transition(&status, &plan(), &obs, now);
        status = d.status;
        let landing = now + Duration::from_std(d.requeue_after).unwrap();
        lands.push(landing);
        // The reconcile starts a little late (queueing, a slow API server), and
        // sometimes an event wakes the Canary in between: neither moves its place.
        if k % 3 == 1 {
            let woken = now + Duration::seconds(97);
            let d = transition(&status, &plan(), &obs, woken);
            assert_eq!(
                woken + Duration::from_std(d.requeue_after).unwrap(),
                landing
            );
        }
        now = landing + Duration::milliseconds((k * 700) % 2_500);
    }
    for l in &lands {
        let since_epoch = l.timestamp_millis();
        assert_eq!((since_epoch - offset_ms).rem_euclid(PERIOD_MS), 0, "{l}");
    }
    for pair in lands.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::milliseconds(PERIOD_MS));
    }
}

#[test]
fn a_recheck_just_due_takes_the_next_place_not_a_second_reconcile() {
    let r = Recheck::for_canary("shop", "checkout");
    let offset = i64::try_from(r.offset.as_millis()).unwrap();
    // 1.8e9 s is a multiple of the period: the place is `offset` into it.
    let place = at_ms(offset);
    assert_eq!(r.after(place), IDLE_RECHECK);
    // A clock a few milliseconds behind the timer that woke it.
    assert_eq!(
        r.after(place - Duration::milliseconds(5)),
        IDLE_RECHECK + StdDuration::from_millis(5)
    );
    assert_eq!(
        r.after(place + Duration::seconds(10)),
        IDLE_RECHECK - StdDuration::from_secs(10)
    );
}

#[test]
fn requeues_of_a_release_in_flight_and_due_scale_downs_stay_exact() {
    let spread = |o: Observation| Observation {
        recheck: Recheck::for_canary("shop", "checkout"),
        ..o
    };
    // A check due 60 s after the step started, asked 15 s in.
    let d = transition(&progressing(1, 0), &plan(), &releasing(10), at(15));
    let s = transition(&progressing(1, 0), &plan(), &spread(releasing(10)), at(15));
    assert_eq!(d.requeue_after, StdDuration::from_secs(45));
    assert_eq!(s.requeue_after, d.requeue_after);
    // A succeeded Canary whose pods go in 20 s wakes then, not at its place.
    let status = CanaryStatus {
        scale_down_at: Some(at(20)),
        ..idle(P::Succeeded)
    };
    let obs = spread(Observation {
        canary_replicas: 3,
        ..world("r1")
    });
    assert!(obs.recheck.after(at(0)) > StdDuration::from_secs(20));
    let d = transition(&status, &plan(), &obs, at(0));
    assert_eq!(d.requeue_after, StdDuration::from_secs(20));
}
