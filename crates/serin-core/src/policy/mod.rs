//! Release policies (issue 14), sans-IO: when and where a release may go.
//!
//! [`compile`] checks a `ReleasePolicy` / `ClusterReleasePolicy` spec into
//! [`PolicyRules`]; [`select`] finds the policies that apply to a Canary;
//! [`evaluate`] decides, from the selected policies, the facts of one release and a
//! `now`, whether it may start, advance or promote, or why it waits and until when.
//! Nothing here reads the clock or calls the network.

mod blackout;
mod combine;
mod decision;
mod queue;
mod select;
mod window;

#[cfg(test)]
mod tests;

use std::fmt;

use chrono::TimeDelta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::{ApprovalRule, ClusterReleasePolicy, InFlight, ReleasePolicy, ReleasePolicySpec};

pub use blackout::BlackoutRule;
pub use combine::{approvals_needed, soak_until, time_clear, TimeClear};
pub use decision::{
    evaluate, Blocker, EmergencyOverride, OverrideUse, PolicyDecision, PolicyGate, Proceed,
    RecordedApproval, ReleaseFacts, SelectedPolicy, Stage, Wait, WaitReason,
};
pub use queue::{admit, order, Admission, Arrival, CanaryKey, QueueSnapshot};
pub use select::{check_selector, matches, select};
pub use window::{Window, DAY_NAMES};

/// A spec that does not check: where (`spec.windows[0].days[1]`) and why (what was
/// written, what is accepted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    ReleasePolicy,
    ClusterReleasePolicy,
}

/// Names a policy in status, Events and messages: `ReleasePolicy shop/business-hours`,
/// `ClusterReleasePolicy year-end-freeze`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRef {
    pub kind: PolicyKind,
    /// Set for a `ReleasePolicy`.
    pub namespace: Option<String>,
    pub name: String,
}

impl PolicyRef {
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PolicyRef {
            kind: PolicyKind::ReleasePolicy,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    pub fn cluster(name: impl Into<String>) -> Self {
        PolicyRef {
            kind: PolicyKind::ClusterReleasePolicy,
            namespace: None,
            name: name.into(),
        }
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.namespace) {
            (PolicyKind::ReleasePolicy, Some(ns)) => write!(f, "ReleasePolicy {ns}/{}", self.name),
            (PolicyKind::ReleasePolicy, None) => write!(f, "ReleasePolicy {}", self.name),
            (PolicyKind::ClusterReleasePolicy, _) => {
                write!(f, "ClusterReleasePolicy {}", self.name)
            }
        }
    }
}

/// A policy's rules, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyRules {
    /// Empty: no window restriction.
    pub windows: Vec<Window>,
    pub blackouts: Vec<BlackoutRule>,
    pub in_flight: InFlight,
    pub before_rollout: Option<ApprovalRule>,
    pub before_promotion: Option<ApprovalRule>,
    pub max_in_flight: Option<u32>,
    pub min_soak: Option<TimeDelta>,
    /// Set when the policy does not compile: it then holds every release it selects
    /// (fail closed: a typo in a freeze still freezes) until it is fixed.
    pub invalid: Option<String>,
}

impl PolicyRules {
    /// The rules of a policy that does not compile.
    pub fn invalid(error: &PolicyError) -> Self {
        PolicyRules {
            invalid: Some(error.to_string()),
            ..Default::default()
        }
    }
}

/// A policy as [`select`] needs it: who it is, what it selects, its rules.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub reference: PolicyRef,
    pub selector: Option<LabelSelector>,
    /// Only for a `ClusterReleasePolicy`.
    pub namespace_selector: Option<LabelSelector>,
    pub rules: PolicyRules,
}

/// Check a spec; `field` paths in errors start at `spec`.
pub fn compile(spec: &ReleasePolicySpec) -> Result<PolicyRules, PolicyError> {
    check_selector(spec.selector.as_ref(), "spec.selector")?;
    let windows = spec
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| Window::parse(w, &format!("spec.windows[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let blackouts = spec
        .blackouts
        .iter()
        .enumerate()
        .map(|(i, b)| BlackoutRule::parse(b, &format!("spec.blackouts[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let approvals = spec.approvals.clone().unwrap_or_default();
    for (gate, rule) in [
        ("beforeRollout", &approvals.before_rollout),
        ("beforePromotion", &approvals.before_promotion),
    ] {
        if rule.as_ref().is_some_and(|r| r.count == 0) {
            return Err(PolicyError::new(
                format!("spec.approvals.{gate}.count"),
                "0: require at least 1 approver, or leave the gate out",
            ));
        }
    }
    if spec.max_in_flight == Some(0) {
        return Err(PolicyError::new(
            "spec.maxInFlight",
            "0 would stop every release: use at least 1, or leave it out for no limit",
        ));
    }
    let min_soak = match &spec.min_soak {
        None => None,
        Some(s) => {
            let d = humantime::parse_duration(s.trim()).map_err(|e| {
                PolicyError::new(
                    "spec.minSoak",
                    format!("{s:?} is not a duration ({e}): use e.g. \"30m\", \"2h\" or \"1d\""),
                )
            })?;
            let d = TimeDelta::from_std(d)
                .map_err(|_| PolicyError::new("spec.minSoak", format!("{s:?} is too long")))?;
            Some(d)
        }
    };
    Ok(PolicyRules {
        windows,
        blackouts,
        in_flight: spec.in_flight,
        before_rollout: approvals.before_rollout,
        before_promotion: approvals.before_promotion,
        max_in_flight: spec.max_in_flight,
        min_soak,
        invalid: None,
    })
}

/// Check a `ReleasePolicy`.
pub fn compile_namespaced(p: &ReleasePolicy) -> Result<CompiledPolicy, PolicyError> {
    Ok(CompiledPolicy {
        reference: PolicyRef::namespaced(
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        ),
        selector: p.spec.selector.clone(),
        namespace_selector: None,
        rules: compile(&p.spec)?,
    })
}

/// Check a `ClusterReleasePolicy`.
pub fn compile_cluster(p: &ClusterReleasePolicy) -> Result<CompiledPolicy, PolicyError> {
    check_selector(p.spec.namespace_selector.as_ref(), "spec.namespaceSelector")?;
    Ok(CompiledPolicy {
        reference: PolicyRef::cluster(p.metadata.name.clone().unwrap_or_default()),
        selector: p.spec.policy.selector.clone(),
        namespace_selector: p.spec.namespace_selector.clone(),
        rules: compile(&p.spec.policy)?,
    })
}
