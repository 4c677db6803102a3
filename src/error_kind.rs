//! What kind of failure an error is: decisions match on [`ErrorKind`]; its label is
//! only for metrics and logs (`category()`), never compared.

/// The bounded kinds of failure of the adapters and of a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Someone wrote in between (409); a fresh read fixes it.
    Conflict,
    /// Any other Kubernetes API failure.
    Kube,
    /// The user's Deployment is gone.
    NotFound,
    /// The spec asks for something that cannot be done.
    Config,
    /// The target moved to another revision while it was being promoted.
    RevisionMoved,
    /// The backend (a local process, a router) failed otherwise.
    Backend,
    /// This replica may no longer write.
    Fenced,
    /// A reconcile ran into its deadline.
    Deadline,
}

impl ErrorKind {
    /// The metric label and log field.
    pub const fn as_label(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::Kube => "kube",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Config => "config",
            ErrorKind::RevisionMoved => "revision_moved",
            ErrorKind::Backend => "backend",
            ErrorKind::Fenced => "fenced",
            ErrorKind::Deadline => "deadline",
        }
    }

    /// Only the user can fix it (a spec problem, a missing Deployment): say so on the
    /// Canary and look again later instead of retrying.
    pub fn is_for_the_user_to_fix(self) -> bool {
        match self {
            ErrorKind::Config | ErrorKind::NotFound => true,
            ErrorKind::Conflict
            | ErrorKind::Kube
            | ErrorKind::RevisionMoved
            | ErrorKind::Backend
            | ErrorKind::Fenced
            | ErrorKind::Deadline => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind::*;

    #[test]
    fn labels_are_the_metric_values_and_only_spec_problems_wait_for_the_user() {
        let all = [
            Conflict,
            Kube,
            NotFound,
            Config,
            RevisionMoved,
            Backend,
            Fenced,
            Deadline,
        ];
        let labels: Vec<&str> = all.iter().map(|k| k.as_label()).collect();
        assert_eq!(
            labels,
            [
                "conflict",
                "kube",
                "not_found",
                "config",
                "revision_moved",
                "backend",
                "fenced",
                "deadline"
            ]
        );
        let for_user: Vec<_> = all
            .into_iter()
            .filter(|k| k.is_for_the_user_to_fix())
            .collect();
        assert_eq!(for_user, [NotFound, Config]);
    }
}
