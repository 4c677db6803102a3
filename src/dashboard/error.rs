//! What the dashboard answers when something is refused or fails: the status the
//! page shows, and a message saying what happened.

use crate::cli::decide::DecideError;
use crate::gates::GateError;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The API server (or the approval API) refused: the user's RBAC decided. Its own
    /// words ("... is forbidden: User ... cannot list ...") are the message.
    #[error("{0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The release moved on, or someone decided first.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The action lacked the page's CSRF token, or came from another origin.
    #[error("{0}")]
    Csrf(String),
    /// The approval API answered with another refusal; its status is passed on.
    #[error("{message}")]
    Refused {
        status: u16,
        error: String,
        message: String,
    },
    /// The cluster, the approval API or the state file could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl DashboardError {
    /// The HTTP status the page gets.
    pub fn status(&self) -> u16 {
        match self {
            DashboardError::Forbidden(_) | DashboardError::Csrf(_) => 403,
            DashboardError::NotFound(_) => 404,
            DashboardError::Conflict(_) => 409,
            DashboardError::Invalid(_) => 422,
            DashboardError::Unauthenticated(_) => 401,
            DashboardError::Refused { status, .. } => *status,
            DashboardError::Unavailable(_) => 503,
        }
    }

    /// A bounded label, as in the approval API's `{error}`.
    pub fn category(&self) -> &str {
        match self {
            DashboardError::Forbidden(_) => "forbidden",
            DashboardError::NotFound(_) => "not_found",
            DashboardError::Conflict(_) => "conflict",
            DashboardError::Invalid(_) => "invalid",
            DashboardError::Unauthenticated(_) => "unauthenticated",
            DashboardError::Csrf(_) => "csrf",
            DashboardError::Refused { error, .. } => error,
            DashboardError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<kube::Error> for DashboardError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => match s.code {
                401 => DashboardError::Unauthenticated(s.message),
                403 => DashboardError::Forbidden(s.message),
                404 => DashboardError::NotFound(s.message),
                409 => DashboardError::Conflict(s.message),
                400 | 422 => DashboardError::Invalid(s.message),
                code => DashboardError::Refused {
                    status: if (400..600).contains(&code) {
                        code
                    } else {
                        502
                    },
                    error: s.reason,
                    message: s.message,
                },
            },
            other => DashboardError::Unavailable(other.to_string()),
        }
    }
}

impl From<DecideError> for DashboardError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::Refused {
                status,
                error,
                message,
            } => match status {
                403 => DashboardError::Forbidden(message),
                409 => DashboardError::Conflict(message),
                _ => DashboardError::Refused {
                    status: if (400..600).contains(&status) {
                        status
                    } else {
                        502
                    },
                    error,
                    message,
                },
            },
            DecideError::Token(k) => k.into(),
            other => DashboardError::Unavailable(other.to_string()),
        }
    }
}

impl From<GateError> for DashboardError {
    fn from(e: GateError) -> Self {
        match e {
            GateError::NotFound { namespace, name } => {
                DashboardError::NotFound(format!("canary {namespace}/{name}"))
            }
            GateError::Conflict(m) => DashboardError::Conflict(m),
            GateError::Invalid(m) => DashboardError::Invalid(m),
            GateError::Unauthenticated(m) => DashboardError::Unauthenticated(m),
            GateError::Forbidden(m) => DashboardError::Forbidden(m),
            GateError::Unavailable(m) => DashboardError::Unavailable(m),
            GateError::Kube(k) => k.into(),
        }
    }
}
