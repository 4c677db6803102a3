//! Weekly release windows in wall-clock time of an IANA time zone.
//!
//! A window is open while the zone's wall clock reads a time in `[start, end)` on one
//! of its days (for an overnight window, `end < start`, from `start` on one of its days
//! until `end` on the next day). Wall-clock semantics decide the daylight-saving edge
//! cases: on a spring-forward day a `start` that does not exist (02:30 in Berlin on the
//! last Sunday of March) opens at the change itself (03:00 CEST), when the clock first
//! reads a time inside the window; on a fall-back day a window inside the repeated hour
//! is open in both passes of that hour.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::PolicyError;

/// Day names as written: `Mon`..`Sun`, index 0 = Monday.
pub const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One window, checked and ready to decide.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Opening days, index 0 = Monday.
    pub days: [bool; 7],
    /// Minutes after local midnight, 0..=1439.
    pub start: u16,
    /// Minutes after local midnight, 1..=1440; `end < start` runs past midnight.
    pub end: u16,
    pub zone: Tz,
}

impl Window {
    /// Check the window as written at `field` (e.g. `spec.windows[0]`).
    pub fn parse(w: &crate::crd::ReleaseWindow, field: &str) -> Result<Window, PolicyError> {
        let days = parse_days(&w.days, &format!("{field}.days"))?;
        let start = parse_time(&w.start, &format!("{field}.start"), false)?;
        let end = parse_time(&w.end, &format!("{field}.end"), true)?;
        if start == end {
            return Err(PolicyError::new(
                format!("{field}.end"),
                format!(
                    "{:?} equals start: a window needs a length (all day is \"00:00\" to \"24:00\"; \
                     an end before start runs past midnight)",
                    w.end
                ),
            ));
        }
        let zone: Tz = w.time_zone.trim().parse().map_err(|_| {
            PolicyError::new(
                format!("{field}.timeZone"),
                format!(
                    "{:?} is not an IANA time zone: use a name such as \"Europe/Berlin\", \
                     \"America/New_York\" or \"UTC\"",
                    w.time_zone
                ),
            )
        })?;
        Ok(Window {
            days,
            start,
            end,
            zone,
        })
    }

    fn overnight(&self) -> bool {
        self.end < self.start
    }

    /// Is the window open at `at`?
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = (local.hour() * 60 + local.minute()) as u16;
        if self.overnight() {
            (self.days[day] && minute >= self.start)
                || (self.days[(day + 6) % 7] && minute < self.end)
        } else {
            self.days[day] && self.start <= minute && minute < self.end
        }
    }

    /// The first instant at or after `from` when the window is open (`from` itself when
    /// open). `None` only when no opening falls within nine days (impossible for a
    /// window with a day, outside time zones that skip whole days).
    pub fn next_open(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(from) {
            return Some(from);
        }
        // The open state changes only where the wall clock crosses `start` or `end`, or
        // jumps (an offset change). The first candidate after `from` at which the window
        // is open is therefore the next opening.
        let local_date = from.with_timezone(&self.zone).date_naive();
        let horizon = from + Duration::days(9);
        let mut candidates: Vec<DateTime<Utc>> = Vec::new();
        for d in -1..9 {
            let date = local_date + Duration::days(d);
            if !self.days[date.weekday().num_days_from_monday() as usize] {
                continue;
            }
            candidates.extend(resolve_all(self.zone, date, self.start));
        }
        candidates.extend(offset_changes(self.zone, from, horizon));
        candidates
            .into_iter()
            .filter(|c| *c > from && *c <= horizon && self.is_open(*c))
            .min()
    }

    /// The window in words, e.g. `Mon-Thu 09:00-16:00 Europe/Berlin`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}-{} {}",
            describe_days(&self.days),
            hhmm(self.start),
            hhmm(self.end),
            self.zone.name()
        )
    }
}

/// Every instant at which the wall clock of `zone` reads `minute` on `date`: none in a
/// spring-forward gap, two in a fall-back repeat.
fn resolve_all(zone: Tz, date: NaiveDate, minute: u16) -> Vec<DateTime<Utc>> {
    let Some(time) = NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)
    else {
        return vec![];
    };
    match zone.from_local_datetime(&date.and_time(time)) {
        chrono::LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        chrono::LocalResult::Ambiguous(a, b) => {
            vec![a.with_timezone(&Utc), b.with_timezone(&Utc)]
        }
        chrono::LocalResult::None => vec![],
    }
}

fn offset_secs(zone: Tz, at: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The instants in `(from, to]` at which `zone`'s UTC offset changes (found by hourly
/// samples, then bisection to the second; zones change at most once an hour).
pub(crate) fn offset_changes(
    zone: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut lo = from;
    let mut lo_off = offset_secs(zone, lo);
    while lo < to {
        let hi = (lo + Duration::hours(1)).min(to);
        let hi_off = offset_secs(zone, hi);
        if hi_off != lo_off {
            let (mut a, mut b) = (lo, hi);
            while b - a > Duration::seconds(1) {
                let mid = a + (b - a) / 2;
                if offset_secs(zone, mid) == lo_off {
                    a = mid;
                } else {
                    b = mid;
                }
            }
            out.push(b);
        }
        lo = hi;
        lo_off = hi_off;
    }
    out
}

fn parse_day(s: &str) -> Option<usize> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s.trim()))
}

fn parse_days(days: &[String], field: &str) -> Result<[bool; 7], PolicyError> {
    if days.is_empty() {
        return Err(PolicyError::new(
            field,
            "empty: name the days the window opens, e.g. [\"Mon-Fri\"]",
        ));
    }
    let mut set = [false; 7];
    for (i, d) in days.iter().enumerate() {
        let bad = || {
            PolicyError::new(
                format!("{field}[{i}]"),
                format!(
                    "{d:?} is not a day or a day range: use Mon, Tue, Wed, Thu, Fri, Sat, Sun \
                     or a range such as \"Mon-Thu\""
                ),
            )
        };
        match d.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a).ok_or_else(bad)?, parse_day(b).ok_or_else(bad)?);
                // A range may wrap past Sunday: Fri-Mon.
                let mut k = a;
                loop {
                    set[k] = true;
                    if k == b {
                        break;
                    }
                    k = (k + 1) % 7;
                }
            }
            None => set[parse_day(d).ok_or_else(bad)?] = true,
        }
    }
    Ok(set)
}

/// `HH:MM` as minutes after midnight; `24:00` only as an end.
fn parse_time(s: &str, field: &str, is_end: bool) -> Result<u16, PolicyError> {
    let accepted = if is_end {
        "\"HH:MM\" from \"00:00\" to \"24:00\""
    } else {
        "\"HH:MM\" from \"00:00\" to \"23:59\""
    };
    let bad = || PolicyError::new(field, format!("{s:?} is not a time of day: use {accepted}"));
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !is_end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn describe_days(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "daily".into();
    }
    // Runs of consecutive days, Monday first.
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !days[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i + 1 < 7 && days[i + 1] {
            i += 1;
        }
        parts.push(if s == i {
            DAY_NAMES[s].to_string()
        } else {
            format!("{}-{}", DAY_NAMES[s], DAY_NAMES[i])
        });
        i += 1;
    }
    parts.join(",")
}

/// Several windows: open while any is open.
pub fn any_open(windows: &[Window], at: DateTime<Utc>) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.is_open(at))
}

/// The first instant at or after `from` when any of `windows` is open.
pub fn next_open(windows: &[Window], from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if any_open(windows, from) {
        return Some(from);
    }
    windows.iter().filter_map(|w| w.next_open(from)).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ReleaseWindow;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> Window {
        Window::parse(
            &ReleaseWindow {
                days: days.iter().map(|d| d.to_string()).collect(),
                start: start.into(),
                end: end.into(),
                time_zone: tz.into(),
            },
            "spec.windows[0]",
        )
        .unwrap()
    }

    /// (what, days, start, end, zone, now)
    type Case<'a> = (&'a str, &'a [&'a str], &'a str, &'a str, &'a str, &'a str);

    /// Expected instants checked by hand against the IANA rules (tzdata 2025b, bundled
    /// by chrono-tz 0.10.4):
    /// - Europe/Berlin: CET (+01) / CEST (+02); CEST from 2026-03-29 01:00 UTC (02:00
    ///   local jumps to 03:00), CET from 2026-10-25 01:00 UTC (03:00 CEST back to 02:00).
    /// - America/New_York: EST (-05) / EDT (-04); EDT from 2026-03-08 07:00 UTC (02:00
    ///   local jumps to 03:00), EST from 2026-11-01 06:00 UTC (02:00 EDT back to 01:00).
    /// - Asia/Kolkata: +05:30 all year, no DST.
    /// - Australia/Lord_Howe: +10:30 standard, +11 in summer (a 30-minute shift); back
    ///   to +10:30 on 2026-04-05 at 02:00 local daylight time (2026-04-04 15:00 UTC),
    ///   +11 again from 2026-10-04 02:00 local standard time (2026-10-03 15:30 UTC).
    #[test]
    fn next_opening_table_across_zones_and_dst() {
        let business = ["Mon-Fri"];
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // (what, days, start, end, zone, now) -> expected next opening (UTC)
            ("Berlin, open now", &business, "09:00", "16:00", "Europe/Berlin", "2026-03-27T10:00:00Z"),
            // Friday 16:00 CET closes; Monday 09:00 is CEST after the change on Sunday.
            ("Berlin, over the spring-forward weekend", &business, "09:00", "16:00", "Europe/Berlin", "2026-03-27T15:30:00Z"),
            // Friday after closing, fall-back weekend: Monday 09:00 CET = 08:00 UTC.
            ("Berlin, over the fall-back weekend", &business, "09:00", "16:00", "Europe/Berlin", "2026-10-23T15:00:00Z"),
            // 02:30 does not exist on 2026-03-29 in Berlin: the window opens at the jump.
            ("Berlin, start in the spring gap", &["Sun"], "02:30", "04:00", "Europe/Berlin", "2026-03-28T23:00:00Z"),
            // 02:30 happens twice on 2026-10-25: the first pass (CEST, 00:30 UTC) opens it.
            ("Berlin, start in the repeated hour", &["Sun"], "02:30", "04:00", "Europe/Berlin", "2026-10-24T22:00:00Z"),
            // New York, Saturday before the spring change; Monday 09:00 EDT = 13:00 UTC.
            ("New York, over the spring-forward weekend", &business, "09:00", "17:00", "America/New_York", "2026-03-07T12:00:00Z"),
            // New York, the Sunday of the change itself: 09:00 EDT = 13:00 UTC, not 14:00.
            ("New York, Sunday of the change", &["Sun"], "09:00", "10:00", "America/New_York", "2026-03-08T06:00:00Z"),
            ("New York, fall-back Sunday", &["Sun"], "09:00", "10:00", "America/New_York", "2026-11-01T05:00:00Z"),
            ("New York, 02:30 skipped", &["Sun"], "02:30", "03:30", "America/New_York", "2026-03-08T06:00:00Z"),
            // Kolkata +05:30: 09:00 IST = 03:30 UTC.
            ("Kolkata, half-hour offset", &business, "09:00", "18:00", "Asia/Kolkata", "2026-03-27T13:00:00Z"),
            // Lord Howe leaves +11 for +10:30 on 2026-04-05 (02:00 back to 01:30):
            // Monday 09:00 is +10:30 = Sunday 22:30 UTC.
            ("Lord Howe, 30-minute fall-back", &business, "09:00", "17:00", "Australia/Lord_Howe", "2026-04-03T07:00:00Z"),
            // Overnight window Fri 22:00 - Sat 02:00 Berlin; asked Friday noon.
            ("Berlin, overnight", &["Fri"], "22:00", "02:00", "Europe/Berlin", "2026-01-09T12:00:00Z"),
            // Asked Saturday 01:00 local: still open from Friday's opening.
            ("Berlin, overnight after midnight", &["Fri"], "22:00", "02:00", "Europe/Berlin", "2026-01-10T00:00:00Z"),
        ];
        let expected = [
            "2026-03-27T10:00:00Z",
            "2026-03-30T07:00:00Z",
            "2026-10-26T08:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-03-09T13:00:00Z",
            "2026-03-08T13:00:00Z",
            "2026-11-01T14:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-30T03:30:00Z",
            "2026-04-05T22:30:00Z",
            "2026-01-09T21:00:00Z",
            "2026-01-10T00:00:00Z",
        ];
        assert_eq!(cases.len(), expected.len());
        for ((what, days, start, end, tz, now), want) in cases.iter().zip(expected) {
            let w = window(days, start, end, tz);
            assert_eq!(w.next_open(utc(now)), Some(utc(want)), "{what}");
        }
    }

    #[test]
    fn zone_changes_are_found_to_the_second() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        let lh: Tz = "Australia/Lord_Howe".parse().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let year = (utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
        assert_eq!(
            offset_changes(berlin, year.0, year.1),
            [utc("2026-03-29T01:00:00Z"), utc("2026-10-25T01:00:00Z")]
        );
        assert_eq!(
            offset_changes(ny, year.0, year.1),
            [utc("2026-03-08T07:00:00Z"), utc("2026-11-01T06:00:00Z")]
        );
        assert_eq!(
            offset_changes(lh, year.0, year.1),
            [utc("2026-04-04T15:00:00Z"), utc("2026-10-03T15:30:00Z")]
        );
        assert!(offset_changes(kolkata, year.0, year.1).is_empty());
    }

    #[test]
    fn open_and_closed_at_the_edges() {
        let w = window(&["Mon-Thu"], "09:00", "16:00", "Europe/Berlin");
        #[rustfmt::skip]
        let cases = [
            ("2026-03-26T07:59:59Z", false), // Thu 08:59:59 CET
            ("2026-03-26T08:00:00Z", true),  // Thu 09:00 CET
            ("2026-03-26T14:59:59Z", true),  // Thu 15:59:59 CET
            ("2026-03-26T15:00:00Z", false), // Thu 16:00 CET: end is exclusive
            ("2026-03-27T10:00:00Z", false), // Friday
            ("2026-03-30T07:00:00Z", true),  // Mon 09:00 CEST
            ("2026-03-30T06:30:00Z", false), // Mon 08:30 CEST (would be 07:30 CET)
        ];
        for (at, open) in cases {
            assert_eq!(w.is_open(utc(at)), open, "{at}");
        }
        // Fall-back: a window inside the repeated hour is open in both passes.
        let w = window(&["Sun"], "02:00", "02:30", "Europe/Berlin");
        assert!(w.is_open(utc("2026-10-25T00:10:00Z"))); // 02:10 CEST
        assert!(!w.is_open(utc("2026-10-25T00:45:00Z"))); // 02:45 CEST
        assert!(w.is_open(utc("2026-10-25T01:10:00Z"))); // 02:10 CET
        assert_eq!(
            w.next_open(utc("2026-10-25T00:45:00Z")),
            Some(utc("2026-10-25T01:00:00Z")),
            "reopens when the clock goes back to 02:00"
        );
    }

    #[test]
    fn parse_errors_say_what_where_and_what_is_accepted() {
        let parse = |days: &[&str], start: &str, end: &str, tz: &str| {
            Window::parse(
                &ReleaseWindow {
                    days: days.iter().map(|d| d.to_string()).collect(),
                    start: start.into(),
                    end: end.into(),
                    time_zone: tz.into(),
                },
                "spec.windows[1]",
            )
            .unwrap_err()
            .to_string()
        };
        #[rustfmt::skip]
        let cases: &[(&[&str], &str, &str, &str, &str)] = &[
            (&["Mon", "Tues"], "09:00", "16:00", "UTC",
             "spec.windows[1].days[1]: \"Tues\" is not a day or a day range: use Mon, Tue, Wed, Thu, Fri, Sat, Sun or a range such as \"Mon-Thu\""),
            (&["Mon-Frii"], "09:00", "16:00", "UTC",
             "spec.windows[1].days[0]: \"Mon-Frii\" is not a day or a day range"),
            (&[], "09:00", "16:00", "UTC", "spec.windows[1].days: empty"),
            (&["Mon"], "9:00", "16:00", "UTC",
             "spec.windows[1].start: \"9:00\" is not a time of day: use \"HH:MM\" from \"00:00\" to \"23:59\""),
            (&["Mon"], "24:00", "16:00", "UTC", "spec.windows[1].start: \"24:00\" is not a time of day"),
            (&["Mon"], "09:00", "16:60", "UTC",
             "spec.windows[1].end: \"16:60\" is not a time of day: use \"HH:MM\" from \"00:00\" to \"24:00\""),
            (&["Mon"], "09:00", "09:00", "UTC", "spec.windows[1].end: \"09:00\" equals start"),
            (&["Mon"], "09:00", "16:00", "Europe/Berlinn",
             "spec.windows[1].timeZone: \"Europe/Berlinn\" is not an IANA time zone"),
            (&["Mon"], "09:00", "16:00", "CEST", "spec.windows[1].timeZone: \"CEST\" is not an IANA time zone"),
        ];
        for (days, start, end, tz, want) in cases {
            let got = parse(days, start, end, tz);
            assert!(got.starts_with(want), "{got}\n  wanted: {want}");
        }
        // Accepted forms.
        let w = window(&["fri-mon", "Wed"], "22:00", "24:00", "UTC");
        assert_eq!(w.days, [true, false, true, false, true, true, true]);
        assert_eq!(w.describe(), "Mon,Wed,Fri-Sun 22:00-24:00 UTC");
        assert_eq!((w.start, w.end), (1320, 1440));
        let night = window(&["Fri"], "22:00", "02:00", "UTC");
        assert!(night.is_open(utc("2026-01-10T01:59:00Z"))); // Sat 01:59
        assert!(!night.is_open(utc("2026-01-10T02:00:00Z")));
        assert!(!night.is_open(utc("2026-01-11T01:00:00Z"))); // Sun 01:00: Sat not listed
    }
}
