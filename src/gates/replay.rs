//! Slack's signature proves who sent a request, not that it is new: a captured
//! request stays valid for the whole timestamp window. This remembers every verified
//! request (its signature) until the window has passed, so each is acted on once.

use std::collections::HashMap;
use std::sync::Mutex;

/// Signatures seen within the window; bounded.
#[derive(Debug)]
pub struct ReplayGuard {
    window_secs: i64,
    max: usize,
    seen: Mutex<HashMap<String, i64>>,
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// The same signed request came before.
    Seen,
    /// Too many distinct requests within the window to remember them all.
    Full,
}

impl ReplayGuard {
    pub fn new(window_secs: i64, max: usize) -> Self {
        Self {
            window_secs,
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Admit a verified request once: `signature` with its `timestamp`, at `now`
    /// (unix seconds). Call only after the signature and the window were checked, so
    /// only genuine requests take room.
    pub fn admit(&self, signature: &str, timestamp: i64, now: i64) -> Result<(), Replay> {
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.contains_key(signature) {
            return Err(Replay::Seen);
        }
        if seen.len() >= self.max {
            // A timestamp this old fails the window check: its request cannot return.
            let horizon = now - self.window_secs;
            seen.retain(|_, ts| *ts >= horizon);
            if seen.len() >= self.max {
                return Err(Replay::Full);
            }
        }
        seen.insert(signature.to_string(), timestamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_within_the_window_and_bounded() {
        let g = ReplayGuard::new(300, 2);
        assert_eq!(g.admit("a", 1000, 1000), Ok(()));
        assert_eq!(g.admit("a", 1000, 1001), Err(Replay::Seen));
        assert_eq!(g.admit("b", 1000, 1001), Ok(()));
        // Full of requests still inside the window: refused, not forgotten.
        assert_eq!(g.admit("c", 1001, 1001), Err(Replay::Full));
        assert_eq!(g.admit("a", 1000, 1001), Err(Replay::Seen));
        // Once the window has passed, old entries make room.
        assert_eq!(g.admit("c", 1400, 1400), Ok(()));
    }
}
