use chrono::Duration;
use serde_json::{json, Value};

use super::super::render::{render_history, render_list, render_status};
use super::super::tests::{at, canary, progressing, ts};
use super::super::{frame, Output, Target};
use super::*;
use crate::crd::Canary;

const WINDOW_MSG: &str = "no window of ReleasePolicy shop/business-hours is open \
    (Mon-Thu 09:00-16:00 Europe/Berlin); next opening 2027-01-15T10:05:00Z";

/// A new revision r2 waiting to start since t=-600; `canaryRevision` still names the
/// last release (r0), the primary serves r1.
fn waiting(wait: Value) -> Canary {
    let mut w = json!({
        "policy": "ReleasePolicy shop/business-hours", "revision": "r2", "stage": "Start",
        "since": ts(-600),
    });
    for (k, v) in wait.as_object().unwrap() {
        w[k] = v.clone();
    }
    let message = format!(
        "new revision r2 waits: {}",
        w["message"].as_str().unwrap_or("")
    );
    canary(
        "shop",
        "podinfo",
        json!({
            "phase": "Waiting", "canaryWeight": 0, "currentStep": 3, "stepLabel": "3/3",
            "stableRevision": "r1", "canaryRevision": "r0", "stepStartedAt": ts(-7200),
            "releaseStartedAt": ts(-9000), "lastTransitionTime": ts(-600),
            "message": message, "policyWait": w,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "Waiting",
                 "message": "waits for a window", "lastTransitionTime": ts(-600)},
            ],
        }),
    )
}

/// The release of r2 in flight at step 2/3, held there (or at 3/3 before promotion).
fn held(stage: &str, wait: Value) -> Canary {
    let mut c = progressing();
    let s = c.status.as_mut().unwrap();
    if stage == "Promote" {
        s.current_step = 3;
        s.step_label = Some("3/3".into());
    }
    let mut w = json!({
        "policy": "ReleasePolicy shop/business-hours", "revision": "r2", "stage": stage,
        "since": ts(30),
    });
    for (k, v) in wait.as_object().unwrap() {
        w[k] = v.clone();
    }
    s.policy_wait = Some(serde_json::from_value(w).unwrap());
    c
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in\n{out}"))
}

#[test]
fn spans_are_two_units_at_most_and_instants_are_utc() {
    for (secs, want) in [
        (0, "0s"),
        (45, "45s"),
        (300, "5m"),
        (330, "5m 30s"),
        (7500, "2h 5m"),
        (7200, "2h"),
        (3 * 86400 + 4 * 3600 + 59, "3d 4h"),
        (-5, "0s"),
    ] {
        assert_eq!(span(Duration::seconds(secs)), want, "{secs}");
    }
    assert_eq!(relative(at(7500), at(0)), "in 2h 5m");
    assert_eq!(relative(at(0), at(300)), "5m ago");
    assert_eq!(utc_minute(at(7500)), "2027-01-15T10:05Z");
    assert_eq!(utc_minute(at(7501)), "2027-01-15T10:05:01Z");
}

#[test]
fn a_revision_outside_its_window_says_why_until_when_and_that_it_has_not_started() {
    let c = waiting(json!({"reason": "OutsideWindow", "message": WINDOW_MSG,
                           "until": ts(7500)}));
    let out = render_status(&c, at(0));
    assert_eq!(line(&out, "Phase:"), "Phase:      Waiting for 10m");
    // Not the last release's r0: the waiting revision, and the primary's.
    assert_eq!(
        line(&out, "Revision:"),
        "Revision:   r1 (new revision r2 not started)"
    );
    assert!(!out.contains("r0"), "{out}");
    assert!(
        line(&out, "Step:").starts_with("Step:       not started"),
        "{out}"
    );
    assert_eq!(
        line(&out, "Policy:"),
        "Policy:     OutsideWindow (ReleasePolicy shop/business-hours)"
    );
    assert_eq!(
        line(&out, "Release:"),
        "Release:    revision r2 waits to start (for 10m)"
    );
    assert_eq!(
        line(&out, "Next:"),
        "Next:       2027-01-15T10:05Z (in 2h 5m, next window opens)"
    );
    assert_eq!(line(&out, "Why:"), format!("Why:        {WINDOW_MSG}"));
    // Nothing claims the waiting revision is being analysed or running out of time,
    // and the message is not said twice.
    for absent in [
        "In step:",
        "check",
        "deadline",
        "Message:",
        "Queue:",
        "Approvals:",
    ] {
        assert!(!out.contains(absent), "{absent:?} in\n{out}");
    }
    // Progressing=False is what waiting means, not a trouble to list.
    assert!(!out.contains("Conditions:"), "{out}");
    // Later, the opening is due: the controller looks again.
    let late = render_status(&c, at(7600));
    assert!(line(&late, "Next:").contains("(due now, "), "{late}");
}

#[test]
fn every_reason_renders_its_policy_and_message() {
    for (reason, policy, message, until, what) in [
        ("Blackout", "ClusterReleasePolicy year-end-freeze", "blackout \"year-end\" until 2027-01-16T00:00:00Z", Some(57_600), Some("blackout ends")),
        ("Soaking", "ReleasePolicy shop/soak", "minSoak 30m at the last step", Some(600), Some("soak ends")),
        ("PolicyInvalid", "ReleasePolicy shop/broken", "spec.windows[0].days[0]: \"Mo\": expected Mon..Sun or a range such as Mon-Thu", None, None),
        ("UpstreamNotPromoted", "Canary staging/podinfo", "images app=repo:2 were not promoted upstream in Canary staging/podinfo", None, None),
        ("UpstreamSoaking", "Canary staging/podinfo", "images promoted upstream in Canary staging/podinfo at 2027-01-15T07:50:00Z, soaking until 2027-01-15T08:20:00Z", Some(1200), Some("soak ends")),
    ] {
        let mut w = json!({"reason": reason, "policy": policy, "message": message});
        if let Some(u) = until {
            w["until"] = json!(ts(u));
        }
        let out = render_status(&waiting(w), at(0));
        assert_eq!(
            line(&out, "Policy:"),
            format!("Policy:     {reason} ({policy})"),
            "{out}"
        );
        assert_eq!(line(&out, "Why:"), format!("Why:        {message}"));
        match (until, what) {
            (Some(u), Some(what)) => assert_eq!(
                line(&out, "Next:"),
                format!("Next:       {} ({}, {what})", utc_minute(at(u)), relative(at(u), at(0)))
            ),
            _ => assert!(!out.contains("Next:"), "{out}"),
        }
        let list = render_list(&[waiting(json!({"reason": reason, "message": message}))], false, at(0));
        let row = list.lines().nth(1).unwrap();
        assert!(row.contains(&format!("Waiting {reason} ")), "{list}");
    }
}

#[test]
fn a_queued_revision_shows_its_position() {
    let c = waiting(json!({"reason": "Queued", "queuePosition": 3,
                           "message": "ReleasePolicy shop/one-at-a-time: maxInFlight 1 in flight (web/api)"}));
    let out = render_status(&c, at(0));
    assert_eq!(
        line(&out, "Queue:"),
        "Queue:      position 3 (2 ahead of it)"
    );
    assert!(!out.contains("Next:"), "{out}");
    let first = waiting(json!({"reason": "Queued", "queuePosition": 1, "message": "m"}));
    assert_eq!(
        line(&render_status(&first, at(0)), "Queue:"),
        "Queue:      position 1 (goes next when a slot frees)"
    );
    // Verdicts left from the last release say so.
    let mut old = c.clone();
    old.status.as_mut().unwrap().metrics = progressing().status.unwrap().metrics;
    assert!(
        render_status(&old, at(120))
            .contains("Verdicts:   (of the last release, last check 60s ago)"),
        "{}",
        render_status(&old, at(120))
    );
    let list = render_list(&[c], false, at(0));
    let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..6], ["podinfo", "Waiting", "Queued", "#3", "0%", "-"]);
    // The REVISION column names the waiting revision, not the last release.
    assert_eq!(row[6], "r2", "{list}");
}

#[test]
fn approvals_still_needed_show_have_need_and_groups() {
    let c = held(
        "Promote",
        json!({"reason": "ApprovalsNeeded", "message": "1 of 2 approvals from release-managers",
               "approvals": {"gate": "beforePromotion", "have": 1, "need": 2,
                             "groups": ["release-managers", "sre"]}}),
    );
    let out = render_status(&c, at(90));
    assert_eq!(
        line(&out, "Approvals:"),
        "Approvals:  1/2 distinct for beforePromotion, from groups release-managers, sre \
         (kubectl serin approve podinfo)"
    );
    assert_eq!(
        line(&out, "Release:"),
        "Release:    revision r2 holds before promotion (for 1m)"
    );
    // Any approver when the rule names no group.
    let any = held(
        "Start",
        json!({"reason": "ApprovalsNeeded", "message": "m",
               "approvals": {"gate": "beforeRollout", "have": 0, "need": 1}}),
    );
    assert!(line(&render_status(&any, at(90)), "Approvals:")
        .contains("0/1 distinct for beforeRollout, from any authorized approver"));
    let list = render_list(&[c], false, at(90));
    assert!(
        list.contains("Progressing, held: ApprovalsNeeded 1/2 "),
        "{list}"
    );
}

#[test]
fn a_release_held_in_flight_is_still_checked_but_has_no_deadline() {
    let c = held(
        "NextStep",
        json!({"reason": "Blackout", "policy": "ClusterReleasePolicy year-end-freeze",
               "message": "blackout \"year-end\"", "until": ts(3 * 86400)}),
    );
    let out = render_status(&c, at(90));
    assert_eq!(line(&out, "Phase:"), "Phase:      Progressing for 90s");
    assert_eq!(
        line(&out, "Revision:"),
        "Revision:   r2 (primary serves r1)"
    );
    assert_eq!(
        line(&out, "In step:"),
        "In step:    30s; next check in 30s; no deadline while held by a release policy"
    );
    assert_eq!(
        line(&out, "Release:"),
        "Release:    revision r2 holds at step 2 (for 1m)"
    );
    assert_eq!(
        line(&out, "Next:"),
        "Next:       2027-01-18T08:00Z (in 2d 23h, blackout ends)"
    );
    // The status message (the last check) is not the wait's: both are shown.
    assert!(out.contains("Message:    check failed (1/2)"), "{out}");
    let row = render_list(&[c], false, at(90));
    assert!(
        row.contains("Progressing, held: Blackout until 2027-01-18T08:00Z "),
        "{row}"
    );
}

#[test]
fn the_emergency_override_shows_who_why_for_which_revision_and_until_when() {
    let mut c = held(
        "NextStep",
        json!({"reason": "Queued", "queuePosition": 2, "message": "m"}),
    );
    let s = c.status.as_mut().unwrap();
    s.emergency_override = Some(
        serde_json::from_value(json!({
            "revision": "r2", "by": "alice@example.com", "via": "cli",
            "reason": "CVE-2027-1234 hotfix", "at": ts(0), "until": ts(7200),
        }))
        .unwrap(),
    );
    let out = render_status(&c, at(0));
    assert_eq!(
        line(&out, "Override:"),
        "Override:   windows and blackouts lifted for revision r2 by alice@example.com via cli, \
         until 2027-01-15T10:00Z (in 2h): \"CVE-2027-1234 hotfix\""
    );
    let lapsed = render_status(&c, at(7500));
    assert!(
        line(&lapsed, "Override:").contains("lapsed 2027-01-15T10:00Z (5m ago)"),
        "{lapsed}"
    );
    c.status
        .as_mut()
        .unwrap()
        .emergency_override
        .as_mut()
        .unwrap()
        .until = None;
    assert!(line(&render_status(&c, at(0)), "Override:").contains(", until the release ends: "));
}

#[test]
fn the_last_promoted_images_are_in_the_detailed_view_and_the_json() {
    let mut c = progressing();
    c.status.as_mut().unwrap().promoted = Some(
        serde_json::from_value(json!({
            "revision": "r1", "at": ts(-86400),
            "images": {"app": "ghcr.io/acme/podinfo:6.7.0", "proxy": "envoy:1.30"},
        }))
        .unwrap(),
    );
    let out = render_status(&c, at(0));
    let tail: Vec<&str> = out.lines().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "            proxy=envoy:1.30",
            "            app=ghcr.io/acme/podinfo:6.7.0",
            "Promoted:   revision r1 at 2027-01-14T08:00Z (1d ago)",
        ]
    );
    // Not in the one-line list.
    assert!(!render_list(&[c.clone()], false, at(0)).contains("podinfo:6.7.0"));

    let mut w = waiting(json!({"reason": "Queued", "queuePosition": 2, "message": "m"}));
    w.status.as_mut().unwrap().promoted = c.status.as_ref().unwrap().promoted.clone();
    w.status.as_mut().unwrap().emergency_override = Some(
        serde_json::from_value(json!({
            "revision": "r2", "by": "alice", "via": "api", "reason": "r", "at": ts(0),
        }))
        .unwrap(),
    );
    let one = Target::One {
        namespace: "shop".into(),
        name: "podinfo".into(),
    };
    let v: Value =
        serde_json::from_str(&frame(&one, std::slice::from_ref(&w), Output::Json, at(0)).unwrap())
            .unwrap();
    assert_eq!(v["phase"], "Waiting");
    assert_eq!(v["policyWait"]["reason"], "Queued");
    assert_eq!(v["policyWait"]["queuePosition"], 2);
    assert_eq!(v["policyWait"]["stage"], "Start");
    assert_eq!(v["emergencyOverride"]["by"], "alice");
    assert_eq!(v["promoted"]["images"]["app"], "ghcr.io/acme/podinfo:6.7.0");
}

#[test]
fn history_shows_the_waiting_revision_not_the_last_release() {
    let c = waiting(json!({"reason": "OutsideWindow", "message": WINDOW_MSG,
                           "until": ts(7500)}));
    let out = render_history(&c, at(0));
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..8],
        ["r2", "(Waiting)", "-", "-", "-", "-", "0%", "OutsideWindow"]
    );
    assert!(!out.contains("r0"), "{out}");
}

#[test]
fn a_canary_without_policies_shows_no_policy_lines() {
    let out = render_status(&progressing(), at(90));
    for absent in [
        "Policy:",
        "Release:",
        "Next:",
        "Queue:",
        "Approvals:",
        "Why:",
        "Override:",
        "Promoted:",
    ] {
        assert!(!out.contains(absent), "{absent:?} in\n{out}");
    }
    let list = render_list(&[progressing()], false, at(90));
    assert!(list.contains(" Progressing   25% "), "{list}");
}
