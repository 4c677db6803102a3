//! What the Canary's status says about its release policies: why a release waits or
//! holds (and until when), an emergency override, and the images it promoted (read by
//! downstream environments).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::GateKind;

/// Why a release policy keeps a release from going on.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum PolicyWaitReason {
    /// No release window of the policy is open.
    OutsideWindow,
    /// A blackout (freeze) of the policy is in force.
    Blackout,
    /// The policy's `maxInFlight` releases are in flight.
    Queued,
    /// Fewer distinct approvers than the policy requires.
    ApprovalsNeeded,
    /// The minimum soak at the last step has not passed.
    Soaking,
    /// The policy does not compile: it holds every release it selects until fixed.
    PolicyInvalid,
    /// `serin.dev/promote-from`: the upstream Canary has not promoted these images.
    UpstreamNotPromoted,
    /// The upstream promoted these images, but not long enough ago.
    UpstreamSoaking,
}

impl PolicyWaitReason {
    pub const ALL: [PolicyWaitReason; 8] = [
        PolicyWaitReason::OutsideWindow,
        PolicyWaitReason::Blackout,
        PolicyWaitReason::Queued,
        PolicyWaitReason::ApprovalsNeeded,
        PolicyWaitReason::Soaking,
        PolicyWaitReason::PolicyInvalid,
        PolicyWaitReason::UpstreamNotPromoted,
        PolicyWaitReason::UpstreamSoaking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyWaitReason::OutsideWindow => "OutsideWindow",
            PolicyWaitReason::Blackout => "Blackout",
            PolicyWaitReason::Queued => "Queued",
            PolicyWaitReason::ApprovalsNeeded => "ApprovalsNeeded",
            PolicyWaitReason::Soaking => "Soaking",
            PolicyWaitReason::PolicyInvalid => "PolicyInvalid",
            PolicyWaitReason::UpstreamNotPromoted => "UpstreamNotPromoted",
            PolicyWaitReason::UpstreamSoaking => "UpstreamSoaking",
        }
    }
}

/// Where the release stands while it waits.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PolicyStage {
    /// The new revision has not started (phase `Waiting`).
    Start,
    /// In flight, holding at its current step before the next.
    NextStep,
    /// In flight at its last step, before promotion.
    Promote,
}

/// Approvals a policy still needs.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsStillNeeded {
    pub gate: GateKind,
    pub have: u32,
    pub need: u32,
    /// An approver must be in one of these groups; empty: any authorized approver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A release kept back by a release policy (or its upstream environment).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyWait {
    pub reason: PolicyWaitReason,
    /// The policy behind the wait, e.g. `ReleasePolicy shop/business-hours`; for the
    /// upstream reasons, the upstream Canary.
    pub policy: String,
    /// The revision that waits (or holds).
    pub revision: String,
    pub stage: PolicyStage,
    /// The wait in words: the rule, the next opening, every other policy holding it.
    pub message: String,
    /// When the policies next allow it (the next window opening, the end of a
    /// blackout or soak); absent when it waits for something other than time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Place in the policy's queue (1 goes next), when queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalsStillNeeded>,
    /// When the wait began; a waiting revision's place in concurrency queues.
    pub since: DateTime<Utc>,
}

/// An emergency override: an authorized person lifted the release windows and
/// blackouts for one revision of this Canary. Written by the approval API.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyOverrideRecord {
    /// The revision it applies to; it lapses when that release ends.
    pub revision: String,
    pub by: String,
    /// cli, api or slack.
    pub via: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// It lapses at this time; absent: when the release ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// The images of the revision last promoted, for environments downstream
/// (`serin.dev/promote-from`) and for CI or a GitOps tool in another cluster.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PromotedImages {
    pub revision: String,
    /// Container name to image reference.
    pub images: BTreeMap<String, String>,
    pub at: DateTime<Utc>,
}
