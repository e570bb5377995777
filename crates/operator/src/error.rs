//! The operator's error type, classified for the controller's error policy.

use litellm_operator_gcp::Error as GcpError;

use crate::plan::ActionKind;

/// `Result` with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a reconcile can fail with. Messages name resources, never secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading Google's state failed.
    #[error("could not read {resource}: {source}")]
    Observe {
        /// Full resource name.
        resource: String,
        /// The classified Google error.
        #[source]
        source: GcpError,
    },
    /// A planned action failed.
    #[error("could not {action}: {source}")]
    Act {
        /// What was attempted (its kind says which permission it needs).
        kind: ActionKind,
        /// The action, for people (names resources, never values).
        action: String,
        /// The classified Google error.
        #[source]
        source: GcpError,
    },
    /// A Google resource exists but is not ours to change.
    #[error(
        "{resource} appeared while the operator created it and is not managed by this LiteLLMDeployment; the next pass reports whose it is"
    )]
    NotOwned {
        /// Full resource name.
        resource: String,
    },
    /// A Google resource could not be converted between its JSON and typed forms.
    #[error("cannot convert {resource}: {message}")]
    Serialization {
        /// Full resource name.
        resource: String,
        /// Why.
        message: String,
    },
    /// A Google operation is still running (e.g. the service's deletion); look again soon.
    #[error("waiting for the {what}")]
    InProgress {
        /// What is in progress.
        what: String,
    },
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kubernetes(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// How the error policy treats an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Wait for a spec change.
    InvalidSpec,
    /// Long backoff and a Warning Event naming the missing permission.
    PermissionDenied,
    /// A resource went missing between read and write.
    NotFound,
    /// An etag or lease conflict: retry soon.
    Conflict,
    /// Google is still working on something we asked for: look again soon, nothing is wrong.
    InProgress,
    /// Quota or unavailability: exponential backoff with jitter.
    Transient,
    /// The Kubernetes API failed.
    Kubernetes,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidSpec => "invalid_spec",
            ErrorClass::PermissionDenied => "permission_denied",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::InProgress => "in_progress",
            ErrorClass::Transient => "transient",
            ErrorClass::Kubernetes => "kubernetes",
            ErrorClass::Other => "other",
        }
    }
}

impl Error {
    /// Wraps a Google error from reading `resource`.
    pub fn observe(resource: impl ToString) -> impl FnOnce(GcpError) -> Error {
        move |source| Error::Observe {
            resource: resource.to_string(),
            source,
        }
    }

    /// The Google error underneath, if any.
    pub fn google(&self) -> Option<&GcpError> {
        match self {
            Error::Observe { source, .. } | Error::Act { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The error's class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Observe { source, .. } | Error::Act { source, .. } => match source {
                GcpError::PermissionDenied { .. }
                | GcpError::ServiceDisabled { .. }
                | GcpError::Unauthenticated { .. } => ErrorClass::PermissionDenied,
                GcpError::NotFound { .. } => ErrorClass::NotFound,
                GcpError::Aborted { .. }
                | GcpError::FailedPrecondition { .. }
                | GcpError::AlreadyExists { .. } => ErrorClass::Conflict,
                GcpError::QuotaExceeded { .. } | GcpError::Unavailable { .. } => ErrorClass::Transient,
                GcpError::InvalidArgument { .. } => ErrorClass::InvalidSpec,
                _ => ErrorClass::Other,
            },
            Error::NotOwned { .. } => ErrorClass::Conflict,
            Error::Serialization { .. } => ErrorClass::Other,
            Error::InProgress { .. } => ErrorClass::InProgress,
            Error::Kubernetes(_) => ErrorClass::Kubernetes,
            Error::Finalizer(_) => ErrorClass::Kubernetes,
        }
    }

    /// The condition reason this error reports.
    pub fn reason(&self) -> &'static str {
        use litellm_operator_api::names::reason;
        match self.class() {
            ErrorClass::PermissionDenied => reason::PERMISSION_DENIED,
            ErrorClass::Conflict if matches!(self, Error::NotOwned { .. }) => reason::CONFLICT,
            ErrorClass::Transient if matches!(self.google(), Some(GcpError::QuotaExceeded { .. })) => {
                reason::QUOTA_EXCEEDED
            }
            ErrorClass::InvalidSpec => reason::INVALID_SPEC,
            ErrorClass::InProgress => reason::RECONCILING,
            _ => reason::GOOGLE_API_ERROR,
        }
    }
}
