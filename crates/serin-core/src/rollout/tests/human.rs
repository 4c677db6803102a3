//! Gates, commands, pause and pre-rollout checks in the transition table.

use super::*;

fn approval(gate: GateKind, step: i32, approved: bool) -> Approval {
    Approval {
        id: Approval::key(gate, "r2", step),
        gate,
        revision: "r2".into(),
        step,
        approved,
        by: "alice".into(),
        via: "cli".into(),
        at: at(100),
        groups: Vec::new(),
    }
}

#[test]
fn promotion_gate_waits_then_proceeds_on_approval_or_rolls_back_on_rejection() {
    let mut sp = spec();
    sp.gates.before_promotion = true;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let mut obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Pass)]),
        ..releasing(50)
    };
    let d = transition(&progressing(3, 0), &p, &obs, at(60));
    assert_eq!(d.status.phase, P::WaitingApproval);
    assert_eq!(d.status.pending_gate, Some(GateKind::BeforePromotion));
    assert!(
        d.actions.is_empty(),
        "canary keeps serving its weight while waiting"
    );
    assert_eq!(reasons(&d), vec!["WaitingApproval"]);
    let waiting = d.status.clone();

    // Hours later, still waiting: a gate has no deadline; checks keep passing.
    let d = transition(&waiting, &p, &obs, at(5 * 3600));
    assert_eq!(d.status.phase, P::WaitingApproval);
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    assert_eq!(d.status.last_analysis_at, Some(at(5 * 3600)));
    assert!(
        d.status.message.contains("still passes"),
        "{}",
        d.status.message
    );

    // An approval for another step does not open this gate.
    obs.approvals = vec![approval(GateKind::BeforePromotion, 2, true)];
    assert_eq!(
        transition(&waiting, &p, &obs, at(200)).status.phase,
        P::WaitingApproval
    );

    obs.approvals = vec![approval(GateKind::BeforePromotion, 3, true)];
    let d = transition(&waiting, &p, &obs, at(200));
    assert_eq!(d.status.phase, P::Promoting);
    assert_eq!(d.status.pending_gate, None);
    assert_eq!(
        d.actions,
        vec![Action::PromotePrimary {
            revision: "r2".into()
        }]
    );

    obs.approvals = vec![approval(GateKind::BeforePromotion, 3, false)];
    let d = transition(&waiting, &p, &obs, at(200));
    assert_eq!(d.status.phase, P::Failed);
    assert!(d.status.message.contains("rejected by alice via cli"));
}

#[test]
fn traffic_increase_gate_holds_the_weight() {
    let mut sp = spec();
    sp.gates.before_traffic_increase = true;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let mut obs = releasing(0);
    let d = transition(&progressing(0, 0), &p, &obs, at(10));
    assert_eq!(
        (d.status.phase, d.status.pending_gate),
        (P::WaitingApproval, Some(GateKind::BeforeTrafficIncrease))
    );
    assert!(d.actions.is_empty());
    obs.approvals = vec![approval(GateKind::BeforeTrafficIncrease, 0, true)];
    let d = transition(&d.status, &p, &obs, at(20));
    assert_eq!(
        (d.status.phase, d.status.canary_weight),
        (P::Progressing, 10)
    );
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 10 }]);
}

#[test]
fn rollout_gate_keeps_the_canary_scaled_down() {
    let mut sp = spec();
    sp.gates.before_rollout = true;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let d = transition(&idle(P::Succeeded), &p, &world("r2"), at(0));
    assert_eq!(
        (d.status.phase, d.status.pending_gate),
        (P::WaitingApproval, Some(GateKind::BeforeRollout))
    );
    assert!(d.actions.is_empty());
    let obs = Observation {
        approvals: vec![approval(GateKind::BeforeRollout, 0, true)],
        ..world("r2")
    };
    let d = transition(&d.status, &p, &obs, at(50));
    assert_eq!(d.status.phase, P::Progressing);
    assert_eq!(
        d.status.step_started_at,
        Some(at(50)),
        "deadline counts from the approval"
    );
    assert_eq!(d.actions, vec![Action::ScaleCanary { replicas: 3 }]);
}

#[test]
fn failed_revision_is_not_released_again_but_a_revert_is_recognised() {
    let mut s = idle(P::Failed);
    s.canary_revision = Some("r2".into());
    s.failed_revision = Some("r2".into());
    let d = transition(&s, &plan(), &world("r2"), at(0));
    assert_eq!(d.status.phase, P::Failed);
    assert!(d.actions.is_empty());
    let d = transition(&s, &plan(), &world("r1"), at(0));
    assert_eq!(d.status.phase, P::Initialized);
    assert_eq!(reasons(&d), vec!["Reverted"]);
    let d = transition(&s, &plan(), &world("r3"), at(0));
    assert_eq!(
        (d.status.phase, d.status.canary_revision.as_deref()),
        (P::Progressing, Some("r3"))
    );
}

fn command(kind: CommandKind, t: i64) -> Command {
    Command {
        id: format!("{kind:?}-{t}"),
        kind,
        revision: "r2".into(),
        by: "bob".into(),
        via: "api".into(),
        at: at(t),
    }
}

#[test]
fn abort_rolls_back_now_and_retry_releases_the_failed_revision_once() {
    let obs = Observation {
        commands: vec![command(CommandKind::Abort, 30)],
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &plan(), &obs, at(40));
    assert_eq!(d.status.phase, P::Failed);
    assert!(d.status.message.contains("aborted by bob via api"));
    let failed = d.status;

    let mut obs = world("r2");
    obs.commands = vec![
        command(CommandKind::Abort, 30),
        command(CommandKind::Retry, 50),
    ];
    let d = transition(&failed, &plan(), &obs, at(60));
    assert_eq!(d.status.phase, P::Progressing);
    assert_eq!(d.status.failed_revision, None);
    assert_eq!(reasons(&d), vec!["Retry", "Retry"]);
    // The old abort (before this release started) does not abort the retried release.
    let d2 = transition(&d.status, &plan(), &releasing(0), at(70));
    assert_eq!(d2.status.phase, P::Progressing);

    // A retry older than the failure is spent.
    let mut refailed = failed.clone();
    refailed.last_transition_time = Some(at(80));
    let d = transition(&refailed, &plan(), &obs, at(90));
    assert_eq!(d.status.phase, P::Failed);
}

#[test]
fn suspend_stops_checks_and_the_deadline_clock() {
    let mut sp = spec();
    sp.suspend = true;
    let paused_plan = ReleasePlan::from_spec(&sp, false).unwrap();
    let obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Pass)]),
        ..releasing(10)
    };
    let s = progressing(1, 0);
    let d = transition(&s, &paused_plan, &obs, at(30));
    assert_eq!(d.status.paused_at, Some(at(30)));
    assert_eq!(reasons(&d), vec!["Paused"]);
    assert!(!analysis_due(&d.status, &paused_plan, at(3600)));
    // An hour paused: far past the 10m deadline, but the clock stopped.
    let d = transition(&d.status, &paused_plan, &obs, at(3600));
    assert_eq!((d.status.phase, d.status.current_step), (P::Progressing, 1));
    let d = transition(&d.status, &plan(), &releasing(10), at(3630));
    assert_eq!(reasons(&d), vec!["Resumed"]);
    assert_eq!(
        d.status.step_started_at,
        Some(at(3600)),
        "shifted by the pause"
    );
    assert!(!analysis_due(&d.status, &plan(), at(3640)));
    assert!(analysis_due(&d.status, &plan(), at(3660)));
}

#[test]
fn pre_rollout_checks_gate_the_first_traffic_and_count_as_checks() {
    let mut p = plan();
    p.pre_rollout = true;
    let s = progressing(0, 0);
    assert!(pre_rollout_due(&s, &p, at(5)));
    // No result yet: the canary is up but takes no traffic.
    let d = transition(&s, &p, &releasing(0), at(5));
    assert_eq!((d.status.current_step, d.status.canary_weight), (0, 0));
    assert!(d.actions.is_empty());

    let failed = Observation {
        pre_rollout: report(&[("webhook/conformance", MetricVerdict::Fail)]),
        ..releasing(0)
    };
    let d = transition(&s, &p, &failed, at(10));
    assert_eq!((d.status.current_step, d.status.failed_checks), (0, 1));
    assert_eq!(reasons(&d), vec!["CheckFailed"]);
    assert!(
        !pre_rollout_due(&d.status, &p, at(69)),
        "at most once per interval"
    );
    assert!(pre_rollout_due(&d.status, &p, at(70)));
    let d2 = transition(&d.status, &p, &failed, at(70));
    assert_eq!(d2.status.phase, P::Failed);
    assert!(
        d2.status.message.contains("webhook/conformance"),
        "{}",
        d2.status.message
    );

    let passed = Observation {
        pre_rollout: report(&[("webhook/conformance", MetricVerdict::Pass)]),
        ..releasing(0)
    };
    let d3 = transition(&d.status, &p, &passed, at(70));
    assert_eq!((d3.status.current_step, d3.status.canary_weight), (1, 10));
    assert_eq!(d3.actions, vec![Action::SetWeight { weight: 10 }]);
}

/// Regression: a canary waiting for a human at 50% got no checks, no rollback and no
/// deadline. Checks keep running while a gate waits; failures roll back as anywhere.
#[test]
fn a_failing_canary_is_rolled_back_while_it_waits_for_approval() {
    let mut sp = spec();
    sp.gates.before_promotion = true;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let mut obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Pass)]),
        ..releasing(50)
    };
    let waiting = transition(&progressing(3, 0), &p, &obs, at(60)).status;
    assert_eq!(waiting.phase, P::WaitingApproval);
    assert!(analysis_due(&waiting, &p, at(120)));
    obs.analysis = report(&[("errors", MetricVerdict::Fail)]);
    let d = transition(&waiting, &p, &obs, at(120));
    assert_eq!(d.status.phase, P::WaitingApproval);
    assert_eq!(d.status.failed_checks, 1);
    assert_eq!(reasons(&d), vec!["CheckFailed"]);
    let d = transition(&d.status, &p, &obs, at(180));
    assert_eq!(d.status.phase, P::Failed);
    assert_eq!(d.actions, vec![Action::SetWeight { weight: 0 }]);
    assert!(
        d.status.message.contains("failed checks 2/2"),
        "{}",
        d.status.message
    );
}

/// Without traffic on the canary (before rollout) there is nothing to judge.
#[test]
fn no_checks_while_waiting_before_rollout() {
    let mut s = progressing(0, 0);
    s.phase = P::WaitingApproval;
    s.pending_gate = Some(GateKind::BeforeRollout);
    assert!(!analysis_due(&s, &plan(), at(3600)));
}

#[test]
fn an_approval_timeout_rolls_back_a_gate_nobody_decided() {
    let mut sp = spec();
    sp.gates.before_promotion = true;
    sp.gates.approval_timeout = Some("1h".into());
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Pass)]),
        ..releasing(50)
    };
    let waiting = transition(&progressing(3, 0), &p, &obs, at(60)).status;
    let d = transition(&waiting, &p, &obs, at(60 + 3599));
    assert_eq!(d.status.phase, P::WaitingApproval);
    assert!(d.requeue_after.as_secs() <= 60);
    let d = transition(&d.status, &p, &obs, at(60 + 3600));
    assert_eq!(d.status.phase, P::Failed);
    assert!(
        d.status
            .message
            .contains("not approved within gates.approvalTimeout (1h)"),
        "{}",
        d.status.message
    );
    sp.gates.approval_timeout = Some("soon".into());
    assert_eq!(
        ReleasePlan::from_spec(&sp, false).unwrap_err().field,
        "gates.approvalTimeout"
    );
}

#[test]
fn input_awaiting_action_is_exactly_what_the_machine_acts_on() {
    let mut sp = spec();
    sp.gates.before_promotion = true;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let checked = Observation {
        analysis: report(&[("errors", MetricVerdict::Pass)]),
        ..releasing(50)
    };
    let waiting = transition(&progressing(3, 0), &p, &checked, at(60)).status;
    assert_eq!(waiting.phase, P::WaitingApproval);
    let failed = transition(
        &progressing(1, 0),
        &p,
        &Observation {
            commands: vec![command(CommandKind::Abort, 30)],
            ..releasing(10)
        },
        at(40),
    )
    .status;
    assert_eq!(failed.phase, P::Failed);
    let before_release = |mut a: Approval| {
        a.at = at(-5);
        a
    };
    let gate = GateKind::BeforePromotion;
    struct Case {
        name: &'static str,
        status: CanaryStatus,
        approvals: Vec<Approval>,
        commands: Vec<Command>,
        obs: Observation,
    }
    let case = |name, status: &CanaryStatus, approvals, commands, obs: &Observation| Case {
        name,
        status: status.clone(),
        approvals,
        commands,
        obs: obs.clone(),
    };
    let (abort, retry) = (CommandKind::Abort, CommandKind::Retry);
    let (ten, r2) = (releasing(10), world("r2"));
    let cases = [
        case(
            "approved",
            &waiting,
            vec![approval(gate, 3, true)],
            vec![],
            &checked,
        ),
        case(
            "rejected",
            &waiting,
            vec![approval(gate, 3, false)],
            vec![],
            &checked,
        ),
        case(
            "another step",
            &waiting,
            vec![approval(gate, 2, true)],
            vec![],
            &checked,
        ),
        case(
            "an earlier release",
            &waiting,
            vec![before_release(approval(gate, 3, true))],
            vec![],
            &checked,
        ),
        case(
            "abort while waiting",
            &waiting,
            vec![],
            vec![command(abort, 70)],
            &checked,
        ),
        case(
            "abort",
            &progressing(1, 0),
            vec![],
            vec![command(abort, 30)],
            &ten,
        ),
        case(
            "stale abort",
            &progressing(1, 0),
            vec![],
            vec![command(abort, -5)],
            &ten,
        ),
        case("retry", &failed, vec![], vec![command(retry, 50)], &r2),
        case(
            "spent retry",
            &failed,
            vec![],
            vec![command(retry, 20)],
            &r2,
        ),
        case("nothing", &waiting, vec![], vec![], &checked),
        case(
            "idle",
            &idle(P::Succeeded),
            vec![approval(gate, 0, true)],
            vec![command(abort, 30)],
            &world("r1"),
        ),
    ];
    let mut acted_on = vec![];
    for Case {
        name,
        mut status,
        approvals,
        commands,
        mut obs,
    } in cases
    {
        status.approvals = approvals.clone();
        status.commands = commands.clone();
        obs.approvals = approvals;
        obs.commands = commands;
        let flagged = awaits_action_on_input(&status);
        let acted = transition(&status, &p, &obs, at(100)).status.phase != status.phase;
        assert_eq!(
            flagged, acted,
            "{name}: flagged {flagged}, machine acted {acted}"
        );
        if acted {
            acted_on.push(name);
        }
    }
    assert_eq!(
        acted_on,
        [
            "approved",
            "rejected",
            "abort while waiting",
            "abort",
            "retry"
        ]
    );
}
