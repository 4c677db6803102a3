//! What the network answers serin: a Prometheus answer, and the outcome of a webhook
//! call as the runner reports it.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{bounded, Bytes};
use crate::crd::{CanaryPhase, CanarySpec, CanaryStatus, GateKind, HookRun, WebhookType};
use crate::gates::HOOK_ERROR_MAX_CHARS;
use crate::gates::{effective_gates, plan_hooks, HookInput, HookPlan, HookResult, Polled};
use crate::providers::DEFAULT_MAX_BODY;
use crate::providers::{decode_body, scalar_of, series_of, vector_of, MetricError};
use crate::rollout::ReleasePlan;

fn metric_error_bounded(e: &MetricError) {
    bounded("a metric error", &e.to_string());
}

/// A Prometheus answer: two bytes pick the HTTP status, the rest is the JSON body as
/// the capped reader hands it over. Decoded, then read as a scalar, a vector and a
/// range, as the three kinds of query do.
pub fn prometheus_answer(data: &[u8]) {
    let Some((head, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    if body.len() > DEFAULT_MAX_BODY {
        // The reader refuses it before decoding (response.rs).
        return;
    }
    let status = 100 + u16::from_be_bytes(*head) % 500;
    match decode_body(status, body, Duration::from_secs(10)) {
        Ok(answer) => {
            if let Err(e) = scalar_of(&answer) {
                metric_error_bounded(&e);
            }
            if let Err(e) = vector_of(&answer) {
                metric_error_bounded(&e);
            }
            if let Err(e) = series_of(&answer) {
                metric_error_bounded(&e);
            }
        }
        Err(e) => metric_error_bounded(&e),
    }
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_348_800 + secs, 0).unwrap()
}

/// A Canary with one hook of every kind that judges or gates a release.
fn hooked_spec() -> CanarySpec {
    let hooks: Vec<serde_json::Value> = [
        "pre-rollout",
        "rollout",
        "rollback",
        "confirm-rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
    ]
    .iter()
    .map(|kind| serde_json::json!({"name": kind, "type": kind, "url": "http://hooks.test/"}))
    .collect();
    serde_json::from_value(serde_json::json!({
        "targetRef": {"name": "podinfo"},
        "analysis": {"steps": [10, 50], "interval": "1m"},
        "webhooks": hooks,
    }))
    .expect("a valid spec")
}

/// Where the release stands: pre-rollout round, a check due, or waiting at a gate.
fn status_for(pick: u8) -> CanaryStatus {
    let (step, gate) = match pick % 4 {
        0 => (0, None),
        1 => (1, None),
        2 => (1, Some(GateKind::BeforeTrafficIncrease)),
        _ => (2, Some(GateKind::BeforePromotion)),
    };
    CanaryStatus {
        phase: if gate.is_some() {
            CanaryPhase::WaitingApproval
        } else {
            CanaryPhase::Progressing
        },
        pending_gate: gate,
        current_step: step,
        canary_weight: if step > 0 { 10 } else { 0 },
        canary_revision: Some("rev2".into()),
        stable_revision: Some("rev1".into()),
        release_started_at: Some(t(0)),
        step_started_at: Some(t(0)),
        ..Default::default()
    }
}

/// Answers to the calls a reconcile starts: a byte picks where the release stands;
/// then per call two bytes of HTTP status (0: no answer), one of attempts, one of
/// error length and that many bytes of error text. Planned twice (start, then pick
/// the answers up); what lands in the status is held to its bounds.
pub fn webhook_results(data: &[u8]) {
    let Some((status, answers, second)) = answered_plan(data) else {
        return;
    };
    check_answered_plan(&status, &answers, &second);
}

/// The status after the first plan, the answers given, and the plan that read them.
pub(super) fn answered_plan(data: &[u8]) -> Option<(CanaryStatus, Vec<HookResult>, HookPlan)> {
    let mut input = Bytes(data);
    let pick = input.byte()?;
    let spec = hooked_spec();
    let mut plan = ReleasePlan::from_spec(&spec, false).ok()?;
    plan.pre_rollout = true;
    plan.gates = effective_gates(&spec);
    let mut status = status_for(pick);
    let now = t(61);
    let first = plan_hooks(
        &HookInput {
            hooks: &spec.webhooks,
            status: &status,
            plan: &plan,
            serving: true,
            now,
        },
        |_| Polled::Unknown,
    );
    status.hooks = first.runs;
    let answers: Vec<HookResult> = status
        .hooks
        .iter()
        .map(|run| {
            let code = input.u16().unwrap_or(200);
            let attempts = u32::from(input.byte().unwrap_or(1));
            let len = usize::from(input.byte().unwrap_or(0));
            let error = (code == 0).then(|| String::from_utf8_lossy(input.take(len)).into_owned());
            HookResult {
                name: run.name.clone(),
                type_: run.type_,
                status: (code != 0).then_some(code),
                attempts,
                error,
            }
        })
        .collect();
    let poll = |run: &HookRun| {
        status
            .hooks
            .iter()
            .position(|r| r == run)
            .map_or(Polled::Unknown, |i| Polled::Finished {
                result: answers[i].clone(),
                at: now,
            })
    };
    let second = plan_hooks(
        &HookInput {
            hooks: &spec.webhooks,
            status: &status,
            plan: &plan,
            serving: true,
            now: t(62),
        },
        poll,
    );
    Some((status, answers, second))
}

fn check_answered_plan(status: &CanaryStatus, answers: &[HookResult], second: &HookPlan) {
    for run in &second.runs {
        if let Some(e) = &run.error {
            assert!(
                e.chars().count() <= HOOK_ERROR_MAX_CHARS,
                "hook error of {} characters",
                e.chars().count()
            );
        }
        // Only the calls recorded are finished, with a time not before their start.
        if let Some(done) = run.finished_at {
            assert!(done >= run.started_at);
        }
    }
    let reports = second.pre_rollout.iter().flat_map(|r| r.metrics.iter());
    for m in second.check_metrics.iter().chain(reports) {
        bounded("a hook verdict", &m.reason);
    }
    for line in &second.waits_for {
        bounded("a waiting line", line);
    }
    // A confirm hook approves only the gate waited at, for this revision.
    for a in &second.approvals {
        assert_eq!(Some(a.gate), status.pending_gate, "{a:?}");
        assert_eq!(a.revision, "rev2");
    }
    // A rollback hook's command comes only from a 2xx answer of the rollback hook.
    if !second.commands.is_empty() {
        let rollback_ok = status
            .hooks
            .iter()
            .zip(answers)
            .any(|(run, a)| run.type_ == WebhookType::Rollback && a.ok());
        assert!(rollback_ok, "{:?}", second.commands);
    }
}
