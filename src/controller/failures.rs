//! Actions the API server refuses for good (RBAC, validation): said on the Canary as a
//! `Ready=False` condition and a Warning Event naming what was refused, not only in a
//! log line. Transient failures (conflicts, timeouts, 5xx) are retried quietly.

use chrono::{DateTime, Utc};

use crate::crd::{condition_type, find_condition, set_condition, CanaryStatus, Condition};
use crate::release::ReleaseError;
use crate::rollout::EventReason;
use crate::traffic::RouterError;
use crate::workloads::WorkloadError;

/// Why an action failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// RBAC denied the request (403).
    Forbidden,
    /// The API server rejected what serin wrote (422), or the cluster cannot take it.
    Rejected,
}

impl From<FailureReason> for EventReason {
    fn from(r: FailureReason) -> Self {
        match r {
            FailureReason::Forbidden => EventReason::Forbidden,
            FailureReason::Rejected => EventReason::Rejected,
        }
    }
}

impl FailureReason {
    /// The condition and Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Forbidden => EventReason::Forbidden.as_str(),
            FailureReason::Rejected => EventReason::Rejected.as_str(),
        }
    }

    /// The failure a reason read back from a condition names, if any.
    fn from_reason(r: EventReason) -> Option<Self> {
        match r {
            EventReason::Forbidden => Some(FailureReason::Forbidden),
            EventReason::Rejected => Some(FailureReason::Rejected),
            _ => None,
        }
    }
}

fn api_status(e: &ReleaseError) -> Option<&kube::core::Status> {
    match e {
        ReleaseError::Workload(WorkloadError::Kube(kube::Error::Api(s)))
        | ReleaseError::Router(RouterError::Kube(kube::Error::Api(s))) => Some(s),
        _ => None,
    }
}

/// `verb resource.group` from a real 403 message (`... cannot create resource
/// "deployments" in API group "apps" in the namespace "shop"`), e.g. `create deployments.apps`.
pub fn refused_permission(message: &str) -> Option<String> {
    let rest = &message[message.find(" cannot ")? + " cannot ".len()..];
    let (verb, rest) = rest.split_once(" resource \"")?;
    let (resource, rest) = rest.split_once('"')?;
    let group = rest
        .strip_prefix(" in API group \"")
        .and_then(|g| g.split_once('"'))
        .map(|(g, _)| g)
        .unwrap_or("");
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    Some(format!("{verb} {qualified}"))
}

/// A failure worth a condition and an Event, with its message; `None` for transient ones.
pub fn classify(e: &ReleaseError) -> Option<(FailureReason, String)> {
    if let Some(s) = api_status(e) {
        return match s.code {
            403 => {
                let what = refused_permission(&s.message)
                    .map(|p| format!("serin may not {p}: grant it in serin's ClusterRole (Helm chart RBAC); "))
                    .unwrap_or_default();
                Some((
                    FailureReason::Forbidden,
                    format!("{what}the API server said: {}", s.message),
                ))
            }
            422 => Some((
                FailureReason::Rejected,
                format!("the API server rejected a write: {}", s.message),
            )),
            _ => None,
        };
    }
    match e {
        ReleaseError::Workload(WorkloadError::Invalid(m))
        | ReleaseError::Router(RouterError::Config(m)) => {
            Some((FailureReason::Rejected, m.clone()))
        }
        _ => None,
    }
}

/// The failure recorded in `status`, if its Ready condition holds one.
pub fn recorded(status: &CanaryStatus) -> Option<Condition> {
    find_condition(&status.conditions, condition_type::READY)
        .filter(|c| {
            c.status == "False"
                && EventReason::parse(&c.reason)
                    .and_then(FailureReason::from_reason)
                    .is_some()
        })
        .cloned()
}

/// Record the failure as `Ready=False`; true when the condition changed.
pub fn record(
    status: &mut CanaryStatus,
    reason: FailureReason,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    set_condition(
        &mut status.conditions,
        Condition {
            type_: condition_type::READY.into(),
            status: "False".into(),
            reason: reason.as_str().into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: None,
        },
    )
}

/// Keep an earlier failure's condition in `next` (which the core computed from the
/// primary's readiness alone): it stays until the actions go through.
pub fn carry(previous: &CanaryStatus, next: &mut CanaryStatus) -> bool {
    match recorded(previous) {
        Some(c) => {
            set_condition(&mut next.conditions, c);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_verb_and_resource_of_a_real_403() {
        let m = "deployments.apps \"podinfo-primary\" is forbidden: User \"system:serviceaccount:serin-system:serin\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"shop\"";
        assert_eq!(
            refused_permission(m).as_deref(),
            Some("create deployments.apps")
        );
        let core = "services \"podinfo-primary\" is forbidden: User \"u\" cannot create resource \"services\" in API group \"\" in the namespace \"shop\"";
        assert_eq!(refused_permission(core).as_deref(), Some("create services"));
        assert_eq!(refused_permission("something else"), None);
    }
}
