//! Plain-text views of Canaries for `kubectl serin status` and `history`. Pure: they
//! take the objects and `now`, and return the text.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use kube::ResourceExt;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::liveness::liveness;
use super::render_policy::{override_line, phase_cell, promoted_lines, short_reason, wait_lines};
use crate::analysis::judges::{evidence_line, last_look_line};
use crate::crd::{condition_type, Canary, CanaryPhase, CanaryStatus, Condition, MetricStatus};
use crate::rollout::ReleasePlan;

/// Cells of the weight bar.
pub const BAR_CELLS: usize = 20;
/// Widest reason in the verdicts table; longer ones are cut with "…".
pub const REASON_WIDTH: usize = 60;
/// Widest message in the list.
pub const MESSAGE_WIDTH: usize = 70;

/// `[████████░░░░░░░░░░░░] 40%`. A canary with some traffic never shows an empty bar,
/// one short of all never a full one.
pub fn weight_bar(weight: i32) -> String {
    let w = weight.clamp(0, 100);
    let mut filled = ((w as usize) * BAR_CELLS + 50) / 100;
    if w > 0 {
        filled = filled.max(1);
    }
    if w < 100 {
        filled = filled.min(BAR_CELLS - 1);
    }
    format!(
        "[{}{}] {w}%",
        "█".repeat(filled),
        "░".repeat(BAR_CELLS - filled)
    )
}

/// Display width of `s` in terminal columns (wide characters count two).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` on one line, cut to at most `max` columns with "…" at the end when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if width(&flat) <= max {
        return flat;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in flat.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// kubectl's short durations: `45s`, `3m20s`, `25m`, `5h10m`, `30h`, `3d4h`, `12d`.
pub fn human_duration(d: Duration) -> String {
    let s = d.num_seconds();
    if s < 0 {
        return "0s".into();
    }
    let (m, h, days) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        let rest = s % 60;
        if rest == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rest}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let rest = m % 60;
        if rest == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rest}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if days < 8 {
        let rest = h % 24;
        if rest == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{rest}h")
        }
    } else {
        format!("{days}d")
    }
}

/// A number in at most about six characters: `0.0123`, `250`, `1.5e-5`, `3.2e6`.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(0.001..100_000.0).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

fn opt_number(v: Option<f64>) -> String {
    v.map(number).unwrap_or_else(|| "-".into())
}

/// Columns padded to their widest cell (by display width); the last is not padded.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, indent: &str) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| width(c))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::from(indent);
            for (i, cell) in r.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < r.len() {
                    line.push_str(&" ".repeat(widths[i] - width(cell) + 3));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    human_duration(now - t)
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn namespaced_name(c: &Canary) -> String {
    format!(
        "{}/{}",
        c.namespace().unwrap_or_else(|| "-".into()),
        c.name_any()
    )
}

/// A release is in flight: not idle, not initializing, not waiting to start (a
/// waiting revision has no traffic and is not judged).
fn in_flight(s: &CanaryStatus) -> bool {
    !s.phase.is_idle() && !matches!(s.phase, CanaryPhase::Initializing | CanaryPhase::Waiting)
}

/// Conditions worth a reader's attention: False ones, except those that are False in
/// a healthy Canary (no gate pending; nothing in flight).
fn troubled_conditions(s: &CanaryStatus) -> Vec<&Condition> {
    let in_flight = in_flight(s);
    s.conditions
        .iter()
        .filter(|c| c.status != "True")
        .filter(|c| c.type_ != condition_type::WAITING_APPROVAL)
        .filter(|c| c.type_ != condition_type::PROGRESSING || in_flight)
        .collect()
}

fn verdict_cell(m: &MetricStatus) -> String {
    if m.dry_run {
        format!("{} (dry-run)", m.verdict.as_str())
    } else {
        m.verdict.as_str().to_string()
    }
}

/// The release plan, when the spec is valid (for the next check and the deadline).
fn plan_of(c: &Canary) -> Option<ReleasePlan> {
    ReleasePlan::from_spec(&c.spec, false).ok()
}

/// When the controller last acted, and a warning when none acted for longer than
/// expected ([`liveness`]): the rest of the view may be a crashed controller's last word.
fn liveness_lines(out: &mut String, c: &Canary, now: DateTime<Utc>) {
    let l = liveness(c, now);
    if let Some(t) = l.last_acted {
        let _ = writeln!(out, "Last acted: {} ({} ago)", timestamp(t), ago(t, now));
    }
    if let Some(warning) = l.message(now) {
        let _ = writeln!(out, "WARNING:    {warning}");
    }
}

/// Everything about one Canary: phase, revisions, step and weight, clocks, the gate it
/// waits at, troubled conditions and the last verdict of every metric.
pub fn render_status(c: &Canary, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let name = c.name_any();
    let _ = writeln!(out, "Canary:     {}", namespaced_name(c));
    let Some(s) = c.status.as_ref() else {
        let _ = writeln!(
            out,
            "Phase:      Unknown (no status yet: is the serin controller running?)"
        );
        liveness_lines(&mut out, c, now);
        return out;
    };
    let since = s
        .last_transition_time
        .map(|t| format!(" for {}", ago(t, now)))
        .unwrap_or_default();
    let paused = if s.paused_at.is_some() {
        ", paused"
    } else {
        ""
    };
    let _ = writeln!(out, "Phase:      {}{since}{paused}", s.phase.as_str());
    let stable = s.stable_revision.as_deref().unwrap_or("-");
    let waiting = s
        .policy_wait
        .as_ref()
        .filter(|_| s.phase == CanaryPhase::Waiting);
    match (&s.canary_revision, s.phase.is_idle()) {
        // `canaryRevision` may still name the last release: the waiting one is here.
        _ if s.phase == CanaryPhase::Waiting => match waiting {
            Some(w) => {
                let _ = writeln!(
                    out,
                    "Revision:   {stable} (new revision {} not started)",
                    w.revision
                );
            }
            None => {
                let _ = writeln!(out, "Revision:   {stable}");
            }
        },
        (Some(rev), false) => {
            let _ = writeln!(out, "Revision:   {rev} (primary serves {stable})");
        }
        _ => {
            let _ = writeln!(out, "Revision:   {stable}");
        }
    }
    if let Some(failed) = &s.failed_revision {
        if s.phase == CanaryPhase::Failed {
            let _ = writeln!(
                out,
                "Rolled back: {failed} (`kubectl serin retry {name}` releases it again)"
            );
        }
    }
    let steps = c.spec.analysis.steps.len();
    let step = if s.phase == CanaryPhase::Waiting {
        format!("not started (of {steps})")
    } else {
        s.step_label
            .clone()
            .unwrap_or_else(|| format!("{}/{steps}", s.current_step))
    };
    let _ = writeln!(out, "Step:       {step}  {}", weight_bar(s.canary_weight));
    let plan = plan_of(c);
    let held = s.policy_wait.is_some();
    if let Some(started) = s.step_started_at.filter(|_| in_flight(s)) {
        let mut line = format!("In step:    {}", ago(started, now));
        if let Some(p) = &plan {
            if let Some(paused_at) = s.paused_at {
                let _ = write!(line, "; paused {} ago (spec.suspend)", ago(paused_at, now));
            } else {
                if s.phase == CanaryPhase::Progressing && s.current_step >= 1 {
                    if p.checks_per_step > 1 {
                        let _ = write!(
                            line,
                            "; {}/{} passing checks",
                            s.step_checks, p.checks_per_step
                        );
                    }
                    if let Some(next) = crate::rollout::next_check_at(s, p) {
                        if next > now {
                            let _ = write!(line, "; next check in {}", human_duration(next - now));
                        } else {
                            let _ = write!(line, "; check due");
                        }
                    }
                }
                if held {
                    // A release a policy holds has not stalled (no deadline runs).
                    let _ = write!(line, "; no deadline while held by a release policy");
                } else if s.phase != CanaryPhase::WaitingApproval {
                    let deadline = started + p.progress_deadline;
                    if deadline > now {
                        let _ = write!(line, "; deadline in {}", human_duration(deadline - now));
                    } else {
                        let _ = write!(line, "; deadline passed");
                    }
                }
            }
        }
        let _ = writeln!(out, "{line}");
    }
    wait_lines(&mut out, &name, s, now);
    override_line(&mut out, s.emergency_override.as_deref(), now);
    liveness_lines(&mut out, c, now);
    if let Some(gate) = s.pending_gate {
        let _ = writeln!(
            out,
            "Waiting:    {} approval for revision {} at step {} (kubectl serin approve {name})",
            gate.as_str(),
            s.canary_revision.as_deref().unwrap_or("-"),
            s.current_step
        );
    }
    if s.failed_checks > 0 || s.inconclusive_checks > 0 {
        let limit = c.spec.analysis.failure_limit;
        let inconclusive = match c.spec.analysis.inconclusive_limit {
            Some(l) => format!("{}/{l}", s.inconclusive_checks),
            None => s.inconclusive_checks.to_string(),
        };
        let _ = writeln!(
            out,
            "Checks:     failed {}/{limit}, inconclusive {inconclusive}",
            s.failed_checks
        );
    }
    // A policy wait's message is on its `Why:` line already.
    let said = s
        .policy_wait
        .as_ref()
        .is_some_and(|w| !w.message.is_empty() && s.message.ends_with(&w.message));
    if !s.message.is_empty() && !said {
        let _ = writeln!(out, "Message:    {}", truncate(&s.message, 200));
    }
    let troubled = troubled_conditions(s);
    if !troubled.is_empty() {
        let _ = writeln!(out, "Conditions:");
        let mut t = Table::new(&["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]);
        for cond in troubled {
            t.row(vec![
                cond.type_.clone(),
                cond.status.clone(),
                cond.reason.clone(),
                ago(cond.last_transition_time, now),
                truncate(&cond.message, REASON_WIDTH),
            ]);
        }
        out.push_str(&t.render("  "));
    }
    if s.metrics.is_empty() {
        let _ = writeln!(out, "Verdicts:   none yet");
    } else {
        let checked = s.metrics.iter().map(|m| m.checked_at).max();
        // A waiting revision has no verdicts: these are the last release's.
        let of = if s.phase == CanaryPhase::Waiting {
            "of the last release, "
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "Verdicts:{}",
            checked
                .map(|t| format!("   ({of}last check {} ago)", ago(t, now)))
                .unwrap_or_default()
        );
        let mut t = Table::new(&[
            "METRIC", "VERDICT", "VALUE", "BASELINE", "EFFECT", "P-VALUE", "REASON",
        ]);
        for m in &s.metrics {
            t.row(vec![
                m.name.clone(),
                verdict_cell(m),
                opt_number(m.value),
                opt_number(m.baseline),
                opt_number(m.effect),
                opt_number(m.p_value),
                truncate(&m.reason, REASON_WIDTH),
            ]);
        }
        out.push_str(&t.render("  "));
        // The sequential evidence in full: the table cuts reasons.
        let evidence: Vec<_> = s
            .metrics
            .iter()
            .filter_map(|m| Some((m, m.sequential.as_ref()?)))
            .collect();
        if !evidence.is_empty() {
            let _ = writeln!(out, "Evidence:");
            for (m, st) in evidence {
                let _ = writeln!(out, "  {}: {}", m.name, evidence_line(st));
                if let Some(last) = last_look_line(st) {
                    let _ = writeln!(out, "  {}  {last}", " ".repeat(width(&m.name)));
                }
            }
        }
    }
    promoted_lines(&mut out, s, now);
    out
}

/// A kubectl-style table of Canaries, sorted by namespace and name. The NAMESPACE
/// column appears with `all_namespaces`; a Canary no controller acts on as expected is
/// marked "(stalled 12m)" after its phase.
pub fn render_list(canaries: &[Canary], all_namespaces: bool, now: DateTime<Utc>) -> String {
    let mut sorted: Vec<&Canary> = canaries.iter().collect();
    sorted.sort_by_key(|c| (c.namespace(), c.name_any()));
    let mut headers = vec![
        "NAME", "PHASE", "WEIGHT", "STEP", "REVISION", "AGE", "MESSAGE",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&headers);
    for c in sorted {
        let s = c.status.clone().unwrap_or_default();
        let phase = if c.status.is_some() {
            phase_cell(&s)
        } else {
            "Unknown".to_string()
        };
        let revision = if s.phase.is_idle() {
            s.stable_revision.clone()
        } else if s.phase == CanaryPhase::Waiting {
            s.policy_wait
                .as_ref()
                .map(|w| w.revision.clone())
                .or(s.stable_revision.clone())
        } else {
            s.canary_revision.clone().or(s.stable_revision.clone())
        };
        let mut row = vec![
            c.name_any(),
            phase
                + &liveness(c, now)
                    .silent_for(now)
                    .map(|d| format!(" (stalled {})", human_duration(d)))
                    .unwrap_or_default(),
            format!("{}%", s.canary_weight),
            s.step_label
                .clone()
                .filter(|_| s.phase != CanaryPhase::Waiting)
                .unwrap_or_else(|| "-".into()),
            revision.unwrap_or_else(|| "-".into()),
            c.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
                .map(|t| ago(t, now))
                .unwrap_or_else(|| "-".into()),
            truncate(&s.message, MESSAGE_WIDTH),
        ];
        if all_namespaces {
            row.insert(0, c.namespace().unwrap_or_default());
        }
        t.row(row);
    }
    t.render("")
}

/// What `status` prints for an empty list, like kubectl.
pub fn no_canaries(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No canaries found in namespace {ns}.\n"),
        None => "No canaries found.\n".into(),
    }
}

/// Ended releases, newest first, after the one in flight (if any).
pub fn render_history(c: &Canary, now: DateTime<Utc>) -> String {
    let empty = CanaryStatus::default();
    let s = c.status.as_ref().unwrap_or(&empty);
    let mut t = Table::new(&[
        "REVISION", "RESULT", "STARTED", "DURATION", "AGE", "STEP", "WEIGHT", "REASON",
    ]);
    let mut rows = 0;
    if let Some(w) = s
        .policy_wait
        .as_ref()
        .filter(|_| s.phase == CanaryPhase::Waiting)
    {
        // Not started: `canaryRevision` may still name the last release.
        t.row(vec![
            w.revision.clone(),
            "(Waiting)".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "0%".into(),
            truncate(&short_reason(w), REASON_WIDTH),
        ]);
        rows += 1;
    }
    if let (Some(rev), true) = (&s.canary_revision, in_flight(s)) {
        t.row(vec![
            rev.clone(),
            format!("({})", s.phase.as_str()),
            s.release_started_at
                .map(timestamp)
                .unwrap_or_else(|| "-".into()),
            s.release_started_at
                .map(|t| human_duration(now - t))
                .unwrap_or_else(|| "-".into()),
            "-".into(),
            s.step_label.clone().unwrap_or_else(|| "-".into()),
            format!("{}%", s.canary_weight),
            truncate(&s.message, REASON_WIDTH),
        ]);
        rows += 1;
    }
    for r in s.history.iter().rev() {
        t.row(vec![
            r.revision.clone(),
            r.result.as_str().to_string(),
            r.started_at.map(timestamp).unwrap_or_else(|| "-".into()),
            r.started_at
                .map(|t| human_duration(r.finished_at - t))
                .unwrap_or_else(|| "-".into()),
            ago(r.finished_at, now),
            format!("{}/{}", r.step, r.steps),
            format!("{}%", r.weight),
            truncate(&r.reason, REASON_WIDTH),
        ]);
        rows += 1;
    }
    if rows == 0 {
        return format!("No releases of {} yet.\n", namespaced_name(c));
    }
    t.render("")
}
