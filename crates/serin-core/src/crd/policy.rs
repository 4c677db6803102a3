//! `ReleasePolicy` and `ClusterReleasePolicy`: when and where releases may go.
//!
//! These are the objects as written; `crate::policy::compile` checks them (day names,
//! times, time zones, RFC 3339 instants, durations) and `crate::policy::evaluate`
//! decides from them, sans-IO.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Rules for the releases of the Canaries it selects in its namespace: time windows,
/// blackouts, approvals, concurrency and a minimum soak before promotion.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "ReleasePolicy",
    namespaced,
    status = "ReleasePolicyStatus",
    shortname = "rpol",
    category = "serin",
    printcolumn = r#"{"name":"MaxInFlight","type":"integer","jsonPath":".spec.maxInFlight"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePolicySpec {
    /// Canaries (by their labels) this policy applies to; empty selects every Canary
    /// in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// When releases may start and advance. Empty: at any time. Several windows: a
    /// release may go while any of them is open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<ReleaseWindow>,
    /// Freezes: no release starts or advances between `start` and `end`, windows or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
    /// What a release already in flight does when a window closes or a blackout
    /// begins: `Hold` at its next step until allowed again (default), or `Finish`.
    #[serde(default)]
    pub in_flight: InFlight,
    /// Distinct approvers required at each gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<PolicyApprovals>,
    /// At most this many releases in flight at once among the selected Canaries;
    /// the others queue in order of arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,
    /// A release is not promoted before it has run this long at its last step
    /// (humantime, e.g. "30m", "2h").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_soak: Option<String>,
}

/// The same rules for Canaries in every namespace its `namespaceSelector` selects.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "ClusterReleasePolicy",
    status = "ReleasePolicyStatus",
    shortname = "crpol",
    category = "serin",
    printcolumn = r#"{"name":"MaxInFlight","type":"integer","jsonPath":".spec.maxInFlight"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReleasePolicySpec {
    #[serde(flatten)]
    pub policy: ReleasePolicySpec,
    /// Namespaces (by their labels) whose Canaries it applies to; empty selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// A weekly time window in one IANA time zone, in wall-clock time.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseWindow {
    /// Days the window opens: `Mon`..`Sun`, or ranges such as `Mon-Thu` (a range may
    /// wrap: `Fri-Mon`).
    pub days: Vec<String>,
    /// Opening time, `HH:MM` (24 h) wall clock.
    pub start: String,
    /// Closing time, `HH:MM` or `24:00`. Earlier than `start`: the window runs past
    /// midnight into the next day (`22:00`-`02:00` opening on the days listed).
    pub end: String,
    /// IANA time zone, e.g. `Europe/Berlin`; default `UTC`.
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// A freeze: nothing starts or advances from `start` until `end` (RFC 3339).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blackout {
    /// RFC 3339 with an offset, e.g. `2026-12-20T00:00:00+01:00`.
    pub start: String,
    /// RFC 3339; must be after `start`.
    pub end: String,
    /// Shown in status, Events and notifications.
    pub reason: String,
}

/// What a release in flight does when a window closes or a blackout begins.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum InFlight {
    /// Finish the release (steps and promotion go on).
    Finish,
    /// Hold at the next step until allowed again.
    #[default]
    Hold,
}

/// Approvals required per gate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyApprovals {
    /// Before a new revision's release starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_rollout: Option<ApprovalRule>,
    /// Before the canary is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_promotion: Option<ApprovalRule>,
}

/// `count` distinct people, each in one of `groups` (empty: any authorized approver).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRule {
    #[schemars(range(min = 1))]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePolicyStatus {
    /// `Valid`: the spec parsed (or why not).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
