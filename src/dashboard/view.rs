//! What the pages show, computed from a Canary, its Events and `now`: the list's
//! rows, a release's timeline and the actions it offers, each naming the exact gate
//! passage it decides. Pure, so every line a page shows is tested here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::liveness::{liveness, Liveness};
use crate::crd::{Canary, CanaryPhase, CanaryStatus, MetricVerdict};
use crate::gates::{pending_passage, GateRef, Verb};

/// One Event about a Canary, as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub at: Option<DateTime<Utc>>,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
    /// How often it happened (an Event series counts repeats).
    pub count: i64,
}

impl EventRow {
    /// From an `events.k8s.io/v1` Event as the API server returns it.
    pub fn from_event(e: &Value) -> EventRow {
        let time = |p: &str| {
            e.pointer(p)
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        EventRow {
            at: time("/series/lastObservedTime")
                .or_else(|| time("/eventTime"))
                .or_else(|| time("/deprecatedLastTimestamp"))
                .or_else(|| time("/metadata/creationTimestamp")),
            type_: text("type"),
            reason: text("reason"),
            note: text("note"),
            count: e["series"]["count"]
                .as_i64()
                .or_else(|| e["deprecatedCount"].as_i64())
                .unwrap_or(1)
                .max(1),
        }
    }
}

/// A Canary in the list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub phase: &'static str,
    pub weight: i32,
    /// The step in release (1-based); 0 when none.
    pub step: i32,
    pub steps: usize,
    pub created: Option<DateTime<Utc>>,
    pub release_started: Option<DateTime<Utc>>,
    /// The latest check's outcome in release, else the last release's result.
    pub last_verdict: Option<String>,
    /// What it waits for, if anything: a gate, a policy, a pause.
    pub waiting: Option<String>,
    pub message: String,
    /// When the controller last acted, and whether it is overdue.
    pub liveness: Liveness,
    /// Set when no controller has acted for longer than expected.
    pub stalled: Option<String>,
}

pub fn row(c: &Canary, now: DateTime<Utc>) -> Row {
    let liveness = liveness(c, now);
    let s = c.status.clone().unwrap_or_default();
    Row {
        namespace: c.metadata.namespace.clone().unwrap_or_default(),
        name: c.metadata.name.clone().unwrap_or_default(),
        phase: s.phase.as_str(),
        weight: s.canary_weight,
        step: if in_release(s.phase) {
            s.current_step
        } else {
            0
        },
        steps: c.spec.analysis.steps.len(),
        created: created(c),
        release_started: s.release_started_at,
        last_verdict: last_verdict(&s),
        waiting: waiting(c, &s),
        message: s.message.clone(),
        stalled: liveness.message(now),
        liveness,
    }
}

fn created(c: &Canary) -> Option<DateTime<Utc>> {
    let t = c.metadata.creation_timestamp.as_ref()?;
    DateTime::<Utc>::from_timestamp(t.0.as_second(), 0)
}

fn in_release(phase: CanaryPhase) -> bool {
    matches!(
        phase,
        CanaryPhase::Progressing | CanaryPhase::WaitingApproval | CanaryPhase::Promoting
    )
}

fn last_verdict(s: &CanaryStatus) -> Option<String> {
    if in_release(s.phase) && !s.metrics.is_empty() {
        let deciding = || s.metrics.iter().filter(|m| !m.dry_run);
        for worst in [
            MetricVerdict::Fail,
            MetricVerdict::Error,
            MetricVerdict::Inconclusive,
        ] {
            let names: Vec<&str> = deciding()
                .filter(|m| m.verdict == worst)
                .map(|m| m.name.as_str())
                .collect();
            if !names.is_empty() {
                return Some(format!("{} ({})", worst.as_str(), names.join(", ")));
            }
        }
        return Some(MetricVerdict::Pass.as_str().to_string());
    }
    s.history.last().map(|h| h.result.as_str().to_string())
}

fn waiting(c: &Canary, s: &CanaryStatus) -> Option<String> {
    if c.spec.suspend {
        return Some("paused".into());
    }
    if let (CanaryPhase::WaitingApproval, Some(g)) = (s.phase, s.pending_gate) {
        return Some(format!("approval at {}", g.as_str()));
    }
    s.policy_wait
        .as_ref()
        .map(|w| format!("{} ({})", w.reason.as_str(), w.policy))
}

/// A button on the release page. `passage` is sent back with the action, so a click
/// on a page that went stale is refused instead of deciding a later gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    pub verb: Verb,
    pub passage: Option<GateRef>,
    /// The confirmation question, naming what exactly is decided.
    pub confirm: String,
}

/// The actions that make sense now; the approval API still decides who may.
pub fn actions(c: &Canary) -> Vec<ActionView> {
    let s = c.status.clone().unwrap_or_default();
    let name = format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default()
    );
    let mut out = Vec::new();
    if let Some(p) = pending_passage(&s) {
        let at = format!(
            "gate {} of revision {} at step {}",
            p.gate.as_str(),
            p.revision,
            p.step
        );
        out.push(ActionView {
            verb: Verb::Approve,
            passage: Some(p.clone()),
            confirm: format!("Approve {at} of {name}?"),
        });
        out.push(ActionView {
            verb: Verb::Reject,
            passage: Some(p),
            confirm: format!("Reject {at} of {name}? The release rolls back."),
        });
    }
    let revision = s.canary_revision.clone().unwrap_or_default();
    if matches!(
        s.phase,
        CanaryPhase::Progressing | CanaryPhase::WaitingApproval
    ) {
        out.push(ActionView {
            verb: Verb::Abort,
            passage: None,
            confirm: format!(
                "Abort the release of revision {revision} of {name} at step {}? \
                 Traffic goes back to the primary.",
                s.current_step
            ),
        });
    }
    if let (CanaryPhase::Failed, Some(failed)) = (s.phase, &s.failed_revision) {
        out.push(ActionView {
            verb: Verb::Retry,
            passage: None,
            confirm: format!("Release revision {failed} of {name} again from the first step?"),
        });
    }
    let (verb, confirm) = if c.spec.suspend {
        (Verb::Resume, format!("Resume {name}?"))
    } else {
        (
            Verb::Pause,
            format!("Pause {name}? Nothing moves until it is resumed."),
        )
    };
    out.push(ActionView {
        verb,
        passage: None,
        confirm,
    });
    out
}

/// One line of a release's timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// release, step, approval, command, webhook, event, warning, history, policy.
    pub kind: &'static str,
    pub text: String,
}

/// Everything that happened to the Canary that it records, with its Events, oldest
/// first.
pub fn timeline(c: &Canary, events: &[EventRow]) -> Vec<Entry> {
    let s = c.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |at: Option<DateTime<Utc>>, kind: &'static str, text: String| {
        if let Some(at) = at {
            out.push(Entry { at, kind, text });
        }
    };
    for h in &s.history {
        add(
            h.started_at,
            "release",
            format!("release of revision {} started", h.revision),
        );
        add(
            Some(h.finished_at),
            "history",
            format!(
                "revision {} {} at step {}/{} ({}% weight): {}",
                h.revision,
                h.result.as_str(),
                h.step,
                h.steps,
                h.weight,
                h.reason
            ),
        );
    }
    if in_release(s.phase) || s.phase == CanaryPhase::Waiting {
        let rev = s.canary_revision.as_deref().unwrap_or("?");
        add(
            s.release_started_at,
            "release",
            format!("release of revision {rev} started"),
        );
        if s.current_step > 0 || s.canary_weight > 0 {
            add(
                s.step_started_at,
                "step",
                format!("step {} at {}% weight", s.current_step, s.canary_weight),
            );
        }
    }
    for a in &s.approvals {
        add(
            Some(a.at),
            "approval",
            format!(
                "{} of revision {} at step {} {} by {} via {}{}",
                a.gate.as_str(),
                a.revision,
                a.step,
                if a.approved { "approved" } else { "rejected" },
                a.by,
                a.via,
                if a.groups.is_empty() {
                    String::new()
                } else {
                    format!(" (groups {})", a.groups.join(", "))
                }
            ),
        );
    }
    for cmd in &s.commands {
        let kind = match cmd.kind {
            crate::crd::CommandKind::Abort => "abort",
            crate::crd::CommandKind::Retry => "retry",
        };
        add(
            Some(cmd.at),
            "command",
            format!(
                "{kind} of revision {} requested by {} via {}",
                cmd.revision, cmd.by, cmd.via
            ),
        );
    }
    for h in &s.hooks {
        add(
            Some(h.finished_at.unwrap_or(h.started_at)),
            "webhook",
            format!(
                "webhook {} ({}): {}",
                h.name,
                h.type_.as_str(),
                h.describe()
            ),
        );
    }
    if let Some(w) = &s.policy_wait {
        add(
            Some(w.since),
            "policy",
            format!(
                "waiting: {} by {}: {}",
                w.reason.as_str(),
                w.policy,
                w.message
            ),
        );
    }
    if let Some(o) = &s.emergency_override {
        add(
            Some(o.at),
            "warning",
            format!(
                "emergency override of revision {} by {} via {}: {}",
                o.revision, o.by, o.via, o.reason
            ),
        );
    }
    for e in events {
        let times = if e.count > 1 {
            format!(" (×{})", e.count)
        } else {
            String::new()
        };
        add(
            e.at,
            if e.type_ == "Warning" {
                "warning"
            } else {
                "event"
            },
            format!("{}: {}{times}", e.reason, e.note),
        );
    }
    out.sort_by_key(|e| e.at);
    out
}

/// The release page's data: the Canary, what it offers, its timeline.
pub fn detail(
    c: &Canary,
    events: &[EventRow],
    events_error: Option<String>,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "namespace": c.metadata.namespace,
        "name": c.metadata.name,
        "created": created(c),
        "spec": c.spec,
        "status": c.status.clone().unwrap_or_default(),
        "row": row(c, now),
        "actions": actions(c),
        "timeline": timeline(c, events),
        "eventsError": events_error,
    })
}
