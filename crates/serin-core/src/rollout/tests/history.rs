//! `status.history`: every way a release ends leaves one record, bounded, oldest first.

use super::*;
use crate::crd::{ReleaseRecord, ReleaseResult as R, RELEASE_HISTORY_LIMIT};

fn last(d: &Decision) -> &ReleaseRecord {
    d.status.history.last().expect("a history record")
}

#[test]
fn each_way_a_release_ends_is_recorded_once_with_result_step_weight_and_reason() {
    let p = plan();
    let failing = Observation {
        analysis: report(&[("errors", MetricVerdict::Fail)]),
        ..releasing(25)
    };
    let mut s = progressing(2, 0);
    s.failed_checks = 1;
    let aborted = Observation {
        commands: vec![Command {
            id: "abort-1".into(),
            kind: CommandKind::Abort,
            revision: "r2".into(),
            by: "bob".into(),
            via: "cli".into(),
            at: at(30),
        }],
        ..releasing(25)
    };
    let superseded = Observation {
        target_revision: "r3".into(),
        ..releasing(25)
    };
    let mut finalising = progressing(3, 0);
    finalising.phase = P::Finalising;
    finalising.stable_revision = Some("r2".into());
    let done = Observation {
        primary_revision: Some("r2".into()),
        canary_replicas: 0,
        routed_weight: Some(0),
        ..world("r2")
    };
    // (status, observation, now, result, step, weight, reason contains)
    let table: Vec<(CanaryStatus, Observation, i64, R, i32, i32, &str)> = vec![
        (
            s,
            failing,
            60,
            R::RolledBack,
            2,
            25,
            "failed checks 2/2: errors",
        ),
        (
            progressing(2, 0),
            aborted,
            40,
            R::Aborted,
            2,
            25,
            "aborted by bob via cli",
        ),
        (
            progressing(2, 0),
            superseded,
            30,
            R::Superseded,
            2,
            25,
            "superseded by revision r3",
        ),
        (
            finalising,
            done,
            90,
            R::Promoted,
            3,
            100,
            "all 3 steps passed",
        ),
    ];
    for (status, obs, now, result, step, weight, why) in table {
        let d = transition(&status, &p, &obs, at(now));
        assert_eq!(
            d.status.history.len(),
            1,
            "{result:?}: {:?}",
            d.status.history
        );
        let r = last(&d);
        assert_eq!(
            (r.revision.as_str(), r.result, r.step, r.steps, r.weight),
            ("r2", result, step, 3, weight),
            "{r:?}"
        );
        assert_eq!((r.started_at, r.finished_at), (Some(at(0)), at(now)));
        assert!(r.reason.contains(why), "{result:?}: {}", r.reason);
        // Nothing more happens: no second record on the next reconcile.
        let again = transition(&d.status, &p, &obs, at(now + 5));
        let same = again
            .status
            .history
            .iter()
            .filter(|h| h.revision == "r2")
            .count();
        assert_eq!(same, 1, "{result:?}: {:?}", again.status.history);
    }
}

#[test]
fn no_record_while_a_release_runs_or_when_one_starts() {
    let p = plan();
    // Start a release, pass a step, wait at a gate: nothing ended.
    let d = transition(&idle(P::Succeeded), &p, &world("r2"), at(0));
    assert_eq!(d.status.phase, P::Progressing);
    assert!(d.status.history.is_empty());
    let obs = Observation {
        analysis: report(&[("errors", MetricVerdict::Pass)]),
        ..releasing(10)
    };
    let d = transition(&progressing(1, 0), &p, &obs, at(60));
    assert_eq!(d.status.current_step, 2);
    assert!(d.status.history.is_empty());
    // Retry of a failed revision is a new release, not an ended one.
    let mut failed = idle(P::Failed);
    failed.canary_revision = Some("r2".into());
    failed.failed_revision = Some("r2".into());
    failed.last_transition_time = Some(at(10));
    let obs = Observation {
        commands: vec![Command {
            id: "retry".into(),
            kind: CommandKind::Retry,
            revision: "r2".into(),
            by: "bob".into(),
            via: "cli".into(),
            at: at(20),
        }],
        ..world("r2")
    };
    let d = transition(&failed, &p, &obs, at(30));
    assert_eq!(d.status.phase, P::Progressing);
    assert!(d.status.history.is_empty());
}

#[test]
fn a_rejected_gate_and_a_missed_deadline_are_rollbacks() {
    let mut sp = spec();
    sp.gates.before_promotion = true;
    let p = ReleasePlan::from_spec(&sp, false).unwrap();
    let mut s = progressing(3, 0);
    s.phase = P::WaitingApproval;
    s.pending_gate = Some(GateKind::BeforePromotion);
    let obs = Observation {
        approvals: vec![Approval {
            id: Approval::key(GateKind::BeforePromotion, "r2", 3),
            gate: GateKind::BeforePromotion,
            revision: "r2".into(),
            step: 3,
            approved: false,
            by: "carol".into(),
            via: "slack".into(),
            at: at(100),
            groups: Vec::new(),
        }],
        ..releasing(50)
    };
    let d = transition(&s, &p, &obs, at(120));
    assert_eq!(d.status.phase, P::Failed);
    let r = last(&d);
    assert_eq!((r.result, r.weight, r.step), (R::RolledBack, 50, 3));
    assert!(
        r.reason.contains("rejected by carol via slack"),
        "{}",
        r.reason
    );

    // Canary never ready: rolled back at the deadline, at step 0 with no traffic.
    let mut s = progressing(0, 0);
    s.canary_weight = 0;
    let obs = Observation {
        canary_ready: false,
        canary_available: false,
        ..releasing(0)
    };
    let d = transition(&s, &plan(), &obs, at(11 * 60));
    let r = last(&d);
    assert_eq!((r.result, r.step, r.weight), (R::RolledBack, 0, 0));
    assert!(r.reason.contains("progress deadline"), "{}", r.reason);
}

#[test]
fn history_keeps_the_newest_ten_oldest_first_and_reasons_stay_one_short_line() {
    let p = plan();
    let mut s = progressing(2, 0);
    s.history = (0..RELEASE_HISTORY_LIMIT as i64)
        .map(|i| ReleaseRecord {
            revision: format!("old{i}"),
            started_at: Some(at(-1000 + i)),
            finished_at: at(-900 + i),
            result: R::Promoted,
            reason: String::new(),
            step: 3,
            steps: 3,
            weight: 100,
        })
        .collect();
    let long = "x".repeat(500);
    let mut r = report(&[("errors", MetricVerdict::Fail)]).unwrap();
    r.metrics[0].reason = format!("line one\n  line two {long}");
    r.critical = vec!["errors".into()];
    let obs = Observation {
        analysis: Some(r),
        ..releasing(25)
    };
    let d = transition(&s, &p, &obs, at(60));
    let h = &d.status.history;
    assert_eq!(h.len(), RELEASE_HISTORY_LIMIT);
    assert_eq!(h[0].revision, "old1", "the oldest record is dropped");
    assert_eq!(h.last().unwrap().revision, "r2");
    let reason = &h.last().unwrap().reason;
    assert!(!reason.contains('\n'), "{reason}");
    assert!(reason.contains("line one line two"), "{reason}");
    assert!(
        reason.chars().count() <= 200 && reason.ends_with('…'),
        "{reason}"
    );
}

#[test]
fn superseded_while_promoting_then_the_new_revision_promoted() {
    let p = plan();
    let mut s = progressing(3, 0);
    s.phase = P::Promoting;
    let obs = Observation {
        target_revision: "r3".into(),
        ..releasing(50)
    };
    let d = transition(&s, &p, &obs, at(30));
    assert_eq!(d.status.canary_revision.as_deref(), Some("r3"));
    let r = last(&d);
    assert_eq!((r.revision.as_str(), r.result), ("r2", R::Superseded));
    assert_eq!(d.status.release_started_at, Some(at(30)));
}

#[test]
fn history_is_an_atomic_bounded_list_in_the_crd() {
    use kube_core::CustomResourceExt;
    let crd = serde_json::to_value(crate::crd::Canary::crd()).unwrap();
    let h = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]["history"];
    assert_eq!(h["x-kubernetes-list-type"], "atomic", "{h}");
    assert_eq!(h["maxItems"], RELEASE_HISTORY_LIMIT as u64, "{h}");
    let required = h["items"]["required"].as_array().unwrap();
    for f in ["revision", "finishedAt", "result"] {
        assert!(required.iter().any(|r| r == f), "{f} required: {h}");
    }
}
