//! Release policies in the transition: a revision waiting for its window, a window
//! closing mid-release, approvals by several people, an emergency override, minimum
//! soak, an invalid policy, the queue, and an upstream environment.
//!
//! `at(0)` is Fri 2027-01-15 08:00:00 UTC.

use std::collections::BTreeMap;

use super::*;
use crate::crd::{
    EmergencyOverrideRecord, PolicyStage, PolicyWaitReason, PromotedImages, ReleasePolicySpec,
};
use crate::policy::{
    compile, CanaryKey, PolicyError, PolicyRef, PolicyRules, QueueSnapshot, SelectedPolicy,
};

fn policy(yaml: &str) -> SelectedPolicy {
    let spec: ReleasePolicySpec = serde_yaml::from_str(yaml).unwrap();
    SelectedPolicy {
        policy: PolicyRef::namespaced("shop", "rules"),
        rules: compile(&spec).unwrap(),
        queue: QueueSnapshot::default(),
    }
}

const OFFICE_HOURS: &str = "windows: [{days: [Mon-Fri], start: '09:00', end: '17:00'}]";

fn with(obs: Observation, policies: Vec<SelectedPolicy>) -> Observation {
    Observation {
        policy: PolicyInputs {
            canary: CanaryKey::new("shop", "podinfo"),
            selected: policies,
            upstream: None,
        },
        ..obs
    }
}

fn images(tag: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), format!("ghcr.io/shop/podinfo:{tag}"))])
}

fn approval_by(who: &str, groups: &[&str], approved: bool, secs: i64) -> Approval {
    Approval {
        id: format!("{}/{who}", Approval::key(GateKind::BeforeRollout, "r2", 0)),
        gate: GateKind::BeforeRollout,
        revision: "r2".into(),
        step: 0,
        approved,
        by: who.into(),
        via: "api".into(),
        at: at(secs),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn scales_canary_up(d: &Decision) -> bool {
    d.actions
        .iter()
        .any(|a| matches!(a, Action::ScaleCanary { replicas } if *replicas > 0))
}

#[test]
fn a_new_revision_waits_outside_its_window_and_starts_when_it_opens() {
    let p = plan();
    let obs = with(world("r2"), vec![policy(OFFICE_HOURS)]);
    let d = transition(&idle(P::Initialized), &p, &obs, at(0));
    assert_eq!(d.status.phase, P::Waiting);
    let w = d.status.policy_wait.clone().expect("the wait is in status");
    assert_eq!(w.reason, PolicyWaitReason::OutsideWindow);
    assert_eq!(w.policy, "ReleasePolicy shop/rules");
    assert_eq!(w.revision, "r2");
    assert_eq!(w.stage, PolicyStage::Start);
    assert_eq!(w.until, Some(at(3600)), "opens at 09:00 UTC");
    assert_eq!(w.since, at(0));
    assert_eq!(reasons(&d), ["ReleaseWaiting"]);
    assert!(
        d.status.message.contains("next opening"),
        "{}",
        d.status.message
    );
    assert!(!scales_canary_up(&d), "nothing starts: {:?}", d.actions);
    assert_eq!(d.status.canary_weight, 0);
    assert!(d.requeue_after <= std::time::Duration::from_secs(300));

    // Still closed a minute later: the same wait, not announced again.
    let d2 = transition(&d.status, &p, &obs, at(60));
    assert_eq!(d2.status.phase, P::Waiting);
    assert!(d2.notes.is_empty(), "{:?}", reasons(&d2));
    assert_eq!(d2.status.policy_wait.as_ref().unwrap().since, at(0));
    // Looked at again every 5 minutes, at its place in the period (here unspread:
    // on its boundaries; a changed policy also wakes it), and at the opening itself
    // once it is nearer.
    assert_eq!(d2.requeue_after, std::time::Duration::from_secs(240));
    let near = transition(&d2.status, &p, &obs, at(3400));
    assert_eq!(near.requeue_after, std::time::Duration::from_secs(200));

    // 09:00: the release starts.
    let d3 = transition(&d2.status, &p, &obs, at(3600));
    assert_eq!(d3.status.phase, P::Progressing);
    assert_eq!(d3.status.canary_revision.as_deref(), Some("r2"));
    assert_eq!(d3.status.policy_wait, None);
    assert_eq!(reasons(&d3), ["NewRevision"]);
    assert!(scales_canary_up(&d3));
}

#[test]
fn a_waiting_revision_reverted_in_the_deployment_stops_waiting() {
    let p = plan();
    let waiting = transition(
        &idle(P::Initialized),
        &p,
        &with(world("r2"), vec![policy(OFFICE_HOURS)]),
        at(0),
    )
    .status;
    let d = transition(
        &waiting,
        &p,
        &with(world("r1"), vec![policy(OFFICE_HOURS)]),
        at(60),
    );
    assert_eq!(d.status.phase, P::Initialized);
    assert_eq!(d.status.policy_wait, None);
    assert_eq!(reasons(&d), ["Reverted"]);
}

#[test]
fn a_window_closing_mid_release_holds_at_the_next_step_while_checks_go_on() {
    let p = plan();
    // 16:59 at step 1; the check at 17:00 passes but the window just closed.
    let status = progressing(1, 32_340);
    let mut obs = with(releasing(10), vec![policy(OFFICE_HOURS)]);
    obs.analysis = report(&[("error-rate", MetricVerdict::Pass)]);
    let d = transition(&status, &p, &obs, at(32_400));
    assert_eq!(d.status.phase, P::Progressing);
    assert_eq!(d.status.current_step, 1, "held at its step");
    assert_eq!(d.status.canary_weight, 10);
    let w = d.status.policy_wait.clone().unwrap();
    assert_eq!(
        (w.reason, w.stage),
        (PolicyWaitReason::OutsideWindow, PolicyStage::NextStep)
    );
    assert_eq!(w.until, Some(at(3 * 86_400 + 3600)), "Monday 09:00");
    assert_eq!(reasons(&d), ["ReleaseHeld"]);

    // Hours later, past the progress deadline: no rollback for a held release.
    let mut later = d.status.clone();
    later.last_analysis_at = Some(at(40_000));
    let d2 = transition(&later, &p, &obs, at(40_060));
    assert_eq!(d2.status.phase, P::Progressing, "{}", d2.status.message);
    assert_eq!(d2.status.current_step, 1);
    assert!(d2.notes.is_empty(), "{:?}", reasons(&d2));

    // A failing check still counts while held: the limit rolls it back.
    let mut failing = obs.clone();
    failing.analysis = report(&[("error-rate", MetricVerdict::Fail)]);
    let mut s = d2.status.clone();
    for t in [40_120, 40_180] {
        s = transition(&s, &p, &failing, at(t)).status;
    }
    assert_eq!(s.phase, P::Failed);
    assert_eq!(s.policy_wait, None);

    // With inFlight: Finish the release goes on.
    let finish = with(
        releasing(10),
        vec![policy(&format!("{OFFICE_HOURS}\ninFlight: Finish"))],
    );
    let mut obs = finish;
    obs.analysis = report(&[("error-rate", MetricVerdict::Pass)]);
    let d = transition(&status, &p, &obs, at(32_400));
    assert_eq!(d.status.current_step, 2);
    assert_eq!(d.status.policy_wait, None);
}

#[test]
fn two_distinct_approvers_from_the_named_group_open_the_start_and_one_rejection_ends_it() {
    let p = plan();
    let rule = policy("approvals: {beforeRollout: {count: 2, groups: [release-managers]}}");
    let mut obs = with(world("r2"), vec![rule]);
    let d = transition(&idle(P::Initialized), &p, &obs, at(0));
    let need = d.status.policy_wait.clone().unwrap();
    assert_eq!(need.reason, PolicyWaitReason::ApprovalsNeeded);
    let still = need.approvals.unwrap();
    assert_eq!((still.have, still.need), (0, 2));
    assert_eq!(still.groups, ["release-managers"]);

    // Alice (in the group) and Bob (not in it): one approval counts.
    obs.approvals = vec![
        approval_by("alice", &["release-managers"], true, 10),
        approval_by("bob", &["developers"], true, 20),
    ];
    let d2 = transition(&d.status, &p, &obs, at(30));
    assert_eq!(d2.status.phase, P::Waiting);
    let still = d2.status.policy_wait.clone().unwrap().approvals.unwrap();
    assert_eq!((still.have, still.need), (1, 2));

    // Carol, also in the group: two distinct approvers, the release starts.
    let mut both = obs.clone();
    both.approvals
        .push(approval_by("carol", &["release-managers"], true, 40));
    let d3 = transition(&d2.status, &p, &both, at(50));
    assert_eq!(d3.status.phase, P::Progressing);

    // An approval from before the wait began is not about this wait.
    let mut stale = obs.clone();
    stale.approvals = vec![
        approval_by("alice", &["release-managers"], true, -100),
        approval_by("carol", &["release-managers"], true, -50),
    ];
    assert_eq!(
        transition(&d.status, &p, &stale, at(50)).status.phase,
        P::Waiting
    );

    // A rejection by anyone allowed to decide ends the waiting revision.
    let mut rejected = obs.clone();
    rejected
        .approvals
        .push(approval_by("dave", &["release-managers"], false, 45));
    let d4 = transition(&d2.status, &p, &rejected, at(50));
    assert_eq!(d4.status.phase, P::Failed);
    assert_eq!(d4.status.failed_revision.as_deref(), Some("r2"));
    assert!(
        d4.status.message.contains("rejected by dave"),
        "{}",
        d4.status.message
    );
    assert!(!scales_canary_up(&d4));
}

#[test]
fn an_emergency_override_lifts_a_freeze_and_is_announced_once() {
    let p = plan();
    let freeze = policy(
        "blackouts: [{start: '2027-01-01T00:00:00Z', end: '2027-02-01T00:00:00Z', reason: year-end}]",
    );
    let obs = with(world("r2"), vec![freeze]);
    let d = transition(&idle(P::Initialized), &p, &obs, at(0));
    let w = d.status.policy_wait.clone().unwrap();
    assert_eq!(w.reason, PolicyWaitReason::Blackout);
    assert!(w.message.contains("year-end"), "{}", w.message);

    let mut overridden = d.status.clone();
    overridden.emergency_override = Some(Box::new(EmergencyOverrideRecord {
        revision: "r2".into(),
        by: "oncall".into(),
        via: "cli".into(),
        reason: "hotfix for INC-42".into(),
        at: at(30),
        until: None,
    }));
    let d2 = transition(&overridden, &p, &obs, at(60));
    assert_eq!(d2.status.phase, P::Progressing);
    assert_eq!(reasons(&d2), ["EmergencyOverride", "NewRevision"]);
    assert!(d2.notes[0].message.contains("INC-42"));
    assert_eq!(d2.notes[0].type_, NoteType::Warning);
    assert_eq!(d2.status.override_announced, Some(at(30)));

    // Once the canary passes its first check the freeze still holds nothing: the
    // override stands for the release, and is not announced again.
    let mut step = d2.status.clone();
    step.current_step = 1;
    step.canary_weight = 10;
    step.step_started_at = Some(at(60));
    let mut checked = with(releasing(10), obs.policy.selected.clone());
    checked.analysis = report(&[("error-rate", MetricVerdict::Pass)]);
    let d3 = transition(&step, &p, &checked, at(120));
    assert_eq!(d3.status.current_step, 2);
    assert_eq!(reasons(&d3), ["StepAdvanced"]);

    // An override for another revision lifts nothing.
    let mut other = d.status.clone();
    other.emergency_override = overridden.emergency_override.clone();
    other.emergency_override.as_mut().unwrap().revision = "r9".into();
    assert_eq!(
        transition(&other, &p, &obs, at(60)).status.phase,
        P::Waiting
    );
}

#[test]
fn promotion_waits_for_the_minimum_soak_at_the_last_step() {
    let p = plan();
    let last = p.step_count();
    let status = progressing(last, 0);
    let mut obs = with(releasing(p.weight_at(last)), vec![policy("minSoak: 2h")]);
    obs.analysis = report(&[("error-rate", MetricVerdict::Pass)]);
    let d = transition(&status, &p, &obs, at(60));
    assert_eq!(d.status.phase, P::Progressing);
    let w = d.status.policy_wait.clone().unwrap();
    assert_eq!(
        (w.reason, w.stage),
        (PolicyWaitReason::Soaking, PolicyStage::Promote)
    );
    assert_eq!(w.until, Some(at(7200)));
    let d2 = transition(&d.status, &p, &obs, at(7200));
    assert_eq!(d2.status.phase, P::Promoting);
    assert_eq!(d2.status.policy_wait, None);
}

#[test]
fn an_invalid_policy_holds_every_release_it_selects() {
    let p = plan();
    let broken = SelectedPolicy {
        policy: PolicyRef::cluster("freeze"),
        rules: PolicyRules::invalid(&PolicyError::new(
            "spec.windows[0].timeZone",
            "\"Europe/Berln\" is not an IANA time zone",
        )),
        queue: QueueSnapshot::default(),
    };
    let d = transition(
        &idle(P::Initialized),
        &p,
        &with(world("r2"), vec![broken]),
        at(0),
    );
    let w = d.status.policy_wait.unwrap();
    assert_eq!(w.reason, PolicyWaitReason::PolicyInvalid);
    assert_eq!(w.policy, "ClusterReleasePolicy freeze");
    assert!(w.message.contains("Europe/Berln"), "{}", w.message);
    assert_eq!(d.status.phase, P::Waiting);
}

#[test]
fn a_full_queue_keeps_the_revision_waiting_with_its_position() {
    let p = plan();
    let mut one = policy("maxInFlight: 1");
    one.queue.in_flight = vec![CanaryKey::new("shop", "cart")];
    let d = transition(
        &idle(P::Initialized),
        &p,
        &with(world("r2"), vec![one.clone()]),
        at(0),
    );
    let w = d.status.policy_wait.clone().unwrap();
    assert_eq!(w.reason, PolicyWaitReason::Queued);
    assert_eq!(w.queue_position, Some(1));
    assert_eq!(w.until, None);
    assert_eq!(d.requeue_after, std::time::Duration::from_secs(30));
    // The slot frees: it starts.
    one.queue.in_flight.clear();
    let d2 = transition(&d.status, &p, &with(world("r2"), vec![one]), at(30));
    assert_eq!(d2.status.phase, P::Progressing);
}

#[test]
fn a_revision_starts_only_once_its_images_were_promoted_upstream_and_soaked() {
    let p = plan();
    let mut obs = with(world("r2"), vec![policy("minSoak: 1h")]);
    obs.target_images = images("1.2.0");
    obs.policy.upstream = Some(Upstream {
        canary: "staging/podinfo".into(),
        promoted: Some(PromotedImages {
            revision: "s7".into(),
            images: images("1.1.0"),
            at: at(-86_400),
        }),
    });
    let d = transition(&idle(P::Initialized), &p, &obs, at(0));
    let w = d.status.policy_wait.clone().unwrap();
    assert_eq!(w.reason, PolicyWaitReason::UpstreamNotPromoted);
    assert_eq!(w.policy, "Canary staging/podinfo");
    assert!(w.message.contains("podinfo:1.1.0"), "{}", w.message);

    // Staging promotes 1.2.0 at t=600: production waits out the soak, then starts.
    obs.policy.upstream.as_mut().unwrap().promoted = Some(PromotedImages {
        revision: "s8".into(),
        images: images("1.2.0"),
        at: at(600),
    });
    let d2 = transition(&d.status, &p, &obs, at(900));
    let w = d2.status.policy_wait.clone().unwrap();
    assert_eq!(w.reason, PolicyWaitReason::UpstreamSoaking);
    assert_eq!(w.until, Some(at(4200)));
    let d3 = transition(&d2.status, &p, &obs, at(4200));
    assert_eq!(d3.status.phase, P::Progressing);
    assert_eq!(d3.status.release_images, images("1.2.0"));
}

#[test]
fn a_promotion_records_the_images_it_promoted() {
    let p = plan();
    let status = CanaryStatus {
        phase: P::Finalising,
        canary_revision: Some("r2".into()),
        stable_revision: Some("r2".into()),
        release_images: images("1.2.0"),
        ..progressing(3, 0)
    };
    let d = transition(&status, &p, &world("r2"), at(60));
    assert_eq!(d.status.phase, P::Succeeded);
    let promoted = d.status.promoted.unwrap();
    assert_eq!(
        (promoted.revision.as_str(), promoted.images, promoted.at),
        ("r2", images("1.2.0"), at(60))
    );
    assert!(d.status.release_images.is_empty());
}

#[test]
fn approvals_still_needed_are_in_status_while_the_window_is_closed() {
    // People may approve ahead of the window: the wait names the window and says
    // which approvals are missing too.
    let p = plan();
    let rule = policy(&format!(
        "{OFFICE_HOURS}\napprovals: {{beforeRollout: {{count: 1}}}}"
    ));
    let mut obs = with(world("r2"), vec![rule]);
    let d = transition(&idle(P::Initialized), &p, &obs, at(0));
    let w = d.status.policy_wait.clone().unwrap();
    assert_eq!(w.reason, PolicyWaitReason::OutsideWindow);
    assert_eq!(w.approvals.map(|a| (a.have, a.need)), Some((0, 1)));
    obs.approvals = vec![approval_by("alice", &[], true, 600)];
    let d2 = transition(&d.status, &p, &obs, at(900));
    assert_eq!(d2.status.policy_wait.clone().unwrap().approvals, None);
    assert_eq!(d2.status.phase, P::Waiting);
    assert_eq!(
        transition(&d2.status, &p, &obs, at(3600)).status.phase,
        P::Progressing
    );
}
