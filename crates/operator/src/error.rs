//! The operator's error type, classified for the controller's error policy.

use litellm_operator_gcp::Error as GcpError;

/// `Result` with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a reconcile can fail with. Messages name resources, never secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Google call failed during `step`.
    #[error("{step}: {source}")]
    Google {
        /// Pipeline step (`secrets`, `iam`, `service`, `retire`, `cleanup`).
        step: &'static str,
        /// The classified Google error.
        #[source]
        source: GcpError,
    },
    /// A Google resource exists but is not ours to change.
    #[error(
        "{resource} exists but is not managed by this LiteLLMDeployment (no `managed-by: litellm-operator` / owner label); add the annotation litellm.dev/adopt: \"true\" to adopt it"
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
    /// A grant is still propagating: retry soon, for up to ~10 minutes.
    IamPropagating,
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
            ErrorClass::IamPropagating => "iam_propagating",
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
    /// Wraps a Google error from `step`.
    pub fn google(step: &'static str) -> impl FnOnce(GcpError) -> Error {
        move |source| Error::Google { step, source }
    }

    /// The error's class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Google { source, .. } => match source {
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
            Error::NotOwned { .. } => ErrorClass::InvalidSpec,
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
            ErrorClass::IamPropagating => reason::IAM_PROPAGATING,
            ErrorClass::InvalidSpec if matches!(self, Error::NotOwned { .. }) => reason::CONFLICT,
            ErrorClass::Transient
                if matches!(
                    self,
                    Error::Google {
                        source: GcpError::QuotaExceeded { .. },
                        ..
                    }
                ) =>
            {
                reason::QUOTA_EXCEEDED
            }
            ErrorClass::InvalidSpec => reason::INVALID_SPEC,
            ErrorClass::InProgress => reason::RECONCILING,
            _ => reason::GOOGLE_API_ERROR,
        }
    }
}
