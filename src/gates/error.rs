/// Why a decision could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("canary {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    /// The Canary is not in a state that accepts this decision (no gate pending,
    /// another gate pending, already decided the other way).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is malformed.
    #[error("{0}")]
    Invalid(String),
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A review or write could not be done in time (the controller's trouble).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl GateError {
    pub fn category(&self) -> &'static str {
        match self {
            GateError::NotFound { .. } => "not_found",
            GateError::Conflict(_) => "conflict",
            GateError::Invalid(_) => "invalid",
            GateError::Unauthenticated(_) => "unauthenticated",
            GateError::Forbidden(_) => "forbidden",
            GateError::Unavailable(_) => "unavailable",
            GateError::Kube(_) => "kube",
        }
    }

    /// The HTTP status the API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            GateError::NotFound { .. } => 404,
            GateError::Conflict(_) => 409,
            GateError::Invalid(_) => 422,
            GateError::Unauthenticated(_) => 401,
            GateError::Forbidden(_) => 403,
            GateError::Unavailable(_) => 503,
            GateError::Kube(kube::Error::Api(s)) if s.code == 403 => 403,
            GateError::Kube(kube::Error::Api(s)) if s.code == 409 => 409,
            GateError::Kube(_) => 502,
        }
    }
}
