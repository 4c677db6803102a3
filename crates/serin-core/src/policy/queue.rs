//! Concurrency: at most N releases in flight among the Canaries a policy selects; the
//! others wait in order of arrival.

use chrono::{DateTime, Utc};

/// A Canary, by namespace and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CanaryKey {
    pub namespace: String,
    pub name: String,
}

impl CanaryKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        CanaryKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for CanaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Canary whose new revision waits to start, since `since` (when serin first saw the
/// revision waiting; kept in its status so a restart keeps the order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub canary: CanaryKey,
    pub since: DateTime<Utc>,
}

/// What one policy's selected Canaries are doing: the releases in flight and the
/// revisions waiting to start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub in_flight: Vec<CanaryKey>,
    pub waiting: Vec<Arrival>,
}

/// Where one waiting Canary stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A slot is free for it.
    Start,
    /// `position` 1 is the next to start when a slot frees.
    Queued { position: u32 },
}

/// The waiting Canaries in the order they start: by arrival, ties broken by namespace
/// then name (so every replica and every reconcile agrees). A Canary listed twice
/// keeps its earliest arrival.
pub fn order(waiting: &[Arrival]) -> Vec<&Arrival> {
    let mut v: Vec<&Arrival> = waiting.iter().collect();
    v.sort_by(|a, b| (a.since, &a.canary).cmp(&(b.since, &b.canary)));
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|a| seen.insert(&a.canary));
    v
}

/// May `canary` start under `max_in_flight`? A Canary already in flight holds its slot
/// (`Start`). A Canary missing from `waiting` is placed as arriving at `since`.
pub fn admit(
    max_in_flight: u32,
    queue: &QueueSnapshot,
    canary: &CanaryKey,
    since: DateTime<Utc>,
) -> Admission {
    if queue.in_flight.contains(canary) {
        return Admission::Start;
    }
    let mut waiting: Vec<Arrival> = queue
        .waiting
        .iter()
        .filter(|a| !queue.in_flight.contains(&a.canary))
        .cloned()
        .collect();
    if !waiting.iter().any(|a| &a.canary == canary) {
        waiting.push(Arrival {
            canary: canary.clone(),
            since,
        });
    }
    let mut in_flight = queue.in_flight.clone();
    in_flight.sort();
    in_flight.dedup();
    let free = (max_in_flight as usize).saturating_sub(in_flight.len());
    let index = order(&waiting)
        .iter()
        .position(|a| &a.canary == canary)
        .unwrap_or(0);
    if index < free {
        Admission::Start
    } else {
        Admission::Queued {
            position: u32::try_from(index - free + 1).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + min * 60, 0).unwrap()
    }

    #[test]
    fn ties_break_by_namespace_then_name_and_duplicates_keep_the_earliest() {
        let w = |ns: &str, n: &str, m| Arrival {
            canary: CanaryKey::new(ns, n),
            since: at(m),
        };
        let waiting = [
            w("b", "x", 5),
            w("a", "z", 5),
            w("a", "y", 5),
            w("c", "c", 1),
            w("a", "z", 9),
        ];
        let got: Vec<String> = order(&waiting)
            .iter()
            .map(|a| a.canary.to_string())
            .collect();
        assert_eq!(got, ["c/c", "a/y", "a/z", "b/x"]);
    }

    #[test]
    fn in_flight_over_the_limit_queues_everyone_and_holds_its_own_slot() {
        // The limit was lowered while two were in flight: both keep going, none starts.
        let q = QueueSnapshot {
            in_flight: vec![CanaryKey::new("a", "1"), CanaryKey::new("a", "2")],
            waiting: vec![],
        };
        assert_eq!(
            admit(1, &q, &CanaryKey::new("a", "2"), at(0)),
            Admission::Start
        );
        assert_eq!(
            admit(1, &q, &CanaryKey::new("a", "3"), at(0)),
            Admission::Queued { position: 1 }
        );
    }
}
