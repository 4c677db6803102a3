//! A small token bucket per caller (client IP before authentication, user after).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests allowed at once.
    pub burst: u32,
    /// Sustained requests per second.
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 10,
            per_second: 1.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Keyed token buckets; the map is bounded so a flood of addresses cannot grow it.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
    max_keys: usize,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
            max_keys: 10_000,
        }
    }

    /// Take one token for `key` at `now`; `Err(wait)` says how long until the next one.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.limit.per_second.max(1e-6);
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= self.max_keys && !map.contains_key(key) {
            // Buckets that have refilled carry no state worth keeping.
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if map.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(RateLimit {
            burst: 3,
            per_second: 2.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at("a", t0).is_ok());
        }
        let wait = rl.check_at("a", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Another caller has its own bucket.
        assert!(rl.check_at("b", t0).is_ok());
        // Half a second later one token is back, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert!(rl.check_at("a", t1).is_ok());
        assert!(rl.check_at("a", t1).is_err());
    }

    #[test]
    fn key_map_is_bounded() {
        let mut rl = RateLimiter::new(RateLimit {
            burst: 1,
            per_second: 0.001,
        });
        rl.max_keys = 4;
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(rl.check_at(&format!("k{i}"), t0).is_ok());
        }
        // All four are drained: a fifth key is refused rather than growing the map.
        assert!(rl.check_at("k5", t0).is_err());
        assert_eq!(rl.buckets.lock().unwrap().len(), 4);
    }
}
