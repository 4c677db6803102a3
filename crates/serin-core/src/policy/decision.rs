//! The entry point: [`evaluate`] the policies selecting one Canary against the facts of
//! its release at `now`.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::combine::{approvals_needed, soak_until, time_clear};
use super::queue::{admit, Admission, CanaryKey, QueueSnapshot};
use super::{PolicyRef, PolicyRules};
use crate::crd::InFlight;

/// A policy that selects the Canary, with the state of its queue (the Canaries it
/// selects that are in flight or waiting; empty without `maxInFlight`).
#[derive(Clone, Debug, PartialEq)]
pub struct SelectedPolicy {
    pub policy: PolicyRef,
    pub rules: PolicyRules,
    pub queue: QueueSnapshot,
}

/// Where the release stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A new revision waits to start its release; `since`: when it started waiting
    /// (its place in concurrency queues).
    Start { since: DateTime<Utc> },
    /// A release in flight, about to take its next step.
    NextStep,
    /// A release in flight at its last step since `last_step_since`, about to promote.
    Promote { last_step_since: DateTime<Utc> },
}

/// The approval gates a policy can require approvers at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyGate {
    BeforeRollout,
    BeforePromotion,
}

impl PolicyGate {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyGate::BeforeRollout => "beforeRollout",
            PolicyGate::BeforePromotion => "beforePromotion",
        }
    }
}

/// One person's approval of this revision at `gate`, with the groups the approval API
/// authenticated them in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedApproval {
    pub gate: PolicyGate,
    pub by: String,
    pub groups: Vec<String>,
}

/// An emergency override applied to this Canary by an authorized person: it lifts the
/// time rules (windows and blackouts) of every policy until `until` (`None`: until the
/// release ends). Approvals, concurrency and soak still apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmergencyOverride {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl EmergencyOverride {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.at <= now && self.until.is_none_or(|u| now < u)
    }
}

/// What the policies need to know about one release.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseFacts {
    pub canary: CanaryKey,
    pub stage: Stage,
    pub emergency_override: Option<EmergencyOverride>,
    /// Approvals recorded for the revision under release.
    pub approvals: Vec<RecordedApproval>,
}

/// Why a release waits.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitReason {
    /// No window of the policy is open; `windows` in words, `zone` the time zone of
    /// the window that opens next.
    OutsideWindow { windows: String, zone: Tz },
    /// A blackout of the policy is in force.
    Blackout { reason: String },
    /// The policy's `maxInFlight` releases are in flight; `position` 1 goes next.
    Queued { position: u32, max_in_flight: u32 },
    /// Fewer distinct approvers than the policy needs at `gate`.
    ApprovalsNeeded {
        gate: PolicyGate,
        have: u32,
        need: u32,
        /// Groups an approver must be in (one of); empty: any.
        groups: Vec<String>,
    },
    /// The policy's `minSoak` at the last step has not passed.
    Soaking { until: DateTime<Utc> },
    /// The policy does not compile; `message` says where and why.
    Invalid { message: String },
}

impl WaitReason {
    /// The status `reason` (CamelCase, as Kubernetes conditions spell reasons).
    pub fn as_str(&self) -> &'static str {
        match self {
            WaitReason::OutsideWindow { .. } => "OutsideWindow",
            WaitReason::Blackout { .. } => "Blackout",
            WaitReason::Queued { .. } => "Queued",
            WaitReason::ApprovalsNeeded { .. } => "ApprovalsNeeded",
            WaitReason::Soaking { .. } => "Soaking",
            WaitReason::Invalid { .. } => "PolicyInvalid",
        }
    }
}

/// One policy holding a release back, and until when (`None`: until something other
/// than time changes — approvals, a free slot — or no opening within the horizon).
#[derive(Clone, Debug, PartialEq)]
pub struct Blocker {
    pub policy: PolicyRef,
    pub reason: WaitReason,
    pub until: Option<DateTime<Utc>>,
}

/// The release waits (or holds in flight) because of `policy`; `until` is when the
/// policies next allow it (for time rules), `also` every other policy holding it back.
#[derive(Clone, Debug, PartialEq)]
pub struct Wait {
    pub reason: WaitReason,
    pub policy: PolicyRef,
    pub until: Option<DateTime<Utc>>,
    pub also: Vec<Blocker>,
}

/// An emergency override that lifted time rules in this decision (to record in status
/// and announce).
#[derive(Clone, Debug, PartialEq)]
pub struct OverrideUse {
    pub by: String,
    pub reason: String,
    pub until: Option<DateTime<Utc>>,
    /// The time rules it lifted.
    pub lifted: Vec<Blocker>,
}

/// The release may go on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Proceed {
    /// Set when an emergency override lifted a window or a blackout.
    pub override_used: Option<OverrideUse>,
    /// Time rules of `inFlight: Finish` policies the release in flight finishes despite.
    pub finishing: Vec<Blocker>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PolicyDecision {
    Proceed(Proceed),
    /// The new revision does not start, or the release does not promote, yet.
    Wait(Wait),
    /// A release in flight holds at its next step (a window closed, a blackout began).
    HoldInFlight(Wait),
}

impl PolicyDecision {
    pub fn is_proceed(&self) -> bool {
        matches!(self, PolicyDecision::Proceed(_))
    }

    pub fn wait(&self) -> Option<&Wait> {
        match self {
            PolicyDecision::Proceed(_) => None,
            PolicyDecision::Wait(w) | PolicyDecision::HoldInFlight(w) => Some(w),
        }
    }
}

/// Decide. `policies` are those that select the Canary (any order: the decision sorts
/// them by kind, namespace and name, so ties are named the same on every reconcile).
pub fn evaluate(
    policies: &[SelectedPolicy],
    facts: &ReleaseFacts,
    now: DateTime<Utc>,
) -> PolicyDecision {
    let mut sorted: Vec<&SelectedPolicy> = policies.iter().collect();
    sorted.sort_by(|a, b| a.policy.cmp(&b.policy));
    let all: Vec<(&PolicyRef, &PolicyRules)> =
        sorted.iter().map(|p| (&p.policy, &p.rules)).collect();
    let active_override = facts
        .emergency_override
        .as_ref()
        .filter(|o| o.is_active(now));
    let in_flight = !matches!(facts.stage, Stage::Start { .. });

    // A policy that does not compile holds everything it selects, override or not:
    // nobody can tell what it meant to allow.
    let mut broken = sorted.iter().filter_map(|p| {
        p.rules.invalid.as_ref().map(|message| Blocker {
            policy: p.policy.clone(),
            reason: WaitReason::Invalid {
                message: message.clone(),
            },
            until: None,
        })
    });
    if let Some(first) = broken.next() {
        let w = Wait {
            reason: first.reason,
            policy: first.policy,
            until: None,
            also: broken.collect(),
        };
        return if in_flight {
            PolicyDecision::HoldInFlight(w)
        } else {
            PolicyDecision::Wait(w)
        };
    }

    // Time rules: an override lifts them all; in flight only `Hold` policies hold.
    let mut proceed = Proceed::default();
    let mut time_wait: Option<Wait> = None;
    if let Some(o) = active_override {
        let lifted = time_clear(&all, now).now;
        if !lifted.is_empty() {
            proceed.override_used = Some(OverrideUse {
                by: o.by.clone(),
                reason: o.reason.clone(),
                until: o.until,
                lifted,
            });
        }
    } else {
        let holding: Vec<(&PolicyRef, &PolicyRules)> = all
            .iter()
            .copied()
            .filter(|(_, r)| !in_flight || r.in_flight == InFlight::Hold)
            .collect();
        if in_flight {
            let finishing: Vec<(&PolicyRef, &PolicyRules)> = all
                .iter()
                .copied()
                .filter(|(_, r)| r.in_flight == InFlight::Finish)
                .collect();
            proceed.finishing = time_clear(&finishing, now).now;
        }
        let clear = time_clear(&holding, now);
        if let Some(by) = clear.by.filter(|_| !clear.now.is_empty()) {
            let also = clear
                .now
                .into_iter()
                .filter(|b| !(b.policy == by.policy && b.reason.as_str() == by.reason.as_str()))
                .collect();
            time_wait = Some(Wait {
                reason: by.reason,
                policy: by.policy,
                until: clear.at,
                also,
            });
        }
    }

    // The other rules, by stage.
    let mut others: Vec<Blocker> = Vec::new();
    match facts.stage {
        Stage::Start { since } => {
            others.extend(approvals_needed(
                &all,
                super::PolicyGate::BeforeRollout,
                &facts.approvals,
            ));
            let mut queued: Vec<Blocker> = sorted
                .iter()
                .filter_map(|p| {
                    let max = p.rules.max_in_flight?;
                    match admit(max, &p.queue, &facts.canary, since) {
                        Admission::Start => None,
                        Admission::Queued { position } => Some(Blocker {
                            policy: p.policy.clone(),
                            reason: WaitReason::Queued {
                                position,
                                max_in_flight: max,
                            },
                            until: None,
                        }),
                    }
                })
                .collect();
            // The worst position first; equal ones keep the policies' order.
            queued.sort_by_key(|b| match b.reason {
                WaitReason::Queued { position, .. } => std::cmp::Reverse(position),
                _ => std::cmp::Reverse(0),
            });
            others.extend(queued);
        }
        Stage::NextStep => {}
        Stage::Promote { last_step_since } => {
            if let Some((until, policy)) = soak_until(&all, last_step_since) {
                if now < until {
                    others.push(Blocker {
                        policy,
                        reason: WaitReason::Soaking { until },
                        until: Some(until),
                    });
                }
            }
            others.extend(approvals_needed(
                &all,
                super::PolicyGate::BeforePromotion,
                &facts.approvals,
            ));
        }
    }

    match time_wait {
        Some(mut w) => {
            w.also.extend(others);
            if in_flight {
                PolicyDecision::HoldInFlight(w)
            } else {
                PolicyDecision::Wait(w)
            }
        }
        None if others.is_empty() => PolicyDecision::Proceed(proceed),
        None => {
            let first = others.remove(0);
            PolicyDecision::Wait(Wait {
                reason: first.reason,
                policy: first.policy,
                until: first.until,
                also: others,
            })
        }
    }
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `Mon 2026-03-30 09:00 CEST (Europe/Berlin), 2026-03-30T07:00:00Z`.
fn zoned_text(t: DateTime<Utc>, zone: Tz) -> String {
    if zone == chrono_tz::UTC {
        return format!("{} UTC", t.format("%a %Y-%m-%d %H:%M"));
    }
    format!(
        "{} ({}), {}",
        t.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z"),
        zone.name(),
        utc_text(t)
    )
}

fn reason_text(reason: &WaitReason, policy: &PolicyRef, until: Option<DateTime<Utc>>) -> String {
    match reason {
        WaitReason::OutsideWindow { windows, zone } => match until {
            Some(u) => format!(
                "outside the release windows of {policy} ({windows}); next opening {}",
                zoned_text(u, *zone)
            ),
            None => format!(
                "outside the release windows of {policy} ({windows}); no opening within 400 days"
            ),
        },
        WaitReason::Blackout { reason } => match until {
            Some(u) => format!(
                "blackout of {policy} ({reason:?}); releases may go again at {}",
                utc_text(u)
            ),
            None => format!("blackout of {policy} ({reason:?}); no opening within 400 days"),
        },
        WaitReason::Queued {
            position,
            max_in_flight,
        } => format!("queued by {policy} (maxInFlight {max_in_flight}): position {position}"),
        WaitReason::ApprovalsNeeded {
            gate,
            have,
            need,
            groups,
        } => {
            let from = if groups.is_empty() {
                String::new()
            } else {
                format!(" from {}", groups.join(" or "))
            };
            format!(
                "{have} of {need} approvals {}{from} required by {policy}",
                gate.as_str()
            )
        }
        WaitReason::Soaking { until } => format!(
            "soaking at the last step until {} (minSoak of {policy})",
            utc_text(*until)
        ),
        WaitReason::Invalid { message } => {
            format!("{policy} is invalid and holds every release it selects until fixed: {message}")
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&reason_text(&self.reason, &self.policy, self.until))
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&reason_text(&self.reason, &self.policy, self.until))?;
        for b in &self.also {
            write!(f, "; also {b}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PolicyDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyDecision::Proceed(p) => {
                f.write_str("release policies allow it")?;
                if let Some(o) = &p.override_used {
                    write!(f, "; emergency override by {} ({:?})", o.by, o.reason)?;
                    if let Some(u) = o.until {
                        write!(f, " until {}", utc_text(u))?;
                    }
                    let lifted: Vec<String> =
                        o.lifted.iter().map(|b| b.policy.to_string()).collect();
                    write!(f, " lifts {}", lifted.join(", "))?;
                }
                for b in &p.finishing {
                    write!(f, "; finishing in flight despite {b}")?;
                }
                Ok(())
            }
            PolicyDecision::Wait(w) => write!(f, "waiting: {w}"),
            PolicyDecision::HoldInFlight(w) => write!(f, "holding at the next step: {w}"),
        }
    }
}
