use chrono::{Duration, TimeZone};

use super::*;
use crate::crd::{CanaryPhase, CanarySpec, CommandKind, GateKind, MetricVerdict};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap() + Duration::seconds(secs)
}

fn spec(hooks: serde_json::Value) -> CanarySpec {
    serde_json::from_value(serde_json::json!({
        "targetRef": {"name": "podinfo"},
        "analysis": {"steps": [10, 50], "interval": "1m"},
        "webhooks": hooks,
    }))
    .unwrap()
}

fn plan_of(spec: &CanarySpec) -> ReleasePlan {
    let mut p = ReleasePlan::from_spec(spec, false).unwrap();
    p.pre_rollout = spec
        .webhooks
        .iter()
        .any(|h| h.type_ == WebhookType::PreRollout);
    p.gates = super::super::effective_gates(spec);
    p
}

/// Release started at t(0), at step 1 since t(0): its first check is due at t(60).
fn at_step(step: i32) -> CanaryStatus {
    CanaryStatus {
        phase: CanaryPhase::Progressing,
        current_step: step,
        canary_weight: if step > 0 { 10 } else { 0 },
        canary_revision: Some("rev2".into()),
        stable_revision: Some("rev1".into()),
        release_started_at: Some(t(0)),
        step_started_at: Some(t(0)),
        ..Default::default()
    }
}

fn hooks_json() -> serde_json::Value {
    serde_json::json!([
        {"name": "load", "type": "rollout", "url": "http://lt/"},
        {"name": "stop", "type": "rollback", "url": "http://rb/"},
        {"name": "events", "type": "event", "url": "http://ev/"},
    ])
}

fn plan(
    spec: &CanarySpec,
    status: &CanaryStatus,
    now: i64,
    poll: &dyn Fn(&HookRun) -> Polled,
) -> HookPlan {
    plan_hooks(
        &HookInput {
            hooks: &spec.webhooks,
            status,
            plan: &plan_of(spec),
            serving: true,
            now: t(now),
        },
        poll,
    )
}

fn answered(code: u16) -> impl Fn(&HookRun) -> Polled {
    move |r: &HookRun| Polled::Finished {
        result: HookResult {
            name: r.name.clone(),
            type_: r.type_,
            status: Some(code),
            attempts: 1,
            error: None,
        },
        at: t(70),
    }
}

const CHECK_AT_60: &str = "1795348800/step-1/check-1795348860";

#[test]
fn a_due_check_starts_its_hooks_records_them_running_and_waits_only_for_rollout_ones() {
    let spec = spec(hooks_json());
    let st = at_step(1);
    // Not due yet: nothing starts.
    let p = plan(&spec, &st, 59, &|_| Polled::Unknown);
    assert!(p.start.is_empty() && p.runs.is_empty() && p.waits_for.is_empty());
    let p = plan(&spec, &st, 60, &|_| Polled::Unknown);
    let started: Vec<(&str, &str)> = p
        .start
        .iter()
        .map(|s| (s.hook.name.as_str(), s.passage.as_str()))
        .collect();
    assert_eq!(started, vec![("load", CHECK_AT_60), ("stop", CHECK_AT_60)]);
    assert!(p.runs.iter().all(|r| r.running() && r.started_at == t(60)));
    assert_eq!(p.runs.len(), 2, "informational hooks are not recorded");
    assert_eq!(
        p.waits_for,
        vec!["webhook load (rollout) running since 12:01:00"]
    );
    assert!(p.check_metrics.is_empty() && p.commands.is_empty());
}

#[test]
fn answers_are_picked_up_once_and_judged_with_the_check() {
    let spec = spec(hooks_json());
    let mut st = at_step(1);
    st.hooks = plan(&spec, &st, 60, &|_| Polled::Unknown).runs;
    // Still running: no second call, the check still waits.
    let p = plan(&spec, &st, 65, &|_| Polled::Running);
    assert!(p.start.is_empty());
    assert_eq!(p.waits_for.len(), 1);
    // Answered: recorded, judged as the check's webhook verdicts, nothing restarted.
    let p = plan(&spec, &st, 75, &answered(503));
    assert!(p.start.is_empty() && p.waits_for.is_empty());
    let load = p.runs.iter().find(|r| r.name == "load").unwrap();
    assert_eq!(
        (load.finished_at, load.http_status, load.ok()),
        (Some(t(70)), Some(503), false)
    );
    assert_eq!(p.check_metrics.len(), 1);
    assert_eq!(p.check_metrics[0].name, "webhook/load");
    assert_eq!(p.check_metrics[0].verdict, MetricVerdict::Fail);
    assert!(
        p.check_metrics[0].reason.contains("HTTP 503"),
        "{:?}",
        p.check_metrics[0]
    );
    // The next reconcile reads the answer from the status (the runner may be gone).
    st.hooks = p.runs;
    let p = plan(&spec, &st, 76, &|_| panic!("finished calls are not polled"));
    assert!(p.start.is_empty());
    assert_eq!(p.check_metrics[0].verdict, MetricVerdict::Fail);
}

#[test]
fn a_call_lost_with_the_old_process_is_started_again_and_an_unwanted_one_says_so() {
    let spec = spec(hooks_json());
    let mut st = at_step(1);
    st.hooks = plan(&spec, &st, 60, &|_| Polled::Unknown).runs;
    // A new process: the status says running, the runner knows nothing.
    let p = plan(&spec, &st, 80, &|_| Polled::Unknown);
    assert_eq!(p.start.len(), 2, "both started again");
    assert!(p.runs.iter().all(|r| r.running() && r.started_at == t(80)));
    // Once the check was judged (no longer due), a lost call is marked interrupted
    // instead of running forever in the status.
    st.last_analysis_at = Some(t(90));
    let p = plan(&spec, &st, 91, &|_| Polled::Unknown);
    assert!(p.start.is_empty());
    assert!(p.runs.iter().all(|r| !r.running()
        && r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("interrupted"))));
    assert!(p.check_metrics.is_empty() && p.commands.is_empty());
}

#[test]
fn an_earlier_call_still_running_holds_the_next_check_without_a_second_call() {
    let spec = spec(hooks_json());
    let mut st = at_step(1);
    st.hooks = plan(&spec, &st, 60, &|_| Polled::Unknown).runs;
    // The check was judged on failing metrics meanwhile; the next is due at 130.
    st.last_analysis_at = Some(t(70));
    let p = plan(&spec, &st, 130, &|_| Polled::Running);
    assert!(p.start.is_empty(), "never two calls of one hook at once");
    assert_eq!(
        p.waits_for,
        vec!["webhook load (rollout) its previous call is still running since 12:01:00"]
    );
    // Once it answered, the current check's call starts.
    let p = plan(&spec, &st, 131, &answered(200));
    assert_eq!(p.start.len(), 2);
    assert!(p.start[0].passage.ends_with("check-1795348930"));
    assert!(
        p.check_metrics.is_empty(),
        "an old check's answer judges nothing"
    );
    // A call of another release is replaced at once.
    let mut next = st.clone();
    next.release_started_at = Some(t(100));
    next.step_started_at = Some(t(100));
    next.last_analysis_at = None;
    let p = plan(&spec, &next, 160, &|_| Polled::Running);
    assert_eq!(p.start.len(), 2);
}

#[test]
fn a_rollback_hook_2xx_of_this_release_aborts_whichever_check_it_answered() {
    let spec = spec(hooks_json());
    let mut st = at_step(1);
    st.hooks = plan(&spec, &st, 60, &|_| Polled::Unknown).runs;
    st.last_analysis_at = Some(t(65));
    // Not due any more, but the rollback hook's 2xx still rolls back this release.
    let p = plan(&spec, &st, 80, &answered(200));
    assert_eq!(p.commands.len(), 1);
    assert_eq!(p.commands[0].kind, CommandKind::Abort);
    assert_eq!(p.commands[0].by, "webhook:stop");
    // The same revision released again (a retry) is not aborted by the old answer.
    st.hooks = p.runs;
    st.release_started_at = Some(t(300));
    assert!(plan(&spec, &st, 301, &|_| Polled::Unknown)
        .commands
        .is_empty());
    // A refusal (non-2xx) is no abort.
    let mut st = at_step(1);
    st.hooks = plan(&spec, &st, 60, &|_| Polled::Unknown).runs;
    assert!(plan(&spec, &st, 61, &answered(404)).commands.is_empty());
}

#[test]
fn confirm_hooks_open_their_gate_when_all_answered_2xx_and_a_refusal_is_asked_again_later() {
    let spec = spec(serde_json::json!([
        {"name": "a", "type": "confirm-traffic-increase", "url": "http://a/"},
        {"name": "b", "type": "confirm-traffic-increase", "url": "http://b/"},
    ]));
    let mut st = at_step(1);
    st.phase = CanaryPhase::WaitingApproval;
    st.pending_gate = Some(GateKind::BeforeTrafficIncrease);
    st.last_analysis_at = Some(t(60));
    let p = plan(&spec, &st, 61, &|_| Polled::Unknown);
    assert_eq!(p.start.len(), 2);
    assert_eq!(
        p.start[0].passage,
        "1795348800/beforeTrafficIncrease/step-1"
    );
    assert!(
        p.waits_for.is_empty(),
        "a gate waits on its own; no check is held"
    );
    st.hooks = p.runs;
    // a says yes, b says no: the gate stays closed.
    let split = |r: &HookRun| {
        let code = if r.name == "a" { 200 } else { 409 };
        answered(code)(r)
    };
    let p = plan(&spec, &st, 75, &split);
    assert!(p.approvals.is_empty() && p.start.is_empty());
    st.hooks = p.runs;
    // b is asked again one interval after it answered (t(70) + 1m); a is not.
    assert!(plan(&spec, &st, 129, &|_| Polled::Unknown).start.is_empty());
    let p = plan(&spec, &st, 130, &|_| Polled::Unknown);
    assert_eq!(p.start.len(), 1);
    assert_eq!(p.start[0].hook.name, "b");
    st.hooks = p.runs;
    let p = plan(&spec, &st, 131, &answered(200));
    assert_eq!(p.approvals.len(), 1);
    assert_eq!(p.approvals[0].gate, GateKind::BeforeTrafficIncrease);
    assert_eq!(p.approvals[0].by, "webhook:a,b");
}

#[test]
fn pre_rollout_hooks_test_a_serving_canary_and_report_once_all_answered() {
    let spec = spec(serde_json::json!([
        {"name": "conformance", "type": "pre-rollout", "url": "http://c/"},
    ]));
    let st = at_step(0);
    let not_serving = plan_hooks(
        &HookInput {
            hooks: &spec.webhooks,
            status: &st,
            plan: &plan_of(&spec),
            serving: false,
            now: t(5),
        },
        |_| Polled::Unknown,
    );
    assert!(not_serving.start.is_empty(), "nothing to test yet");
    let p = plan(&spec, &st, 5, &|_| Polled::Unknown);
    assert_eq!(p.start[0].passage, "1795348800/pre-rollout/first");
    assert_eq!(
        p.waits_for,
        vec!["webhook conformance (pre-rollout) running since 12:00:05"]
    );
    assert!(p.pre_rollout.is_none());
    let mut st = st;
    st.hooks = p.runs;
    let p = plan(&spec, &st, 30, &answered(200));
    let report = p.pre_rollout.expect("answered");
    assert_eq!(report.metrics[0].name, "webhook/conformance");
    assert_eq!(report.metrics[0].verdict, MetricVerdict::Pass);
}
