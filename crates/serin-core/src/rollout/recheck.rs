//! When an idle Canary looks at its world again. A fixed delay made every idle Canary
//! re-check in the same few seconds after a restart (they are all reconciled at start),
//! and again every period after: thousands of requests in a burst. Each Canary instead
//! re-checks at its own place in the period, derived from its name, so idle load is
//! spread evenly and stays spread.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Default period of the idle re-check.
pub const IDLE_RECHECK: Duration = Duration::from_secs(300);

/// A re-check closer than this would be the one just done (clocks disagree by a few
/// milliseconds): the next place in the period is taken instead.
const MIN_RECHECK: Duration = Duration::from_secs(1);

/// One Canary's idle re-checks: every `period`, at `offset` into it (counted from the
/// Unix epoch, so the place survives restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recheck {
    pub period: Duration,
    pub offset: Duration,
}

impl Default for Recheck {
    /// Unspread: on the period's boundaries.
    fn default() -> Self {
        Recheck {
            period: IDLE_RECHECK,
            offset: Duration::ZERO,
        }
    }
}

impl Recheck {
    /// The Canary `namespace/name`'s place in the default period.
    pub fn for_canary(namespace: &str, name: &str) -> Self {
        Self::spread(IDLE_RECHECK, namespace, name)
    }

    /// Its place in `period`: a stable hash (FNV-1a, the same in every build and
    /// process, unlike std's `DefaultHasher`) of `namespace/name`.
    pub fn spread(period: Duration, namespace: &str, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        Recheck {
            period,
            offset: Duration::from_millis(h % period_ms),
        }
    }

    /// How long from `now` until the next re-check: at the next instant `t` with
    /// `(t - offset) mod period == 0`. Never longer than the period (plus
    /// [`MIN_RECHECK`]), so a due re-check is never put off.
    pub fn after(&self, now: DateTime<Utc>) -> Duration {
        let period_ms = i128::try_from(self.period.as_millis())
            .unwrap_or(i128::MAX)
            .max(1);
        let offset_ms = i128::try_from(self.offset.as_millis()).unwrap_or(0);
        let into = (i128::from(now.timestamp_millis()) - offset_ms).rem_euclid(period_ms);
        let wait = u64::try_from(period_ms - into).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(wait);
        if wait < MIN_RECHECK {
            wait + self.period
        } else {
            wait
        }
    }
}
