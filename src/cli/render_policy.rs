//! The release-policy part of `kubectl serin status`: why a release waits or holds
//! (`status.policyWait`), an emergency override, and the images last promoted. Pure,
//! like [`super::render`].

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::render::truncate;
use crate::crd::{
    CanaryStatus, EmergencyOverrideRecord, PolicyStage, PolicyWait, PolicyWaitReason,
};

/// The detailed view cuts the wait message at this many columns.
pub const WAIT_MESSAGE_WIDTH: usize = 300;

/// `2026-12-01T08:00Z` (seconds only when not zero).
pub fn utc_minute(t: DateTime<Utc>) -> String {
    if t.timestamp() % 60 == 0 {
        t.format("%Y-%m-%dT%H:%MZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// A span in at most two units, spaced for reading: `45s`, `5m`, `2h 5m`, `3d 4h`.
pub fn span(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    let two = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua} {b}{ub}")
        }
    };
    if days > 0 {
        two(days, "d", h, "h")
    } else if h > 0 {
        two(h, "h", m, "m")
    } else if m > 0 {
        two(m, "m", s % 60, "s")
    } else {
        format!("{s}s")
    }
}

/// `in 2h 5m`, or `5m ago` for an instant that has passed.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t >= now {
        format!("in {}", span(t - now))
    } else {
        format!("{} ago", span(now - t))
    }
}

/// Where the release stands while it waits, in words.
pub fn stage_words(w: &PolicyWait, current_step: i32) -> String {
    match w.stage {
        PolicyStage::Start => format!("revision {} waits to start", w.revision),
        PolicyStage::NextStep => {
            format!("revision {} holds at step {current_step}", w.revision)
        }
        PolicyStage::Promote => format!("revision {} holds before promotion", w.revision),
    }
}

/// The short reason for one table cell: `OutsideWindow until 2026-12-01T08:00Z`,
/// `Queued #2`, `ApprovalsNeeded 1/2`.
pub fn short_reason(w: &PolicyWait) -> String {
    let mut out = w.reason.as_str().to_string();
    if let Some(p) = w
        .queue_position
        .filter(|_| w.reason == PolicyWaitReason::Queued)
    {
        let _ = write!(out, " #{p}");
    }
    if let Some(a) = w
        .approvals
        .as_ref()
        .filter(|_| w.reason == PolicyWaitReason::ApprovalsNeeded)
    {
        let _ = write!(out, " {}/{}", a.have, a.need);
    }
    if let Some(until) = w.until {
        let _ = write!(out, " until {}", utc_minute(until));
    }
    out
}

/// The PHASE cell of the list: the phase, and for a release a policy keeps back the
/// short reason (`Waiting OutsideWindow until ...`, `Progressing, held: Soaking ...`).
pub fn phase_cell(s: &CanaryStatus) -> String {
    let phase = s.phase.as_str();
    match &s.policy_wait {
        None => phase.to_string(),
        Some(w) if w.stage == PolicyStage::Start => format!("{phase} {}", short_reason(w)),
        Some(w) => format!("{phase}, held: {}", short_reason(w)),
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// The lines about the policy wait, after the step (none without a wait).
pub fn wait_lines(out: &mut String, name: &str, s: &CanaryStatus, now: DateTime<Utc>) {
    let Some(w) = &s.policy_wait else {
        return;
    };
    let _ = writeln!(out, "Policy:     {} ({})", w.reason.as_str(), w.policy);
    let _ = writeln!(
        out,
        "Release:    {} (for {})",
        stage_words(w, s.current_step),
        span(now - w.since)
    );
    if let Some(until) = w.until {
        let due = if until > now {
            relative(until, now)
        } else {
            "due now".into()
        };
        let what = match w.reason {
            PolicyWaitReason::OutsideWindow => "next window opens",
            PolicyWaitReason::Blackout => "blackout ends",
            PolicyWaitReason::Soaking | PolicyWaitReason::UpstreamSoaking => "soak ends",
            _ => "allowed again",
        };
        let _ = writeln!(out, "Next:       {} ({due}, {what})", utc_minute(until));
    }
    if let Some(p) = w.queue_position {
        let ahead = match p {
            0 | 1 => "goes next when a slot frees".to_string(),
            n => format!("{} ahead of it", n - 1),
        };
        let _ = writeln!(out, "Queue:      position {p} ({ahead})");
    }
    if let Some(a) = &w.approvals {
        let from = if a.groups.is_empty() {
            "any authorized approver".to_string()
        } else {
            format!("groups {}", list(&a.groups))
        };
        let _ = writeln!(
            out,
            "Approvals:  {}/{} distinct for {}, from {from} (kubectl serin approve {name})",
            a.have,
            a.need,
            a.gate.as_str()
        );
    }
    if !w.message.is_empty() {
        let _ = writeln!(
            out,
            "Why:        {}",
            truncate(&w.message, WAIT_MESSAGE_WIDTH)
        );
    }
}

/// The emergency override line (none without one).
pub fn override_line(out: &mut String, o: Option<&EmergencyOverrideRecord>, now: DateTime<Utc>) {
    let Some(o) = o else {
        return;
    };
    let until = match o.until {
        Some(t) if t > now => format!("until {} ({})", utc_minute(t), relative(t, now)),
        Some(t) => format!("lapsed {} ({})", utc_minute(t), relative(t, now)),
        None => "until the release ends".into(),
    };
    let _ = writeln!(
        out,
        "Override:   windows and blackouts lifted for revision {} by {} via {}, {until}: {:?}",
        o.revision, o.by, o.via, o.reason
    );
}

/// The images of the revision last promoted (none before the first promotion).
pub fn promoted_lines(out: &mut String, s: &CanaryStatus, now: DateTime<Utc>) {
    let Some(p) = &s.promoted else {
        return;
    };
    let _ = writeln!(
        out,
        "Promoted:   revision {} at {} ({})",
        p.revision,
        utc_minute(p.at),
        relative(p.at, now)
    );
    for (container, image) in &p.images {
        let _ = writeln!(out, "            {container}={image}");
    }
}

#[cfg(test)]
#[path = "render_policy_tests.rs"]
mod tests;
