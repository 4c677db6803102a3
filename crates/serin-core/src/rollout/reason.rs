//! Why an Event was sent: one closed set, so decisions on it are `match`es the compiler
//! checks, and the wire string (an Event's `reason`, a condition's `reason`) is written
//! in one place.

use std::fmt;

/// The reason of an Event (and of a `ConfigValid=False` condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    // The release, as the core decides it.
    Initialized,
    Reverted,
    NewRevision,
    Retry,
    Paused,
    Resumed,
    WaitingApproval,
    Approved,
    CheckFailed,
    CheckInconclusive,
    CheckError,
    StepAdvanced,
    Promoting,
    Promoted,
    RolledBack,
    ProgressDeadlineExceeded,
    /// A new revision waits for its release policies.
    ReleaseWaiting,
    /// A release in flight holds at its step for its release policies.
    ReleaseHeld,
    /// An emergency override lifted release windows or blackouts.
    EmergencyOverride,
    // The controller.
    ReconcileDeadlineExceeded,
    HandedBack,
    /// An action the API server refused (403).
    Forbidden,
    /// A write the API server or the router rejected as invalid.
    Rejected,
    // Onboarding by annotation.
    Disabled,
    CanaryExists,
    InvalidAnnotation,
    // Configuration problems (`ConfigValid=False`).
    InvalidSpec,
    RouterUnavailable,
    InvalidWebhook,
    TemplateNotFound,
    InvalidTemplate,
    /// A release policy that does not compile (it holds what it selects).
    InvalidPolicy,
}

/// How a release ended, for the release counter and post-rollout hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseEnd {
    Promoted,
    RolledBack,
}

impl EventReason {
    pub const ALL: [EventReason; 32] = {
        use EventReason::*;
        [
            Initialized,
            Reverted,
            NewRevision,
            Retry,
            Paused,
            Resumed,
            WaitingApproval,
            Approved,
            CheckFailed,
            CheckInconclusive,
            CheckError,
            StepAdvanced,
            Promoting,
            Promoted,
            RolledBack,
            ProgressDeadlineExceeded,
            ReleaseWaiting,
            ReleaseHeld,
            EmergencyOverride,
            ReconcileDeadlineExceeded,
            HandedBack,
            Forbidden,
            Rejected,
            Disabled,
            CanaryExists,
            InvalidAnnotation,
            InvalidSpec,
            RouterUnavailable,
            InvalidWebhook,
            TemplateNotFound,
            InvalidTemplate,
            InvalidPolicy,
        ]
    };

    /// The wire string (PascalCase, as Kubernetes reasons are).
    pub const fn as_str(self) -> &'static str {
        use EventReason::*;
        match self {
            Initialized => "Initialized",
            Reverted => "Reverted",
            NewRevision => "NewRevision",
            Retry => "Retry",
            Paused => "Paused",
            Resumed => "Resumed",
            WaitingApproval => "WaitingApproval",
            Approved => "Approved",
            CheckFailed => "CheckFailed",
            CheckInconclusive => "CheckInconclusive",
            CheckError => "CheckError",
            StepAdvanced => "StepAdvanced",
            Promoting => "Promoting",
            Promoted => "Promoted",
            RolledBack => "RolledBack",
            ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            ReleaseWaiting => "ReleaseWaiting",
            ReleaseHeld => "ReleaseHeld",
            EmergencyOverride => "EmergencyOverride",
            ReconcileDeadlineExceeded => "ReconcileDeadlineExceeded",
            HandedBack => "HandedBack",
            Forbidden => "Forbidden",
            Rejected => "Rejected",
            Disabled => "Disabled",
            CanaryExists => "CanaryExists",
            InvalidAnnotation => "InvalidAnnotation",
            InvalidSpec => "InvalidSpec",
            RouterUnavailable => "RouterUnavailable",
            InvalidWebhook => "InvalidWebhook",
            TemplateNotFound => "TemplateNotFound",
            InvalidTemplate => "InvalidTemplate",
            InvalidPolicy => "InvalidPolicy",
        }
    }

    /// The reason a wire string names (reading one back).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The end of a release this Event announces, if any. Every reason is listed so
    /// a new one needs a decision here.
    pub fn release_end(self) -> Option<ReleaseEnd> {
        use EventReason::*;
        match self {
            Promoted => Some(ReleaseEnd::Promoted),
            RolledBack => Some(ReleaseEnd::RolledBack),
            Initialized
            | Reverted
            | NewRevision
            | Retry
            | Paused
            | Resumed
            | WaitingApproval
            | Approved
            | CheckFailed
            | CheckInconclusive
            | CheckError
            | StepAdvanced
            | Promoting
            | ProgressDeadlineExceeded
            | ReleaseWaiting
            | ReleaseHeld
            | EmergencyOverride
            | ReconcileDeadlineExceeded
            | HandedBack
            | Forbidden
            | Rejected
            | Disabled
            | CanaryExists
            | InvalidAnnotation
            | InvalidSpec
            | RouterUnavailable
            | InvalidWebhook
            | TemplateNotFound
            | InvalidTemplate
            | InvalidPolicy => None,
        }
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_the_variant_names_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in EventReason::ALL {
            assert_eq!(r.as_str(), format!("{r:?}"));
            assert!(seen.insert(r.as_str()));
            assert_eq!(EventReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            EventReason::ALL
                .iter()
                .filter_map(|r| r.release_end())
                .collect::<Vec<_>>(),
            [ReleaseEnd::Promoted, ReleaseEnd::RolledBack]
        );
    }
}
