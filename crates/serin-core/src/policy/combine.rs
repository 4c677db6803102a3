//! Several policies on one Canary: the strictest wins, field by field.
//!
//! - Windows and blackouts: a release may go only when every policy allows it (each
//!   policy's windows are a union, policies intersect, any blackout forbids). The next
//!   allowed instant is the latest of the policies' own next openings, iterated to a
//!   fixed point (after one opens another may have closed); the policy that moved it
//!   last is the one named.
//! - Approvals: every policy's rule must hold on its own (N distinct approvers each in
//!   one of *its* groups). This is at least as strict as the largest count, and never
//!   asks for an approver in the intersection of unrelated group lists (often empty).
//! - Concurrency: every policy with `maxInFlight` must admit the Canary; the worst
//!   queue position is named.
//! - Soak: the longest `minSoak` applies.

use chrono::{DateTime, Duration, Utc};

use super::blackout;
use super::decision::{Blocker, PolicyGate, RecordedApproval, WaitReason};
use super::window;
use super::{PolicyRef, PolicyRules};

/// How far ahead an opening is looked for.
const HORIZON_DAYS: i64 = 400;

/// When the time rules (windows, blackouts) of a set of policies next allow a release.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeClear {
    /// The first instant at or after `now` every policy allows; `None` if none within
    /// the horizon (e.g. windows of two policies that never overlap).
    pub at: Option<DateTime<Utc>>,
    /// The policy and rule that set `at` (the strictest); `None` when clear now.
    pub by: Option<Blocker>,
    /// Every policy whose time rules forbid a release at `now`, each with its own
    /// next opening.
    pub now: Vec<Blocker>,
}

fn window_blocker(
    policy: &PolicyRef,
    rules: &PolicyRules,
    until: Option<DateTime<Utc>>,
) -> Blocker {
    let zone = until
        .and_then(|u| rules.windows.iter().find(|w| w.is_open(u)))
        .or(rules.windows.first())
        .map_or(chrono_tz::UTC, |w| w.zone);
    Blocker {
        policy: policy.clone(),
        reason: WaitReason::OutsideWindow {
            windows: rules
                .windows
                .iter()
                .map(window::Window::describe)
                .collect::<Vec<_>>()
                .join("; "),
            zone,
        },
        until,
    }
}

/// The blocker one policy's time rules set at `t`, with the instant it lifts (`None`:
/// never within the window search) — or `None` when the policy allows `t`.
fn blocker_at(policy: &PolicyRef, rules: &PolicyRules, t: DateTime<Utc>) -> Option<Blocker> {
    if let Some(b) = blackout::active(&rules.blackouts, t) {
        let (end, _) = blackout::clear_from(&rules.blackouts, t);
        return Some(Blocker {
            policy: policy.clone(),
            reason: WaitReason::Blackout {
                reason: b.reason.clone(),
            },
            until: Some(end),
        });
    }
    if window::any_open(&rules.windows, t) {
        return None;
    }
    Some(window_blocker(
        policy,
        rules,
        window::next_open(&rules.windows, t),
    ))
}

/// The time rules of `policies` (in a stable order) at `now`: see [`TimeClear`].
pub fn time_clear(policies: &[(&PolicyRef, &PolicyRules)], now: DateTime<Utc>) -> TimeClear {
    let now_blockers: Vec<Blocker> = policies
        .iter()
        .filter_map(|(p, r)| {
            blocker_at(p, r, now).map(|mut b| {
                // Each policy's own next opening, its blackouts and windows together.
                b.until = time_clear_single(p, r, now);
                b
            })
        })
        .collect();
    let (at, by) = fixed_point(policies, now);
    TimeClear {
        at,
        by,
        now: now_blockers,
    }
}

fn time_clear_single(
    policy: &PolicyRef,
    rules: &PolicyRules,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    fixed_point(&[(policy, rules)], now).0
}

fn fixed_point(
    policies: &[(&PolicyRef, &PolicyRules)],
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<Blocker>) {
    let horizon = now + Duration::days(HORIZON_DAYS);
    let mut t = now;
    let mut last: Option<Blocker> = None;
    // Every pass moves `t` forward to an opening or a blackout's end; the horizon
    // bounds the passes (a weekly window opens at least once in 400 days, a blackout
    // list ends), the cap is a guard.
    for _ in 0..10_000 {
        let mut latest: Option<Blocker> = None;
        for (p, r) in policies {
            let Some(b) = blocker_at(p, r, t) else {
                continue;
            };
            let Some(until) = b.until else {
                return (None, Some(b));
            };
            if latest
                .as_ref()
                .is_none_or(|l| l.until.is_some_and(|lu| until > lu))
            {
                latest = Some(b);
            }
        }
        match latest {
            None => return (Some(t), last),
            Some(b) => {
                t = b.until.unwrap_or(horizon);
                if t > horizon {
                    let mut b = b;
                    b.until = None;
                    return (None, Some(b));
                }
                last = Some(b);
            }
        }
    }
    (None, last)
}

/// The approval rules of `policies` for `gate` that `approvals` do not meet yet, the
/// largest shortfall first (then by policy).
pub fn approvals_needed(
    policies: &[(&PolicyRef, &PolicyRules)],
    gate: PolicyGate,
    approvals: &[RecordedApproval],
) -> Vec<Blocker> {
    let mut out: Vec<(u32, Blocker)> = Vec::new();
    for (p, r) in policies {
        let rule = match gate {
            PolicyGate::BeforeRollout => r.before_rollout.as_ref(),
            PolicyGate::BeforePromotion => r.before_promotion.as_ref(),
        };
        let Some(rule) = rule else { continue };
        let mut approvers: Vec<&str> = approvals
            .iter()
            .filter(|a| a.gate == gate)
            .filter(|a| rule.groups.is_empty() || a.groups.iter().any(|g| rule.groups.contains(g)))
            .map(|a| a.by.as_str())
            .collect();
        approvers.sort_unstable();
        approvers.dedup();
        let have = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
        if have < rule.count {
            out.push((
                rule.count - have,
                Blocker {
                    policy: (*p).clone(),
                    reason: WaitReason::ApprovalsNeeded {
                        gate,
                        have,
                        need: rule.count,
                        groups: rule.groups.clone(),
                    },
                    until: None,
                },
            ));
        }
    }
    // Stable: equal shortfalls keep the policies' order.
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out.into_iter().map(|(_, b)| b).collect()
}

/// The end of the longest `minSoak` of `policies` counted from `last_step_since`, and
/// the policy that sets it (the first of equal ones).
pub fn soak_until(
    policies: &[(&PolicyRef, &PolicyRules)],
    last_step_since: DateTime<Utc>,
) -> Option<(DateTime<Utc>, PolicyRef)> {
    let mut best: Option<(DateTime<Utc>, PolicyRef)> = None;
    for (p, r) in policies {
        if let Some(soak) = r.min_soak {
            let until = last_step_since + soak;
            if best.as_ref().is_none_or(|(b, _)| until > *b) {
                best = Some((until, (*p).clone()));
            }
        }
    }
    best
}
