//! The decisions the issue asks for, table-driven: a window closing mid-release, a
//! freeze with an override, two policies on one Canary, a concurrency queue with three
//! Canaries, promotion waiting for the minimum soak; plus parsing and selection.
//!
//! Instants are checked by hand against the IANA rules (tzdata 2025b in chrono-tz
//! 0.10.4): Berlin is CET (+01) until 2026-03-29 01:00 UTC, then CEST (+02); New York is
//! EST (-05) until 2026-03-08 07:00 UTC, then EDT (-04).

use chrono::{DateTime, Utc};

use super::*;
use crate::crd::{ReleasePolicySpec, ReleaseWindow};

pub(super) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn spec(yaml: &str) -> ReleasePolicySpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn selected(policy: PolicyRef, yaml: &str) -> SelectedPolicy {
    SelectedPolicy {
        policy,
        rules: compile(&spec(yaml)).unwrap(),
        queue: QueueSnapshot::default(),
    }
}

fn facts(stage: Stage) -> ReleaseFacts {
    ReleaseFacts {
        canary: CanaryKey::new("shop", "cart"),
        stage,
        emergency_override: None,
        approvals: vec![],
    }
}

fn start() -> Stage {
    Stage::Start {
        since: utc("2026-01-01T00:00:00Z"),
    }
}

fn wait_of(d: &PolicyDecision) -> &Wait {
    d.wait()
        .unwrap_or_else(|| panic!("expected a wait, got {d}"))
}

/// (now, the policy named, reason, until, the other policies blocking now)
type WindowCase<'a> = (
    &'a str,
    &'a PolicyRef,
    &'a str,
    Option<&'a str>,
    &'a [&'a PolicyRef],
);
/// (approvals as (who, group)) -> the unmet rule as (policy, have, need)
type ApprovalCase<'a> = (&'a [(&'a str, &'a str)], Option<(&'a PolicyRef, u32, u32)>);
/// (namespace, Canary labels, namespace labels) -> selected policies
type SelectCase<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
);

const BUSINESS_HOURS: &str = "
windows:
- days: [Mon-Thu]
  start: '09:00'
  end: '16:00'
  timeZone: Europe/Berlin
";

#[test]
fn a_window_closing_mid_release_holds_or_finishes() {
    let hold = selected(
        PolicyRef::namespaced("shop", "business-hours"),
        BUSINESS_HOURS,
    );
    let mut finish = hold.clone();
    finish.rules.in_flight = InFlight::Finish;
    // Thursday 2026-03-26: 15:59 CET is 14:59Z; the window closes at 16:00 CET = 15:00Z.
    // The next opening is Monday 09:00 — CEST by then (the change is on Sunday 29th).
    let before = utc("2026-03-26T14:59:00Z");
    let closed = utc("2026-03-26T15:00:00Z");
    let monday = utc("2026-03-30T07:00:00Z");

    let d = evaluate(std::slice::from_ref(&hold), &facts(Stage::NextStep), before);
    assert_eq!(d, PolicyDecision::Proceed(Proceed::default()));

    let d = evaluate(std::slice::from_ref(&hold), &facts(Stage::NextStep), closed);
    let PolicyDecision::HoldInFlight(w) = &d else {
        panic!("expected a hold, got {d}")
    };
    assert_eq!(
        (w.reason.as_str(), w.until),
        ("OutsideWindow", Some(monday))
    );
    assert_eq!(w.policy, PolicyRef::namespaced("shop", "business-hours"));
    assert_eq!(
        d.to_string(),
        "holding at the next step: outside the release windows of ReleasePolicy \
         shop/business-hours (Mon-Thu 09:00-16:00 Europe/Berlin); next opening \
         Mon 2026-03-30 09:00 CEST (Europe/Berlin), 2026-03-30T07:00:00Z"
    );
    // Promotion holds too.
    let d = evaluate(
        std::slice::from_ref(&hold),
        &facts(Stage::Promote {
            last_step_since: before,
        }),
        closed,
    );
    assert!(matches!(d, PolicyDecision::HoldInFlight(_)), "{d}");

    // Finish: the release goes on, and the decision says which window it finishes past.
    let d = evaluate(
        std::slice::from_ref(&finish),
        &facts(Stage::NextStep),
        closed,
    );
    let PolicyDecision::Proceed(p) = &d else {
        panic!("expected to finish, got {d}")
    };
    assert_eq!(p.finishing.len(), 1);
    assert_eq!(p.finishing[0].until, Some(monday));
    assert!(d.to_string().contains("finishing in flight despite outside the release windows of ReleasePolicy shop/business-hours"), "{d}");

    // Either way a new revision does not start: it waits, with the next opening.
    for p in [&hold, &finish] {
        let d = evaluate(std::slice::from_ref(p), &facts(start()), closed);
        let PolicyDecision::Wait(w) = &d else {
            panic!("expected a wait, got {d}")
        };
        assert_eq!(
            (w.reason.as_str(), w.until),
            ("OutsideWindow", Some(monday))
        );
    }
}

const FREEZE: &str = "
blackouts:
- start: '2026-12-20T00:00:00+01:00'
  end: '2027-01-04T00:00:00+01:00'
  reason: year-end freeze
approvals:
  beforeRollout:
    count: 1
";

#[test]
fn a_freeze_with_an_emergency_override() {
    let freeze = selected(PolicyRef::cluster("year-end"), FREEZE);
    let now = utc("2026-12-22T10:00:00Z");
    let ovr = EmergencyOverride {
        by: "alice@example.com".into(),
        reason: "CVE-2026-1234 hotfix".into(),
        at: utc("2026-12-22T09:00:00Z"),
        until: Some(utc("2026-12-22T18:00:00Z")),
    };
    let approved = vec![RecordedApproval {
        gate: PolicyGate::BeforeRollout,
        by: "bob".into(),
        groups: vec![],
    }];
    let with = |o: Option<EmergencyOverride>, approvals: Vec<RecordedApproval>| ReleaseFacts {
        emergency_override: o,
        approvals,
        ..facts(start())
    };
    let policies = std::slice::from_ref(&freeze);

    // No override: the freeze holds the new revision until its end, named.
    let d = evaluate(policies, &with(None, approved.clone()), now);
    let w = wait_of(&d);
    assert_eq!(
        (w.reason.as_str(), w.until, &w.policy),
        (
            "Blackout",
            Some(utc("2027-01-03T23:00:00Z")),
            &PolicyRef::cluster("year-end")
        )
    );
    assert_eq!(
        d.to_string(),
        "waiting: blackout of ClusterReleasePolicy year-end (\"year-end freeze\"); releases \
         may go again at 2027-01-03T23:00:00Z"
    );

    // Override active: proceed, and the decision names who, why, until when, and what it lifted.
    let d = evaluate(policies, &with(Some(ovr.clone()), approved.clone()), now);
    let PolicyDecision::Proceed(p) = &d else {
        panic!("expected to proceed, got {d}")
    };
    let used = p.override_used.as_ref().unwrap();
    assert_eq!(
        (used.by.as_str(), used.reason.as_str()),
        ("alice@example.com", "CVE-2026-1234 hotfix")
    );
    assert_eq!(used.lifted.len(), 1);
    assert_eq!(used.lifted[0].policy, PolicyRef::cluster("year-end"));
    assert_eq!(
        d.to_string(),
        "release policies allow it; emergency override by alice@example.com (\"CVE-2026-1234 \
         hotfix\") until 2026-12-22T18:00:00Z lifts ClusterReleasePolicy year-end"
    );

    // It lifts time rules only: the approval is still required.
    let d = evaluate(policies, &with(Some(ovr.clone()), vec![]), now);
    assert_eq!(wait_of(&d).reason.as_str(), "ApprovalsNeeded");

    // In flight, the override lets the release advance through the freeze too.
    let d = evaluate(
        policies,
        &ReleaseFacts {
            emergency_override: Some(ovr.clone()),
            ..facts(Stage::NextStep)
        },
        now,
    );
    assert!(d.is_proceed(), "{d}");

    // Expired (until is exclusive) or not yet applied: the freeze is back.
    for at in [utc("2026-12-22T18:00:00Z"), utc("2026-12-22T08:59:59Z")] {
        let d = evaluate(policies, &with(Some(ovr.clone()), approved.clone()), at);
        assert_eq!(wait_of(&d).reason.as_str(), "Blackout", "{at}");
    }
    // An active override outside any freeze lifts nothing and is not announced.
    let standing = EmergencyOverride {
        at: utc("2026-11-30T00:00:00Z"),
        until: None,
        ..ovr
    };
    let d = evaluate(
        policies,
        &with(Some(standing), approved),
        utc("2026-12-01T10:00:00Z"),
    );
    assert_eq!(d, PolicyDecision::Proceed(Proceed::default()));
}

const TEAM: &str = "
windows:
- days: [Mon-Fri]
  start: '09:00'
  end: '17:00'
  timeZone: Europe/Berlin
approvals:
  beforeRollout: {count: 1, groups: [shop-leads]}
maxInFlight: 3
minSoak: 10m
";

const PLATFORM: &str = "
windows:
- days: [Mon-Fri]
  start: '09:00'
  end: '17:00'
  timeZone: America/New_York
approvals:
  beforeRollout: {count: 2, groups: [sre, platform]}
maxInFlight: 1
minSoak: 1h
";

#[test]
fn two_policies_on_one_canary_the_strictest_wins_and_is_named() {
    // Berlin 09-17 CET is 08:00-16:00Z in January, New York 09-17 EST 14:00-22:00Z:
    // both allow 14:00-16:00Z only.
    let team = selected(PolicyRef::namespaced("shop", "team"), TEAM);
    let platform = selected(PolicyRef::cluster("platform"), PLATFORM);
    let both = [team.clone(), platform.clone()];
    let team_ref = PolicyRef::namespaced("shop", "team");
    let platform_ref = PolicyRef::cluster("platform");
    let approvals = |who: &[(&str, &str)]| {
        who.iter()
            .map(|(by, group)| RecordedApproval {
                gate: PolicyGate::BeforeRollout,
                by: by.to_string(),
                groups: vec![group.to_string()],
            })
            .collect::<Vec<_>>()
    };
    let all_approved = approvals(&[
        ("carol", "shop-leads"),
        ("bob", "sre"),
        ("dave", "platform"),
    ]);
    let starting = |a: Vec<RecordedApproval>| ReleaseFacts {
        approvals: a,
        ..facts(start())
    };

    // (now, who is named, reason, until, the other policies blocking now)
    #[rustfmt::skip]
    let cases: &[WindowCase] = &[
        // Mon 07:00Z: both closed; Berlin opens at 08:00Z, New York at 14:00Z: New York wins.
        ("2026-01-12T07:00:00Z", &platform_ref, "OutsideWindow", Some("2026-01-12T14:00:00Z"), &[&team_ref]),
        // Mon 10:00Z: Berlin open, New York not.
        ("2026-01-12T10:00:00Z", &platform_ref, "OutsideWindow", Some("2026-01-12T14:00:00Z"), &[]),
        // Mon 17:00Z: Berlin closed until Tue 08:00Z, but New York is closed then: Tue
        // 14:00Z, named New York although only Berlin blocks right now.
        ("2026-01-12T17:00:00Z", &platform_ref, "OutsideWindow", Some("2026-01-13T14:00:00Z"), &[&team_ref]),
        // Fri 15:00Z: both open.
        ("2026-01-16T15:00:00Z", &platform_ref, "", None, &[]),
        // Fri 16:30Z: Berlin closed over the weekend; Monday 08:00Z, New York Monday 14:00Z.
        ("2026-01-16T16:30:00Z", &platform_ref, "OutsideWindow", Some("2026-01-19T14:00:00Z"), &[&team_ref]),
    ];
    for (now, who, reason, until, also) in cases {
        let d = evaluate(&both, &starting(all_approved.clone()), utc(now));
        if reason.is_empty() {
            assert!(d.is_proceed(), "{now}: {d}");
            continue;
        }
        let w = wait_of(&d);
        assert_eq!(
            (&w.policy, w.reason.as_str(), w.until),
            (*who, *reason, until.map(utc)),
            "{now}: {d}"
        );
        let others: Vec<&PolicyRef> = w.also.iter().map(|b| &b.policy).collect();
        assert_eq!(others, *also, "{now}: {d}");
    }
    // The order the policies are given in does not matter.
    let swapped = [platform.clone(), team.clone()];
    let now = utc("2026-01-12T07:00:00Z");
    assert_eq!(
        evaluate(&both, &starting(all_approved.clone()), now),
        evaluate(&swapped, &starting(all_approved.clone()), now)
    );

    // Approvals: each policy's rule on its own; the largest shortfall is named.
    let open = utc("2026-01-12T15:00:00Z");
    #[rustfmt::skip]
    let cases: &[ApprovalCase] = &[
        (&[], Some((&platform_ref, 0, 2))),
        // Bob twice is one approver; carol counts for the team only.
        (&[("bob", "sre"), ("bob", "sre"), ("carol", "shop-leads")], Some((&platform_ref, 1, 2))),
        // Two SRE approvers, none from shop-leads: the team's rule is unmet.
        (&[("bob", "sre"), ("dave", "platform")], Some((&team_ref, 0, 1))),
        // One person in a group of each policy counts for both.
        (&[("erin", "sre"), ("erin", "shop-leads"), ("dave", "platform")], None),
        // Groups are exact: "sres" is not "sre".
        (&[("bob", "sres"), ("dave", "platform"), ("carol", "shop-leads")], Some((&platform_ref, 1, 2))),
    ];
    for (who, want) in cases {
        let d = evaluate(&both, &starting(approvals(who)), open);
        match want {
            None => assert!(d.is_proceed(), "{who:?}: {d}"),
            Some((policy, have, need)) => {
                let w = wait_of(&d);
                assert_eq!(&w.policy, *policy, "{who:?}: {d}");
                let WaitReason::ApprovalsNeeded {
                    have: h, need: n, ..
                } = &w.reason
                else {
                    panic!("{d}")
                };
                assert_eq!((h, n), (have, need), "{who:?}: {d}");
            }
        }
    }
    let d = evaluate(&both, &starting(vec![]), open);
    assert_eq!(
        d.to_string(),
        "waiting: 0 of 2 approvals beforeRollout from sre or platform required by \
         ClusterReleasePolicy platform; also 0 of 1 approvals beforeRollout from shop-leads \
         required by ReleasePolicy shop/team"
    );

    // Concurrency: the smaller maxInFlight (1) queues the Canary, and says which policy.
    let mut busy = both.clone();
    for p in &mut busy {
        p.queue.in_flight = vec![CanaryKey::new("shop", "search")];
    }
    let d = evaluate(&busy, &starting(all_approved.clone()), open);
    let w = wait_of(&d);
    assert_eq!(
        (&w.policy, &w.reason),
        (
            &platform_ref,
            &WaitReason::Queued {
                position: 1,
                max_in_flight: 1
            }
        )
    );

    // Soak: the longest (1h of the platform's, not 10m of the team's).
    let promote = facts(Stage::Promote {
        last_step_since: utc("2026-01-12T14:00:00Z"),
    });
    let d = evaluate(&both, &promote, utc("2026-01-12T14:30:00Z"));
    let w = wait_of(&d);
    assert_eq!(
        (&w.policy, w.until),
        (&platform_ref, Some(utc("2026-01-12T15:00:00Z")))
    );
}

#[test]
fn a_concurrency_queue_with_three_canaries() {
    let policy = selected(
        PolicyRef::namespaced("shop", "one-at-a-time"),
        "maxInFlight: 1",
    );
    let key = |n: &str| CanaryKey::new("shop", n);
    let arrival = |n: &str, at: &str| Arrival {
        canary: key(n),
        since: utc(at),
    };
    // Arrival order: cart, then search and api at the same second (api before search by name).
    let arrivals = [
        arrival("search", "2026-05-04T10:01:00Z"),
        arrival("cart", "2026-05-04T10:00:00Z"),
        arrival("api", "2026-05-04T10:01:00Z"),
    ];
    let now = utc("2026-05-04T10:05:00Z");
    let decide = |in_flight: &[&str], waiting: &[&str], who: &str| {
        let mut p = policy.clone();
        p.queue = QueueSnapshot {
            in_flight: in_flight.iter().map(|n| key(n)).collect(),
            waiting: arrivals
                .iter()
                .filter(|a| waiting.contains(&a.canary.name.as_str()))
                .cloned()
                .collect(),
        };
        let since = arrivals
            .iter()
            .find(|a| a.canary.name == who)
            .unwrap()
            .since;
        let stage = if in_flight.contains(&who) {
            Stage::NextStep
        } else {
            Stage::Start { since }
        };
        let f = ReleaseFacts {
            canary: key(who),
            ..facts(stage)
        };
        match evaluate(&[p], &f, now) {
            PolicyDecision::Proceed(_) => 0,
            PolicyDecision::Wait(Wait {
                reason: WaitReason::Queued { position, .. },
                ..
            }) => position,
            other => panic!("{other}"),
        }
    };
    // (in flight, waiting) -> queue position of cart, api, search (0: may start)
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&str], [u32; 3])] = &[
        // All three arrive: cart starts, api is next, search after it.
        (&[], &["cart", "api", "search"], [0, 1, 2]),
        // Cart in flight: api still first in line.
        (&["cart"], &["api", "search"], [0, 1, 2]),
        // Cart done: its slot frees, api starts, search is next.
        (&[], &["api", "search"], [0, 0, 1]),
        // Api in flight.
        (&["api"], &["search"], [0, 0, 1]),
    ];
    for (in_flight, waiting, want) in cases {
        let got = ["cart", "api", "search"].map(|who| {
            if !in_flight.contains(&who) && !waiting.contains(&who) {
                0 // done; not asked
            } else {
                decide(in_flight, waiting, who)
            }
        });
        assert_eq!(got, *want, "in flight {in_flight:?}, waiting {waiting:?}");
    }
    // The status text names the policy and the position.
    let mut p = policy.clone();
    p.queue.in_flight = vec![key("cart")];
    let d = evaluate(
        &[p],
        &ReleaseFacts {
            canary: key("search"),
            ..facts(Stage::Start {
                since: utc("2026-05-04T10:01:00Z"),
            })
        },
        now,
    );
    assert_eq!(
        d.to_string(),
        "waiting: queued by ReleasePolicy shop/one-at-a-time (maxInFlight 1): position 1"
    );
}

#[test]
fn promotion_waits_for_the_minimum_soak() {
    let policy = selected(PolicyRef::namespaced("shop", "soak"), "minSoak: 30m");
    let last_step = utc("2026-05-04T12:00:00Z");
    let promote = facts(Stage::Promote {
        last_step_since: last_step,
    });
    #[rustfmt::skip]
    let cases = [
        ("2026-05-04T12:00:00Z", true),
        ("2026-05-04T12:29:59Z", true),
        ("2026-05-04T12:30:00Z", false),
        ("2026-05-04T15:00:00Z", false),
    ];
    for (now, waits) in cases {
        let d = evaluate(std::slice::from_ref(&policy), &promote, utc(now));
        match waits {
            true => {
                let w = wait_of(&d);
                assert_eq!(
                    (&w.reason, w.until),
                    (
                        &WaitReason::Soaking {
                            until: utc("2026-05-04T12:30:00Z")
                        },
                        Some(utc("2026-05-04T12:30:00Z"))
                    ),
                    "{now}"
                );
                assert!(
                    matches!(d, PolicyDecision::Wait(_)),
                    "a wait, not a hold: {d}"
                );
            }
            false => assert!(d.is_proceed(), "{now}: {d}"),
        }
    }
    assert_eq!(
        evaluate(std::slice::from_ref(&policy), &promote, utc("2026-05-04T12:10:00Z")).to_string(),
        "waiting: soaking at the last step until 2026-05-04T12:30:00Z (minSoak of ReleasePolicy shop/soak)"
    );
    // Soak gates promotion only: steps go on.
    let d = evaluate(
        std::slice::from_ref(&policy),
        &facts(Stage::NextStep),
        last_step,
    );
    assert!(d.is_proceed(), "{d}");
}

mod compile;
