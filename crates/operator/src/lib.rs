//! litellm-operator: the reconcile pipeline that turns a `LiteLLMDeployment` into Secret Manager secrets, IAM
//! bindings and a Cloud Run service, and the CLI around it.

pub mod cli;
pub mod conditions;
pub mod controller;
pub mod error;
pub mod execute;
pub mod gcp_config;
pub mod generate;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod permissions;
pub mod plan;
pub mod report;
pub mod resync;
pub mod service_json;

/// The source revision this binary was built from (`git rev-parse --short HEAD`), or `unknown`.
pub const REVISION: &str = match option_env!("LITELLM_OPERATOR_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};
