//! The records the gates write are the ones the core honours: approvals, rejections,
//! aborts, retries, confirm and rollback webhooks driven through `rollout::transition`
//! with a small simulated world.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use serin::crd::{Canary, CanaryPhase, CanaryStatus, GateKind, WebhookSpec, WebhookType};
use serin::gates::{
    effective_gates, gate_approvals_from_confirm_hooks, plan_decision, rollback_requested,
    DecisionRequest, HookResult, Planned, Verb, Via,
};
use serin::notify::NotifyEvent;
use serin::rollout::{
    transition, Action, AnalysisReport, Decision as Step, Observation, ReleasePlan,
};

struct World {
    canary: Canary,
    plan: ReleasePlan,
    obs: Observation,
    now: DateTime<Utc>,
    notes: Vec<(String, String)>,
    last: Option<Step>,
}

impl World {
    fn new(spec: serde_json::Value) -> Self {
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": spec,
            "status": {"phase": "Initialized", "stableRevision": "rev1"},
        }))
        .unwrap();
        let mut plan = ReleasePlan::from_spec(&canary.spec, false).unwrap();
        plan.gates = effective_gates(&canary.spec);
        let obs = Observation {
            target_revision: "rev2".into(),
            primary_exists: true,
            primary_revision: Some("rev1".into()),
            primary_ready: true,
            primary_replicas: 2,
            canary_replicas: 0,
            canary_ready: true,
            routed_weight: Some(0),
            ..Default::default()
        };
        World {
            canary,
            plan,
            obs,
            now: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            notes: vec![],
            last: None,
        }
    }

    fn status(&self) -> CanaryStatus {
        self.canary.status.clone().unwrap_or_default()
    }

    /// One reconcile a minute later: a passing check when due, actions carried out.
    fn tick(&mut self) {
        self.now += Duration::seconds(61);
        let status = self.status();
        self.obs.analysis = Some(AnalysisReport::default());
        let d = transition(&status, &self.plan, &self.obs, self.now);
        for a in &d.actions {
            match a {
                Action::SetWeight { weight } => self.obs.routed_weight = Some(*weight),
                Action::ScaleCanary { replicas } => self.obs.canary_replicas = *replicas,
                Action::PromotePrimary { revision } => {
                    self.obs.primary_revision = Some(revision.clone())
                }
                Action::InitializePrimary { .. } => {}
            }
        }
        for n in &d.notes {
            self.notes.push((n.reason.to_string(), n.message.clone()));
        }
        self.canary.status = Some(d.status.clone());
        self.last = Some(d);
    }

    /// Record a decision the way the API would, and let the server merge it.
    fn decide(&mut self, verb: Verb, expect: Option<serin::gates::GateRef>, by: &str, via: Via) {
        let planned = plan_decision(
            &self.canary,
            &DecisionRequest {
                expect,
                ..DecisionRequest::new(verb)
            },
            by,
            via,
            self.now,
        )
        .unwrap();
        let Planned::Status { patch, .. } = planned else {
            panic!("{planned:?}")
        };
        // A merge patch: the server replaces both lists with what it holds.
        let status = &patch["status"];
        self.obs.approvals = serde_json::from_value(status["approvals"].clone()).unwrap();
        self.obs.commands = serde_json::from_value(status["commands"].clone()).unwrap();
        let st = self.status();
        let mut merged = st.clone();
        merged.approvals = self.obs.approvals.clone();
        merged.commands = self.obs.commands.clone();
        self.canary.status = Some(merged);
    }

    fn run_until(&mut self, pred: impl Fn(&CanaryStatus) -> bool) {
        for _ in 0..50 {
            if pred(&self.status()) {
                return;
            }
            self.tick();
        }
        panic!(
            "never reached: {:#?}\nnotes: {:#?}",
            self.status(),
            self.notes
        );
    }
}

fn waiting(s: &CanaryStatus) -> bool {
    s.phase == CanaryPhase::WaitingApproval
}

#[test]
fn approvals_from_slack_buttons_carry_a_release_through_every_gate() {
    let mut w = World::new(json!({"targetRef": {"name": "podinfo"},
        "analysis": {"steps": [10, 50], "interval": "1m"},
        "gates": {"beforeRollout": true, "beforeTrafficIncrease": true, "beforePromotion": true}}));
    let mut gates_seen = vec![];
    for _ in 0..10 {
        w.run_until(|s| waiting(s) || s.phase == CanaryPhase::Succeeded);
        let s = w.status();
        if s.phase == CanaryPhase::Succeeded {
            break;
        }
        // The notification for the wait carries the button that approves exactly it.
        let note = w
            .last
            .as_ref()
            .unwrap()
            .notes
            .iter()
            .find(|n| n.reason.as_str() == "WaitingApproval")
            .unwrap()
            .clone();
        let ev = NotifyEvent::from_note("shop", "podinfo", &w.canary.spec, &s, &note, w.now);
        let pending = ev.pending.clone().unwrap();
        gates_seen.push((pending.gate, pending.step));
        w.decide(Verb::Approve, Some(pending), "alice (slack:U1)", Via::Slack);
        w.tick();
        assert_ne!(
            w.status().phase,
            CanaryPhase::WaitingApproval,
            "approval not honoured"
        );
    }
    assert_eq!(w.status().phase, CanaryPhase::Succeeded, "{:#?}", w.notes);
    assert_eq!(
        gates_seen,
        vec![
            (GateKind::BeforeRollout, 0),
            (GateKind::BeforeTrafficIncrease, 0),
            (GateKind::BeforeTrafficIncrease, 1),
            (GateKind::BeforePromotion, 2),
        ]
    );
    assert_eq!(w.obs.primary_revision.as_deref(), Some("rev2"));
}

#[test]
fn approve_with_nothing_pending_is_refused() {
    let mut w = World::new(json!({"targetRef": {"name": "podinfo"}, "analysis": {"steps": [10]}}));
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Progressing);
    let err = plan_decision(
        &w.canary,
        &DecisionRequest::new(Verb::Approve),
        "a",
        Via::Api,
        w.now,
    )
    .unwrap_err();
    assert_eq!(err.http_status(), 409);
}

#[test]
fn rejection_rolls_back_and_says_who() {
    let mut w =
        World::new(json!({"targetRef": {"name": "podinfo"}, "gates": {"beforeRollout": true}}));
    w.run_until(waiting);
    w.decide(Verb::Reject, None, "bob", Via::Cli);
    w.tick();
    let s = w.status();
    assert_eq!(s.phase, CanaryPhase::Failed);
    assert!(
        s.message.contains("rejected by bob via cli"),
        "{}",
        s.message
    );
}

#[test]
fn abort_then_retry() {
    let mut w =
        World::new(json!({"targetRef": {"name": "podinfo"}, "analysis": {"steps": [10, 20, 30]}}));
    w.run_until(|s| s.current_step == 1);
    w.decide(Verb::Abort, None, "ops", Via::Api);
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Failed);
    assert_eq!(w.status().failed_revision.as_deref(), Some("rev2"));
    assert!(w.status().message.contains("aborted by ops via api"));
    // Nothing is in flight to abort any more; a retry starts the revision over.
    assert!(matches!(
        plan_decision(&w.canary, &DecisionRequest::new(Verb::Abort), "ops", Via::Api, w.now),
        Err(e) if e.http_status() == 409
    ));
    w.tick();
    w.decide(Verb::Retry, None, "ops", Via::Cli);
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Progressing);
    assert!(w
        .notes
        .iter()
        .any(|(r, m)| r == "Retry" && m.contains("requested by ops via cli")));
}

fn hook(name: &str, t: WebhookType) -> serde_json::Value {
    serde_json::to_value(WebhookSpec {
        name: name.into(),
        type_: t,
        url: "http://127.0.0.1:9/".into(),
        timeout: "1s".into(),
        retries: 0,
        metadata: Default::default(),
        secret_ref: None,
    })
    .unwrap()
}

#[test]
fn confirm_hook_opens_its_gate_and_rollback_hook_aborts() {
    let mut w = World::new(
        json!({"targetRef": {"name": "podinfo"}, "analysis": {"steps": [10, 20]},
        "webhooks": [hook("go", WebhookType::ConfirmRollout), hook("stop", WebhookType::Rollback)]}),
    );
    w.run_until(waiting);
    assert_eq!(w.status().pending_gate, Some(GateKind::BeforeRollout));
    let result = |name: &str, t, code| HookResult {
        name: name.into(),
        type_: t,
        status: Some(code),
        attempts: 1,
        error: None,
    };
    // 503 from the confirm hook: still waiting.
    let none = gate_approvals_from_confirm_hooks(
        &[result("go", WebhookType::ConfirmRollout, 503)],
        &w.status(),
        w.now,
    );
    assert!(none.is_empty());
    let yes = gate_approvals_from_confirm_hooks(
        &[result("go", WebhookType::ConfirmRollout, 200)],
        &w.status(),
        w.now,
    );
    w.obs.approvals.extend(yes);
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Progressing);
    w.run_until(|s| s.current_step == 1);
    assert!(rollback_requested(
        &[result("stop", WebhookType::Rollback, 404)],
        &w.status(),
        w.now
    )
    .is_none());
    let abort = rollback_requested(
        &[result("stop", WebhookType::Rollback, 200)],
        &w.status(),
        w.now,
    )
    .unwrap();
    w.obs.commands.push(abort);
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Failed);
    assert!(
        w.status().message.contains("webhook:stop"),
        "{}",
        w.status().message
    );
}

#[test]
fn a_revision_retried_after_a_rejection_waits_at_its_gate_again() {
    let mut w =
        World::new(json!({"targetRef": {"name": "podinfo"}, "gates": {"beforeRollout": true}}));
    w.run_until(waiting);
    w.decide(Verb::Reject, None, "bob", Via::Cli);
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Failed);
    w.tick();
    w.decide(Verb::Retry, None, "ops", Via::Cli);
    w.tick();
    // The old rejection was for the release that ended; this one waits for a human.
    w.run_until(|s| waiting(s) || s.phase == CanaryPhase::Failed);
    assert_eq!(
        w.status().phase,
        CanaryPhase::WaitingApproval,
        "{:#?}",
        w.notes
    );
    w.decide(Verb::Approve, None, "alice", Via::Api);
    w.tick();
    assert_eq!(w.status().phase, CanaryPhase::Progressing);
}
