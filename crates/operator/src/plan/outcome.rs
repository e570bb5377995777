//! The outcome of a step, as a condition will show it. Plain data.

use litellm_operator_api::names::reason;

/// The outcome of one pipeline step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the step's condition holds.
    pub ok: bool,
    /// CamelCase reason, from [`reason`].
    pub reason: String,
    /// What a person should know; never a secret value.
    pub message: String,
}

impl Outcome {
    /// The step converged.
    pub fn ready(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason: reason::READY.to_owned(),
            message: message.into(),
        }
    }

    /// The step has not converged, for `reason`.
    pub fn not_ready(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}
