//! Blackouts (freezes): absolute ranges of time in which nothing starts or advances.

use chrono::{DateTime, Utc};

use super::PolicyError;

/// A checked blackout, `[start, end)`.
#[derive(Clone, Debug, PartialEq)]
pub struct BlackoutRule {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: String,
}

impl BlackoutRule {
    /// Check the blackout as written at `field` (e.g. `spec.blackouts[0]`).
    pub fn parse(b: &crate::crd::Blackout, field: &str) -> Result<BlackoutRule, PolicyError> {
        let instant = |s: &str, f: &str| {
            DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    PolicyError::new(
                        format!("{field}.{f}"),
                        format!(
                            "{s:?} is not an RFC 3339 date-time ({e}): use e.g. \
                             \"2026-12-20T00:00:00+01:00\" or \"2026-12-19T23:00:00Z\""
                        ),
                    )
                })
        };
        let start = instant(&b.start, "start")?;
        let end = instant(&b.end, "end")?;
        if end <= start {
            return Err(PolicyError::new(
                format!("{field}.end"),
                format!(
                    "{:?} is not after start {:?}: a blackout ends after it starts",
                    b.end, b.start
                ),
            ));
        }
        if b.reason.trim().is_empty() {
            return Err(PolicyError::new(
                format!("{field}.reason"),
                "empty: say why releases are frozen (it is shown to the teams waiting)",
            ));
        }
        Ok(BlackoutRule {
            start,
            end,
            reason: b.reason.clone(),
        })
    }

    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The blackout in force at `at` that ends last, if any.
pub fn active(blackouts: &[BlackoutRule], at: DateTime<Utc>) -> Option<&BlackoutRule> {
    blackouts
        .iter()
        .filter(|b| b.is_active(at))
        .max_by_key(|b| b.end)
}

/// The first instant at or after `at` outside every blackout (overlapping and
/// back-to-back blackouts chain), with the blackout that ends last on the way.
pub fn clear_from(
    blackouts: &[BlackoutRule],
    at: DateTime<Utc>,
) -> (DateTime<Utc>, Option<&BlackoutRule>) {
    let mut t = at;
    let mut last = None;
    // Each pass moves past at least one blackout, so this ends within len() passes.
    for _ in 0..=blackouts.len() {
        match active(blackouts, t) {
            Some(b) => {
                t = b.end;
                last = Some(b);
            }
            None => break,
        }
    }
    (t, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Blackout;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rule(start: &str, end: &str, reason: &str) -> BlackoutRule {
        BlackoutRule::parse(
            &Blackout {
                start: start.into(),
                end: end.into(),
                reason: reason.into(),
            },
            "spec.blackouts[0]",
        )
        .unwrap()
    }

    #[test]
    fn chained_blackouts_clear_at_the_last_end() {
        let list = [
            rule(
                "2026-12-20T00:00:00+01:00",
                "2026-12-27T00:00:00+01:00",
                "holidays",
            ),
            // Overlaps the first, ends later.
            rule("2026-12-26T00:00:00Z", "2027-01-02T00:00:00Z", "year end"),
            // Back to back with the second.
            rule("2027-01-02T00:00:00Z", "2027-01-03T12:00:00Z", "inventory"),
            // Unrelated, later.
            rule("2027-02-01T00:00:00Z", "2027-02-02T00:00:00Z", "audit"),
        ];
        #[rustfmt::skip]
        let cases = [
            ("2026-12-19T22:59:59Z", "2026-12-19T22:59:59Z", None),
            ("2026-12-19T23:00:00Z", "2027-01-03T12:00:00Z", Some("inventory")), // starts at its +01:00 start
            ("2026-12-30T00:00:00Z", "2027-01-03T12:00:00Z", Some("inventory")),
            ("2027-01-03T12:00:00Z", "2027-01-03T12:00:00Z", None), // end is exclusive
            ("2027-02-01T06:00:00Z", "2027-02-02T00:00:00Z", Some("audit")),
        ];
        for (at, clear, by) in cases {
            let (t, b) = clear_from(&list, utc(at));
            assert_eq!((t, b.map(|b| b.reason.as_str())), (utc(clear), by), "{at}");
        }
    }

    #[test]
    fn parse_errors() {
        let err = |start: &str, end: &str, reason: &str| {
            BlackoutRule::parse(
                &Blackout {
                    start: start.into(),
                    end: end.into(),
                    reason: reason.into(),
                },
                "spec.blackouts[2]",
            )
            .unwrap_err()
            .to_string()
        };
        let e = err("2026-12-20", "2026-12-27T00:00:00Z", "x");
        assert!(
            e.starts_with("spec.blackouts[2].start: \"2026-12-20\" is not an RFC 3339 date-time"),
            "{e}"
        );
        let e = err("2026-12-20T00:00:00Z", "2026-12-20T00:00:00Z", "x");
        assert!(
            e.starts_with("spec.blackouts[2].end: \"2026-12-20T00:00:00Z\" is not after start"),
            "{e}"
        );
        let e = err("2026-12-20T00:00:00Z", "2026-12-21T00:00:00Z", " ");
        assert!(e.starts_with("spec.blackouts[2].reason: empty"), "{e}");
    }
}
