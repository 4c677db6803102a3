//! The webhooks that judge or gate a release (pre-rollout, rollout, rollback,
//! confirm-*) run in the background, never inside a reconcile. This module is the
//! pure half: from the persisted status (`status.hooks`), the plan, what the runner
//! says of the calls it holds, and `now`, it decides which calls should be running,
//! which to start, and what the answers recorded so far mean for this reconcile
//! (a pre-rollout report, rollout verdicts for the check, an abort, a gate approval).
//! The rollout core then decides on those, as on any other observation.
//!
//! A call is identified by (hook, revision, passage): the passage names the check,
//! pre-rollout round or gate passage it answers for, derived from the status alone, so
//! a controller that restarted computes the same one. A call the status says is
//! running but the runner does not know (its task was lost with the old process) is
//! simply started again.

use chrono::{DateTime, Utc};

use super::webhooks::{
    gate_approvals_from_confirm_hooks, hook_checks, pending_confirm_kind, rollback_requested,
    HookResult,
};
use crate::crd::{
    Approval, CanaryStatus, Command, HookRun, MetricStatus, WebhookSpec, WebhookType,
};
use crate::rollout::text::one_line;
use crate::rollout::{analysis_due, next_check_at, pre_rollout_due, AnalysisReport, ReleasePlan};

/// Longest error text kept in a [`HookRun`].
pub const HOOK_ERROR_MAX_CHARS: usize = 200;

/// What the runner knows of a call the status records as running.
#[derive(Clone, Debug, PartialEq)]
pub enum Polled {
    Running,
    Finished {
        result: HookResult,
        at: DateTime<Utc>,
    },
    /// Not this call: the process that started it is gone (or it was replaced).
    Unknown,
}

/// A call to start once the decision is persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct HookStart {
    pub hook: WebhookSpec,
    pub revision: String,
    pub passage: String,
}

/// The hooks' part of one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HookPlan {
    /// `status.hooks` after this reconcile: answers picked up, new calls recorded.
    pub runs: Vec<HookRun>,
    /// Calls to start after the status is persisted.
    pub start: Vec<HookStart>,
    /// Every pre-rollout hook of the round due now answered: its verdicts.
    pub pre_rollout: Option<AnalysisReport>,
    /// Every rollout hook of the check due now answered: its verdicts, to merge into
    /// the check.
    pub check_metrics: Vec<MetricStatus>,
    /// What the check (or pre-rollout round) due now still waits for, one line each.
    pub waits_for: Vec<String>,
    /// All confirm hooks of the gate waited at answered 2xx.
    pub approvals: Vec<Approval>,
    /// A rollback hook of this release answered 2xx.
    pub commands: Vec<Command>,
}

/// Everything the plan is made from.
#[derive(Clone, Copy)]
pub struct HookInput<'a> {
    pub hooks: &'a [WebhookSpec],
    pub status: &'a CanaryStatus,
    pub plan: &'a ReleasePlan,
    /// The canary has ready pods (pre-rollout hooks test it).
    pub serving: bool,
    pub now: DateTime<Utc>,
}

fn judges_or_gates(t: WebhookType) -> bool {
    !matches!(t, WebhookType::Event | WebhookType::PostRollout)
}

fn release_tag(status: &CanaryStatus) -> String {
    status
        .release_started_at
        .map_or_else(|| "-".to_string(), |t| t.timestamp().to_string())
}

/// The passage a hook of `kind` should be answering now, if any.
pub fn wanted_passage(
    kind: WebhookType,
    status: &CanaryStatus,
    plan: &ReleasePlan,
    serving: bool,
    now: DateTime<Utc>,
) -> Option<String> {
    let release = release_tag(status);
    let check = || {
        let due = next_check_at(status, plan)?;
        Some(format!(
            "{release}/step-{}/check-{}",
            status.current_step,
            due.timestamp()
        ))
    };
    match kind {
        WebhookType::PreRollout if plan.pre_rollout && serving => {
            pre_rollout_due(status, plan, now).then(|| {
                let round = status
                    .last_analysis_at
                    .map_or_else(|| "first".to_string(), |t| t.timestamp().to_string());
                format!("{release}/pre-rollout/{round}")
            })
        }
        WebhookType::Rollout if !plan.skip_analysis => {
            analysis_due(status, plan, now).then(check).flatten()
        }
        WebhookType::Rollback => analysis_due(status, plan, now).then(check).flatten(),
        WebhookType::ConfirmRollout
        | WebhookType::ConfirmTrafficIncrease
        | WebhookType::ConfirmPromotion
            if pending_confirm_kind(status) == Some(kind) =>
        {
            let gate = status.pending_gate.map_or("gate", |g| g.as_str());
            Some(format!("{release}/{gate}/step-{}", status.current_step))
        }
        _ => None,
    }
}

impl From<&HookRun> for HookResult {
    fn from(r: &HookRun) -> Self {
        HookResult {
            name: r.name.clone(),
            type_: r.type_,
            status: r.http_status.and_then(|s| u16::try_from(s).ok()),
            attempts: r.attempts,
            error: r.error.clone(),
        }
    }
}

fn finish(run: &mut HookRun, result: &HookResult, at: DateTime<Utc>) {
    run.finished_at = Some(at.max(run.started_at));
    run.http_status = result.status.map(i32::from);
    run.attempts = result.attempts;
    run.error = result
        .error
        .as_deref()
        .map(|e| one_line(e, HOOK_ERROR_MAX_CHARS));
}

/// Plan the hooks for one reconcile. `poll` says what the runner knows of a call the
/// status records as running.
pub fn plan_hooks(input: &HookInput<'_>, poll: impl Fn(&HookRun) -> Polled) -> HookPlan {
    let HookInput {
        hooks,
        status,
        plan,
        serving,
        now,
    } = *input;
    let revision = status.canary_revision.clone().unwrap_or_default();
    let mut out = HookPlan::default();
    // Records of hooks still in the spec (same name and type); answers picked up.
    let mut runs: Vec<(HookRun, bool)> = Vec::new();
    for r in &status.hooks {
        if !hooks.iter().any(|h| h.name == r.name && h.type_ == r.type_) {
            continue;
        }
        let mut r = r.clone();
        let mut lost = false;
        if r.running() {
            match poll(&r) {
                Polled::Running => {}
                Polled::Finished { result, at } => finish(&mut r, &result, at),
                Polled::Unknown => lost = true,
            }
        }
        runs.push((r, lost));
    }
    let mut answered: Vec<HookRun> = Vec::new();
    for hook in hooks.iter().filter(|h| judges_or_gates(h.type_)) {
        let wanted = wanted_passage(hook.type_, status, plan, serving, now);
        // The pre-rollout round and the check wait for their hooks; confirm and
        // rollback hooks hold nothing up.
        let waits = matches!(hook.type_, WebhookType::PreRollout | WebhookType::Rollout);
        let idx = runs.iter().position(|(r, _)| r.name == hook.name);
        let start = |out: &mut HookPlan, runs: &mut Vec<(HookRun, bool)>, p: String| {
            let run = HookRun {
                name: hook.name.clone(),
                type_: hook.type_,
                revision: revision.clone(),
                passage: p.clone(),
                started_at: now,
                finished_at: None,
                http_status: None,
                attempts: 0,
                error: None,
            };
            if waits {
                out.waits_for.push(waiting_line(&run, false));
            }
            out.start.push(HookStart {
                hook: hook.clone(),
                revision: revision.clone(),
                passage: p,
            });
            match idx {
                Some(i) => runs[i] = (run, false),
                None => runs.push((run, false)),
            }
        };
        let Some(p) = wanted else {
            if let Some(i) = idx {
                let (r, lost) = &mut runs[i];
                if *lost {
                    // Not wanted any more: say it was cut off rather than running forever.
                    r.finished_at = Some(now);
                    r.error = Some(
                        "interrupted: the controller restarted during the call; it is called again when next due".into(),
                    );
                    *lost = false;
                }
            }
            continue;
        };
        let this_call = |r: &HookRun| r.passage == p && r.revision == revision;
        let same_release = |r: &HookRun| {
            r.revision == revision && r.passage.split('/').next() == p.split('/').next()
        };
        match idx.map(|i| runs[i].clone()) {
            None => start(&mut out, &mut runs, p),
            Some((_, true)) => start(&mut out, &mut runs, p),
            // A call for another release is of no use: replace it (the runner drops it).
            Some((r, false)) if r.running() && !same_release(&r) => start(&mut out, &mut runs, p),
            // An earlier call of this release still runs (a load test of the previous
            // check): wait for it rather than run two at once.
            Some((r, false)) if r.running() => {
                if waits {
                    out.waits_for.push(waiting_line(&r, !this_call(&r)));
                }
            }
            Some((r, false)) if this_call(&r) => {
                let retry = !r.ok()
                    && super::webhooks::gate_of(r.type_).is_some()
                    && r.finished_at.is_some_and(|t| now >= t + plan.interval);
                if retry {
                    start(&mut out, &mut runs, p);
                } else {
                    answered.push(r);
                }
            }
            Some(_) => start(&mut out, &mut runs, p),
        }
    }
    // What the answers mean now.
    let of = |t: WebhookType| hooks.iter().filter(move |h| h.type_ == t);
    let all_answered = |t: WebhookType| {
        let mut wanted = of(t).peekable();
        wanted.peek().is_some() && of(t).all(|h| answered.iter().any(|r| r.name == h.name))
    };
    let results = |t: WebhookType| -> Vec<HookResult> {
        answered
            .iter()
            .filter(|r| r.type_ == t)
            .map(HookResult::from)
            .collect()
    };
    if all_answered(WebhookType::PreRollout) {
        out.pre_rollout = Some(AnalysisReport {
            metrics: hook_checks(&results(WebhookType::PreRollout), now),
            critical: vec![],
        });
    }
    if all_answered(WebhookType::Rollout) {
        out.check_metrics = hook_checks(&results(WebhookType::Rollout), now);
    }
    if let Some(kind) = pending_confirm_kind(status) {
        if all_answered(kind) {
            out.approvals = gate_approvals_from_confirm_hooks(&results(kind), status, now);
        }
    }
    // A rollback hook's 2xx for this release rolls it back, whichever check it answered.
    let release = release_tag(status);
    let rollback: Vec<HookResult> = runs
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.type_ == WebhookType::Rollback && r.ok() && r.revision == revision)
        .filter(|r| r.passage.split('/').next() == Some(release.as_str()))
        .map(HookResult::from)
        .collect();
    out.commands
        .extend(rollback_requested(&rollback, status, now));
    out.runs = runs.into_iter().map(|(r, _)| r).collect();
    out
}

fn waiting_line(r: &HookRun, previous: bool) -> String {
    let what = if previous {
        "its previous call is still running since"
    } else {
        "running since"
    };
    format!(
        "webhook {} ({}) {what} {}",
        r.name,
        r.type_.as_str(),
        r.started_at.format("%H:%M:%S")
    )
}

#[cfg(test)]
#[path = "hook_runs_tests.rs"]
mod tests;
